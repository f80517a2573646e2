"""One command per stage, without Prefect: ingest, train, predict, score, report; and catalog."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from segpipe.cli.app import DEFAULT_CATALOG, DEFAULT_OUTPUT, CatalogOpt, DatasetArg, OutputOpt, SplitOpt, app
from segpipe.cli.options import params
from segpipe.data.ingest.params import IngestParams
from segpipe.prediction.params import PredictParams
from segpipe.training.params import TrainParams

#: The training options every training command offers (field -> option).
TRAIN_OPTIONS = {
    "network": "--network",
    "epochs": "--epochs",
    "max_minutes": "--minutes",
    "seed": "--seed",
    "device": "--device",
    "init": "--init",
}
#: The prediction options (field -> option).
PREDICT_OPTIONS = {
    "device": "--device",
    "inference.overlap": "--overlap",
    "inference.batch_size": "--batch-size",
    "inference.flip_tta": "--tta",
    "inference.amp": "--amp",
    "inference.noise_only": "--noise-only",
    "exports": "--export",
    "probabilities": "--probabilities",
    "resample": "--resample",
}


@app.command()
@params(ingest=(IngestParams, {"force": "--force", "pyramid": "--pyramid"}))
def ingest(dataset: DatasetArg, ingest: IngestParams, catalog: CatalogOpt = DEFAULT_CATALOG, output: OutputOpt = DEFAULT_OUTPUT) -> None:
    """Check a dataset's files and write them into OUTPUT/DATASET/data.zarr (OME-Zarr)."""
    from segpipe.pipeline import RunFolder, stages
    from segpipe.pipeline.catalog import open_catalog

    result = stages.ingest(open_catalog(catalog), dataset, RunFolder.of(output, dataset), ingest)
    state = "up to date" if result.skipped else "written"
    typer.echo(f"{result.store}: {result.n_images} images, {state} (fingerprint {result.fingerprint[:12]})")


@app.command()
@params(train=(TrainParams, TRAIN_OPTIONS))
def train(dataset: DatasetArg, train: TrainParams, catalog: CatalogOpt = DEFAULT_CATALOG, output: OutputOpt = DEFAULT_OUTPUT) -> None:
    """Train on the dataset's train split, validating on its validation split.

    The dataset is ingested first when its store is missing or its files changed (as segpipe run does).
    Pixel size, patch size, batch size and widths are planned from the dataset fingerprint unless the
    catalog entry's `training:` section sets them; options given here override the catalog.
    A killed run resumes when started again, and a run that used up its time budget continues
    with a larger --minutes. --init MODEL fine-tunes an existing model (a model folder, or a
    catalog dataset whose model to start from), with its network and at its pixel size and patch size
    unless set (a patch size you set must suit the model's poolings: multiples of 16 for a plain U-Net).
    2D instance datasets of one or two channels (cytoplasm or membrane first, nuclei second) start
    from the shipped generalist cells-2d unless --init names another start; --init none trains
    from random weights.
    Example: segpipe train my-cells --init runs/bbbc007/model
    """
    from segpipe.pipeline import RunFolder, stages
    from segpipe.pipeline.catalog import open_catalog, train_params

    loaded = open_catalog(catalog)
    run = RunFolder.of(output, dataset)
    params = train_params(loaded, dataset, init_from_here(train, catalog))
    stages.start_model(run, params, catalog=loaded)  # a start that is not there is said before the ingest
    _ingested(loaded, dataset, run)
    result = stages.train(run, params, catalog=loaded)
    training = result.model.card.training
    said = "training images (no validation images; optimistic)" if training.scored_on_training else "validation"
    typer.echo(f"{result.model.folder}: {said} {json.dumps(training.validation)}")


def _ingested(catalog, dataset: str, run) -> None:
    """Ingest ``dataset`` into ``run``'s store unless it is up to date (then nothing is read but the files' digests)."""
    from segpipe.pipeline import stages

    result = stages.ingest(catalog, dataset, run)
    if not result.skipped:
        typer.echo(f"{result.store}: {result.n_images} images ingested first")


def init_from_here(train: TrainParams, catalog: Path) -> TrainParams:
    """``train`` with an ``--init`` that names a folder or file from the working directory made
    absolute: a relative ``init:`` in the catalog starts from the catalog's folder, one typed on
    the command line from where it was typed. A path not found here stays as typed when it is a
    dataset of ``catalog`` (a name may hold a slash); otherwise it is named from here (missing)."""
    if train.init is None or Path(train.init).is_absolute():
        return train
    if not Path(train.init).exists():
        if os.sep not in train.init and "/" not in train.init:
            return train  # a catalog dataset's or a shipped model's name
        from segpipe.pipeline.catalog import open_catalog

        if train.init in open_catalog(catalog):
            return train
    return train.model_copy(update={"init": str(Path(train.init).resolve())})


@app.command()
@params(predict=(PredictParams, PREDICT_OPTIONS))
def predict(
    dataset: DatasetArg,
    predict: PredictParams,
    output: OutputOpt = DEFAULT_OUTPUT,
    split: SplitOpt = "test",
    model: Annotated[
        Optional[str],
        typer.Option(help="Model to predict with: a model folder, or a catalog dataset whose trained model to use "
                     "(default: the entry's model: key, else the run's own model folder under --output)."),
    ] = None,
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    """Predict a split with a trained model, zarr to zarr (sliding windows, Gaussian blending).

    A catalog dataset is ingested first when its store is missing or its files changed.
    Memory stays bounded by a band of windows, whatever the image size; an interrupted run
    resumes where it stopped, and images already predicted with the same model and settings
    are kept. Images at another pixel size than the model's are resampled to it and back
    (--no-resample: predicted as they are). Example: segpipe predict bbbc007 --overlap 0.25 --export nifti
    """
    from segpipe.pipeline import RunFolder, stages
    from segpipe.pipeline.catalog import open_catalog
    from segpipe.pipeline.models import model_to_apply, resolve_model

    run = RunFolder.of(output, dataset)
    loaded = open_catalog(catalog) if catalog.is_file() else None
    if model is not None:
        chosen = str(resolve_model(model, output=output, catalog=loaded).folder)
    else:
        chosen = model_to_apply(loaded, dataset, output=output) if loaded is not None and dataset in loaded else None
    if loaded is not None and dataset in loaded:
        _ingested(loaded, dataset, run)
    results = stages.predict(run, predict, split=split, model=chosen)
    made = sum(not r.skipped for r in results)
    typer.echo(f"predicted {made} of {len(results)} images into {run.predictions} ({len(results) - made} were current)")


@app.command()
def score(
    dataset: DatasetArg,
    output: OutputOpt = DEFAULT_OUTPUT,
    split: SplitOpt = "test",
    predictions: Annotated[
        Optional[Path],
        typer.Option(
            "--predictions",
            help="Score this folder of another tool's predictions instead of the run's: TIFF, NIfTI or PNG files "
            "named after the images (NAME_masks, NAME_cp_masks, NAME_instances, ... or NAME), a zarr group, "
            "or CTC maskTTT.tif (in the folder, or in its SEQ_RES folders, one per sequence). Ingests the dataset if needed; "
            "writes OUTPUT/DATASET/external/FOLDER/metrics.json.",
        ),
    ] = None,
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    """Score predictions against ground truth: CTC SEG and DET, matching at IoU 0.1-0.9 (precision, recall,
    F1, AP, PQ), merges and splits, IoU and Dice per class (HD95 and ASD in 3D), with bootstrap 95% CIs,
    and the Otsu + watershed baseline on the same images; writes metrics.json.

    A catalog dataset is ingested first when its files changed, so the labels scored against are the
    files' own; a prediction made from an image that changed since is refused (predict it again)."""
    from segpipe.pipeline import RunFolder, stages
    from segpipe.report.runs import headline

    run = RunFolder.of(output, dataset)
    if predictions is None:
        if catalog.is_file():  # the ground truth as the catalog's files hold it now, as predict ingests
            from segpipe.pipeline.catalog import open_catalog

            loaded = open_catalog(catalog)
            if dataset in loaded:
                _ingested(loaded, dataset, run)
            elif not run.store.exists():
                loaded.entry(dataset)  # a name the catalog does not know (a typo), before "no store here"
        metrics = stages.score(run, split=split)
        where = run.metrics_for(split)
    else:
        from segpipe.pipeline.catalog import open_catalog
        from segpipe.scoring.external import external_metrics_path, score_prediction_folder, write_metrics

        stages.ingest(open_catalog(catalog), dataset, run)
        metrics = score_prediction_folder(run.store, predictions, dataset=dataset, split=split)
        where = write_metrics(external_metrics_path(run.root, predictions), metrics)
    scores = headline(metrics)
    base = headline(metrics.get("baseline") or {})
    summary = {"dataset": dataset, "split": split, "n_images": metrics["n_images"], "metrics": str(where)}
    summary.update({k: v for k, v in scores.items() if v is not None and k != "ci"})
    summary["ci"] = {k: v for k, v in scores["ci"].items() if v is not None}
    summary["baseline"] = {k: v for k, v in base.items() if v is not None and k != "ci"}
    summary["beats_baseline"] = metrics.get("beats_baseline")
    typer.echo(json.dumps(summary, indent=2))


def _named_in_catalog(run, catalog: Path) -> None:
    """Before saying a run folder has no store: a dataset the catalog does not know is named as
    such (a typo), when the catalog file is there to ask."""
    if not run.store.exists() and catalog.is_file():
        from segpipe.data.catalog import load_catalog

        load_catalog(catalog).entry(run.dataset)  # the name only: not its files, nor other entries' models


@app.command()
def report(
    dataset: DatasetArg, output: OutputOpt = DEFAULT_OUTPUT, split: SplitOpt = "test", catalog: CatalogOpt = DEFAULT_CATALOG
) -> None:
    """Write report.md and a self-contained report.html (scores with CIs, per-object IoU, best and worst
    images, training curve, model card, previous runs, baseline) and update OUTPUT/index.html. A dataset
    without ground truth gets the segmentation report instead (objects per image, sizes, outliers, overlays).
    The report is made from the run folder's files; the catalog is read only to name a dataset it lacks."""
    from segpipe.pipeline import RunFolder, stages

    run = RunFolder.of(output, dataset)
    _named_in_catalog(run, catalog)
    result = stages.report(run, split=split)
    typer.echo(f"{result.path}, {result.html_path} ({len(result.figures)} figures); index: {output / 'index.html'}")


@app.command("catalog")
def catalog_cmd(catalog: CatalogOpt = DEFAULT_CATALOG) -> None:
    """Validate the catalog and list its datasets with their splits.

    Every entry is checked, its files found and split, and each file's header read against the
    entry (shapes of images and labels, regions inside the image, channels in the file; no
    pixels are read): the valid ones are listed, and each problem is one line, every file's
    (exit code 2 when there is any). An invalid entry stops only the commands that use it."""
    from segpipe.cli.app import os_error_line
    from segpipe.data.ingest.record import check_record
    from segpipe.errors import CatalogError, InputError
    from segpipe.pipeline.catalog import open_catalog

    def said(check, *args) -> tuple[object, str | None]:
        """What ``check(*args)`` returns, or the line that says why it could not."""
        try:
            return check(*args), None
        except (CatalogError, InputError) as err:
            return None, str(err)
        except OSError as err:
            return None, os_error_line(err)

    loaded = open_catalog(catalog)
    problems = list(loaded.invalid.values())
    for name in loaded.names():
        dataset, problem = said(loaded.dataset, name)
        if problem is not None:
            problems.append(problem)
            continue
        files = [line for record in dataset.records if (line := said(check_record, dataset, record)[1]) is not None]
        if files:
            problems += files
            continue
        what = f"segmented with model {dataset.entry.model}" if dataset.entry.model else f"classes {dataset.entry.classes}"
        typer.echo(f"{name}: {dataset.entry.ndim}D, {what}, images per split: {_split_counts(dataset)}")
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(2)


def _split_counts(dataset) -> str:
    """``train 12 (5 with ground truth), validation 0, test 3``: how many of a split's images have
    ground truth where not all do (a CTC sequence annotates some frames)."""
    parts = []
    for split in ("train", "validation", "test"):
        records = dataset.split(split)
        labelled = sum(r.labels is not None for r in records)
        parts.append(f"{split} {len(records)}" + (f" ({labelled} with ground truth)" if 0 < labelled < len(records) else ""))
    return ", ".join(parts)

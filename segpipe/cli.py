"""The ``segpipe`` command line.

``segpipe run DATASET`` runs every stage as a Prefect flow (on Prefect's embedded default
when no server is configured); ``segpipe ingest|train|predict|score|report DATASET`` runs one
stage alone, without Prefect. Every command reads the catalog (``data_catalog.yaml`` by
default) and writes under ``OUTPUT/DATASET/``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from segpipe.errors import SegpipeError

app = typer.Typer(
    help=(
        "Batch segmentation of microscopy and medical image stacks.\n\n"
        "Declare datasets in data_catalog.yaml, then `segpipe run DATASET` ingests them into "
        "OME-Zarr, trains a MONAI U-Net (or FCN), predicts the test split with sliding windows, "
        "splits touching objects, scores against ground truth (IoU, Dice, CTC SEG) and writes "
        "a report under OUTPUT/DATASET/.\n\nExample: segpipe run bbbc007 --output runs"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

CatalogOpt = Annotated[Path, typer.Option("--catalog", "-c", help="Catalog YAML file.")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Folder for run outputs (one subfolder per dataset).")]
DatasetArg = Annotated[str, typer.Argument(help="Dataset name from the catalog.")]
SplitOpt = Annotated[str, typer.Option(help="Which split to predict, score or report.")]
DEFAULT_CATALOG = Path("data_catalog.yaml")
DEFAULT_OUTPUT = Path("runs")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "httpcore"):  # one line per Prefect API call otherwise
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    _setup_logging(verbose)


class Runner(str, Enum):
    """Where ``segpipe run`` executes the per-image tasks."""

    thread = "thread"
    dask = "dask"


@app.command()
def run(
    ctx: typer.Context,
    dataset: DatasetArg,
    catalog: CatalogOpt = DEFAULT_CATALOG,
    output: OutputOpt = DEFAULT_OUTPUT,
    model: Annotated[Optional[str], typer.Option(help="Network: unet or fcn (default: catalog, else unet).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Train exactly N epochs (no time budget).")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Training time budget in minutes.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    runner: Annotated[Runner, typer.Option(help="Per-image prediction and scoring: threads here, or a Dask cluster.")] = Runner.thread,
    dask_address: Annotated[
        Optional[str], typer.Option(help="Scheduler of an existing Dask cluster (tcp://host:8786); default: a LocalCluster.")
    ] = None,
    workers: Annotated[
        Optional[int], typer.Option(min=1, help="Threads, or LocalCluster worker processes (default 1 thread, 2 Dask workers).")
    ] = None,
    deployment: Annotated[
        Optional[str],
        typer.Option(help="Submit a run of this segpipe-pipeline deployment (e.g. nightly) to the Prefect server instead."),
    ] = None,
    wait: Annotated[bool, typer.Option(help="With --deployment: wait until the run has finished.")] = True,
) -> None:
    """Run the whole pipeline (ingest, train, predict, score, report) as a Prefect flow.

    With no Prefect server configured this uses Prefect's embedded default: nothing to start.
    Re-running resumes: every step is cached on its inputs' content and configuration, training
    continues from its last checkpoint, finished predictions are kept. With --deployment the run
    goes to a worker of the server at PREFECT_API_URL, with the options given here (the
    deployment's defaults for the others; paths are the worker's). Exit code 1 when the run
    failed (images that failed are listed in the report), 2 on bad input.
    """
    from flows.submit import run_here, submit

    values = {
        "dataset": dataset, "catalog": str(catalog), "output": str(output), "model": model, "epochs": epochs,
        "max_minutes": minutes, "seed": seed, "device": device, "runner": runner.value,
        "dask_address": dask_address, "workers": workers,
    }
    if deployment is None:
        state = run_here(values)
        if not state.is_completed():
            typer.echo(f"error: {state.message}", err=True)
            raise typer.Exit(1)
        typer.echo(json.dumps(state.result(), indent=2))
        return
    cli_names = {"max_minutes": "minutes"}
    given = {
        name: value for name, value in values.items()
        if name == "dataset" or getattr(ctx.get_parameter_source(cli_names.get(name, name)), "name", None) == "COMMANDLINE"
    }
    flow_run = submit(deployment, given, wait=wait)
    typer.echo(f"flow run {flow_run.name} ({flow_run.id}): {flow_run.state.name}")
    if wait and not flow_run.state.is_completed():
        typer.echo(f"error: {flow_run.state.message}", err=True)
        raise typer.Exit(1)


@app.command()
def ingest(
    dataset: DatasetArg,
    catalog: CatalogOpt = DEFAULT_CATALOG,
    output: OutputOpt = DEFAULT_OUTPUT,
    force: Annotated[bool, typer.Option(help="Re-ingest even if the sources are unchanged.")] = False,
) -> None:
    """Check a dataset's files and write them into OUTPUT/DATASET/data.zarr (OME-Zarr)."""
    from segpipe.stages import ingest_stage

    result = ingest_stage(catalog, dataset, output, force=force)
    state = "up to date" if result.skipped else "written"
    typer.echo(f"{result.store}: {result.n_images} images, {state} (fingerprint {result.fingerprint[:12]})")


@app.command()
def train(
    dataset: DatasetArg,
    catalog: CatalogOpt = DEFAULT_CATALOG,
    output: OutputOpt = DEFAULT_OUTPUT,
    model: Annotated[Optional[str], typer.Option(help="Network: unet or fcn.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Train exactly N epochs (no time budget).")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Training time budget in minutes.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Train on the ingested store's train split, validating on its validation split.

    Patch size, batch size and widths are planned from the dataset fingerprint unless the
    catalog entry's `training:` section sets them. A killed run resumes when started again.
    """
    from segpipe.stages import train_config_for, train_stage

    config = train_config_for(
        catalog, dataset, model=model, epochs=epochs, max_minutes=minutes, seed=seed, device=device
    )
    result = train_stage(output, dataset, config)
    typer.echo(f"{result.model_path}: validation {json.dumps(result.card.get('validation', {}))}")


@app.command()
def predict(
    dataset: DatasetArg,
    output: OutputOpt = DEFAULT_OUTPUT,
    split: SplitOpt = "test",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    overlap: Annotated[Optional[float], typer.Option(help="Window overlap, 0 to <1 (default: model card).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Windows per network call (default: model card).")] = None,
    tta: Annotated[Optional[bool], typer.Option("--tta/--no-tta", help="Average over flips of each axis.")] = None,
    export: Annotated[
        Optional[list[str]], typer.Option(help="Also write tiff, nifti or ctc (repeatable; default: tiff for 2D).")
    ] = None,
    probabilities: Annotated[bool, typer.Option(help="Keep float16 class probabilities in the zarr.")] = True,
) -> None:
    """Predict a split with the trained model, zarr to zarr (sliding windows, Gaussian blending).

    Memory stays bounded by a band of windows, whatever the image size; an interrupted run
    resumes where it stopped. Example: segpipe predict bbbc007 --overlap 0.25 --export nifti
    """
    from pydantic import ValidationError

    from segpipe.errors import InputError
    from segpipe.inference import InferenceParams
    from segpipe.predict import PredictOptions
    from segpipe.stages import predict_stage

    inference = {k: v for k, v in {"overlap": overlap, "batch_size": batch_size, "flip_tta": tta}.items() if v is not None}
    try:
        InferenceParams(**inference)
        options = PredictOptions(probabilities=probabilities, exports=tuple(export) if export else None)
    except ValidationError as err:
        problem = err.errors()[0]
        raise InputError(f"predict: bad --{'-'.join(map(str, problem['loc'][:1]))}: {problem['msg']}") from err
    names = predict_stage(output, dataset, split=split, device=device, inference=inference, options=options)
    typer.echo(f"predicted {len(names)} images into {output / dataset / 'predictions.zarr'}")


@app.command()
def score(
    dataset: DatasetArg,
    output: OutputOpt = DEFAULT_OUTPUT,
    split: SplitOpt = "test",
    predictions: Annotated[
        Optional[Path],
        typer.Option(
            "--predictions",
            help="Score this folder of another tool's predictions instead of the run's: TIFF or NIfTI files "
            "named after the images, a zarr group, or CTC maskTTT.tif. Ingests the dataset if needed; "
            "writes OUTPUT/DATASET/external/FOLDER/metrics.json.",
        ),
    ] = None,
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    """Score predictions against ground truth: CTC SEG and DET, matching at IoU 0.1-0.9 (precision, recall,
    F1, AP, PQ), merges and splits, IoU and Dice per class (HD95 and ASD in 3D), with bootstrap 95% CIs,
    and the Otsu + watershed baseline on the same images; writes metrics.json."""
    from segpipe.report.runs import headline

    if predictions is None:
        from segpipe.stages import score_stage

        metrics = score_stage(output, dataset, split=split)
        where = output / dataset / "metrics.json"
    else:
        from segpipe.scoring.external import external_metrics_path, score_prediction_folder, write_metrics
        from segpipe.stages import ingest_stage, run_paths

        ingest_stage(catalog, dataset, output)
        metrics = score_prediction_folder(run_paths(output, dataset).store, predictions, dataset=dataset, split=split)
        where = write_metrics(external_metrics_path(output / dataset, predictions), metrics)
    scores = headline(metrics)
    base = headline(metrics.get("baseline") or {})
    summary = {"dataset": dataset, "split": split, "n_images": metrics["n_images"], "metrics": str(where)}
    summary.update({k: v for k, v in scores.items() if v is not None and k != "ci"})
    summary["ci"] = {k: v for k, v in scores["ci"].items() if v is not None}
    summary["baseline"] = {k: v for k, v in base.items() if v is not None and k != "ci"}
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def report(dataset: DatasetArg, output: OutputOpt = DEFAULT_OUTPUT, split: SplitOpt = "test") -> None:
    """Write report.md and a self-contained report.html (scores with CIs, per-object IoU, best and worst
    images, training curve, model card, previous runs, baseline) and update OUTPUT/index.html."""
    from segpipe.stages import report_stage

    result = report_stage(output, dataset, split=split)
    typer.echo(f"{result.path}, {result.html_path} ({len(result.figures)} figures); index: {output / 'index.html'}")


@app.command("catalog")
def catalog_cmd(catalog: CatalogOpt = DEFAULT_CATALOG) -> None:
    """Validate the catalog and list its datasets with their splits."""
    from segpipe.catalog import load_catalog

    loaded = load_catalog(catalog)
    for name in loaded.names():
        dataset = loaded.dataset(name)
        counts = {s: len(dataset.split(s)) for s in ("train", "validation", "test")}
        typer.echo(f"{name}: {dataset.entry.ndim}D, classes {dataset.entry.classes}, images per split {counts}")


#: Prefect defaults for a lab machine that may be offline and busy; the user's own settings win.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # no telemetry calls (and their errors) offline
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",  # the embedded server is slow on a loaded machine
}


def main() -> None:
    """Entry point: run the app, turning segpipe's own errors into one line and exit code 2."""
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)  # before Prefect is imported: it reads settings once
    try:
        app()
    except SegpipeError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)

"""``segpipe segment``: a trained model applied to the images a user brings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from segpipe.cli.app import DEFAULT_CATALOG, DEFAULT_OUTPUT, CatalogOpt, app, output_folder
from segpipe.cli.options import params
from segpipe.cli.run import RUNNER_OPTIONS
from segpipe.flows.runners import RunnerParams
from segpipe.pipeline.segment_files import SegmentParams
from segpipe.prediction.params import PredictParams

SEGMENT_OPTIONS = {"spacing": "--spacing", "unit": "--unit", "axes": "--axes", "channels": "--channels"}
PREDICT_OPTIONS = {
    "device": "--device",
    "inference.overlap": "--overlap",
    "inference.batch_size": "--batch-size",
    "inference.flip_tta": "--tta",
    "inference.amp": "--amp",
    "inference.noise_only": "--noise-only",
    "probabilities": "--probabilities",
    "resample": "--resample",
}


@app.command()
@params(read=(SegmentParams, SEGMENT_OPTIONS), predict=(PredictParams, PREDICT_OPTIONS), runner=(RunnerParams, RUNNER_OPTIONS))
def segment(
    inputs: Annotated[list[str], typer.Argument(help="Images: TIFF/OME-TIFF, NIfTI, PNG, OME-Zarr or CTC sequence folders; folders and globs too. "
                                                  "Each position (image series) of an OME-TIFF is its own input, NAME_s0, NAME_s1, ...")],
    read: SegmentParams,
    predict: PredictParams,
    runner: RunnerParams,
    model: Annotated[str, typer.Option("--model", "-m", help="A model folder, or a catalog dataset whose trained model to use.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Folder for the labels, the OME-Zarr images and the tables.", callback=output_folder),
    ] = Path("segmented"),
    catalog: CatalogOpt = DEFAULT_CATALOG,
    runs: Annotated[Path, typer.Option(help="Runs folder of catalog datasets' trained models.")] = DEFAULT_OUTPUT,
) -> None:
    """Segment new images with a trained model; nothing needs to be in the catalog.

    Writes, under OUTPUT: labels/ (NAME_labels.tif for TIFF and PNG inputs, NAME_labels.nii.gz with
    the source's affine for NIfTI, NAME_RES/maskTTT.tif for a CTC sequence), images/NAME.ome.zarr
    (the image with its labels under it, for napari), measurements.csv (one row per object: area or
    volume and centroid in physical units, bounding box, mean intensity per channel), counts.csv and
    segment.json. Images at another pixel size than the model's are resampled to it and back.
    The shipped generalist (--model cells-2d: cytoplasm or membrane, then nuclei) takes one or two
    channels and chooses per image which channel feeds which of its inputs (a flat channel none;
    of two, the one whose foreground covers more of the field feeds the cytoplasm input);
    --channels 1,0 gives the order instead.
    Re-running segments only new or changed inputs; an unreadable input is listed as failed
    (exit 1; exit 2 when no input could be segmented).
    With --runner dask each input is a task of the segment flow on a Dask cluster (a local one of
    --workers processes, or the scheduler at --dask-address, whose workers must see the same
    files); the folder it writes is the same.

    Example: segpipe segment --model runs/bbbc007/model 'new/*.tif' --output new-labels
    """
    from segpipe.errors import ModelNotFound
    from segpipe.models.model import Model
    from segpipe.pipeline.models import resolve_model
    from segpipe.pipeline.segment_files import SegmentFolder, counted
    from segpipe.pipeline.segment import segment as run_segment
    from segpipe.prediction.predict import Predictor

    catalog_obj = None
    if not Path(model).exists() and catalog.is_file():
        from segpipe.pipeline.catalog import open_catalog

        catalog_obj = open_catalog(catalog)
    try:
        chosen: Model = resolve_model(model, output=runs, catalog=catalog_obj)
    except ModelNotFound as err:
        if catalog_obj is None and not Path(model).exists():  # a dataset's name, where no catalog was found
            if catalog.is_dir():
                raise ModelNotFound(f"{err}; and {catalog} is a folder, not a catalog file to find a dataset of that name in "
                                    "(--catalog names the YAML file)") from None
            raise ModelNotFound(f"{err}; and no catalog {catalog} to find a dataset of that name in (--catalog names one)") from None
        raise
    if runner.kind != "dask" and runner.workers is not None:
        raise typer.BadParameter("segment runs here in processes of its own choosing; --workers sizes a Dask cluster: "
                                 "--runner dask --workers N", param_hint="--workers")
    if runner.kind == "dask":
        results = _on_dask(inputs, chosen, output, read, predict, runner)
    else:
        results = run_segment(inputs, Predictor.load(chosen, predict), SegmentFolder(output), read)
    failed = [r for r in results if r.error is not None]
    summary = {
        "model": str(chosen.folder),
        "output": str(output),
        **counted(results),
        "failed": {r.path: r.error for r in failed},
    }
    typer.echo(json.dumps(summary, indent=2))
    if failed:  # 2 as for any bad input when none could be segmented; 1 when the others were
        raise typer.Exit(2 if len(failed) == len(results) else 1)


def _cluster_lost(error: BaseException, runner: RunnerParams, output: Path) -> str:
    """One line for a Dask cluster that failed the run: what was lost, and that a rerun resumes."""
    from distributed.scheduler import KilledWorker

    where = runner.address or "the local Dask cluster"
    if isinstance(error, KilledWorker):
        what = f"Dask workers of {where} died segmenting one input, on every try (out of memory? the workers' logs say)"
    else:
        cluster = f"the Dask scheduler at {runner.address}" if runner.address else where
        what = f"{cluster} stopped answering during the run ({str(error).splitlines()[0].rsplit('reason: ', 1)[-1].rstrip('.')})"
    return f"{what}; the inputs finished are kept in {output}: run the same command again to segment the rest"


def _on_dask(inputs: list[str], chosen, output: Path, read: SegmentParams, predict: PredictParams, runner: RunnerParams) -> list:
    """The segment flow with its tasks on Dask, on Prefect's embedded default; what happened to
    each input, as ``segment.json`` records it."""
    from segpipe.errors import SegpipeError
    from segpipe.flows.embedded import start_embedded_server
    from segpipe.flows.logs import quiet_expected_errors
    from segpipe.flows.runners import check_scheduler
    from segpipe.flows.segment import NOTHING_SEGMENTED, segpipe_segment
    from segpipe.pipeline.segment_files import InputResult, SegmentFolder

    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    if runner.address:
        check_scheduler(runner.address)
    start_embedded_server()
    summary = SegmentFolder(output).summary
    before = summary.stat().st_mtime_ns if summary.is_file() else None  # an earlier run's is not this run's
    with quiet_expected_errors(also=(FutureCancelledError, KilledWorker)) as held:
        state = segpipe_segment(inputs=inputs, model=str(chosen.folder), output=str(output), read=read, predict=predict,
                                runner=runner, empty_ok=False, return_state=True)
        outcome = state.result(raise_on_failure=False)
        if isinstance(outcome, SegpipeError | OSError):
            held.said(outcome)
            raise outcome
        if isinstance(outcome, FutureCancelledError | KilledWorker):
            held.said(outcome)
            typer.echo(f"error: {_cluster_lost(outcome, runner, output)}", err=True)
            raise typer.Exit(1)
    if state.is_cancelled():  # another run writes the folder
        raise SegpipeError(state.message.removesuffix(NOTHING_SEGMENTED))
    if not summary.is_file() or summary.stat().st_mtime_ns == before:  # the flow ended before its tables
        typer.echo(f"error: the segment flow failed before it wrote {summary}: {state.message}", err=True)
        raise typer.Exit(1)
    return [InputResult(**row) for row in json.loads(summary.read_text())["inputs"]]

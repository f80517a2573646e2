"""Predict every image of a split with the run's model, one task per image."""

from __future__ import annotations

from prefect import flow

from flows.runners import RunnerKind, fan_out, runner_options
from flows.steps import predict_images, scratch_dir
from flows.tasks import prepare_predictions_task
from prefect.states import Failed


@flow(name="segpipe-predict", log_prints=True)
def segpipe_predict(
    dataset: str,
    output: str = "runs",
    split: str = "test",
    device: str = "auto",
    runner: RunnerKind = "thread",
    dask_address: str | None = None,
    workers: int | None = None,
) -> dict:
    """Predict ``split`` into ``OUTPUT/DATASET/predictions.zarr`` (and TIFFs for 2D data).

    Images already predicted from the same model and image bytes are cached; the others run
    on ``runner`` (threads, or a Dask cluster). The run ends Failed when an image fails; the
    others' predictions are kept.
    """
    options = runner_options(runner, dask_address, workers)
    names = prepare_predictions_task(output, dataset, split)
    with fan_out(options, scratch=scratch_dir(output, dataset)) as task_runner:
        failed = predict_images(task_runner, output, dataset, names, device=device)
    if failed:
        listed = "; ".join(f"{name}: {error.splitlines()[0]}" for name, error in failed.items())
        return Failed(message=f"{len(failed)} of {len(names)} image(s) failed: {listed}")
    return {"dataset": dataset, "split": split, "predicted": names}

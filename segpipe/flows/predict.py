"""Predict every image of a split with a model (the run's own by default), one task per image."""

from __future__ import annotations

from prefect import flow
from prefect.states import Failed

from segpipe.flows.runners import RunnerParams, fan_out
from segpipe.flows.steps import predict_images, scratch_dir
from segpipe.flows.tasks import prepare_predictions_task
from segpipe.pipeline.run_folder import RunFolder
from segpipe.prediction.params import PredictParams


@flow(name="segpipe-predict", log_prints=True)
def segpipe_predict(
    dataset: str,
    output: str = "runs",
    split: str = "test",
    model: str | None = None,
    predict: PredictParams = PredictParams(),
    runner: RunnerParams = RunnerParams(),
) -> dict:
    """Predict ``split`` into ``OUTPUT/DATASET/predictions.zarr`` (and TIFFs for 2D data).

    ``model`` is a model folder (default: ``OUTPUT/DATASET/model``). Images already predicted
    with the same model, settings and image bytes are cached; the others run on ``runner``
    (threads, or a Dask cluster). The run ends Failed when an image fails; the others'
    predictions are kept.
    """
    run = RunFolder.of(output, dataset)
    names = prepare_predictions_task(run, split, model)
    with fan_out(runner, scratch=scratch_dir(run)) as task_runner:
        failed = predict_images(task_runner, run, names, predict, model)
    if failed:
        listed = "; ".join(f"{name}: {error.splitlines()[0]}" for name, error in failed.items())
        return Failed(message=f"{len(failed)} of {len(names)} image(s) failed: {listed}")
    return {"dataset": dataset, "split": split, "predicted": names}

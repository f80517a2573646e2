"""Steps the flows share: run a task with its cache refreshed when its files are gone, fan images out.

Call these inside a flow run. The per-image steps submit one task per image to the task
runner of :func:`segpipe.flows.runners.fan_out`, wait for all of them, and return the images
that failed with their error instead of raising: the flows keep the others' results, list the
failures in the report and end in a Failed state.
"""

from __future__ import annotations

from pathlib import Path

from prefect.states import Failed, State

from segpipe.data.ingest.params import IngestParams
from segpipe.flows.caching import ingest_current, predict_current, refreshed, train_current
from segpipe.flows.runners import RunnerParams, fan_out
from segpipe.flows.tasks import (
    export_sequences_task,
    ingest_task,
    pool_scores_task,
    predict_image_task,
    prepare_predictions_task,
    report_task,
    score_image_task,
    train_task,
)
from segpipe.pipeline.run_folder import RunFolder
from segpipe.prediction.params import PredictParams
from segpipe.training.params import TrainParams


def ingest_step(catalog: str, dataset: str, run: RunFolder, params: IngestParams) -> dict:
    """Ingest, reusing the cached result while the store holds the current sources."""
    current = not params.force and ingest_current(catalog, dataset, run)
    return refreshed(ingest_task, current)(catalog, dataset, run, params)


def train_step(run: RunFolder, params: TrainParams, catalog: str | None = None) -> dict:
    """Train, reusing the cached result while the run's model matches the store and ``params``."""
    return refreshed(train_task, train_current(run, params))(run, params, catalog)


def scratch_dir(run: RunFolder) -> Path:
    """Dask's scratch space for this run (spilled data, worker files)."""
    return run.root / ".dask-scratch"


def submit_predictions(runner, run: RunFolder, names: list[str], params: PredictParams, model: str | None) -> dict:
    """One prediction task per image on ``runner`` (cache refreshed where the prediction is stale)."""
    return {
        name: runner.submit(
            refreshed(predict_image_task, predict_current(run, name, params, model)),
            {"run": run, "name": name, "params": params, "model": model},
        )
        for name in names
    }


def submit_scores(runner, run: RunFolder, names: list[str], after: dict | None = None) -> dict:
    """One scoring task per image on ``runner``, each after its image's prediction future in ``after``."""
    return {
        name: runner.submit(score_image_task, {"run": run, "name": name}, wait_for=[after[name]] if after else None)
        for name in names
    }


def predict_images(runner, run: RunFolder, names: list[str], params: PredictParams, model: str | None) -> dict[str, str]:
    """Predict every image on ``runner``, then export the CTC folders it asks for; returns ``{image: error}`` of the failures."""
    futures = submit_predictions(runner, run, names, params, model)
    failed = {name: error for name, future in futures.items() if (error := failure(future)) is not None}
    _warn_noise(run, [name for name in names if name not in failed], params, model)
    if _exports_sequences(params):
        failed.update(_export_sequences(run, [name for name in names if name not in failed], params, model))
    return failed


def _warn_noise(run: RunFolder, names: list[str], params: PredictParams, model: str | None) -> None:
    """One warning for the images of the run that held only noise (their prediction groups say which)."""
    from segpipe.pipeline.models import model_for  # these need no torch: the flow's process stays without it
    from segpipe.prediction.noise_frames import recorded, warn_noise_only
    from segpipe.prediction.store import PredictionStore

    if not names:
        return
    card = model_for(run, model).card
    warn_noise_only(recorded(PredictionStore.open(run.predictions), names), params.inference_for(card.inference).noise_only)


def _export_sequences(run: RunFolder, names: list[str], params: PredictParams, model: str | None) -> dict[str, str]:
    """The CTC folders of ``names``; ``{"ctc export": error}`` when they could not be written (the
    predictions and scores stand, and the run ends Failed with the others' results)."""
    state = export_sequences_task(run, names, params, model, return_state=True)
    if state.is_completed():
        return {}
    error = state.result(raise_on_failure=False)
    return {"ctc export": f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(state.message)}


def _exports_sequences(params: PredictParams | None) -> bool:
    """Whether ``params`` asks for CTC folders (never a default), which are written per split after its predictions."""
    return params is not None and "ctc" in (params.exports or ())


def collect(names: list[str], predicted: dict, scored: dict) -> tuple[list, dict[str, str]]:
    """Wait for every image's tasks: the scores of those that went through, ``{image: "stage: error"}`` of the others."""
    parts, failed = [], {}
    for name in names:
        if name in predicted and (error := failure(predicted[name])) is not None:
            failed[name] = f"predict: {error}"  # its scoring task never ran (upstream failed)
        elif name not in scored:
            continue  # no ground truth: predicted only
        elif (error := failure(scored[name])) is not None:
            failed[name] = f"score: {error}"
        else:
            parts.append(scored[name].result())
    return parts, failed


def predict_and_score(
    runner: RunnerParams, run: RunFolder, *, split: str, params: PredictParams | None, model: str | None = None
) -> tuple[list, dict[str, str]]:
    """Predict (unless ``params`` is ``None``) and score every image of ``split`` in one fan-out.

    Returns:
        The scores of the images that went through, and ``{image: "stage: error"}`` for the others.
    """
    from segpipe.data.store import ImageStore

    store = ImageStore.open(run.store)
    names = prepare_predictions_task(run, split, model) if params is not None else store.names(split, labelled=True)
    with_truth = set(store.names(split, labelled=True))  # images without ground truth are predicted, not scored
    with fan_out(runner, scratch=scratch_dir(run)) as task_runner:
        # Each image is scored as soon as it is predicted: no barrier between the two stages.
        predicted = submit_predictions(task_runner, run, names, params, model) if params is not None else {}
        scored = submit_scores(task_runner, run, [n for n in names if n in with_truth], after=predicted)
        parts, failed = collect(names, predicted, scored)
    if _exports_sequences(params):
        failed.update(_export_sequences(run, [n for n in names if not failed.get(n, "").startswith("predict:")], params, model))
    return parts, failed


def evaluate_step(run: RunFolder, parts: list, failed: dict[str, str], *, split: str) -> tuple[dict, str]:
    """Pool the scores into metrics.json and write the report; returns the metrics and report path."""
    metrics = pool_scores_task(run, parts, split, failed)
    return metrics, report_task(run, metrics, split)


def outcome(summary: dict, failed: dict[str, str]) -> dict | State:
    """The flow's return value: ``summary``, or a Failed state naming the images that failed."""
    if not failed:
        return summary
    listed = "; ".join(f"{name}: {error.splitlines()[0]}" for name, error in failed.items())
    return Failed(message=f"{len(failed)} image(s) failed, the others are in {summary.get('report')}: {listed}")


def failure(future) -> str | None:
    """``None`` when the task run completed, else its error in one line (waits for it)."""
    future.wait()
    state = future.state
    if state.is_completed():
        return None
    error = future.result(raise_on_failure=False)
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}"
    return state.message or state.name

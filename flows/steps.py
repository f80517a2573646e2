"""Steps the flows share: run a task with its cache refreshed when its files are gone, fan images out.

Call these inside a flow run. The per-image steps submit one task per image to the task
runner of :func:`flows.runners.fan_out`, wait for all of them, and return the images that
failed with their error instead of raising: the flows keep the others' results, list the
failures in the report and end in a Failed state.
"""

from __future__ import annotations

from pathlib import Path

from prefect.states import Failed, State

from flows.caching import ingest_current, predict_current, refreshed, train_current
from flows.runners import RunnerOptions, fan_out
from flows.tasks import (
    ingest_task,
    pool_scores_task,
    predict_image_task,
    prepare_predictions_task,
    report_task,
    score_image_task,
    train_task,
)
from segpipe.config import TrainConfig


def ingest_step(catalog: str, dataset: str, output: str, *, force: bool = False) -> dict:
    """Ingest, reusing the cached result while the store holds the current sources."""
    current = not force and ingest_current(catalog, dataset, output)
    return refreshed(ingest_task, current)(catalog, dataset, output, force=force)


def train_step(output: str, dataset: str, config: TrainConfig) -> dict:
    """Train, reusing the cached result while the run's model matches the store and ``config``."""
    return refreshed(train_task, train_current(output, dataset, config))(output, dataset, config)


def scratch_dir(output: str, dataset: str) -> Path:
    """Dask's scratch space for this run (spilled data, worker files)."""
    return Path(output) / dataset / ".dask-scratch"


def submit_predictions(runner, output: str, dataset: str, names: list[str], *, device: str) -> dict:
    """One prediction task per image on ``runner`` (cache refreshed where the prediction is stale)."""
    return {
        name: runner.submit(
            refreshed(predict_image_task, predict_current(output, dataset, name)),
            {"output": output, "dataset": dataset, "name": name, "device": device},
        )
        for name in names
    }


def submit_scores(runner, output: str, dataset: str, names: list[str], after: dict | None = None) -> dict:
    """One scoring task per image on ``runner``, each after its image's prediction future in ``after``."""
    return {
        name: runner.submit(
            score_image_task,
            {"output": output, "dataset": dataset, "name": name},
            wait_for=[after[name]] if after else None,
        )
        for name in names
    }


def predict_images(runner, output: str, dataset: str, names: list[str], *, device: str) -> dict[str, str]:
    """Predict every image on ``runner``; returns ``{image: error}`` of the failures."""
    futures = submit_predictions(runner, output, dataset, names, device=device)
    return {name: error for name, future in futures.items() if (error := _failure(future)) is not None}


def collect(names: list[str], predicted: dict, scored: dict) -> tuple[list, dict[str, str]]:
    """Wait for every image's tasks: the scores of those that went through, ``{image: "stage: error"}`` of the others."""
    parts, failed = [], {}
    for name in names:
        if name in predicted and (error := _failure(predicted[name])) is not None:
            failed[name] = f"predict: {error}"  # its scoring task never ran (upstream failed)
        elif (error := _failure(scored[name])) is not None:
            failed[name] = f"score: {error}"
        else:
            parts.append(scored[name].result())
    return parts, failed


def split_names(output: str, dataset: str, split: str) -> list[str]:
    """Names of the split's images in the run's store."""
    from segpipe.stages import run_paths
    from segpipe.store import list_images

    return [image.name for image in list_images(run_paths(output, dataset).store, split)]


def predict_and_score(
    options: RunnerOptions, output: str, dataset: str, *, split: str, device: str, predict: bool = True
) -> tuple[list, dict[str, str]]:
    """Predict (optionally) and score every image of ``split`` in one fan-out.

    Returns:
        The scores of the images that went through, and ``{image: "stage: error"}`` for the others.
    """
    if predict:
        names = prepare_predictions_task(output, dataset, split)
    else:
        names = split_names(output, dataset, split)
    with fan_out(options, scratch=scratch_dir(output, dataset)) as runner:
        # Each image is scored as soon as it is predicted: no barrier between the two stages.
        predicted = submit_predictions(runner, output, dataset, names, device=device) if predict else {}
        scored = submit_scores(runner, output, dataset, names, after=predicted)
        return collect(names, predicted, scored)


def evaluate_step(output: str, dataset: str, parts: list, failed: dict[str, str], *, split: str) -> tuple[dict, str]:
    """Pool the scores into metrics.json and write the report; returns the metrics and report path."""
    metrics = pool_scores_task(output, dataset, parts, split, failed)
    return metrics, report_task(output, dataset, metrics, split)


def outcome(summary: dict, failed: dict[str, str]) -> dict | State:
    """The flow's return value: ``summary``, or a Failed state naming the images that failed."""
    if not failed:
        return summary
    listed = "; ".join(f"{name}: {error.splitlines()[0]}" for name, error in failed.items())
    return Failed(message=f"{len(failed)} image(s) failed, the others are in {summary.get('report')}: {listed}")


def _failure(future) -> str | None:
    future.wait()
    state = future.state
    if state.is_completed():
        return None
    error = future.result(raise_on_failure=False)
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}"
    return state.message or state.name

"""Score a run's predictions and write its report, one scoring task per image."""

from __future__ import annotations

from prefect import flow

from flows.runners import RunnerKind, runner_options
from flows.steps import evaluate_step, outcome, predict_and_score


@flow(name="segpipe-evaluate", log_prints=True)
def segpipe_evaluate(
    dataset: str,
    output: str = "runs",
    split: str = "test",
    runner: RunnerKind = "thread",
    dask_address: str | None = None,
    workers: int | None = None,
) -> dict:
    """Score ``split`` against the ground truth, write metrics.json and report.md, publish artifacts.

    Scores are cached on the prediction and ground-truth bytes (and the scoring code), so a
    nightly re-score of unchanged data is cheap. An image without a readable prediction is
    listed as failed in the report and the run ends Failed.
    """
    options = runner_options(runner, dask_address, workers)
    parts, failed = predict_and_score(options, output, dataset, split=split, device="auto", predict=False)
    metrics, report = evaluate_step(output, dataset, parts, failed, split=split)
    summary = {"dataset": dataset, "seg": metrics.get("seg"), "iou": metrics["iou"], "dice": metrics["dice"], "report": report, "failed": sorted(failed)}
    return outcome(summary, failed)

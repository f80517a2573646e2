"""Score a run's predictions and write its report, one scoring task per image."""

from __future__ import annotations

from prefect import flow

from segpipe.flows.runners import RunnerParams
from segpipe.flows.steps import evaluate_step, outcome, predict_and_score
from segpipe.pipeline.run_folder import RunFolder


@flow(name="segpipe-evaluate", log_prints=True)
def segpipe_evaluate(dataset: str, output: str = "runs", split: str = "test", runner: RunnerParams = RunnerParams()) -> dict:
    """Score ``split`` against the ground truth, write metrics.json and report.md, publish artifacts.

    Scores are cached on the prediction and ground-truth bytes (and the scoring code), so a
    nightly re-score of unchanged data is cheap. An image without a readable prediction is
    listed as failed in the report and the run ends Failed.
    """
    run = RunFolder.of(output, dataset)
    parts, failed = predict_and_score(runner, run, split=split, params=None)
    metrics, report = evaluate_step(run, parts, failed, split=split)
    summary = {
        "dataset": dataset, "seg": metrics.get("seg"), "iou": metrics["iou"], "dice": metrics["dice"],
        "report": report, "failed": sorted(failed),
    }
    return outcome(summary, failed)

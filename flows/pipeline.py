"""The whole pipeline for one catalog dataset: ingest, train, predict, score, report."""

from __future__ import annotations

from prefect import flow

from flows.runners import RunnerKind, runner_options
from flows.steps import evaluate_step, ingest_step, outcome, predict_and_score, train_step


@flow(name="segpipe-pipeline", log_prints=True)
def segpipe_pipeline(
    dataset: str,
    catalog: str = "data_catalog.yaml",
    output: str = "runs",
    model: str | None = None,
    epochs: int | None = None,
    max_minutes: float | None = None,
    seed: int = 0,
    device: str = "auto",
    split: str = "test",
    runner: RunnerKind = "thread",
    dask_address: str | None = None,
    workers: int | None = None,
) -> dict:
    """Run every stage for ``dataset``; returns the headline scores and where the files are.

    Each step is cached on its inputs' content and configuration: a re-run with nothing changed
    reuses every result, and a change re-runs what depends on it. Prediction and scoring run one
    task per image on ``runner`` (``thread``, or ``dask``: a LocalCluster of ``workers`` processes,
    or the scheduler at ``dask_address``). Images that fail are listed in the report and the run
    ends Failed; the others' results are kept, and a re-run redoes only what is missing.
    """
    options = runner_options(runner, dask_address, workers)
    from segpipe.stages import train_config_for

    config = train_config_for(catalog, dataset, model=model, epochs=epochs, max_minutes=max_minutes, seed=seed, device=device)
    ingest_step(catalog, dataset, output)
    trained = train_step(output, dataset, config)
    parts, failed = predict_and_score(options, output, dataset, split=split, device=device)
    metrics, report = evaluate_step(output, dataset, parts, failed, split=split)
    summary = {
        "dataset": dataset,
        "seg": metrics.get("seg"),
        "iou": metrics["iou"],
        "dice": metrics["dice"],
        "epochs": trained["epochs"],
        "report": report,
        "failed": sorted(failed),
    }
    return outcome(summary, failed)


if __name__ == "__main__":
    import sys

    segpipe_pipeline(dataset=sys.argv[1] if len(sys.argv) > 1 else "bbbc007")

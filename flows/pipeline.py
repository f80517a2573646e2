"""The whole pipeline for one catalog dataset: ingest, train, predict, score, report."""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows.tasks import ingest_task, predict_task, report_task, score_task, train_task
from segpipe.stages import train_config_for


@flow(name="segpipe-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=1), log_prints=True)
def segpipe_pipeline(
    dataset: str,
    catalog: str = "data_catalog.yaml",
    output: str = "runs",
    model: str | None = None,
    epochs: int | None = None,
    max_minutes: float | None = None,
    seed: int = 0,
    device: str = "auto",
) -> dict:
    """Run every stage for ``dataset``; returns the headline scores and where the files are."""
    config = train_config_for(catalog, dataset, model=model, epochs=epochs, max_minutes=max_minutes, seed=seed, device=device)
    ingested = ingest_task(catalog, dataset, output)
    trained = train_task(output, dataset, config, wait_for=[ingested])
    predicted = predict_task(output, dataset, device=device, wait_for=[trained])
    metrics = score_task(output, dataset, wait_for=[predicted])
    report = report_task(output, dataset, metrics)
    return {
        "dataset": dataset,
        "seg": metrics.get("seg"),
        "iou": metrics["iou"],
        "dice": metrics["dice"],
        "epochs": trained["epochs"],
        "report": report,
    }


if __name__ == "__main__":
    import sys

    segpipe_pipeline(dataset=sys.argv[1] if len(sys.argv) > 1 else "bbbc007")

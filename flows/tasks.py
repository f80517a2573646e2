"""Prefect tasks around :mod:`segpipe.stages`; shared by the flows in this folder."""

from __future__ import annotations

import re

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from segpipe import stages
from segpipe.config import TrainConfig


def artifact_key(dataset: str, kind: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{dataset}-{kind}".lower()).strip("-")


@task(name="ingest", retries=2, retry_delay_seconds=[2, 10])
def ingest_task(catalog: str, dataset: str, output: str, force: bool = False) -> dict:
    """Validate and ingest a catalog dataset; unchanged sources are skipped."""
    result = stages.ingest_stage(catalog, dataset, output, force=force)
    get_run_logger().info(
        "%s: %d images %s in %s", dataset, result.n_images, "unchanged" if result.skipped else "ingested", result.store
    )
    return {"store": str(result.store), "fingerprint": result.fingerprint, "skipped": result.skipped}


@task(name="train")
def train_task(output: str, dataset: str, config: TrainConfig) -> dict:
    """Train (or resume training) a model on the ingested dataset."""
    result = stages.train_stage(output, dataset, config)
    get_run_logger().info(
        "%s: trained %d epochs, validation %s", dataset, len(result.history), result.card.get("validation")
    )
    return {"model": str(result.model_path), "epochs": len(result.history), "validation": result.card.get("validation")}


@task(name="predict", retries=1, retry_delay_seconds=5)
def predict_task(output: str, dataset: str, split: str = "test", device: str = "auto") -> list[str]:
    """Predict a split with sliding windows; finished images are kept on re-runs."""
    names = stages.predict_stage(output, dataset, split=split, device=device)
    get_run_logger().info("%s: predicted %d %s images", dataset, len(names), split)
    return names


@task(name="score")
def score_task(output: str, dataset: str, split: str = "test") -> dict:
    """Score predictions against ground truth; writes metrics.json."""
    metrics = stages.score_stage(output, dataset, split=split)
    get_run_logger().info("%s: %s", dataset, stages._headline(metrics))
    return metrics


@task(name="report")
def report_task(output: str, dataset: str, metrics: dict, split: str = "test") -> str:
    """Write report.md and publish it, with the per-image table, as Prefect artifacts."""
    report = stages.report_stage(output, dataset, split=split)
    create_markdown_artifact(
        key=artifact_key(dataset, "report"),
        markdown=report.markdown + f"\n\nFiles: `{report.path.parent}`\n",
        description=f"segpipe report for {dataset}",
    )
    rows = [
        {"image": r["name"], "seg": r.get("seg"), "n_objects": r.get("n_objects"), **{f"iou_{k}": v for k, v in r["iou"].items()}}
        for r in metrics["per_image"]
    ]
    create_table_artifact(key=artifact_key(dataset, "metrics"), table=rows, description=f"per-image scores, {dataset}")
    return str(report.path)

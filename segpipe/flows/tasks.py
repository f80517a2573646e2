"""Prefect tasks around :mod:`segpipe.pipeline.stages`; shared by the flows in this package.

Every task is cached on its inputs' content and its configuration (:mod:`segpipe.flows.caching`).
Tasks that read or write files retry I/O errors (``OSError``: network filesystems, object
stores, timeouts, a store that is not there) with exponential backoff; bad input (any other
:class:`~segpipe.errors.SegpipeError`) and bugs fail at once. Prediction and scoring are one task per image, so one bad image fails
alone. The library (torch, MONAI) is imported when a task runs, not when a flow is loaded:
``prefect deploy`` and the worker load flows quickly. Training carries the :data:`GPU_TAG`
tag: a tag concurrency limit on it (created by ``deploy/setup.py``) keeps two runs from
training on the same GPU at once.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import time

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.tasks import exponential_backoff

from segpipe.data.ingest.params import IngestParams
from segpipe.flows.caching import ingest_key, key_fn, predict_key, score_key, train_key
from segpipe.flows.logs import forward_segpipe_logs
from segpipe.pipeline.run_folder import RunFolder
from segpipe.prediction.params import PredictParams
from segpipe.training.params import TrainParams

GPU_TAG = "segpipe-gpu"

forward_segpipe_logs()  # training and prediction progress lines reach the run's logs
IO_RETRIES = {
    "retries": 2,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
}


#: OS errors a retry a few seconds later cannot mend: a full disk, a read-only or forbidden folder,
#: a file where a folder should be. They fail the task at once.
PERMANENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}
)


def transient(task, task_run, state) -> bool:
    """Retry condition: the task failed on an I/O error, which may pass (a file or store that is
    not there counts: a network filesystem may bring it back); not on bad input, a bug, or an
    error in :data:`PERMANENT_ERRNOS`."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, OSError) and error.errno not in PERMANENT_ERRNOS


def artifact_key(dataset: str, kind: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{dataset}-{kind}".lower()).strip("-")


@task(name="ingest", retry_condition_fn=transient, cache_key_fn=key_fn(ingest_key), **IO_RETRIES)
def ingest_task(catalog: str, dataset: str, run: RunFolder, params: IngestParams) -> dict:
    """Validate and ingest a catalog dataset; unchanged sources are skipped."""
    from segpipe.pipeline import stages
    from segpipe.pipeline.catalog import open_catalog

    result = stages.ingest(open_catalog(catalog), dataset, run, params)
    get_run_logger().info(
        "%s: %d images %s in %s", dataset, result.n_images, "unchanged" if result.skipped else "ingested", result.store
    )
    return {"store": str(result.store), "fingerprint": result.fingerprint, "skipped": result.skipped}


@task(
    name="train",
    tags=[GPU_TAG],
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=transient,
    cache_key_fn=key_fn(train_key),
)
def train_task(run: RunFolder, params: TrainParams, catalog: str | None = None) -> dict:
    """Train (or resume training) the run's model on its ingested dataset."""
    from segpipe.flows.caching import record_trained_on, train_inputs
    from segpipe.pipeline import stages
    from segpipe.pipeline.catalog import open_catalog

    inputs = train_inputs(run)
    result = stages.train(run, params, catalog=open_catalog(catalog) if catalog else None)
    record_trained_on(run, inputs)
    training = result.model.card.training
    get_run_logger().info("%s: trained %d epochs, validation %s", run.dataset, len(result.history), training.validation)
    return {"model": str(result.model.folder), "epochs": len(result.history), "validation": training.validation}


@task(name="prepare-predictions", retry_condition_fn=transient, **IO_RETRIES)
def prepare_predictions_task(run: RunFolder, split: str = "test", model: str | None = None) -> list[str]:
    """Open the prediction store for the model; returns the split's image names."""
    from segpipe.pipeline import stages

    return stages.prepare_predictions(run, split=split, model=model)


@task(
    name="predict-image",
    task_run_name="predict-{name}",
    retry_condition_fn=transient,
    cache_key_fn=key_fn(predict_key),
    **IO_RETRIES,
)
def predict_image_task(run: RunFolder, name: str, params: PredictParams, model: str | None = None) -> str:
    """Predict one image (sliding windows, post-processing, exports); returns its input stamp."""
    from segpipe.pipeline import stages

    start = time.perf_counter()
    stamp = stages.predict_one(run, name, params, model=model)
    _log_work(name, "predicted", time.perf_counter() - start)
    return stamp


@task(name="export-sequences", retry_condition_fn=transient, **IO_RETRIES)
def export_sequences_task(run: RunFolder, names: list[str], params: PredictParams, model: str | None = None) -> list[str]:
    """Write the Cell Tracking Challenge folders of the predicted images, when ``params`` exports ``ctc``."""
    from segpipe.pipeline import stages

    return [str(folder) for folder in stages.export_sequences(run, names, params, model=model)]


@task(
    name="score-image",
    task_run_name="score-{name}",
    retry_condition_fn=transient,
    cache_key_fn=key_fn(score_key),
    **IO_RETRIES,
)
def score_image_task(run: RunFolder, name: str):
    """Score one predicted image against its ground truth; a one-image ScoreAccumulator."""
    from segpipe.pipeline import stages

    start = time.perf_counter()
    scores = stages.score_one(run, name)
    _log_work(name, "scored", time.perf_counter() - start)
    return scores


def _log_work(name: str, what: str, seconds: float) -> None:
    """One line per image: how long the work took and where (which Dask worker, which host)."""
    get_run_logger().info("%s: %s in %.3f s in process %d on %s", name, what, seconds, os.getpid(), socket.gethostname())


@task(name="pool-scores", retry_condition_fn=transient, **IO_RETRIES)
def pool_scores_task(run: RunFolder, parts: list, split: str = "test", failed: dict | None = None) -> dict:
    """Pool the per-image scores into metrics.json, listing the images that failed."""
    from segpipe.pipeline import stages
    from segpipe.report.write import headline_text

    metrics = stages.pool_scores(run, parts, split=split, failed=failed)
    get_run_logger().info("%s: %s", run.dataset, headline_text(metrics))
    return metrics


@task(name="report", retry_condition_fn=transient, **IO_RETRIES)
def segmentation_report_task(run: RunFolder, split: str = "test") -> str:
    """Report a run without ground truth (counts, sizes, outliers, overlays) and publish it."""
    from segpipe.pipeline import stages

    report = stages.report_segmentation(run, split=split)
    create_markdown_artifact(
        key=artifact_key(run.dataset, "report"),
        markdown=report.markdown + f"\n\nFiles: `{report.path.parent}`\n",
        description=f"segmentation report for {run.dataset}",
    )
    return str(report.path)


@task(name="report", retry_condition_fn=transient, **IO_RETRIES)
def report_task(run: RunFolder, metrics: dict, split: str = "test") -> str:
    """Write report.md and publish it, with the per-image table, as Prefect artifacts."""
    from segpipe.pipeline import stages

    dataset = run.dataset
    report = stages.report(run, split=split)
    create_markdown_artifact(
        key=artifact_key(dataset, "report"),
        markdown=report.markdown + f"\n\nFiles: `{report.path.parent}`\n",
        description=f"segpipe report for {dataset}",
    )
    rows = [
        {
            "image": r["name"],
            "status": "scored",
            "seg": r.get("seg"),
            "op_csb": r.get("op_csb"),
            "n_objects": r.get("n_objects"),
            **{f"iou_{k}": v for k, v in r["iou"].items()},
            "error": None,
        }
        for r in metrics["per_image"]
    ]
    rows += [{"image": f["name"], "status": "failed", "error": f["error"]} for f in metrics.get("failed", [])]
    create_table_artifact(key=artifact_key(dataset, "metrics"), table=rows, description=f"per-image scores, {dataset}")
    # The report's other tables (summary with CIs, matching by IoU threshold, runs, baseline, ...).
    for key, table in report.tables.items():
        if key != "per-image" and table:
            create_table_artifact(key=artifact_key(dataset, key), table=table, description=f"{key} table, {dataset}")
    create_markdown_artifact(
        key=artifact_key(dataset, "headline"), markdown=report.summary, description=f"headline scores, {dataset}"
    )
    return str(report.path)

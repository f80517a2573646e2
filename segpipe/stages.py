"""The pipeline's stages as plain functions over a run folder; flows and the CLI both call these.

A run folder ``OUTPUT/DATASET/`` holds::

    data.zarr/           ingested images and ground truth (OME-Zarr)
    model/               model.pt, model_card.json, history.csv, last.pt (resume state)
    predictions.zarr/    probabilities, semantic and instance labels per test image
    predictions/         the same labels as TIFF (2D datasets)
    metrics.json         scores on the test split
    report.md, figures/  the report
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segpipe.catalog import load_catalog
from segpipe.config import TrainConfig
from segpipe.ingest import IngestResult, ingest_dataset
from segpipe.predict import read_prediction
from segpipe.report import Report, read_history, write_report
from segpipe.scoring import ScoreAccumulator
from segpipe.store import list_images, open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPaths:
    """Where each stage reads and writes, for one dataset."""

    root: Path

    @property
    def store(self) -> Path:
        return self.root / "data.zarr"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.zarr"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"


def run_paths(output: str | Path, dataset: str) -> RunPaths:
    """The run folder of ``dataset`` under ``output``."""
    return RunPaths(Path(output) / dataset)


def ingest_stage(catalog: str | Path, dataset: str, output: str | Path, *, force: bool = False) -> IngestResult:
    """Validate the catalog entry and ingest it (skipped when the sources are unchanged)."""
    resolved = load_catalog(catalog).dataset(dataset)
    return ingest_dataset(resolved, run_paths(output, dataset).store, force=force)


def train_stage(output: str | Path, dataset: str, config: TrainConfig, *, progress: bool = True):
    """Train on the run's store; the catalog entry's ``training`` overrides are already in ``config``."""
    from segpipe.train import train_model

    paths = run_paths(output, dataset)
    return train_model(paths.store, paths.model_dir, config, progress=progress)


def train_config_for(catalog: str | Path, dataset: str, **cli_overrides) -> TrainConfig:
    """Training configuration: defaults, then the catalog entry's overrides, then the CLI's."""
    entry = load_catalog(catalog).entries.get(dataset)
    values = {}
    if entry is not None:
        values.update(entry.training)
    values.update({k: v for k, v in cli_overrides.items() if v is not None})
    if "epochs" in cli_overrides and cli_overrides["epochs"] is not None and cli_overrides.get("max_minutes") is None:
        values["max_minutes"] = None  # an explicit epoch count is trained in full, reproducibly
    return TrainConfig(**values)


def predict_stage(output: str | Path, dataset: str, *, split: str = "test", device: str = "auto", progress=True):
    """Predict a split with the run's trained model."""
    from segpipe.predict import predict_dataset

    paths = run_paths(output, dataset)
    return predict_dataset(paths.store, paths.model_dir, paths.root, split=split, device=device, progress=progress)


def score_stage(output: str | Path, dataset: str, *, split: str = "test") -> dict:
    """Score the run's predictions against the store's ground truth; writes ``metrics.json``."""
    paths = run_paths(output, dataset)
    _, record = open_store(paths.store)
    accumulator = ScoreAccumulator(len(record["classes"]), record["classes"], record["instances"])
    for image in list_images(paths.store, split):
        prediction = read_prediction(paths.predictions, image.name)
        gt = np.asarray(image.labels)
        if record["instances"]:
            accumulator.add(image.name, gt, prediction.instances, gt > 0, prediction.semantic)
        else:
            accumulator.add(image.name, gt, prediction.semantic)
    metrics = {"dataset": dataset, "split": split, **accumulator.summary()}
    paths.metrics.write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("%s: %s", dataset, _headline(metrics))
    return metrics


def _headline(metrics: dict) -> str:
    parts = []
    if metrics.get("seg") is not None:
        parts.append(f"SEG {metrics['seg']:.4f}")
    if metrics.get("mean_iou") is not None:
        parts.append(f"mean IoU {metrics['mean_iou']:.4f}")
    if metrics.get("mean_dice") is not None:
        parts.append(f"mean Dice {metrics['mean_dice']:.4f}")
    return ", ".join(parts)


def report_stage(output: str | Path, dataset: str, *, split: str = "test") -> Report:
    """Write ``report.md`` with overlays and the training curve from the run's files."""
    from segpipe.checkpoint import CARD_FILE

    paths = run_paths(output, dataset)
    _, record = open_store(paths.store)
    metrics = json.loads(paths.metrics.read_text())
    card = json.loads((paths.model_dir / CARD_FILE).read_text())
    history_file = paths.model_dir / "history.csv"
    history = read_history(history_file) if history_file.is_file() else []
    views = []
    for image in list_images(paths.store, split):
        prediction = read_prediction(paths.predictions, image.name)
        pred = prediction.instances if prediction.instances is not None else prediction.semantic
        views.append((image.name, np.asarray(image.image[0]), np.asarray(image.labels), pred))
    return write_report(
        paths.root, dataset=dataset, record=record, metrics=metrics, card=card, history=history, views=views
    )

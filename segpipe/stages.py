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

import functools
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from segpipe.catalog import load_catalog
from segpipe.config import TrainConfig
from segpipe.errors import StoreError
from segpipe.ingest import IngestResult, ingest_dataset
from segpipe.predict import read_prediction
from segpipe.report import Report, read_history, write_report
from segpipe.scoring import ScoreAccumulator
from segpipe.store import GT_NAME, IMAGE_LEVEL, StoredImage, list_images, open_store

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


def predict_stage(
    output: str | Path,
    dataset: str,
    *,
    split: str = "test",
    device: str = "auto",
    progress=True,
    inference: dict | None = None,
    options=None,
):
    """Predict a split with the run's trained model.

    Args:
        inference: Overrides of the model card's sliding-window settings
            (:class:`segpipe.inference.InferenceParams` fields, e.g. ``overlap``, ``batch_size``).
        options: :class:`segpipe.predict.PredictOptions` (probabilities kept, exports).
    """
    from segpipe.inference import InferenceParams
    from segpipe.predict import predict_dataset

    paths = run_paths(output, dataset)
    params = InferenceParams(**(read_card(output, dataset)["inference"] | inference)) if inference else None
    return predict_dataset(
        paths.store, paths.model_dir, paths.root, split=split, device=device, progress=progress,
        params=params, options=options,
    )


def score_stage(output: str | Path, dataset: str, *, split: str = "test") -> dict:
    """Score the run's predictions against the store's ground truth; writes ``metrics.json``."""
    paths = run_paths(output, dataset)
    parts = [score_one(output, dataset, image.name) for image in list_images(paths.store, split)]
    return pool_scores(output, dataset, parts, split=split)


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
    from segpipe.report import rank_images, read_runs, write_index

    shown = {name for name, _, _ in rank_images(metrics)}  # the best and worst images (scored ones only)
    views, spacing = [], None
    for image in list_images(paths.store, split):
        if image.name not in shown:
            continue
        prediction = read_prediction(paths.predictions, image.name)
        pred = prediction.instances if prediction.instances is not None else prediction.semantic
        views.append((image.name, np.asarray(image.image[0]), np.asarray(image.labels), pred))
        spacing = image.spacing
    report = write_report(
        paths.root, dataset=dataset, record=record, metrics=metrics, card=card, history=history, views=views,
        runs=read_runs(paths.root), spacing=spacing,
    )  # images that failed are listed in the report from metrics["failed"]
    write_index(Path(output))
    return report


# One image at a time: the per-image tasks of the Prefect flows (flows/tasks.py) fan these out.

STAMP_ATTR = "segpipe_inputs"


def stored_image(store: str | Path, name: str) -> StoredImage:
    """One image of a store by name, opened lazily (:func:`segpipe.store.list_images` opens them all)."""
    root, record = open_store(store)
    info = next((info for info in record["images"] if info["name"] == name), None)
    if info is None:
        raise StoreError(f"{store}: no image named {name!r}")
    group = root[name]
    labels = group[f"labels/{GT_NAME}/{IMAGE_LEVEL}"] if "labels" in group else None
    return StoredImage(name, info["split"], group[IMAGE_LEVEL], labels, tuple(info["spacing"]), info)


def read_card(output: str | Path, dataset: str) -> dict:
    """The run's model card (``model/model_card.json``)."""
    from segpipe.checkpoint import CARD_FILE

    path = run_paths(output, dataset).model_dir / CARD_FILE
    if not path.is_file():
        raise StoreError(f"{path}: no trained model here; run `segpipe train` first")
    return json.loads(path.read_text())


def array_digest(array) -> str:
    """SHA-256 of a zarr array's stored files (metadata and compressed chunks), without decoding them."""
    root = getattr(array.store, "root", None)
    digest = hashlib.sha256()
    if root is None:  # pragma: no cover - segpipe writes local stores only
        digest.update(np.ascontiguousarray(array[...]).tobytes())
        return digest.hexdigest()
    folder = Path(str(root)) / array.path
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def prediction_stamp(output: str | Path, dataset: str, name: str, *, card: dict | None = None) -> str:
    """What a prediction of ``name`` is made from: the model, its inference settings, the image's bytes."""
    from segpipe.predict import model_id

    card = card or read_card(output, dataset)
    image = stored_image(run_paths(output, dataset).store, name)
    source = {"model": model_id(card), "inference": card.get("inference"), "image": array_digest(image.image)}
    return hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()


def stored_stamp(output: str | Path, dataset: str, name: str) -> str | None:
    """The stamp a complete prediction of ``name`` was written with, or ``None``."""
    import zarr

    path = run_paths(output, dataset).predictions
    if not (path / "zarr.json").is_file():
        return None
    root = zarr.open_group(str(path), mode="r")
    if name not in root or not root[name].attrs.get("complete"):
        return None
    return root[name].attrs.get(STAMP_ATTR)


def prepare_predictions(output: str | Path, dataset: str, *, split: str = "test") -> list[str]:
    """Open the prediction store for the current model (replacing another model's) before a fan-out.

    Returns:
        The names of the split's images, in catalog order.
    """
    from segpipe.predict import open_predictions

    paths = run_paths(output, dataset)
    names = [image.name for image in list_images(paths.store, split)]
    if not names:
        raise StoreError(f"{paths.store}: the {split} split is empty")
    open_predictions(paths.predictions, read_card(output, dataset))
    return names


def predict_one(output: str | Path, dataset: str, name: str, *, device: str = "auto") -> str:
    """Predict one image of the run (kept when its stamp is current); returns the stamp.

    Call :func:`prepare_predictions` once first: this never replaces the prediction store, so
    images may be predicted concurrently, in threads or processes.
    """
    from segpipe.checkpoint import MODEL_FILE
    from segpipe.predict import model_id, predict_stored_image

    paths = run_paths(output, dataset)
    model_path = paths.model_dir / MODEL_FILE
    if not model_path.is_file():
        raise StoreError(f"{model_path}: no trained model here; run `segpipe train` first")
    model, card = _load_model(str(model_path), model_path.stat().st_mtime_ns, device)
    stamp = prediction_stamp(output, dataset, name, card=card)
    root = zarr.open_group(str(paths.predictions), mode="a")
    if root.attrs.get("segpipe", {}).get("model_id") != model_id(card):
        raise StoreError(f"{paths.predictions}: not prepared for the current model; call prepare_predictions")
    if name in root and root[name].attrs.get(STAMP_ATTR) != stamp:
        log.info("%s: its prediction was made from other inputs; predicting again", name)
        del root[name]
    predict_stored_image(stored_image(paths.store, name), model, card, root, paths.root)
    group = zarr.open_group(str(paths.predictions / name), mode="a")
    if group.attrs.get(STAMP_ATTR) != stamp:
        group.attrs[STAMP_ATTR] = stamp
    return stamp


@functools.lru_cache(maxsize=2)
def _load_model(path: str, mtime_ns: int, device: str):
    """A process keeps its last models: per-image tasks on one worker load the weights once."""
    from segpipe.checkpoint import load_model
    from segpipe.train import resolve_device

    return load_model(path, device=resolve_device(device))


def score_one(output: str | Path, dataset: str, name: str) -> ScoreAccumulator:
    """Score one predicted image; returns a one-image accumulator for :func:`pool_scores`."""
    from segpipe.scoring.dataset import dataset_accumulator, score_image

    paths = run_paths(output, dataset)
    _, record = open_store(paths.store)
    accumulator = dataset_accumulator(record)  # the model and the classical baseline
    image = stored_image(paths.store, name)
    prediction = read_prediction(paths.predictions, name)
    score_image(
        accumulator, name, image=np.asarray(image.image), gt=np.asarray(image.labels),
        pred_instances=prediction.instances, pred_semantic=prediction.semantic, spacing=image.spacing,
    )
    return accumulator


def pool_scores(
    output: str | Path,
    dataset: str,
    parts: list[ScoreAccumulator],
    *,
    split: str = "test",
    failed: dict[str, str] | None = None,
) -> dict:
    """Pool per-image scores into the dataset's ``metrics.json`` (written atomically).

    Args:
        output: Run outputs folder.
        dataset: Dataset name.
        parts: One-image accumulators from :func:`score_one`, in image order.
        split: The split scored.
        failed: Images that could not be predicted or scored, with the error; listed under
            ``failed`` and left out of every score.
    """
    from segpipe.checkpoint import CARD_FILE, MODEL_FILE
    from segpipe.report.runs import append_run, new_run, run_entry
    from segpipe.scoring.dataset import dataset_accumulator, dataset_metrics

    paths = run_paths(output, dataset)
    _, record = open_store(paths.store)
    pooled = dataset_accumulator(record)
    for part in parts:
        pooled.merge(part)
    metrics = dataset_metrics(pooled, dataset=dataset, split=split)
    metrics["failed"] = [{"name": name, "error": error} for name, error in (failed or {}).items()]
    card_file = paths.model_dir / CARD_FILE
    card = json.loads(card_file.read_text()) if card_file.is_file() else None
    metrics["run"] = new_run(metrics, card=card, model_file=paths.model_dir / MODEL_FILE, predictions=paths.predictions)
    tmp = paths.metrics.with_name(f".{paths.metrics.name}.tmp")
    tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    os.replace(tmp, paths.metrics)
    append_run(paths.root, run_entry(metrics, metrics["run"]))  # the dataset's run history
    log.info("%s: %s", dataset, _headline(metrics))
    return metrics

"""Score another tool's predictions against a dataset's ingested ground truth.

The same numbers as the pipeline's own scoring (:mod:`segpipe.scoring.dataset`), baseline
included; the result goes to ``OUTPUT/DATASET/external/FOLDER/metrics.json`` so it never
replaces the run's own ``metrics.json`` or its run history.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from segpipe.errors import InputError
from segpipe.scoring.dataset import dataset_accumulator, dataset_metrics, score_image
from segpipe.scoring.folders import PredictionFolder
from segpipe.temporary import replacing

EXTERNAL_DIR = "external"


def score_prediction_folder(store: str | Path, folder: str | Path, *, dataset: str, split: str = "test") -> dict[str, Any]:
    """Score every image of ``split`` against the prediction found for it in ``folder``.

    Args:
        store: The dataset's ingested store (``OUTPUT/DATASET/data.zarr``).
        folder: Predictions (see :mod:`segpipe.scoring.folders` for the layouts).
        dataset: Dataset name, recorded in the result.
        split: Which split to score.

    Returns:
        The ``metrics.json`` content, with ``predictions`` naming the folder and its layout.

    Raises:
        InputError: The split is empty, or a prediction is missing or unreadable.
        StoreError: No complete store.
    """
    from segpipe.data.store import ImageStore

    opened = ImageStore.open(store)
    opened.require_labels("score against")
    images = opened.images(split, labelled=True)
    if not images:
        raise InputError(f"{store}: the {split} split is empty; nothing to score")
    reader = PredictionFolder(folder, ndim=opened.ndim, instances=opened.instances, names=[i.name for i in images])
    acc = dataset_accumulator(opened.record)
    sources = {}
    for image in images:
        gt = np.asarray(image.labels)
        prediction = reader.read(image.name, shape=gt.shape, info=image.info)
        score_image(
            acc, image.name, image=np.asarray(image.image), gt=gt,
            pred_instances=prediction.instances, pred_semantic=prediction.semantic, spacing=image.spacing,
            ignore=image.ignored(),
        )
        sources[image.name] = prediction.source
    metrics = dataset_metrics(acc, dataset=dataset, split=split)
    metrics["predictions"] = {"path": str(Path(folder).resolve()), "layout": reader.layout, "files": sources}
    return metrics


def external_metrics_path(run_dir: str | Path, folder: str | Path) -> Path:
    """``RUN_DIR/external/NAME/metrics.json`` for a prediction folder (name made file-safe)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(folder).resolve().name) or "predictions"
    return Path(run_dir) / EXTERNAL_DIR / name / "metrics.json"


def write_metrics(path: Path, metrics: dict) -> Path:
    """Write ``metrics`` as JSON, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    return path

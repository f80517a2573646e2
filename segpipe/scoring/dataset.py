"""Score a dataset's test images: the model's prediction and the classical baseline on each.

The stages (:mod:`segpipe.pipeline.stages`) load the arrays; this module decides what is scored and
how, so the pipeline, ``segpipe score --predictions`` and the report use the same numbers:

* instance datasets: the instance labels, plus IoU/Dice of the semantic map (``labels > 0``
  by default, the model's class map when it has one);
* semantic datasets: the class map;
* 3D datasets also get HD95 and ASD per class, in the units of the image's spacing;
* images of sparse ground truth (an ``ignore`` mask) are scored on their annotated pixels only
  (:mod:`segpipe.scoring.ignore`), the model and the baseline alike;
* the classical baseline is scored the same way on the same images: Otsu + watershed
  (:func:`segpipe.scoring.baseline.otsu_watershed`) for instance datasets, multi-Otsu
  intensity bands (:func:`segpipe.scoring.baseline.otsu_classes`) for semantic ones;
* the model is compared with the baseline on the headline measure (:data:`HEADLINE_MEASURE`:
  SEG for instance datasets, mean foreground Dice for semantic ones): ``beats_baseline`` in
  ``metrics.json``, with the numbers under ``baseline_comparison``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from segpipe.scoring.accumulate import ScoreAccumulator
from segpipe.scoring.baseline import DESCRIPTION, SEMANTIC_DESCRIPTION, BaselineParams, otsu_classes, otsu_watershed

#: The measure the model must beat the baseline on: ``instances -> (metrics key, label)``.
HEADLINE_MEASURE = {True: ("seg", "SEG"), False: ("mean_dice", "mean foreground Dice")}


def dataset_accumulator(record: dict, *, baseline: bool = True) -> ScoreAccumulator:
    """An accumulator for a store's images (its ``segpipe`` record: classes, instances, ndim)."""
    classes = list(record["classes"])
    return ScoreAccumulator(
        len(classes), classes, bool(record["instances"]), surface=int(record.get("ndim", 2)) == 3, with_baseline=baseline
    )


def score_image(
    acc: ScoreAccumulator,
    name: str,
    *,
    image: np.ndarray,
    gt: np.ndarray,
    pred_instances: np.ndarray | None,
    pred_semantic: np.ndarray | None,
    spacing: Sequence[float] | None,
    ignore: np.ndarray | None = None,
) -> dict[str, Any]:
    """Score one image's prediction, and the baseline on the same image when ``acc`` has one.

    Args:
        acc: From :func:`dataset_accumulator`.
        name: Image name.
        image: The image, ``(C, [Z,] Y, X)``; the baseline segments its first channel.
        gt: Ground truth, ``([Z,] Y, X)``.
        pred_instances: Predicted instance labels (instance datasets).
        pred_semantic: Predicted class map; optional for instance datasets.
        spacing: Pixel size per spatial axis.
        ignore: Pixels the ground truth does not annotate (nonzero), ``([Z,] Y, X)``: left out
            of the model's scores and the baseline's.

    Returns:
        The model's row for the image.

    Raises:
        ValueError: An instance dataset without instance labels, or a semantic one without a class map.
    """
    gt = np.asarray(gt)
    if acc.instances:
        if pred_instances is None:
            raise ValueError(f"{name}: the dataset has instance labels but the prediction has none")
        row = acc.add(name, gt, pred_instances, gt > 0, pred_semantic, spacing=spacing, ignore=ignore)
    else:
        if pred_semantic is None:
            raise ValueError(f"{name}: the dataset has class maps but the prediction has none")
        row = acc.add(name, gt, pred_semantic, spacing=spacing, ignore=ignore)
    if acc.baseline is not None and acc.n_classes >= 2:
        start = time.perf_counter()
        if acc.instances:
            labels = otsu_watershed(np.asarray(image), ndim=gt.ndim, spacing=spacing)
        else:
            labels = otsu_classes(np.asarray(image), n_classes=acc.n_classes, ndim=gt.ndim, spacing=spacing)
        acc.baseline.seconds += time.perf_counter() - start  # segmenting counts as the baseline's time
        acc.baseline.add(name, gt, labels, spacing=spacing, ignore=ignore)
    return row


def dataset_metrics(acc: ScoreAccumulator, *, dataset: str, split: str) -> dict[str, Any]:
    """The ``metrics.json`` content of a pooled accumulator (the baseline described in its section)."""
    metrics = {"dataset": dataset, "split": split, **acc.summary()}
    if "baseline" in metrics:
        metrics["baseline"]["split"] = split  # scored on the same images
        if acc.instances:
            method, params = DESCRIPTION, vars(BaselineParams()).copy()
        else:
            method, params = SEMANTIC_DESCRIPTION, {"sigma": 1.0, "classes": acc.n_classes}
        metrics["baseline"] = {"method": method, "params": params, **metrics["baseline"]}
    comparison = baseline_comparison(metrics)
    metrics["beats_baseline"] = comparison["beats"] if comparison else None
    metrics["baseline_comparison"] = comparison
    metrics["scoring_seconds"] = acc.seconds + (acc.baseline.seconds if acc.baseline is not None else 0.0)
    return metrics


def baseline_comparison(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The model against the classical baseline on the headline measure.

    Args:
        metrics: ``metrics.json`` content with a ``baseline`` section.

    Returns:
        ``{"measure", "label", "model", "baseline", "difference", "beats"}``: ``difference`` is
        model minus baseline and ``beats`` whether it is above 0 (a tie does not beat); both
        ``None`` when either score is undefined. ``None`` without a baseline.
    """
    baseline = metrics.get("baseline")
    if not baseline:
        return None
    key, label = HEADLINE_MEASURE[bool(metrics.get("instances", metrics.get("seg") is not None))]
    model, base = metrics.get(key), baseline.get(key)
    defined = model is not None and base is not None
    return {
        "measure": key,
        "label": label,
        "model": model,
        "baseline": base,
        "difference": model - base if defined else None,
        "beats": model > base if defined else None,
    }

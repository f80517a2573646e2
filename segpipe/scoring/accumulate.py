"""Pool scores over the images of a dataset, as the Cell Tracking Challenge and MONAI do.

Every value :class:`ScoreAccumulator` returns is a plain Python ``int``, ``float``, ``str``,
``None``, ``list`` or ``dict``, ready for :func:`json.dumps` with ``allow_nan=False``: scores
that are undefined (NaN: no ground-truth objects, a class in neither map) are ``None``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from segpipe.scoring.instances import seg_score
from segpipe.scoring.semantic import scores_from_counts, semantic_scores


class ScoreAccumulator:
    """Score images one at a time, then summarise the dataset.

    Instance datasets get the CTC SEG measure plus per-class IoU and Dice of the semantic
    maps (by default foreground vs background, ``labels > 0``). Semantic datasets get IoU and
    Dice only.

    Args:
        n_classes: Number of semantic classes, including background (class 0).
        class_names: Name of each class, in class order; keys of the ``iou`` and ``dice`` dicts.
        instances: Whether the labels are instance ids (SEG is computed) or class maps.

    Example:
        >>> acc = ScoreAccumulator(2, ["background", "nucleus"], True)
        >>> row = acc.add("img0", gt_labels, pred_labels)
        >>> acc.summary()["seg"]
    """

    def __init__(self, n_classes: int, class_names: list[str], instances: bool) -> None:
        if n_classes < 1:
            raise ValueError(f"n_classes must be at least 1, got {n_classes}")
        if len(class_names) != n_classes:
            raise ValueError(f"{len(class_names)} class names given for {n_classes} classes")
        if len(set(class_names)) != len(class_names):
            raise ValueError(f"class names must be unique, got {class_names}")
        self.n_classes = n_classes
        self.class_names = [str(name) for name in class_names]
        self.instances = bool(instances)
        self.reset()

    def reset(self) -> None:
        """Forget every image added so far."""
        self._jaccard_sum = 0.0
        self._n_objects = 0
        self._intersection = [0] * self.n_classes
        self._gt_count = [0] * self.n_classes
        self._pred_count = [0] * self.n_classes
        self._per_image: list[dict[str, Any]] = []

    def add(
        self,
        name: str,
        gt_labels: np.ndarray,
        pred_labels: np.ndarray,
        gt_semantic: np.ndarray | None = None,
        pred_semantic: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Score one image and add it to the dataset totals.

        Args:
            name: Image name, copied into the returned row.
            gt_labels: Ground truth: instance ids for instance datasets, else the class map.
            pred_labels: Prediction, same shape and kind as ``gt_labels``.
            gt_semantic: Ground-truth class map; default ``gt_labels > 0`` for instance
                datasets and ``gt_labels`` itself for semantic ones.
            pred_semantic: Predicted class map, defaulted the same way.

        Returns:
            ``{"name", "seg", "n_objects", "iou": {class: v}, "dice": {class: v}}``; ``seg`` and
            ``n_objects`` are ``None`` for semantic datasets, undefined scores are ``None``.

        Raises:
            TypeError: A dtype that is not integer or bool.
            ValueError: Shapes differ, a label is negative, or a class is ``>= n_classes``.
        """
        seg = n_objects = None
        if self.instances:
            result = seg_score(gt_labels, pred_labels)
            self._jaccard_sum += result.jaccard_sum
            self._n_objects += result.n_gt
            seg, n_objects = _json_float(result.seg), result.n_gt
            gt_semantic = _default_semantic(gt_semantic, gt_labels)
            pred_semantic = _default_semantic(pred_semantic, pred_labels)
        else:
            gt_semantic = gt_labels if gt_semantic is None else gt_semantic
            pred_semantic = pred_labels if pred_semantic is None else pred_semantic

        sem = semantic_scores(gt_semantic, pred_semantic, n_classes=self.n_classes)
        for totals, counts in (
            (self._intersection, sem.intersection),
            (self._gt_count, sem.gt_count),
            (self._pred_count, sem.pred_count),
        ):
            for k, value in enumerate(counts):
                totals[k] += value
        row = {
            "name": str(name),
            "seg": seg,
            "n_objects": n_objects,
            "iou": self._by_class(sem.iou),
            "dice": self._by_class(sem.dice),
        }
        self._per_image.append(row)
        return row

    def summary(self) -> dict[str, Any]:
        """Dataset-level scores.

        ``seg`` is object-weighted, as in the CTC: the sum of the Jaccard indices of all
        ground-truth objects over the number of objects (not the mean of per-image SEG).
        ``iou`` and ``dice`` pool pixels over all images (summed intersections over summed
        unions); ``mean_iou`` and ``mean_dice`` average them over the foreground classes
        (1 and up) that are defined.

        Returns:
            ``{"n_images", "seg", "n_objects", "iou", "dice", "mean_iou", "mean_dice",
            "per_image"}``; ``seg`` and ``n_objects`` are ``None`` for semantic datasets, and
            undefined values (no objects, no pixels of a class anywhere) are ``None``.
        """
        seg = n_objects = None
        if self.instances:
            n_objects = self._n_objects
            seg = self._jaccard_sum / n_objects if n_objects else None
        iou, dice = scores_from_counts(self._intersection, self._gt_count, self._pred_count)
        return {
            "n_images": len(self._per_image),
            "seg": seg,
            "n_objects": n_objects,
            "iou": self._by_class(iou),
            "dice": self._by_class(dice),
            "mean_iou": _mean_defined(iou[1:]),
            "mean_dice": _mean_defined(dice[1:]),
            "per_image": [dict(row, iou=dict(row["iou"]), dice=dict(row["dice"])) for row in self._per_image],
        }

    def _by_class(self, values: list[float]) -> dict[str, float | None]:
        return {name: _json_float(v) for name, v in zip(self.class_names, values, strict=True)}


def _default_semantic(semantic: np.ndarray | None, labels: np.ndarray) -> np.ndarray:
    return (np.asarray(labels) > 0).view(np.uint8) if semantic is None else semantic


def _json_float(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _mean_defined(values: list[float]) -> float | None:
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else None

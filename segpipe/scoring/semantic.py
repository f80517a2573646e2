"""Per-class IoU and Dice of semantic (class-per-pixel) maps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segpipe.scoring.ignore import check_ignore
from segpipe.scoring.overlap import check_label_pair


@dataclass(frozen=True)
class SemanticResult:
    """Per-class overlap of one image; every list has one entry per class.

    The raw counts are kept so that images can be pooled (sum the counts, then call
    :func:`scores_from_counts`). A class absent from both maps has NaN IoU and Dice.

    Attributes:
        n_classes: Number of classes, including background (class 0).
        iou: ``intersection / (gt_count + pred_count - intersection)`` per class.
        dice: ``2 intersection / (gt_count + pred_count)`` per class.
        intersection: Pixels of the class in both maps.
        gt_count: Pixels of the class in the ground truth.
        pred_count: Pixels of the class in the prediction.
    """

    n_classes: int
    iou: list[float]
    dice: list[float]
    intersection: list[int]
    gt_count: list[int]
    pred_count: list[int]


def semantic_scores(
    gt: np.ndarray, pred: np.ndarray, *, n_classes: int, ignore: np.ndarray | None = None
) -> SemanticResult:
    """Per-class IoU and Dice of two class maps of the same shape.

    Args:
        gt: Ground-truth class of each pixel, integers in ``[0, n_classes)``.
        pred: Predicted class of each pixel, same shape and range.
        n_classes: Number of classes, including background.
        ignore: Pixels the ground truth does not annotate (nonzero), same shape: they count in
            neither map (sparse ground truth, :mod:`segpipe.scoring.ignore`).

    Raises:
        TypeError: A dtype that is not integer or bool.
        ValueError: The shapes differ, or a value is outside ``[0, n_classes)``.
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1, got {n_classes}")
    gt, pred = check_label_pair(gt, pred)
    for what, labels in (("ground truth", gt), ("prediction", pred)):
        if labels.size and int(labels.max()) >= n_classes:
            raise ValueError(f"{what} holds class {int(labels.max())} but n_classes is {n_classes}")
    if ignore is not None:
        valid = ~check_ignore(ignore, gt.shape)
        gt, pred = gt[valid], pred[valid]
    gt = gt.reshape(-1).astype(np.intp, copy=False)
    pred = pred.reshape(-1).astype(np.intp, copy=False)
    intersection = np.bincount(gt[gt == pred], minlength=n_classes).tolist()
    gt_count = np.bincount(gt, minlength=n_classes).tolist()
    pred_count = np.bincount(pred, minlength=n_classes).tolist()
    iou, dice = scores_from_counts(intersection, gt_count, pred_count)
    return SemanticResult(
        n_classes=n_classes,
        iou=iou,
        dice=dice,
        intersection=intersection,
        gt_count=gt_count,
        pred_count=pred_count,
    )


def scores_from_counts(
    intersection: Sequence[int], gt_count: Sequence[int], pred_count: Sequence[int]
) -> tuple[list[float], list[float]]:
    """IoU and Dice per class from pixel counts (of one image, or summed over many).

    Args:
        intersection: Pixels of each class in both maps.
        gt_count: Pixels of each class in the ground truth.
        pred_count: Pixels of each class in the prediction.

    Returns:
        ``(iou, dice)``, one float per class; NaN where the class is in neither map.
    """
    iou, dice = [], []
    for inter, n_gt, n_pred in zip(intersection, gt_count, pred_count, strict=True):
        total = n_gt + n_pred
        iou.append(inter / (total - inter) if total else math.nan)
        dice.append(2 * inter / total if total else math.nan)
    return iou, dice

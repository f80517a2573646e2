"""Every instance score of one image from a single overlap table.

:func:`score_instances` builds the contingency table of the two label images once and derives
SEG, DET, the one-to-one matching at each IoU threshold, merges and splits, and each
ground-truth object's best IoU from it; that sharing is most of why scoring is fast. With an
``ignore`` mask (sparse ground truth) the two images are first restricted to the annotated
pixels (:func:`segpipe.scoring.ignore.annotated_only`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segpipe.scoring.detection import DetResult, MergeSplitResult, det_costs_from_overlap, det_from_overlap, merges_splits_from_overlap
from segpipe.scoring.ignore import annotated_only
from segpipe.scoring.instances import MatchResult, SegResult, match_from_overlap, seg_from_overlap
from segpipe.scoring.overlap import Overlap, overlap

# IoU thresholds of the matching table: 0.1, 0.2, ..., 0.9 (exact decimal floats).
THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 10))


@dataclass(frozen=True, eq=False)
class InstanceScores:
    """Instance scores of one image.

    Attributes:
        seg: CTC SEG with per-object Jaccard indices.
        det: CTC DET with its AOGM-D operation counts (the ground truth serves as markers).
        det_cost: Each ground-truth object's share of AOGM-D (sorted ids; see
            :func:`segpipe.scoring.detection.det_costs_from_overlap`).
        matches: One-to-one IoU matching at each threshold, in threshold order.
        merge_split: Merge and split counts.
        best_iou: For each ground-truth object (sorted ids), its largest IoU with any
            predicted object; 0 when it touches none.
        ignored_pred: Ids of the predicted objects left out because they lie mostly in
            ignored pixels (empty without an ignore mask).
    """

    seg: SegResult
    det: DetResult
    det_cost: np.ndarray
    matches: tuple[MatchResult, ...]
    merge_split: MergeSplitResult
    best_iou: np.ndarray
    ignored_pred: np.ndarray


def score_instances(
    gt: np.ndarray, pred: np.ndarray, *, thresholds: Sequence[float] = THRESHOLDS, ignore: np.ndarray | None = None
) -> InstanceScores:
    """Score one predicted instance label image against its ground truth (2D or 3D).

    Args:
        gt: Ground-truth instance labels; 0 is background.
        pred: Predicted instance labels, same shape.
        thresholds: IoU thresholds of the matching, each in ``(0, 1]``.
        ignore: Pixels the ground truth does not annotate (nonzero), same shape: a predicted
            object mostly inside them is neither a true nor a false positive, and they count
            for no object (:mod:`segpipe.scoring.ignore`).

    Raises:
        TypeError: A dtype that is not integer or bool.
        ValueError: The shapes differ, a label is negative, or a threshold is out of range.
    """
    ignored_pred = np.zeros(0, np.asarray(pred).dtype)
    if ignore is not None:
        kept = annotated_only(gt, pred, ignore)
        gt, pred, ignored_pred = kept.gt, kept.pred, kept.dropped
    ov = overlap(gt, pred)
    return InstanceScores(
        seg=seg_from_overlap(ov),
        det=det_from_overlap(ov),
        det_cost=det_costs_from_overlap(ov),
        matches=tuple(match_from_overlap(ov, thresh=t) for t in thresholds),
        merge_split=merges_splits_from_overlap(ov),
        best_iou=best_iou_from_overlap(ov),
        ignored_pred=ignored_pred,
    )


def best_iou_from_overlap(ov: Overlap) -> np.ndarray:
    """Largest IoU of each ground-truth object with any predicted object (0 when none)."""
    best = np.zeros(ov.gt_ids.size, np.float64)
    if ov.count.size:
        np.maximum.at(best, ov.gt_index, ov.count / ov.union())
    return best

"""Instance segmentation scores: Cell Tracking Challenge SEG and one-to-one IoU matching.

Both functions take two label images of the same shape (2D or 3D; 0 is background, object
ids need not be consecutive and may be as large as the dtype allows) and return a frozen,
typed result. They read no files and keep no state; pool over images with
:class:`segpipe.scoring.ScoreAccumulator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from segpipe.scoring.overlap import Overlap, overlap


@dataclass(frozen=True, eq=False)
class SegResult:
    """Cell Tracking Challenge SEG of one image.

    Attributes:
        seg: Mean Jaccard index over the ground-truth objects; NaN when there are none.
        n_gt: Number of ground-truth objects.
        gt_ids: Ground-truth object ids, sorted.
        jaccard: Jaccard index of each ground-truth object (0 when unmatched), aligned with ``gt_ids``.
        matched_pred: Id of the predicted object matched to each ground-truth object, 0 when none.
    """

    seg: float
    n_gt: int
    gt_ids: np.ndarray
    jaccard: np.ndarray
    matched_pred: np.ndarray

    @property
    def jaccard_sum(self) -> float:
        """Sum of the per-object Jaccard indices (what the CTC pools over frames)."""
        return float(self.jaccard.sum())


@dataclass(frozen=True, eq=False)
class MatchResult:
    """Optimal one-to-one matching of ground-truth and predicted objects by IoU.

    Ratios that are 0/0 (for example precision with no predicted objects) are NaN.

    Attributes:
        thresh: IoU threshold; a pair can match when its IoU is ``>= thresh``.
        n_true: Number of ground-truth objects.
        n_pred: Number of predicted objects.
        tp: Matched pairs.
        fp: Predicted objects left unmatched.
        fn: Ground-truth objects left unmatched.
        precision: ``tp / n_pred``.
        recall: ``tp / n_true``.
        f1: ``2 tp / (n_true + n_pred)``.
        accuracy: ``tp / (tp + fp + fn)`` (the "average precision" of the 2018 Data Science Bowl).
        mean_matched_iou: Mean IoU of the matched pairs.
        panoptic_quality: ``sum(matched IoU) / (tp + fp/2 + fn/2)`` (Kirillov et al., CVPR 2019).
        matched_gt: Ground-truth id of each matched pair.
        matched_pred: Predicted id of each matched pair.
        matched_iou: IoU of each matched pair.
    """

    thresh: float
    n_true: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    accuracy: float
    mean_matched_iou: float
    panoptic_quality: float
    matched_gt: np.ndarray
    matched_pred: np.ndarray
    matched_iou: np.ndarray


def seg_score(gt: np.ndarray, pred: np.ndarray) -> SegResult:
    """Cell Tracking Challenge SEG measure of one image.

    A ground-truth object G is matched to the predicted object P that covers more than half
    of it, ``|G ∩ P| > 0.5 |G|`` (strictly; compared in integers, so exactly half does not
    match). At most one P can qualify. The object scores the Jaccard index
    ``|G ∩ P| / |G ∪ P|``, or 0 when unmatched; SEG is the mean over ground-truth objects.
    Predicted objects that match nothing are not penalised (that is what DET is for).

    Args:
        gt: Ground-truth instance labels, 2D or 3D (any rank works).
        pred: Predicted instance labels, same shape.

    Returns:
        The image's SEG with the per-object Jaccard indices and matches.

    Raises:
        TypeError: A dtype that is not integer or bool.
        ValueError: The shapes differ, or a label is negative.
    """
    return seg_from_overlap(overlap(gt, pred))


def seg_from_overlap(ov: Overlap) -> SegResult:
    """:func:`seg_score` from an already computed overlap table (shared by every score of an image)."""
    cell = 2 * ov.count > ov.gt_sizes[ov.gt_index]
    rows = ov.gt_index[cell]
    jaccard = np.zeros(ov.gt_ids.size, np.float64)
    jaccard[rows] = ov.count[cell] / ov.union()[cell]
    matched_pred = np.zeros(ov.gt_ids.size, ov.pred_ids.dtype)
    matched_pred[rows] = ov.pred_ids[ov.pred_index[cell]]

    n_gt = int(ov.gt_ids.size)
    seg = float(jaccard.sum() / n_gt) if n_gt else math.nan
    return SegResult(seg=seg, n_gt=n_gt, gt_ids=ov.gt_ids, jaccard=jaccard, matched_pred=matched_pred)


def match_instances(gt: np.ndarray, pred: np.ndarray, *, thresh: float = 0.5) -> MatchResult:
    """Match ground-truth and predicted objects one to one by IoU, as StarDist's ``matching``.

    Pairs with ``IoU >= thresh`` are candidates (StarDist's convention; at ``thresh = 0.5`` a
    ground-truth object split exactly in two halves has two candidates and one of them
    matches). Among the candidates the matching with the most pairs is taken, and among
    those the one with the largest IoU sum (:func:`scipy.optimize.linear_sum_assignment`,
    run only on groups of objects that compete for each other; above 0.5 no two candidates
    share an object, so no assignment problem is solved). Unlike StarDist, pairs below the
    threshold never influence which candidates are chosen, and 0/0 ratios are NaN, not 0.

    Args:
        gt: Ground-truth instance labels, 2D or 3D.
        pred: Predicted instance labels, same shape.
        thresh: IoU threshold, in ``(0, 1]``.

    Returns:
        Counts, the derived ratios and the matched pairs.

    Raises:
        TypeError: A dtype that is not integer or bool.
        ValueError: The shapes differ, a label is negative, or ``thresh`` is outside ``(0, 1]``.
    """
    if not 0 < thresh <= 1:
        raise ValueError(f"thresh must be in (0, 1], got {thresh}")
    return match_from_overlap(overlap(gt, pred), thresh=thresh)


def match_from_overlap(ov: Overlap, *, thresh: float) -> MatchResult:
    """:func:`match_instances` from an already computed overlap table.

    Raises:
        ValueError: ``thresh`` is outside ``(0, 1]``.
    """
    if not 0 < thresh <= 1:
        raise ValueError(f"thresh must be in (0, 1], got {thresh}")
    n_true, n_pred = int(ov.gt_ids.size), int(ov.pred_ids.size)
    iou = ov.count / ov.union()
    candidate = iou >= thresh
    rows, cols, iou = ov.gt_index[candidate], ov.pred_index[candidate], iou[candidate]
    keep = _max_weight_matching(rows, cols, iou, n_rows=ov.gt_ids.size, n_cols=ov.pred_ids.size)
    rows, cols, iou = rows[keep], cols[keep], iou[keep]

    tp = int(keep.size)
    fp, fn = n_pred - tp, n_true - tp
    iou_sum = float(iou.sum())
    return MatchResult(
        thresh=float(thresh),
        n_true=n_true,
        n_pred=n_pred,
        tp=tp,
        fp=fp,
        fn=fn,
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        accuracy=_ratio(tp, tp + fp + fn),
        mean_matched_iou=_ratio(iou_sum, tp),
        panoptic_quality=_ratio(iou_sum, tp + fp / 2 + fn / 2),
        matched_gt=ov.gt_ids[rows],
        matched_pred=ov.pred_ids[cols],
        matched_iou=iou,
    )


def _max_weight_matching(
    rows: np.ndarray, cols: np.ndarray, weight: np.ndarray, *, n_rows: int, n_cols: int
) -> np.ndarray:
    """Edges of a maximum-cardinality, then maximum-weight, matching of a bipartite graph.

    Args:
        rows: Row node of each edge.
        cols: Column node of each edge.
        weight: Weight of each edge, in ``(0, 1]``.
        n_rows: Number of row nodes.
        n_cols: Number of column nodes.

    Returns:
        Sorted indices of the chosen edges.
    """
    if rows.size == 0:
        return np.zeros(0, np.intp)
    graph = coo_array((np.ones(rows.size), (rows, n_rows + cols)), shape=(n_rows + n_cols,) * 2)
    _, component = connected_components(graph, directed=False)
    edge_component = component[rows]
    edges_in = np.bincount(edge_component)[edge_component]
    chosen = [np.flatnonzero(edges_in == 1)]  # an isolated pair always matches

    shared = np.flatnonzero(edges_in > 1)
    order = shared[np.argsort(edge_component[shared], kind="stable")]
    starts = np.flatnonzero(np.diff(edge_component[order], prepend=-1))
    for edges in np.split(order, starts[1:]) if order.size else []:
        row_ids, r = np.unique(rows[edges], return_inverse=True)
        col_ids, c = np.unique(cols[edges], return_inverse=True)
        # Every edge is worth 1 plus a tie-breaker below 1/2 in total, so the number of pairs
        # comes first and the weight sum second; non-edges cost 0 and are dropped afterwards.
        cost = np.zeros((row_ids.size, col_ids.size))
        cost[r, c] = -1.0 - weight[edges] / (2 * min(row_ids.size, col_ids.size))
        edge_of = np.full(cost.shape, -1, np.intp)
        edge_of[r, c] = edges
        pick_r, pick_c = linear_sum_assignment(cost)
        picked = edge_of[pick_r, pick_c]
        chosen.append(picked[picked >= 0])
    return np.sort(np.concatenate(chosen))


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else math.nan

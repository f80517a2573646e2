"""Detection scores from the "covers more than half" relation: CTC DET, merges and splits.

The Cell Tracking Challenge matches a reference object (a marker of the tracking ground truth,
or a full mask) to the computed object that covers more than half of it. From that relation:

* DET (Matula et al., PLoS ONE 2015) counts the cheapest edits that turn the computed objects
  into the reference ones: add a missed object (FN, weight 10), delete a spurious one (FP,
  weight 1), split an object that covers several reference objects (NS, weight 5 per extra
  object). ``AOGM-D = 5 NS + 10 FN + FP``; ``AOGM-D0 = 10 n_ref`` is the cost of building the
  reference from nothing; ``DET = 1 - min(AOGM-D, AOGM-D0) / AOGM-D0``.
* Merges and splits name the two topological errors: a predicted object that covers more than
  half of two or more ground-truth objects is a merge; a ground-truth object that covers more
  than half of two or more predicted objects is split (the same rule, roles swapped).

No file I/O here; :mod:`segpipe.scoring.ctc` reads CTC folders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from segpipe.scoring.overlap import Overlap, overlap

# AOGM-D weights of the Cell Tracking Challenge (split, false negative, false positive).
W_NS, W_FN, W_FP = 5, 10, 1


@dataclass(frozen=True)
class DetResult:
    """AOGM-D operation counts and DET of one frame.

    Attributes:
        n_ref: Reference objects (vertices of the reference graph).
        n_pred: Predicted objects.
        tp: Reference objects covered more than half by a predicted object.
        fn: Reference objects covered by none (to be added).
        fp: Predicted objects that cover no reference object (to be deleted).
        ns: Splits needed: for a predicted object covering ``k >= 2`` reference objects, ``k - 1``.
        aogm_d: ``5 ns + 10 fn + fp``.
        aogm_d0: ``10 n_ref``.
        det: ``1 - min(aogm_d, aogm_d0) / aogm_d0``; NaN without reference objects.
    """

    n_ref: int
    n_pred: int
    tp: int
    fn: int
    fp: int
    ns: int
    aogm_d: int
    aogm_d0: int
    det: float


@dataclass(frozen=True)
class MergeSplitResult:
    """Merge and split errors of one image.

    Attributes:
        merges: Predicted objects covering more than half of each of two or more GT objects.
        merged_gt: GT objects swallowed by those merges.
        splits: GT objects covering more than half of each of two or more predicted objects.
        split_pred: Predicted fragments of those split GT objects.
    """

    merges: int
    merged_gt: int
    splits: int
    split_pred: int


def det_score(ref: np.ndarray, pred: np.ndarray) -> DetResult:
    """CTC DET of one frame (2D or 3D).

    Args:
        ref: Reference objects: the tracking ground truth's markers, or full instance masks.
        pred: Predicted instance labels, same shape.

    Raises:
        TypeError: A dtype that is not integer or bool.
        ValueError: The shapes differ, or a label is negative.
    """
    return det_from_overlap(overlap(ref, pred))


def det_from_overlap(ov: Overlap) -> DetResult:
    """:func:`det_score` from an already computed overlap table (``gt`` = reference)."""
    cell = 2 * ov.count > ov.gt_sizes[ov.gt_index]
    per_pred = np.bincount(ov.pred_index[cell], minlength=ov.pred_ids.size)
    n_ref, n_pred = int(ov.gt_ids.size), int(ov.pred_ids.size)
    tp = int(np.count_nonzero(cell))  # a reference object has at most one such cover
    fn = n_ref - tp
    fp = int(np.count_nonzero(per_pred == 0))
    ns = int(np.maximum(per_pred - 1, 0).sum())
    return det_from_counts(n_ref=n_ref, n_pred=n_pred, tp=tp, fn=fn, fp=fp, ns=ns)


def det_costs_from_overlap(ov: Overlap) -> np.ndarray:
    """Each reference object's share of AOGM-D, aligned with ``ov.gt_ids`` (``gt`` = reference).

    10 (``W_FN``) for a reference object no predicted object covers more than half of; for one
    whose cover covers ``k >= 2`` reference objects, its share ``5 (k - 1) / k`` of the cover's
    ``k - 1`` splits; else 0. These shares plus 1 (``W_FP``) for each predicted object covering
    no reference object sum to AOGM-D, so DET can be resampled object by object.
    """
    cell = 2 * ov.count > ov.gt_sizes[ov.gt_index]
    per_pred = np.bincount(ov.pred_index[cell], minlength=ov.pred_ids.size)
    cost = np.full(ov.gt_ids.size, float(W_FN))
    k = per_pred[ov.pred_index[cell]]
    cost[ov.gt_index[cell]] = W_NS * (k - 1) / k
    return cost


def det_units(costs: np.ndarray, n_spurious: int) -> tuple[np.ndarray, np.ndarray]:
    """AOGM-D and AOGM-D0 of each object, for resampling DET object by object.

    Args:
        costs: Each reference object's share of AOGM-D (:func:`det_costs_from_overlap`).
        n_spurious: Predicted objects covering no reference object.

    Returns:
        ``(aogm_d, aogm_d0)``, one value per unit: the reference objects (their share, ``W_FN``)
        then the spurious predictions (``W_FP``, 0); their sums are AOGM-D and AOGM-D0.
    """
    costs = np.asarray(costs, np.float64)
    return (
        np.concatenate([costs, np.full(n_spurious, float(W_FP))]),
        np.concatenate([np.full(costs.size, float(W_FN)), np.zeros(n_spurious)]),
    )


def det_from_ratio(ratio: np.ndarray) -> np.ndarray:
    """DET from ``AOGM-D / AOGM-D0`` (resampled ratios): ``1 - min(ratio, 1)``."""
    return 1.0 - np.minimum(ratio, 1.0)


def det_from_counts(*, n_ref: int, n_pred: int, tp: int, fn: int, fp: int, ns: int) -> DetResult:
    """Assemble a :class:`DetResult` (AOGM-D, AOGM-D0 and DET) from operation counts."""
    aogm_d = W_NS * ns + W_FN * fn + W_FP * fp
    aogm_d0 = W_FN * n_ref
    return DetResult(
        n_ref=n_ref, n_pred=n_pred, tp=tp, fn=fn, fp=fp, ns=ns, aogm_d=aogm_d, aogm_d0=aogm_d0,
        det=det_value(aogm_d, aogm_d0),
    )


def det_value(aogm_d: float, aogm_d0: float) -> float:
    """``1 - min(AOGM-D, AOGM-D0) / AOGM-D0``, NaN when ``AOGM-D0`` is 0; pools frames when given sums."""
    return 1.0 - min(aogm_d, aogm_d0) / aogm_d0 if aogm_d0 else math.nan


def merges_and_splits(gt: np.ndarray, pred: np.ndarray) -> MergeSplitResult:
    """Count merge and split errors of one image (see the module docstring for the rule).

    Raises:
        TypeError: A dtype that is not integer or bool.
        ValueError: The shapes differ, or a label is negative.
    """
    return merges_splits_from_overlap(overlap(gt, pred))


def merges_splits_from_overlap(ov: Overlap) -> MergeSplitResult:
    """:func:`merges_and_splits` from an already computed overlap table."""
    covers_gt = 2 * ov.count > ov.gt_sizes[ov.gt_index]
    gt_per_pred = np.bincount(ov.pred_index[covers_gt], minlength=ov.pred_ids.size)
    covers_pred = 2 * ov.count > ov.pred_sizes[ov.pred_index]
    pred_per_gt = np.bincount(ov.gt_index[covers_pred], minlength=ov.gt_ids.size)
    merged = gt_per_pred >= 2
    split = pred_per_gt >= 2
    return MergeSplitResult(
        merges=int(np.count_nonzero(merged)),
        merged_gt=int(gt_per_pred[merged].sum()),
        splits=int(np.count_nonzero(split)),
        split_pred=int(pred_per_gt[split].sum()),
    )

"""Which objects are wrong, and how: the objects behind the merge, split, miss and false-object counts.

Pure functions of two label images (2D or 3D), for drawing the errors
(:func:`segpipe.report.figures.overlay`). The rules are those of the scores:

* merged: a predicted object covering more than half of each of two or more ground-truth
  objects (:func:`segpipe.scoring.detection.merges_and_splits`);
* split: a ground-truth object covering more than half of each of two or more predicted objects;
* missed: a ground-truth object with no predicted object at IoU ``thresh`` or more (a false
  negative of F1 at ``thresh``), unless it is part of a merge or split;
* false: a predicted object with no ground-truth object at IoU ``thresh`` or more (a false
  positive of F1 at ``thresh``), unless it is a merge or a fragment of a split.

With ``ignore`` (sparse ground truth), the objects are those :func:`segpipe.scoring.ignore.annotated_only`
keeps: a prediction lying mostly where nothing was annotated is in no error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segpipe.scoring.ignore import annotated_only
from segpipe.scoring.overlap import overlap


@dataclass(frozen=True, eq=False)
class ObjectErrors:
    """The ids of the objects in error, each sorted.

    Attributes:
        merged: Predicted objects that merge two or more ground-truth objects.
        split: Ground-truth objects split into two or more predicted objects.
        missed: Ground-truth objects found by no predicted object.
        false: Predicted objects matching no ground-truth object.
    """

    merged: np.ndarray
    split: np.ndarray
    missed: np.ndarray
    false: np.ndarray

    def counts(self) -> dict[str, int]:
        """``{"merged": n, "split": n, "missed": n, "false": n}``."""
        return {name: int(getattr(self, name).size) for name in ("merged", "split", "missed", "false")}


def object_errors(gt: np.ndarray, pred: np.ndarray, *, thresh: float = 0.5, ignore: np.ndarray | None = None) -> ObjectErrors:
    """Name the merged, split, missed and false objects of one image (module docstring: the rules).

    Args:
        gt: Ground-truth instance labels; 0 is background.
        pred: Predicted instance labels, same shape.
        thresh: The IoU at which an object is found (F1's threshold).
        ignore: Pixels the ground truth does not annotate (nonzero), same shape; ``None``: none.

    Raises:
        TypeError: A dtype that is not integer or bool.
        ValueError: The shapes differ, or a label is negative.
    """
    if ignore is not None:
        kept = annotated_only(gt, pred, ignore)
        gt, pred = kept.gt, kept.pred
    ov = overlap(gt, pred)
    n_gt, n_pred = ov.gt_ids.size, ov.pred_ids.size
    covers_gt = 2 * ov.count > ov.gt_sizes[ov.gt_index]
    covers_pred = 2 * ov.count > ov.pred_sizes[ov.pred_index]
    merged = np.bincount(ov.pred_index[covers_gt], minlength=n_pred) >= 2
    split = np.bincount(ov.gt_index[covers_pred], minlength=n_gt) >= 2
    in_merge = np.zeros(n_gt, bool)
    in_merge[ov.gt_index[covers_gt & merged[ov.pred_index]]] = True
    fragment = np.zeros(n_pred, bool)
    fragment[ov.pred_index[covers_pred & split[ov.gt_index]]] = True
    good = ov.count >= thresh * ov.union()
    matched_gt = np.zeros(n_gt, bool)
    matched_gt[ov.gt_index[good]] = True
    matched_pred = np.zeros(n_pred, bool)
    matched_pred[ov.pred_index[good]] = True
    return ObjectErrors(
        merged=ov.pred_ids[merged],
        split=ov.gt_ids[split],
        missed=ov.gt_ids[~matched_gt & ~in_merge & ~split],
        false=ov.pred_ids[~matched_pred & ~merged & ~fragment],
    )

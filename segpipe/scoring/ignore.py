"""Score only what the ground truth annotates: leave out the pixels marked *ignored*.

A partly annotated dataset marks the pixels nobody annotated (see ``ignore_label`` and
``ignore_masks`` in the catalog). A prediction is then judged only where the ground truth says
something:

* pixel scores (IoU, Dice, surface distances): ignored pixels count in neither map;
* object scores (SEG, DET, the matching table, panoptic quality, merges and splits): a
  predicted object lying mostly in ignored pixels (more than half of them; exactly half stays)
  is left out, neither a true nor a false positive; the other predicted objects lose their
  ignored pixels; the ground-truth objects are the annotated ones (their pixels, if any were
  marked ignored, are left out too).

:func:`annotated_only` applies the object rule to two label images; the pixel rule is a mask,
the ``valid`` it returns (or ``~ignore``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segpipe.scoring.overlap import check_label_pair, compact


@dataclass(frozen=True, eq=False)
class Annotated:
    """Two instance label images restricted to the annotated pixels.

    Attributes:
        gt: Ground truth, ignored pixels set to 0.
        pred: Prediction without the objects lying mostly in ignored pixels, and the ignored
            pixels of the others set to 0.
        valid: ``True`` where the ground truth is annotated.
        dropped: Ids of the predicted objects left out, sorted.
    """

    gt: np.ndarray
    pred: np.ndarray
    valid: np.ndarray
    dropped: np.ndarray


def check_ignore(ignore: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The ignored pixels as a ``bool`` array of ``shape`` (nonzero = ignored).

    Raises:
        ValueError: ``ignore`` has another shape.
    """
    ignore = np.asarray(ignore)
    if ignore.shape != tuple(shape):
        raise ValueError(f"the ignore mask has shape {ignore.shape} but the labels have shape {tuple(shape)}")
    return ignore.astype(bool, copy=False)


def annotated_only(gt: np.ndarray, pred: np.ndarray, ignore: np.ndarray) -> Annotated:
    """Apply the object rule of sparse ground truth to one image (see the module docstring).

    Args:
        gt: Ground-truth instance labels; 0 is background.
        pred: Predicted instance labels, same shape.
        ignore: Pixels the ground truth does not annotate (nonzero), same shape.

    Returns:
        Both label images restricted to the annotated pixels, and the predicted objects left out.

    Raises:
        TypeError: A label dtype that is not integer or bool.
        ValueError: The shapes differ, or a label is negative.
    """
    gt, pred = check_label_pair(gt, pred)
    ignored = check_ignore(ignore, gt.shape)
    ids, index, sizes = compact(pred)
    inside = np.bincount(index[ignored.reshape(-1) & (index >= 0)], minlength=ids.size)
    mostly_ignored = np.append(2 * inside > sizes, False)  # the last entry: background (index -1)
    drop = ignored.reshape(-1) | mostly_ignored[index]
    kept_pred = np.where(drop.reshape(pred.shape), 0, pred).astype(pred.dtype, copy=False)
    kept_gt = np.where(ignored, 0, gt).astype(gt.dtype, copy=False)
    return Annotated(gt=kept_gt, pred=kept_pred, valid=~ignored, dropped=ids[mostly_ignored[:-1]])

"""Choose post-processing thresholds on the validation split (never on the test split)."""

from __future__ import annotations

import itertools

import numpy as np

from segpipe.inference.postprocess import InstanceParams, instance_labels
from segpipe.scoring import seg_score

#: Foreground thresholds tried, the central one first.
FOREGROUND_GRID = (0.5, 0.4, 0.6)
#: Seeding rules tried: h-maxima of the distance map (after smoothing), then thresholds of it.
#: The order breaks ties (see :func:`tune_instance_params`): h-maxima first, as it does not
#: depend on object size, and the central values of each rule first.
SEED_GRID = tuple(
    {"seed_method": "hmaxima", "seed_h": h, "smoothing": sigma} for h in (0.1, 0.05, 0.15, 0.2) for sigma in (1.0, 0.0, 2.0)
) + tuple({"seed_method": "threshold", "seed_threshold": t} for t in (0.5, 0.4, 0.6, 0.3, 0.7))


def validation_seg(predictions: list[tuple[np.ndarray, np.ndarray]], params: InstanceParams, n_classes: int) -> float:
    """Object-weighted SEG over validation images.

    Args:
        predictions: ``(probabilities, ground-truth instances)`` pairs; probabilities are
            ``(n_classes + 1, *spatial)`` with the distance map last.
        params: Post-processing to apply.
        n_classes: Number of class channels.
    """
    total, count = 0.0, 0
    for probs, gt in predictions:
        pred = instance_labels(1.0 - probs[0], probs[n_classes], params)
        result = seg_score(gt, pred)
        total += float(np.sum(result.jaccard))
        count += result.n_gt
    return total / count if count else float("nan")


def tune_instance_params(
    predictions: list[tuple[np.ndarray, np.ndarray]], *, n_classes: int, min_size: int = 8
) -> tuple[InstanceParams, float]:
    """Grid-search the foreground threshold and the seeding rule for the best validation SEG.

    A small validation split often scores many settings exactly alike (they differ only where
    it has no objects), so the order of the grid matters: ties keep the earlier setting, which
    is the size-independent h-maxima seeding and the central thresholds.

    Returns:
        The best parameters and their SEG.
    """
    best, best_score = InstanceParams(min_size=min_size), -1.0
    for fg, seed in itertools.product(FOREGROUND_GRID, SEED_GRID):
        params = InstanceParams(foreground_threshold=fg, min_size=min_size, **seed)
        score = validation_seg(predictions, params, n_classes)
        if score > best_score + 1e-9:
            best, best_score = params, score
    return best, best_score

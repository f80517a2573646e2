"""Post-processing tuned on validation: the best SEG wins, ties go to h-maxima seeding."""

from __future__ import annotations

import numpy as np

from segpipe.inference.postprocess import instance_labels
from segpipe.scoring import seg_score
from segpipe.training.tuning import tune_instance_params


def _probabilities(foreground: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """``(background, nucleus, distance)`` channels as the network's activated output."""
    fg = foreground.astype(np.float32)
    return np.stack([1.0 - fg, fg, distance.astype(np.float32)])


def test_a_tie_keeps_the_size_independent_seeding():
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 15**2
    distance = np.clip(1.0 - np.sqrt((yy - 32) ** 2 + (xx - 32) ** 2) / 15, 0, 1) * disc
    gt = disc.astype(np.uint16)
    params, score = tune_instance_params([(_probabilities(disc, distance), gt)], n_classes=2)
    assert score == 1.0  # every setting finds the one disc: all tie
    assert (params.seed_method, params.seed_h, params.smoothing, params.foreground_threshold) == ("hmaxima", 0.1, 1.0, 0.5)


def test_the_better_rule_wins_over_the_preferred_one():
    # one long object whose distance map has a broad spurious bump 0.35 above a dip, more than
    # every h tried, even after smoothing, so h-maxima splits it; thresholds from 0.6 see one seed
    gt = np.zeros((40, 90), np.uint16)
    gt[10:30, 10:80] = 1
    x = np.arange(90, dtype=np.float32)
    profile = np.interp(x, [10, 25, 50, 65, 80], [0.0, 1.0, 0.2, 0.55, 0.0])
    distance = np.where(gt > 0, profile[None, :], 0.0)
    probs = _probabilities(gt > 0, distance)
    params, score = tune_instance_params([(probs, gt)], n_classes=2)
    assert params.seed_method == "threshold" and params.seed_threshold == 0.6
    assert score == seg_score(gt, instance_labels(1.0 - probs[0], probs[2], params)).seg == 1.0
    split = params.model_copy(update={"seed_method": "hmaxima", "seed_h": 0.2, "smoothing": 2.0})
    assert seg_score(gt, instance_labels(1.0 - probs[0], probs[2], split)).seg < 1.0

"""The objects in error, against a picture drawn by hand."""

from __future__ import annotations

import numpy as np

from segpipe.scoring.detection import merges_and_splits
from segpipe.scoring.errors import object_errors
from segpipe.scoring.instances import match_instances


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """Ground truth 1 and 2 touching, merged by prediction 10; truth 3 split into 20 and 21; truth 4
    found well (30); truth 5 missed; prediction 40 in empty background; truth 6 found too small
    (prediction 50, IoU 0.25: missed, and 50 false)."""
    gt = np.zeros((20, 40), np.uint16)
    pred = np.zeros_like(gt)
    gt[1:5, 1:5], gt[1:5, 5:9] = 1, 2
    pred[1:5, 1:10] = 10  # IoU 16/36 with each
    gt[1:5, 12:21] = 3  # each fragment IoU 16/36
    pred[1:5, 12:16], pred[1:5, 16:20] = 20, 21
    gt[10:14, 1:5], pred[10:14, 1:6] = 4, 30
    gt[10:14, 10:14] = 5
    pred[16:19, 30:33] = 40
    gt[10:18, 20:28], pred[10:14, 20:24] = 6, 50
    return gt, pred


def test_each_kind_of_error_names_its_objects():
    errors = object_errors(*_scene())
    assert errors.merged.tolist() == [10] and errors.split.tolist() == [3]
    assert errors.missed.tolist() == [5, 6] and errors.false.tolist() == [40, 50]
    assert errors.counts() == {"merged": 1, "split": 1, "missed": 2, "false": 2}


def test_the_counts_agree_with_the_scores():
    gt, pred = _scene()
    errors, topology, f1 = object_errors(gt, pred), merges_and_splits(gt, pred), match_instances(gt, pred, thresh=0.5)
    assert (errors.merged.size, errors.split.size) == (topology.merges, topology.splits)
    # every unmatched object of F1@0.5 is named once: as missed, false, or inside a merge or split
    assert f1.fn == errors.missed.size + topology.merged_gt + errors.split.size
    assert f1.fp == errors.false.size + errors.merged.size + topology.split_pred


def test_a_perfect_prediction_and_an_empty_one():
    gt, _ = _scene()
    assert object_errors(gt, gt).counts() == {"merged": 0, "split": 0, "missed": 0, "false": 0}
    empty = object_errors(gt, np.zeros_like(gt))
    assert empty.missed.tolist() == [1, 2, 3, 4, 5, 6] and empty.false.size == 0

"""Per-class IoU and Dice: a hand-computed case, edge cases, and a brute-force property."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segpipe.scoring import scores_from_counts, semantic_scores

GT = np.array(
    [
        [0, 0, 1, 1],
        [0, 1, 1, 2],
        [2, 2, 2, 2],
    ]
)
PRED = np.array(
    [
        [0, 1, 1, 1],
        [0, 0, 1, 2],
        [2, 2, 3, 2],
    ]
)


def test_hand_case():
    result = semantic_scores(GT, PRED, n_classes=5)
    assert result.n_classes == 5
    assert result.intersection == [2, 3, 4, 0, 0]
    assert result.gt_count == [3, 4, 5, 0, 0]
    assert result.pred_count == [3, 4, 4, 1, 0]
    # class 0: 2 / (3 + 3 - 2); class 1: 3 / 5; class 2: 4 / 5; class 3 predicted only: 0.
    assert result.iou[:4] == pytest.approx([0.5, 0.6, 0.8, 0.0], abs=1e-15)
    assert result.dice[:4] == pytest.approx([4 / 6, 6 / 8, 8 / 9, 0.0], abs=1e-15)
    # class 4 is in neither map.
    assert math.isnan(result.iou[4]) and math.isnan(result.dice[4])


def test_values_are_plain_python_numbers():
    result = semantic_scores(GT.astype(np.uint8), PRED.astype(np.uint16), n_classes=4)
    assert all(type(v) is int for v in result.intersection + result.gt_count + result.pred_count)
    assert all(type(v) is float for v in result.iou + result.dice)


def test_perfect_3d():
    gt = np.zeros((2, 3, 3), np.uint8)
    gt[0] = 1
    gt[1, 0] = 2
    result = semantic_scores(gt, gt.copy(), n_classes=3)
    assert result.iou == [1.0, 1.0, 1.0]
    assert result.dice == [1.0, 1.0, 1.0]


def test_bool_maps():
    gt = np.array([True, True, False, False])
    pred = np.array([True, False, False, False])
    result = semantic_scores(gt, pred, n_classes=2)
    assert result.iou == pytest.approx([2 / 3, 1 / 2], abs=1e-15)


def test_pooled_counts():
    iou, dice = scores_from_counts([1, 0], [2, 0], [3, 0])
    assert iou[0] == pytest.approx(1 / 4, abs=1e-15)
    assert dice[0] == pytest.approx(2 / 5, abs=1e-15)
    assert math.isnan(iou[1]) and math.isnan(dice[1])


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="n_classes is 2"):
        semantic_scores(GT, PRED, n_classes=2)
    with pytest.raises(ValueError, match="shape"):
        semantic_scores(GT, PRED[:, :3], n_classes=5)
    with pytest.raises(ValueError, match="negative"):
        semantic_scores(GT, -PRED, n_classes=5)
    with pytest.raises(TypeError, match="dtype"):
        semantic_scores(GT.astype(float), PRED, n_classes=5)
    with pytest.raises(ValueError, match="at least 1"):
        semantic_scores(GT, PRED, n_classes=0)


@st.composite
def class_maps(draw):
    shape = draw(st.tuples(*[st.integers(1, 6)] * draw(st.integers(1, 3))))
    elements = st.integers(0, 3)
    return draw(arrays(np.int32, shape, elements=elements)), draw(arrays(np.int32, shape, elements=elements))


@settings(max_examples=40, deadline=None)
@given(class_maps())
def test_equals_per_class_masks(maps):
    gt, pred = maps
    result = semantic_scores(gt, pred, n_classes=4)
    for k in range(4):
        g, p = gt == k, pred == k
        union = np.count_nonzero(g | p)
        expected = np.count_nonzero(g & p) / union if union else math.nan
        assert result.iou[k] == pytest.approx(expected, abs=1e-15, nan_ok=True)

"""DET (AOGM-D), merges and splits: hand-computed cases and agreement with py-ctcmetrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
from ctc_metrics.metrics import det as ctc_det
from ctc_metrics.utils.representations import count_acyclic_graph_correction_operations
from ctc_metrics.utils.representations import match as ctc_match
from skimage.segmentation import relabel_sequential

from segpipe.scoring import det_score, merges_and_splits, overlap, score_instances
from segpipe.scoring.detection import det_costs_from_overlap


def row_of_objects(sizes: list[int], gap: int = 1) -> np.ndarray:
    """A one-row label image: objects 1, 2, ... of the given widths, separated by ``gap`` pixels."""
    out = []
    for k, size in enumerate(sizes, start=1):
        out += [k] * size + [0] * gap
    return np.array([out], np.uint16)


def test_det_by_hand():
    # reference: five objects of 4 pixels at columns 0-3, 5-8, 10-13, 15-18, 20-23
    ref = row_of_objects([4, 4, 4, 4, 4])
    pred = np.zeros_like(ref)
    pred[0, 0:9] = 7  # covers objects 1 and 2 entirely: one split needed (NS = 1)
    pred[0, 10:13] = 8  # 3 of 4 pixels of object 3: a match
    pred[0, 15:17] = 9  # exactly half of object 4: no match -> FN, and 9 covers nothing -> FP
    # object 5 untouched -> FN
    pred[0, 24] = 3  # spurious -> FP
    result = det_score(ref, pred)
    assert (result.n_ref, result.n_pred) == (5, 4)
    assert (result.tp, result.fn, result.fp, result.ns) == (3, 2, 2, 1)
    assert result.aogm_d == 5 * 1 + 10 * 2 + 1 * 2
    assert result.aogm_d0 == 50
    assert result.det == pytest.approx(1 - 27 / 50, abs=1e-15)


def test_det_costs_by_hand():
    """The case of ``test_det_by_hand`` object by object: objects 1 and 2 share the one split of
    their cover (2.5 each), 3 is found (0), 4 and 5 are missed (10 each); with the 2 false
    positives (1 each) the shares add up to AOGM-D."""
    ref = row_of_objects([4, 4, 4, 4, 4])
    pred = np.zeros_like(ref)
    pred[0, 0:9], pred[0, 10:13], pred[0, 15:17], pred[0, 24] = 7, 8, 9, 3
    costs = det_costs_from_overlap(overlap(ref, pred))
    assert costs.tolist() == [2.5, 2.5, 0.0, 10.0, 10.0]
    assert costs.sum() + det_score(ref, pred).fp == det_score(ref, pred).aogm_d
    three = np.zeros((1, 14), np.uint16)
    three[0, 0:4], three[0, 5:9], three[0, 10:14] = 1, 2, 3
    costs = det_costs_from_overlap(overlap(three, np.where(three > 0, 1, 0)))  # one object over all three
    assert costs == pytest.approx([10 / 3] * 3, abs=1e-15) and costs.sum() == pytest.approx(5 * 2, abs=1e-12)


@pytest.mark.parametrize("kind", ["merge", "split", "drop", "noisy"])
def test_det_costs_add_up_to_aogm_d(real_labels, perturb, kind):
    gt = real_labels["dsb2018"]
    pred = perturb(gt, kind, 1)
    scores = score_instances(gt, pred)
    assert scores.det_cost.sum() + scores.det.fp == pytest.approx(scores.det.aogm_d, abs=1e-9)
    assert scores.det_cost.shape == (scores.det.n_ref,)


def test_det_is_clipped_at_zero():
    ref = np.zeros((1, 30), np.uint16)
    ref[0, 0:4] = 1
    pred = np.zeros_like(ref)
    pred[0, 6:26] = np.arange(1, 21)  # 20 one-pixel false positives, the object missed
    result = det_score(ref, pred)
    assert (result.fn, result.fp, result.aogm_d, result.aogm_d0) == (1, 20, 30, 10)
    assert result.det == 0.0


def test_det_perfect_and_empty():
    ref = row_of_objects([3, 2, 5])
    assert det_score(ref, ref * 4).det == 1.0
    assert det_score(ref, np.zeros_like(ref)).det == 0.0
    assert math.isnan(det_score(np.zeros_like(ref), ref).det)


def test_det_uses_markers_smaller_than_the_prediction():
    ref = np.zeros((5, 5), np.uint8)
    ref[2, 2] = 1  # a one-pixel marker
    pred = np.zeros_like(ref)
    pred[1:4, 1:4] = 6  # the whole cell
    result = det_score(ref, pred)
    assert (result.tp, result.fp, result.det) == (1, 0, 1.0)


def test_merges_and_splits_by_hand():
    gt = row_of_objects([4, 4, 4, 6])
    pred = np.zeros_like(gt)
    pred[0, 0:9] = 1  # covers GT 1 and 2 entirely: a merge of two
    pred[0, 10:12], pred[0, 12:14] = 2, 3  # GT 3 cut into two halves: a split into two
    pred[0, 15:17], pred[0, 17:19], pred[0, 19:22] = 4, 5, 6  # GT 4 (15-20) cut in three; 6 is 2/3 inside
    result = merges_and_splits(gt, pred)
    assert (result.merges, result.merged_gt) == (1, 2)
    assert (result.splits, result.split_pred) == (2, 5)


def test_merges_and_splits_none_for_a_good_prediction():
    gt = row_of_objects([4, 4])
    result = merges_and_splits(gt, gt)
    assert (result.merges, result.merged_gt, result.splits, result.split_pred) == (0, 0, 0, 0)


def test_score_instances_shares_one_table(real_labels, perturb):
    gt = real_labels["dsb2018"]
    pred = perturb(gt, "merge", 3)
    scores = score_instances(gt, pred)
    assert scores.det == det_score(gt, pred)
    assert scores.merge_split == merges_and_splits(gt, pred)
    assert scores.merge_split.merges > 0
    assert [m.thresh for m in scores.matches] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    # a GT object's best IoU is at least its SEG Jaccard (the >50% cover is one candidate)
    assert np.all(scores.best_iou >= scores.seg.jaccard - 1e-15)
    assert scores.best_iou.shape == (scores.seg.n_gt,)
    # the number of matches can only fall as the threshold rises
    assert all(a.tp >= b.tp for a, b in zip(scores.matches, scores.matches[1:]))


def ctc_frame_det(tmp_path, ref: np.ndarray, pred: np.ndarray) -> tuple[float, dict]:
    """py-ctcmetrics' DET of one frame, from its own file matcher and AOGM counter."""
    ref_path, pred_path = tmp_path / "man_track000.tif", tmp_path / "mask000.tif"
    tifffile.imwrite(ref_path, ref)
    tifffile.imwrite(pred_path, pred.astype(np.uint32))
    labels_ref, labels_comp, mapped_ref, mapped_comp, _ = ctc_match(str(ref_path), str(pred_path))
    ops = count_acyclic_graph_correction_operations(
        None, None, [labels_ref], [labels_comp], [mapped_ref], [mapped_comp]
    )
    return ctc_det(**ops), ops


@pytest.mark.parametrize("image", ["bbbc007/A9_p7d", "dsb2018", "nuclei3d"])
@pytest.mark.parametrize("kind", ["merge", "split", "drop", "noisy", "shift", "dilate"])
def test_frame_det_agrees_with_py_ctcmetrics(tmp_path, real_labels, perturb, image, kind):
    gt = relabel_sequential(real_labels[image])[0]
    pred = perturb(gt, kind, 11)
    if kind != "noisy":
        pred = relabel_sequential(pred)[0]
    expected, ops = ctc_frame_det(tmp_path, gt, pred)
    ours = det_score(gt, pred)
    assert ours.det == pytest.approx(expected, abs=1e-9)
    assert (ours.ns, ours.fn, ours.fp) == (ops["NS"], ops["FN"], ops["FP"])

"""SEG and IoU matching: hand-computed cases, properties, and agreement with py-ctcmetrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
from ctc_metrics.metrics import seg as ctc_seg
from ctc_metrics.utils.representations import match as ctc_match
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.segmentation import relabel_sequential

from segpipe.scoring import match_instances, seg_score

# --- SEG, hand-computed ------------------------------------------------------------------


def test_empty_prediction_scores_zero():
    gt = np.zeros((6, 6), np.uint16)
    gt[0:2, 0:2] = 1
    gt[3:6, 3:6] = 2
    result = seg_score(gt, np.zeros_like(gt))
    assert result.seg == 0.0
    assert result.n_gt == 2
    assert result.gt_ids.tolist() == [1, 2]
    assert result.jaccard.tolist() == [0.0, 0.0]
    assert result.matched_pred.tolist() == [0, 0]


def test_perfect_prediction_scores_one_whatever_the_ids():
    gt = np.zeros((6, 6), np.uint16)
    gt[0:2, 0:2] = 1
    gt[3:6, 3:6] = 2
    pred = np.select([gt == 1, gt == 2], [7, 3], 0)
    result = seg_score(gt, pred)
    assert result.seg == 1.0
    assert result.matched_pred.tolist() == [7, 3]


def test_exactly_half_does_not_match():
    gt = np.zeros((2, 8), np.uint8)
    gt[0, 0:4] = 1  # 4 pixels
    pred = np.zeros_like(gt)
    pred[0, 2:8] = 5  # covers 2 of them: exactly half
    pred[1, 0:2] = 6  # elsewhere
    result = seg_score(gt, pred)
    assert result.seg == 0.0
    assert result.matched_pred.tolist() == [0]


def test_just_over_half_matches_with_jaccard():
    gt = np.zeros((3, 6), np.uint8)
    gt[0, 0:5] = 1  # 5 pixels
    gt[2, 0:4] = 2  # 4 pixels
    pred = np.zeros_like(gt)
    pred[0, 2:6] = 1  # 3 of 5 (> 2.5), union 6 -> 3/6
    pred[2, 0:3] = 2  # 3 of 4 (> 2), union 4 -> 3/4
    result = seg_score(gt, pred)
    assert result.jaccard.tolist() == [0.5, 0.75]
    assert result.seg == pytest.approx((0.5 + 0.75) / 2, abs=1e-15)


def test_merged_prediction_matches_both_objects():
    gt = np.zeros((2, 5), np.uint8)
    gt[:, 0:2] = 1
    gt[:, 3:5] = 2
    pred = np.full_like(gt, 9)  # 10 pixels over both objects and the gap
    result = seg_score(gt, pred)
    assert result.matched_pred.tolist() == [9, 9]
    assert result.jaccard.tolist() == [0.4, 0.4]  # 4 / 10 each
    assert result.seg == pytest.approx(0.4, abs=1e-15)


def test_split_prediction():
    gt = np.ones((2, 6), np.uint8)  # one object, 12 pixels
    halves = np.where(np.arange(6) < 3, 1, 2).repeat(2).reshape(6, 2).T
    assert seg_score(gt, halves).seg == 0.0  # 6 + 6: neither covers more than half
    uneven = np.where(np.arange(6) < 4, 1, 2)[None, :].repeat(2, axis=0)
    result = seg_score(gt, uneven)  # 8 + 4: the 8-pixel part matches
    assert result.matched_pred.tolist() == [1]
    assert result.seg == pytest.approx(8 / 12, abs=1e-15)


def test_non_consecutive_and_large_ids():
    gt = np.zeros((5, 6), np.uint16)
    gt[0:2, 0:2] = 3
    gt[0:2, 3:5] = 70
    gt[3:5, 0:5] = 65535  # 10 pixels
    pred = np.zeros(gt.shape, np.uint32)
    pred[0:2, 0:2] = 4_000_000_000  # exact
    pred[0:2, 3:6] = 17  # 4 of 4, union 6
    pred[3:5, 0:2] = 2**32 - 1  # 4 of 10: no match
    result = seg_score(gt, pred)
    assert result.gt_ids.tolist() == [3, 70, 65535]
    assert result.matched_pred.tolist() == [4_000_000_000, 17, 0]
    assert result.matched_pred.dtype == np.uint32
    assert result.jaccard == pytest.approx([1.0, 4 / 6, 0.0], abs=1e-15)
    assert result.seg == pytest.approx((1 + 4 / 6) / 3, abs=1e-15)


def test_3d():
    gt = np.zeros((4, 4, 4), np.uint8)
    gt[0:2, 0:2, 0:2] = 1  # 8 voxels
    gt[2:4, 2:4, 2:4] = 2  # 8 voxels
    pred = np.zeros_like(gt)
    pred[0:2, 0:2, 0:3] = 1  # 8 of 8, union 12
    pred[3:4, 2:4, 2:4] = 2  # 4 of 8: exactly half, no match
    result = seg_score(gt, pred)
    assert result.jaccard.tolist() == pytest.approx([8 / 12, 0.0], abs=1e-15)
    assert result.seg == pytest.approx(1 / 3, abs=1e-15)


def test_no_ground_truth_objects_is_nan():
    pred = np.zeros((3, 3), np.uint8)
    pred[0, 0] = 4
    result = seg_score(np.zeros((3, 3), np.uint8), pred)
    assert math.isnan(result.seg)
    assert result.n_gt == 0
    assert result.jaccard.size == 0


def test_bool_labels_are_one_object():
    gt = np.zeros((3, 3), bool)
    gt[0, :] = True
    pred = np.zeros((3, 3), bool)
    pred[0:2, :] = True
    assert seg_score(gt, pred).seg == pytest.approx(3 / 6, abs=1e-15)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        seg_score(np.zeros((3, 3), int), np.zeros((3, 4), int))
    with pytest.raises(TypeError, match="dtype"):
        seg_score(np.zeros((3, 3), float), np.zeros((3, 3), int))
    with pytest.raises(ValueError, match="negative"):
        seg_score(np.zeros((3, 3), int), np.full((3, 3), -1))


# --- SEG, properties against a slow per-object reference ----------------------------------


def naive_seg(gt: np.ndarray, pred: np.ndarray) -> list[float]:
    scores = []
    for g in np.unique(gt[gt > 0]):
        mask = gt == g
        best = 0.0
        for p in np.unique(pred[pred > 0]):
            other = pred == p
            inter = np.count_nonzero(mask & other)
            if inter > 0.5 * np.count_nonzero(mask):
                best = inter / np.count_nonzero(mask | other)
        scores.append(best)
    return scores


@st.composite
def label_pairs(draw, max_label: int = 5):
    shape = draw(st.tuples(*[st.integers(1, 7)] * draw(st.integers(2, 3))))
    elements = st.integers(0, max_label)
    return draw(arrays(np.uint8, shape, elements=elements)), draw(arrays(np.uint8, shape, elements=elements))


@settings(max_examples=50, deadline=None)
@given(label_pairs())
def test_seg_equals_per_object_reference(pair):
    gt, pred = pair
    result = seg_score(gt, pred)
    expected = naive_seg(gt, pred)
    assert result.jaccard.tolist() == pytest.approx(expected, abs=1e-15)
    assert 0.0 <= result.seg <= 1.0 or (math.isnan(result.seg) and not expected)


# --- agreement with py-ctcmetrics on the real label images ---------------------------------

AGREEMENT_IMAGES = ("bbbc007/A9_p7d", "dsb2018", "nuclei3d")
LARGE_IDS = ("relabel", "noisy")  # perturbations whose prediction ids reach 2**31


def ctc_reference(tmp_path, gt: np.ndarray, pred: np.ndarray) -> tuple[float, dict[int, tuple[int, float]]]:
    """SEG and ``{gt id: (pred id, IoU)}`` from py-ctcmetrics' own file-based matcher.

    ``ctc_metrics.utils.representations.match`` is its lowest-level SEG function (it reads the
    two TIFFs itself); ``ctc_metrics.metrics.seg`` turns its output into SEG, as
    ``ctc_metrics.scripts.evaluate`` does. Its assumptions are met here: both images have
    background, and the prediction is saved as uint32 with ``max(pred) + max(gt) + 1 < 2**32``
    (it adds ``max(gt) + 1`` to the prediction in place, in the file's dtype).
    """
    assert (gt == 0).any() and (pred == 0).any()
    assert int(pred.max()) + int(gt.max()) + 1 < 2**32
    ref, comp = tmp_path / "man_seg000.tif", tmp_path / "mask000.tif"
    tifffile.imwrite(ref, gt)
    tifffile.imwrite(comp, pred.astype(np.uint32))
    labels_ref, _, mapped_ref, mapped_comp, ious = ctc_match(str(ref), str(comp))
    pairs = {int(g): (int(p), float(v)) for g, p, v in zip(mapped_ref, mapped_comp, ious, strict=True)}
    return ctc_seg([labels_ref], [ious]), pairs


@pytest.mark.parametrize("image", AGREEMENT_IMAGES)
def test_seg_agrees_with_py_ctcmetrics(tmp_path, real_labels, perturb, image, perturbation):
    gt = real_labels[image]
    pred = perturb(gt, perturbation, 7)
    if perturbation not in LARGE_IDS:
        # Sequential ids keep sklearn's confusion_matrix (inside py-ctcmetrics) off its
        # per-pixel Python loop; sparse and large ids are covered by the LARGE_IDS cases.
        gt, pred = relabel_sequential(gt)[0], relabel_sequential(pred)[0]
    result = seg_score(gt, pred)
    expected_seg, expected_pairs = ctc_reference(tmp_path, gt, pred)
    assert result.seg == pytest.approx(expected_seg, abs=1e-9)
    ours = {int(g): (int(p), float(v)) for g, p, v in zip(result.gt_ids, result.matched_pred, result.jaccard) if p}
    assert ours.keys() == expected_pairs.keys()
    for g, (p, v) in ours.items():
        assert p == expected_pairs[g][0]
        assert v == pytest.approx(expected_pairs[g][1], abs=1e-12)


# --- one-to-one matching -------------------------------------------------------------------


def greedy_trap() -> tuple[np.ndarray, np.ndarray]:
    """Two objects where taking the best pair first loses a match at low thresholds.

    GT 1 = pixels 0-9, GT 2 = 10-19; prediction 5 = 3-12, prediction 7 = 0-2.
    IoU(1, 5) = 7/13, IoU(2, 5) = 3/17, IoU(1, 7) = 3/10.
    """
    gt = np.zeros((1, 20), np.uint16)
    gt[0, :10], gt[0, 10:] = 1, 2
    pred = np.zeros_like(gt)
    pred[0, 3:13], pred[0, 0:3] = 5, 7
    return gt, pred


def test_match_is_optimal_not_greedy():
    result = match_instances(*greedy_trap(), thresh=0.15)
    assert (result.tp, result.fp, result.fn) == (2, 0, 0)
    assert list(zip(result.matched_gt.tolist(), result.matched_pred.tolist())) == [(1, 7), (2, 5)]
    assert result.matched_iou == pytest.approx([3 / 10, 3 / 17], abs=1e-15)
    assert result.mean_matched_iou == pytest.approx((3 / 10 + 3 / 17) / 2, abs=1e-15)
    assert result.panoptic_quality == pytest.approx((3 / 10 + 3 / 17) / 2, abs=1e-15)
    assert result.precision == result.recall == result.f1 == result.accuracy == 1.0


def test_match_counts_and_ratios_at_half():
    result = match_instances(*greedy_trap())
    assert (result.n_true, result.n_pred, result.tp, result.fp, result.fn) == (2, 2, 1, 1, 1)
    assert result.thresh == 0.5
    assert result.precision == result.recall == result.f1 == 0.5
    assert result.accuracy == pytest.approx(1 / 3, abs=1e-15)
    assert result.mean_matched_iou == pytest.approx(7 / 13, abs=1e-15)
    assert result.panoptic_quality == pytest.approx((7 / 13) / 2, abs=1e-15)


def test_iou_equal_to_thresh_matches():
    gt = np.zeros((1, 6), np.uint8)
    gt[0, 0:4] = 1
    pred = np.zeros_like(gt)
    pred[0, 0:2] = 2  # IoU 2/4
    assert match_instances(gt, pred, thresh=0.5).tp == 1
    assert match_instances(gt, pred, thresh=0.51).tp == 0


def test_exact_halves_give_one_match():
    gt = np.zeros((1, 6), np.uint8)
    gt[0, 0:4] = 1
    pred = np.zeros_like(gt)
    pred[0, 0:2], pred[0, 2:4] = 2, 3  # both IoU 0.5
    result = match_instances(gt, pred)
    assert (result.tp, result.fp, result.fn) == (1, 1, 0)


def test_match_empty_images():
    empty = np.zeros((4, 4), np.uint8)
    both = match_instances(empty, empty)
    assert (both.n_true, both.n_pred, both.tp, both.fp, both.fn) == (0, 0, 0, 0, 0)
    ratios = (both.precision, both.recall, both.f1, both.accuracy, both.mean_matched_iou, both.panoptic_quality)
    assert all(math.isnan(v) for v in ratios)
    gt = empty.copy()
    gt[0, 0] = 1
    missed = match_instances(gt, empty)
    assert math.isnan(missed.precision) and math.isnan(missed.mean_matched_iou)
    assert missed.recall == missed.f1 == missed.panoptic_quality == 0.0


def test_match_perfect_on_real_labels(real_labels, perturb):
    gt = real_labels["dsb2018"]
    result = match_instances(gt, perturb(gt, "relabel", 1))
    assert result.tp == result.n_true == 125
    assert result.f1 == result.panoptic_quality == 1.0


@pytest.mark.parametrize("thresh", [0.0, -0.1, 1.5])
def test_match_rejects_thresh(thresh):
    with pytest.raises(ValueError, match="thresh"):
        match_instances(np.zeros((2, 2), int), np.zeros((2, 2), int), thresh=thresh)


def brute_force_matching(gt: np.ndarray, pred: np.ndarray, thresh: float) -> tuple[int, float]:
    """(pairs, IoU sum) of the best matching, by trying every matching of candidate pairs."""
    candidates: dict[int, list[tuple[int, float]]] = {}
    for g in np.unique(gt[gt > 0]).tolist():
        candidates[g] = []
        for p in np.unique(pred[pred > 0]).tolist():
            iou = np.count_nonzero((gt == g) & (pred == p)) / np.count_nonzero((gt == g) | (pred == p))
            if iou >= thresh:
                candidates[g].append((p, iou))

    def best(remaining: list[int], used: frozenset[int]) -> tuple[int, float]:
        if not remaining:
            return 0, 0.0
        first, rest = remaining[0], remaining[1:]
        options = [best(rest, used)]  # leave the first object unmatched
        for p, iou in candidates[first]:
            if p not in used:
                n, total = best(rest, used | {p})
                options.append((n + 1, total + iou))
        return max(options, key=lambda o: (o[0], round(o[1], 12)))

    return best(list(candidates), frozenset())


@settings(max_examples=50, deadline=None)
@given(label_pairs(max_label=6), st.sampled_from([0.05, 0.2, 1 / 3, 0.5, 0.75]))
def test_match_equals_brute_force(pair, thresh):
    gt, pred = pair
    result = match_instances(gt, pred, thresh=thresh)
    tp, iou_sum = brute_force_matching(gt, pred, thresh)
    assert result.tp == tp
    assert float(result.matched_iou.sum()) == pytest.approx(iou_sum, abs=1e-12)
    assert result.tp + result.fp == result.n_pred and result.tp + result.fn == result.n_true
    assert len(set(result.matched_gt.tolist())) == len(set(result.matched_pred.tolist())) == result.tp

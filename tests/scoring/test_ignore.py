"""Sparse ground truth: ignored pixels are scored by no measure, against hand computations."""

import numpy as np
import pytest
from skimage.draw import disk

from segpipe.scoring import ScoreAccumulator, score_instances, semantic_scores
from segpipe.scoring.dataset import dataset_accumulator, score_image
from segpipe.scoring.ignore import annotated_only


def test_objects_mostly_in_ignored_pixels_are_left_out_and_the_others_lose_their_ignored_pixels():
    gt = np.array([[1, 1, 0, 0, 0, 0, 0, 0]])
    pred = np.array([[1, 1, 2, 2, 2, 3, 3, 0]])
    ignore = np.array([[0, 0, 0, 1, 1, 1, 0, 0]])
    kept = annotated_only(gt, pred, ignore)
    # object 2: 2 of its 3 pixels ignored (more than half): gone, its annotated pixel too;
    # object 3: 1 of 2 ignored (exactly half): kept, without its ignored pixel
    np.testing.assert_array_equal(kept.pred, [[1, 1, 0, 0, 0, 0, 3, 0]])
    np.testing.assert_array_equal(kept.gt, gt)
    np.testing.assert_array_equal(kept.dropped, [2])
    np.testing.assert_array_equal(kept.valid, ignore == 0)


def test_ground_truth_pixels_marked_ignored_count_for_no_object():
    gt = np.array([[5, 5, 5, 5]])
    kept = annotated_only(gt, np.zeros_like(gt), np.array([[0, 0, 1, 1]]))
    np.testing.assert_array_equal(kept.gt, [[5, 5, 0, 0]])


def test_large_ids_are_handled():
    pred = np.array([[2**40, 2**40, 7]], np.uint64)
    kept = annotated_only(np.zeros_like(pred), pred, np.array([[1, 1, 0]]))
    np.testing.assert_array_equal(kept.pred, [[0, 0, 7]])
    np.testing.assert_array_equal(kept.dropped, [2**40])


def test_an_ignore_mask_of_another_shape_is_refused():
    with pytest.raises(ValueError, match=r"ignore mask has shape \(2, 2\) but the labels have shape \(1, 4\)"):
        annotated_only(np.zeros((1, 4), int), np.zeros((1, 4), int), np.zeros((2, 2)))


def three_cells():
    """Two annotated cells (ids 1, 2) and a third drawn by nobody, marked ignored."""
    gt = np.zeros((20, 30), np.uint16)
    gt[2:6, 2:6] = 1
    gt[2:6, 10:14] = 2
    ignore = np.zeros(gt.shape, bool)
    ignore[10:18, 18:28] = True  # around the unannotated cell
    pred = gt.copy()
    pred[12:16, 20:24] = 3  # the unannotated cell, found
    return gt, pred, ignore


def test_an_object_found_in_an_unannotated_area_is_no_false_positive():
    gt, pred, ignore = three_cells()
    counted = score_instances(gt, pred, thresholds=(0.5,))
    assert (counted.matches[0].tp, counted.matches[0].fp) == (2, 1)
    assert counted.det.aogm_d == 1 and counted.det.det == pytest.approx(1 - 1 / 20)
    assert counted.matches[0].precision == pytest.approx(2 / 3)

    ignored = score_instances(gt, pred, thresholds=(0.5,), ignore=ignore)
    assert (ignored.matches[0].tp, ignored.matches[0].fp, ignored.matches[0].fn) == (2, 0, 0)
    assert ignored.det.aogm_d == 0 and ignored.det.det == 1.0 and ignored.seg.seg == 1.0
    assert ignored.matches[0].n_pred == 2 and ignored.det.n_pred == 2
    np.testing.assert_array_equal(ignored.ignored_pred, [3])


def test_a_false_positive_in_annotated_background_still_counts():
    gt, pred, ignore = three_cells()
    pred[15:19, 2:6] = 4  # in annotated background
    scores = score_instances(gt, pred, thresholds=(0.5,), ignore=ignore)
    assert scores.matches[0].fp == 1 and scores.det.fp == 1


def test_pixel_scores_leave_ignored_pixels_out_of_both_maps():
    gt = np.array([0, 0, 1, 1, 0, 0])
    pred = np.array([0, 1, 1, 0, 1, 1])
    ignore = np.array([0, 0, 0, 0, 1, 1])
    whole = semantic_scores(gt, pred, n_classes=2)
    assert whole.dice[1] == pytest.approx(2 * 1 / (2 + 4))
    sparse = semantic_scores(gt, pred, n_classes=2, ignore=ignore)
    # annotated pixels: gt [0 0 1 1], pred [0 1 1 0]
    assert sparse.intersection == [1, 1] and sparse.gt_count == [2, 2] and sparse.pred_count == [2, 2]
    assert sparse.dice[1] == pytest.approx(0.5) and sparse.iou[1] == pytest.approx(1 / 3)


def test_the_accumulator_pools_with_the_ignored_objects_left_out():
    gt, pred, ignore = three_cells()
    acc = ScoreAccumulator(2, ["background", "cell"], True, thresholds=(0.5,))
    row = acc.add("a", gt, pred, ignore=ignore)
    assert row["ignored_pred"] == 1 and row["ignored_pixels"] == 80 and row["n_pred"] == 2
    assert row["dice"]["cell"] == 1.0 and row["matching"][0]["fp"] == 0
    acc.add("b", gt, pred)  # the same image without its ignore mask
    summary = acc.summary()
    assert summary["n_pred"] == 5 and summary["matching"][0]["fp"] == 1
    assert summary["ignored_pred"] == 1 and summary["ignored_pixels"] == 80
    # pooled foreground Dice: a: 2*32/(32+32); b: 2*32/(32+48)
    assert summary["dice"]["cell"] == pytest.approx(2 * 64 / (64 + 80))


def test_the_baseline_is_scored_on_the_annotated_pixels_too():
    """Otsu + watershed finds all four bright discs; two were never annotated."""
    image = np.full((1, 64, 64), 10.0, np.float32)
    gt = np.zeros((64, 64), np.uint16)
    ignore = np.zeros((64, 64), bool)
    for i, (r, c) in enumerate([(14, 14), (14, 48), (48, 14), (48, 48)]):
        rr, cc = disk((r, c), 7)
        image[0, rr, cc] = 200.0
        if i < 2:
            gt[rr, cc] = i + 1
        else:
            ignore[disk((r, c), 11, shape=ignore.shape)] = True
    record = {"classes": ["background", "cell"], "instances": True, "ndim": 2}
    with_marks, without = dataset_accumulator(record), dataset_accumulator(record)
    for acc, marks in ((with_marks, ignore), (without, None)):
        score_image(acc, "a", image=image, gt=gt, pred_instances=gt, pred_semantic=None, spacing=None, ignore=marks)
    assert with_marks.baseline.summary()["matching"][4]["fp"] == 0
    assert with_marks.baseline.summary()["ignored_pred"] == 2
    assert without.baseline.summary()["matching"][4]["fp"] == 2

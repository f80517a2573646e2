"""Dataset pooling: hand-computed totals, JSON-ready output, and CTC sequence agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from ctc_metrics.scripts.evaluate import evaluate_sequence
from skimage.segmentation import relabel_sequential

from segpipe.scoring import BootstrapPlan, ScoreAccumulator

NAMES = ["background", "nucleus"]


def two_images() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Image a: two 4-pixel objects, one found exactly; image b: one object, found exactly."""
    gt_a = np.zeros((4, 4), np.uint16)
    gt_a[0:2, 0:2] = 1
    gt_a[2:4, 2:4] = 2
    pred_a = np.where(gt_a == 1, 1, 0)
    gt_b = np.zeros((4, 4), np.uint16)
    gt_b[:, 0] = 5
    pred_b = np.where(gt_b == 5, 9, 0)
    return [("a", gt_a, pred_a), ("b", gt_b, pred_b)]


def test_per_image_rows():
    acc = ScoreAccumulator(2, NAMES, True)
    (name_a, gt_a, pred_a), (name_b, gt_b, pred_b) = two_images()
    row_a = acc.add(name_a, gt_a, pred_a)
    # foreground: gt 8, pred 4, both 4; background: gt 8, pred 12, both 8.
    assert {k: row_a[k] for k in ("name", "seg", "n_objects", "iou", "dice")} == {
        "name": "a",
        "seg": 0.5,
        "n_objects": 2,
        "iou": {"background": pytest.approx(8 / 12), "nucleus": 0.5},
        "dice": {"background": 0.8, "nucleus": pytest.approx(2 / 3)},
    }
    # one of two objects found exactly: DET 1 - 10/20; matching 1 TP, 1 FN at every threshold
    assert row_a["det"] == 0.5 and row_a["n_pred"] == 1
    assert (row_a["merges"], row_a["splits"]) == (0, 0)
    assert [m["thresh"] for m in row_a["matching"]] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    for m in row_a["matching"]:
        assert (m["tp"], m["fp"], m["fn"]) == (1, 0, 1)
        assert m["precision"] == 1.0 and m["recall"] == 0.5 and m["ap"] == 0.5
        assert m["f1"] == pytest.approx(2 / 3, abs=1e-15)
        assert m["panoptic_quality"] == pytest.approx(1 / 1.5, abs=1e-15)
    row_b = acc.add(name_b, gt_b, pred_b)
    assert {k: row_b[k] for k in ("name", "seg", "n_objects", "iou", "dice", "det")} == {
        "name": "b",
        "seg": 1.0,
        "n_objects": 1,
        "iou": {"background": 1.0, "nucleus": 1.0},
        "dice": {"background": 1.0, "nucleus": 1.0},
        "det": 1.0,
    }


def test_summary_pools_objects_and_pixels():
    acc = ScoreAccumulator(2, NAMES, True)
    rows = [acc.add(*image) for image in two_images()]
    summary = acc.summary()
    assert summary["n_images"] == 2
    assert summary["n_objects"] == 3
    assert summary["seg"] == pytest.approx(2 / 3, abs=1e-15)  # (1 + 0 + 1) / 3, not (0.5 + 1) / 2
    # pooled foreground: both 8, gt 12, pred 8; background: both 20, gt 20, pred 24.
    assert summary["iou"] == pytest.approx({"background": 20 / 24, "nucleus": 8 / 12}, abs=1e-15)
    assert summary["dice"] == pytest.approx({"background": 40 / 44, "nucleus": 16 / 20}, abs=1e-15)
    assert summary["mean_iou"] == pytest.approx(8 / 12, abs=1e-15)
    assert summary["mean_dice"] == pytest.approx(16 / 20, abs=1e-15)
    assert summary["per_image"] == rows
    # DET pools AOGM-D over images: (10 + 0) / (20 + 10)
    assert summary["det"] == pytest.approx(1 - 10 / 30, abs=1e-15)
    assert summary["det_counts"] == {"tp": 2, "fn": 1, "fp": 0, "ns": 0, "aogm_d": 10, "aogm_d0": 30}
    half = next(m for m in summary["matching"] if m["thresh"] == 0.5)
    assert (half["tp"], half["fp"], half["fn"], half["n_true"], half["n_pred"]) == (2, 0, 1, 3, 2)
    assert half["f1"] == pytest.approx(4 / 5, abs=1e-15)
    assert half["ap"] == pytest.approx(2 / 3, abs=1e-15)
    assert half["panoptic_quality"] == pytest.approx(2 / 2.5, abs=1e-15)
    # best IoU per GT object: 1, 0, 1 -> bins [0, 0.05) and [0.95, 1]
    assert summary["iou_histogram"]["counts"][0] == 1 and summary["iou_histogram"]["counts"][-1] == 2
    assert sum(summary["iou_histogram"]["counts"]) == 3


def test_image_bootstrap_by_hand():
    """Images resampled (``min_images=2`` here): every resample is aa, ab, ba or bb (about a quarter
    each), so the 2.5th and 97.5th percentiles of a pooled ratio are its value on image a alone
    and on image b alone."""
    acc = ScoreAccumulator(2, NAMES, True)
    for image in two_images():
        acc.add(*image)
    summary = acc.summary(bootstrap=BootstrapPlan(min_images=2))
    ci = summary["ci"]
    assert ci["seg"] == [0.5, 1.0]  # SEG of a alone, of b alone
    assert ci["det"] == [0.5, 1.0]
    assert ci["op_csb"] == [0.5, 1.0]  # (SEG + DET) / 2 of a alone (0.5), of b alone (1)
    assert ci["iou"]["nucleus"] == [0.5, 1.0]
    assert ci["matching"]["0.5"]["f1"] == [pytest.approx(2 / 3, abs=1e-15), 1.0]
    assert ci["seg"][0] <= summary["seg"] <= ci["seg"][1]
    assert summary["bootstrap"] == {"n_resamples": 1000, "seed": 0, "level": 0.95, "min_images": 2}
    images = {"unit": "images", "what": "images", "n": 2, "n_images": 2, "resamples": 1000, "level": 0.95,
              "seed": 0, "min_images": 2, "reason": None}
    methods = summary["ci_method"]
    assert methods["seg"] == methods["det"] == methods["op_csb"] == methods["iou"] == methods["matching"]["0.5"] == images
    assert acc.summary(bootstrap=BootstrapPlan(min_images=2))["ci"] == ci  # seeded: the same draws every time


def test_few_images_resample_objects():
    """Two images (fewer than ten): object-level scores resample objects, pixel scores get none.

    Image a: objects found exactly (Jaccard 1) and missed (0); image b: one found exactly plus a
    false positive. SEG resamples the 3 ground-truth objects (Jaccard 1, 0, 1): a resample is all
    misses with probability 1/27 = 3.7% and all hits with 8/27, so the interval is [0, 1].
    """
    (_, gt_a, pred_a), (_, gt_b, pred_b) = two_images()
    pred_b = pred_b.copy()
    pred_b[0, 3] = 4  # a one-pixel false positive
    acc = ScoreAccumulator(2, NAMES, True)
    acc.add("a", gt_a, pred_a)
    acc.add("b", gt_b, pred_b)
    summary = acc.summary()
    ci, methods = summary["ci"], summary["ci_method"]

    def objects(n, what):
        return {"unit": "objects", "what": what, "n": n, "n_images": 2, "resamples": 1000, "level": 0.95,
                "seed": 0, "min_images": 10, "reason": None}

    assert methods["seg"] == objects(3, "ground-truth objects")
    assert ci["seg"] == [0.0, 1.0]
    # matching: the 3 ground-truth objects and the unmatched prediction; DET: same units here
    assert methods["matching"]["0.5"] == objects(4, "objects: the ground truth and unmatched predictions")
    assert methods["det"] == objects(4, "objects: the ground truth and predictions covering none")
    assert ci["matching"]["0.5"]["f1"][0] < summary["matching"][4]["f1"] < ci["matching"]["0.5"]["f1"][1]
    assert ci["det"] is not None
    # pixel scores get no interval, and neither does OP_CSB (SEG and DET resample different units)
    assert ci["iou"]["nucleus"] is None and ci["mean_dice"] is None
    assert methods["iou"]["unit"] is None and methods["iou"]["reason"] == "too few images"
    assert ci["op_csb"] is None and methods["op_csb"]["reason"] == "SEG and DET resample different objects"


def test_object_bootstrap_of_equal_objects_is_a_point():
    """Every object scores Jaccard 0.5 (a 4-pixel object inside an 8-pixel prediction), so every
    resample of objects has SEG 0.5: the interval is [0.5, 0.5]."""
    acc = ScoreAccumulator(2, NAMES, True)
    for name, n in (("three", 3), ("two", 2)):
        gt, pred = np.zeros((2, 6 * n), np.uint8), np.zeros((2, 6 * n), np.uint8)
        for k in range(n):
            gt[:, 6 * k:6 * k + 2] = k + 1
            pred[:, 6 * k:6 * k + 4] = k + 1
        acc.add(name, gt, pred)
    summary = acc.summary()
    assert summary["seg"] == 0.5 and summary["ci"]["seg"] == [0.5, 0.5]
    assert summary["ci_method"]["seg"]["n"] == 5 and summary["ci_method"]["seg"]["unit"] == "objects"
    # every object is matched at IoU 0.5 (no false positives): F1 is 1 in every resample
    assert summary["ci"]["matching"]["0.5"]["f1"] == [1.0, 1.0] and summary["ci"]["matching"]["0.6"]["f1"] == [0.0, 0.0]
    # DET: every object found, none split or spurious
    assert summary["det"] == 1.0 and summary["ci"]["det"] == [1.0, 1.0]


def test_enough_images_resample_images():
    acc = ScoreAccumulator(2, NAMES, True)
    for k in range(12):
        name, gt, pred = two_images()[k % 2]
        acc.add(f"{name}{k}", gt, pred)
    summary = acc.summary()
    for key in ("seg", "det", "op_csb", "iou", "mean_dice"):
        assert summary["ci_method"][key]["unit"] == "images" and summary["ci_method"][key]["n"] == 12, key
    assert summary["ci_method"]["matching"]["0.5"]["unit"] == "images"
    assert summary["ci"]["iou"]["nucleus"] is not None and summary["ci"]["op_csb"] is not None
    low, high = summary["ci"]["op_csb"]
    assert low <= summary["op_csb"] <= high


def test_op_csb_by_hand():
    """Image a: SEG 0.5 and DET 0.5; image b: 1 and 1; pooled SEG 2/3, DET 1 - 10/30 = 2/3."""
    acc = ScoreAccumulator(2, NAMES, True)
    rows = [acc.add(*image) for image in two_images()]
    assert [r["op_csb"] for r in rows] == [0.5, 1.0]
    summary = acc.summary()
    assert summary["op_csb"] == pytest.approx((summary["seg"] + summary["det"]) / 2, abs=1e-15)
    assert summary["op_csb"] == pytest.approx(2 / 3, abs=1e-15)
    assert ScoreAccumulator(2, NAMES, False).summary()["op_csb"] is None  # semantic: no SEG, no DET


def test_one_image():
    acc = ScoreAccumulator(2, NAMES, True)
    acc.add(*two_images()[0])
    summary = acc.summary()
    ci = summary["ci"]
    assert ci["seg"] == [0.0, 1.0]  # its two objects (Jaccard 1 and 0) are resampled
    assert ci["iou"]["nucleus"] is None and ci["det"] == [0.0, 1.0]


def test_merges_and_splits_are_pooled():
    acc = ScoreAccumulator(2, NAMES, True)
    gt = np.zeros((4, 8), np.uint8)
    gt[:, 0:3], gt[:, 4:7] = 1, 2
    merged = np.where(gt > 0, 5, 0)  # one object over both
    acc.add("merge", gt, merged)
    one = np.where(gt > 0, 1, 0).astype(np.uint8)
    halves = np.where(one > 0, 1 + (np.arange(8) >= 2), 0)  # object 1 cut in two
    acc.add("split", np.where(gt == 1, 1, 0), np.where(gt == 1, halves, 0))
    summary = acc.summary()
    assert (summary["merges"], summary["merged_gt"], summary["splits"], summary["split_pred"]) == (1, 2, 1, 2)
    assert [(r["merges"], r["splits"]) for r in summary["per_image"]] == [(1, 0), (0, 1)]


def test_surface_distances_in_summary():
    acc = ScoreAccumulator(2, NAMES, True, surface=True)
    gt = np.zeros((8, 5, 5), np.uint8)
    gt[2] = 1  # one plane of objects
    acc.add("near", gt, np.roll(gt, 1, axis=0), spacing=(2.0, 1.0, 1.0))  # one plane off: 2 units
    acc.add("far", gt, np.roll(gt, 3, axis=0), spacing=(2.0, 1.0, 1.0))  # three planes off: 6 units
    acc.add("missed", gt, np.zeros_like(gt), spacing=(2.0, 1.0, 1.0))  # undefined, left out
    summary = acc.summary(bootstrap=BootstrapPlan(min_images=3))
    assert [r["hd95"]["nucleus"] for r in summary["per_image"]] == [2.0, 6.0, None]
    assert summary["hd95"]["nucleus"] == 4.0 and summary["asd"]["nucleus"] == 4.0
    assert summary["hd95"]["background"] is None
    assert summary["ci"]["hd95"]["nucleus"][0] >= 2.0 and summary["ci"]["hd95"]["nucleus"][1] <= 6.0
    assert acc.summary()["ci"]["hd95"]["nucleus"] is None  # three images are too few to resample


def test_summary_is_strict_json_with_plain_types():
    acc = ScoreAccumulator(3, ["bg", "nucleus", "never"], True)
    for image in two_images():
        acc.add(*image)
    acc.add("empty", np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8))
    summary = acc.summary()
    assert summary["per_image"][2]["seg"] is None and summary["per_image"][2]["n_objects"] == 0
    assert summary["iou"]["never"] is None  # NaN (class in no map) becomes None
    assert summary["mean_iou"] == summary["iou"]["nucleus"]  # undefined classes are left out
    json.dumps(summary, allow_nan=False)

    def leaves(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from leaves(v)
        elif isinstance(value, list):
            for v in value:
                yield from leaves(v)
        else:
            yield value

    assert {type(v) for v in leaves(summary)} <= {int, float, str, bool, type(None)}


def test_no_images():
    summary = ScoreAccumulator(2, NAMES, True).summary()
    assert summary["seg"] is None and summary["n_objects"] == 0
    assert summary["iou"] == {"background": None, "nucleus": None}
    assert summary["mean_iou"] is None and summary["per_image"] == []
    assert summary["det"] is None and summary["ci"]["seg"] is None
    assert all(m["f1"] is None for m in summary["matching"])


def test_semantic_dataset():
    acc = ScoreAccumulator(3, ["bg", "a", "b"], False)
    gt = np.array([[0, 1], [2, 2]])
    row = acc.add("x", gt, np.array([[0, 1], [2, 0]]))
    assert row["seg"] is None and row["n_objects"] is None
    assert row["iou"] == {"bg": 0.5, "a": 1.0, "b": 0.5}
    summary = acc.summary()
    assert summary["seg"] is None and summary["n_objects"] is None
    assert summary["matching"] == [] and summary["det"] is None
    assert summary["mean_iou"] == pytest.approx(0.75, abs=1e-15)


def test_explicit_semantic_maps_for_instances():
    acc = ScoreAccumulator(3, ["bg", "round", "long"], True)
    gt = np.array([[1, 1, 0, 2]])
    classes = np.array([[1, 1, 0, 2]])
    row = acc.add("x", gt, gt, gt_semantic=classes, pred_semantic=np.array([[1, 2, 0, 2]]))
    assert row["seg"] == 1.0
    assert row["iou"] == {"bg": 1.0, "round": 0.5, "long": 0.5}


def test_reset():
    acc = ScoreAccumulator(2, NAMES, True)
    acc.add(*two_images()[0])
    acc.reset()
    assert acc.summary()["n_images"] == 0


@pytest.mark.parametrize(
    ("n_classes", "names"), [(2, ["bg"]), (2, ["bg", "bg"]), (0, [])], ids=["count", "duplicate", "zero"]
)
def test_rejects_bad_classes(n_classes, names):
    with pytest.raises(ValueError):
        ScoreAccumulator(n_classes, names, True)


def test_sequence_seg_agrees_with_py_ctcmetrics(tmp_path, real_labels, perturb):
    """All eleven BBBC007 fields as one CTC sequence, scored by ``evaluate_sequence``.

    The CTC pools SEG over frames by object count; so must :meth:`ScoreAccumulator.summary`.
    Folders follow the CTC layout: ``01_GT/SEG/man_segTTT.tif``, ``01_GT/TRA/man_trackTTT.tif``
    (only counted when SEG alone is asked for) and ``01_RES/maskTTT.tif``.
    """
    kinds = ("erode", "dilate", "shift", "merge", "drop", "split", "flip", "noisy", "identity")
    seg_dir, tra_dir, res_dir = tmp_path / "01_GT" / "SEG", tmp_path / "01_GT" / "TRA", tmp_path / "01_RES"
    for folder in (seg_dir, tra_dir, res_dir):
        folder.mkdir(parents=True)
    acc = ScoreAccumulator(2, NAMES, True)
    frames = sorted(name for name in real_labels if name.startswith("bbbc007/"))
    assert len(frames) == 11
    per_frame = []
    for t, name in enumerate(frames):
        gt = real_labels[name]
        pred = perturb(gt, kinds[t % len(kinds)], t)
        if kinds[t % len(kinds)] != "noisy":  # keep sklearn inside py-ctcmetrics on its fast path
            pred = relabel_sequential(pred)[0]
        tifffile.imwrite(seg_dir / f"man_seg{t:03d}.tif", gt)
        tifffile.imwrite(tra_dir / f"man_track{t:03d}.tif", gt)
        tifffile.imwrite(res_dir / f"mask{t:03d}.tif", pred.astype(np.uint32))
        per_frame.append(acc.add(name, gt, pred)["seg"])
    expected = evaluate_sequence(str(res_dir), str(tmp_path / "01_GT"), metrics=["SEG"], threads=1)["SEG"]
    summary = acc.summary()
    assert summary["seg"] == pytest.approx(expected, abs=1e-9)
    assert summary["seg"] != pytest.approx(float(np.mean(per_frame)), abs=1e-6)  # the pooling matters

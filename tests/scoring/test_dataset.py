"""Dataset scoring: the classical baselines, model + baseline per image, merging per-image parts."""

from __future__ import annotations

import numpy as np
import pytest

from segpipe.scoring import ScoreAccumulator
from segpipe.scoring.baseline import otsu_classes, otsu_watershed
from segpipe.scoring.dataset import baseline_comparison, dataset_accumulator, dataset_metrics, score_image

RECORD_2D = {"classes": ["background", "nucleus"], "instances": True, "ndim": 2}


def two_touching_discs() -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:40, :60]
    gt = np.zeros((40, 60), np.uint16)
    gt[(yy - 20) ** 2 + (xx - 20) ** 2 <= 100] = 1
    gt[(yy - 20) ** 2 + (xx - 37) ** 2 <= 100] = 2  # overlaps disc 1: they touch
    image = np.where(gt > 0, 200.0, 20.0) + np.random.default_rng(0).normal(0, 2, gt.shape)
    return image.astype(np.float32), gt


def test_otsu_watershed_splits_touching_objects():
    image, gt = two_touching_discs()
    labels = otsu_watershed(image, ndim=2)
    assert labels.dtype == np.int32 and len(np.unique(labels)) == 3  # background and two objects
    assert np.array_equal(labels > 0, gt > 0) or np.mean((labels > 0) == (gt > 0)) > 0.98
    assert not otsu_watershed(np.full((8, 8), 5.0), ndim=2).any()  # a flat image has no objects


def test_otsu_classes_by_brightness():
    image = np.repeat(np.array([10.0, 10, 50, 50, 90, 90]), 4).reshape(6, 4)[None]  # (C, Y, X) three bands
    classes = otsu_classes(image, n_classes=3, ndim=2, sigma=0.01)
    assert classes[:, 0].tolist() == [0, 0, 1, 1, 2, 2]
    assert otsu_classes(image, n_classes=2, ndim=2, sigma=0.01)[:, 0].tolist() == [0, 0, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="n_classes"):
        otsu_classes(image, n_classes=1, ndim=2)


def test_score_image_scores_model_and_baseline():
    image, gt = two_touching_discs()
    acc = dataset_accumulator(RECORD_2D)
    row = score_image(acc, "discs", image=image[None], gt=gt, pred_instances=gt * 3, pred_semantic=None, spacing=(1.0, 1.0))
    assert row["seg"] == 1.0 and acc.baseline.n_images == 1
    metrics = dataset_metrics(acc, dataset="d", split="test")
    assert metrics["seg"] == 1.0 and metrics["baseline"]["method"].startswith("Otsu threshold")
    assert 0.5 < metrics["baseline"]["seg"] <= 1.0 and metrics["baseline"]["params"]["h"] == 1.0
    assert metrics["scoring_seconds"] > 0 and "surface" not in metrics
    # the exact ground truth beats the baseline on SEG by its shortfall
    assert metrics["beats_baseline"] is True
    assert metrics["baseline_comparison"] == {
        "measure": "seg", "label": "SEG", "model": 1.0, "baseline": metrics["baseline"]["seg"],
        "difference": 1.0 - metrics["baseline"]["seg"], "beats": True,
    }
    with pytest.raises(ValueError, match="instance labels"):
        score_image(acc, "x", image=image[None], gt=gt, pred_instances=None, pred_semantic=gt, spacing=None)


def test_a_model_that_finds_nothing_loses_to_the_baseline():
    image, gt = two_touching_discs()
    acc = dataset_accumulator(RECORD_2D)
    score_image(acc, "discs", image=image[None], gt=gt, pred_instances=np.zeros_like(gt), pred_semantic=None, spacing=None)
    metrics = dataset_metrics(acc, dataset="d", split="test")
    assert metrics["seg"] == 0.0 and metrics["beats_baseline"] is False
    assert metrics["baseline_comparison"]["difference"] == -metrics["baseline"]["seg"] < 0


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"instances": True, "seg": 0.80, "baseline": {"seg": 0.85}}, ("seg", "SEG", -0.05, False)),
        ({"instances": True, "seg": 0.90, "baseline": {"seg": 0.85}}, ("seg", "SEG", 0.05, True)),
        ({"instances": True, "seg": 0.85, "baseline": {"seg": 0.85}}, ("seg", "SEG", 0.0, False)),  # a tie does not beat
        ({"instances": False, "seg": None, "mean_dice": 0.7, "baseline": {"mean_dice": 0.9}},
         ("mean_dice", "mean foreground Dice", -0.2, False)),
        ({"instances": True, "seg": None, "baseline": {"seg": 0.5}}, ("seg", "SEG", None, None)),  # undefined
    ],
)
def test_baseline_comparison_on_the_headline_measure(metrics, expected):
    comparison = baseline_comparison(metrics)
    difference = comparison["difference"]
    assert (comparison["measure"], comparison["label"], comparison["beats"]) == (expected[0], expected[1], expected[3])
    assert difference == (None if expected[2] is None else pytest.approx(expected[2], abs=1e-12))
    assert baseline_comparison({"instances": True, "seg": 0.5}) is None  # no baseline scored


def test_semantic_3d_dataset_gets_surface_distances_and_multi_otsu():
    record = {"classes": ["bg", "dim", "bright"], "instances": False, "ndim": 3}
    gt = np.zeros((6, 8, 24), np.uint8)
    gt[:, :, 8:16], gt[:, :, 16:] = 1, 2
    image = (gt * 40.0 + 10)[None]
    acc = dataset_accumulator(record)
    score_image(acc, "v", image=image, gt=gt, pred_instances=None, pred_semantic=np.roll(gt, 1, axis=2), spacing=(3.0, 1.0, 1.0))
    metrics = dataset_metrics(acc, dataset="d", split="test")
    assert metrics["hd95"]["dim"] == pytest.approx(1.0) and metrics["matching"] == []
    assert metrics["baseline"]["method"].startswith("multi-Otsu") and metrics["baseline"]["mean_dice"] > 0.9


def test_merge_of_per_image_parts_equals_one_accumulator(real_labels, perturb):
    names = ["bbbc007/A9_p7d", "bbbc007/A9_p9d", "bbbc007/A9_p5d"]
    whole = ScoreAccumulator(2, ["bg", "fg"], True, with_baseline=True)
    parts = []
    for k, name in enumerate(names):
        gt, pred = real_labels[name], perturb(real_labels[name], "merge", k)
        whole.add(name, gt, pred)
        whole.baseline.add(name, gt, perturb(gt, "drop", k))
        part = ScoreAccumulator(2, ["bg", "fg"], True, with_baseline=True)
        part.add(name, gt, pred)
        part.baseline.add(name, gt, perturb(gt, "drop", k))
        parts.append(part)
    merged = ScoreAccumulator(2, ["bg", "fg"], True, with_baseline=True)
    for part in parts:
        merged.merge(part)
    assert merged.summary() == whole.summary()
    assert merged.summary()["baseline"]["n_images"] == 3
    with pytest.raises(ValueError, match="different settings"):
        merged.merge(ScoreAccumulator(2, ["bg", "fg"], False))

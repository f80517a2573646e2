"""HD95 and ASD in physical units: hand-computed cases, a brute-force reference, and MONAI itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
from scipy.ndimage import binary_erosion

from segpipe.scoring import surface_distances


def test_parallel_planes_by_hand():
    gt = np.zeros((10, 6, 6), np.uint8)
    gt[2] = 1
    pred = np.zeros_like(gt)
    pred[5] = 1  # every surface voxel is 3 planes from the other surface: 3 x 2.5 units
    result = surface_distances(gt, pred, n_classes=2, spacing=(2.5, 1.0, 1.0))
    assert result.hd95[1] == 7.5 and result.asd[1] == 7.5
    assert math.isnan(result.hd95[0]) and math.isnan(result.asd[0])  # background is not scored


def test_points_by_hand():
    gt = np.zeros((8, 8), np.uint8)
    gt[2, 2] = 1
    pred = np.zeros_like(gt)
    pred[2, 5] = pred[6, 2] = 1
    # pred -> gt: 3 x 1.0 and 4 x 1.5 = [3, 6]; gt -> pred: 3.
    # HD95 = max(quantile([3, 6], 0.95), 3) = 3 + 0.95 * 3; ASD = mean(3, 6, 3).
    result = surface_distances(gt, pred, n_classes=2, spacing=(1.5, 1.0))
    assert result.hd95[1] == pytest.approx(5.85, abs=1e-5)
    assert result.asd[1] == pytest.approx(4.0, abs=1e-6)


def test_identical_masks_are_zero_and_missing_classes_undefined():
    gt = np.zeros((6, 6, 6), np.uint8)
    gt[1:4, 1:4, 1:4] = 1
    gt[5, 5, 5] = 2
    result = surface_distances(gt, gt, n_classes=4, spacing=(3.0, 1.0, 1.0))
    assert result.hd95[1:3] == [0.0, 0.0] and result.asd[1:3] == [0.0, 0.0]
    assert math.isnan(result.hd95[3])  # in neither map
    only_gt = surface_distances(gt, np.where(gt == 2, 0, gt), n_classes=3)
    assert math.isnan(only_gt.hd95[2]) and math.isnan(only_gt.asd[2])  # MONAI would give inf


def test_rejects_bad_spacing():
    labels = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="spacing"):
        surface_distances(labels, labels, n_classes=2, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        surface_distances(labels, labels, n_classes=2, spacing=(1.0, 0.0))


def brute_force(gt: np.ndarray, pred: np.ndarray, spacing) -> tuple[float, float]:
    """Surface = voxels removed by a cross erosion; all pairwise distances of the two surfaces."""
    scale = np.asarray(spacing, np.float64)
    edge_gt = np.argwhere(gt & ~binary_erosion(gt)) * scale
    edge_pred = np.argwhere(pred & ~binary_erosion(pred)) * scale
    pairwise = np.linalg.norm(edge_pred[:, None, :] - edge_gt[None, :, :], axis=-1)
    to_gt, to_pred = pairwise.min(1), pairwise.min(0)
    hd95 = max(np.percentile(to_gt, 95), np.percentile(to_pred, 95))
    return float(hd95), float(np.concatenate([to_gt, to_pred]).mean())


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.bool_, st.tuples(st.integers(2, 6), st.integers(2, 7), st.integers(2, 7))),
    arrays(np.bool_, st.tuples(st.just(6), st.just(7), st.just(7))),
    st.sampled_from([(1.0, 1.0, 1.0), (2.5, 0.5, 0.5), (0.3, 1.2, 0.9)]),
)
def test_equals_brute_force(gt_part, pred, spacing):
    gt = np.zeros((6, 7, 7), bool)
    gt[: gt_part.shape[0], : gt_part.shape[1], : gt_part.shape[2]] = gt_part
    result = surface_distances(gt.view(np.uint8), pred.view(np.uint8), n_classes=2, spacing=spacing)
    if not (gt.any() and pred.any()):
        assert math.isnan(result.hd95[1])
        return
    hd95, asd = brute_force(gt, pred, spacing)
    assert result.hd95[1] == pytest.approx(hd95, rel=1e-5, abs=1e-5)
    assert result.asd[1] == pytest.approx(asd, rel=1e-5, abs=1e-5)


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")
def test_equals_monai_metrics(real_labels):
    """The numbers MONAI's own ``compute_hausdorff_distance`` and ``compute_average_surface_distance`` give."""
    labels = real_labels["nuclei3d"]
    gt = np.where(labels > 0, 1 + (labels % 2), 0).astype(np.uint8)  # two classes
    pred = np.roll(gt, (1, -2, 1), axis=(0, 1, 2))
    pred[10:14, 20:30, 20:30] = 1
    spacing = (2.0, 0.5, 0.5)
    ours = surface_distances(gt, pred, n_classes=3, spacing=spacing)

    def one_hot(a):
        return torch.from_numpy(np.eye(3, dtype=np.float32)[a].transpose(3, 0, 1, 2)[None])

    hd = compute_hausdorff_distance(one_hot(pred), one_hot(gt), percentile=95, spacing=list(spacing))[0]
    asd = compute_average_surface_distance(one_hot(pred), one_hot(gt), symmetric=True, spacing=list(spacing))[0]
    assert ours.hd95[1:] == pytest.approx(hd.tolist(), abs=1e-6)
    assert ours.asd[1:] == pytest.approx(asd.tolist(), abs=1e-6)
    assert all(v > 0 for v in ours.hd95[1:])

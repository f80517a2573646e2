"""Figures: outline overlays (2D, and orthogonal planes of 3D at their physical aspect), plots."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import tifffile

from segpipe.report.figures import GT_COLOUR, PRED_COLOUR, cut_planes, iou_histogram, matching_curve, overlay


def test_cut_planes_by_hand():
    gt = np.zeros((5, 6, 7), np.uint8)
    gt[3, 1:5, 2] = 1  # 4 voxels on plane z=3, row y=1..4, column x=2
    gt[1, 2, 2:4] = 2  # 2 voxels on z=1, y=2, x=2..3
    assert cut_planes(gt) == (3, 2, 2)
    assert cut_planes(np.zeros((4, 6, 8), np.uint8)) == (2, 3, 4)  # empty: the middle


def colours_present(path) -> tuple[bool, bool]:
    rgb = mpimg.imread(path)[..., :3]

    def has(colour):
        return bool(np.any(np.all(np.abs(rgb - np.array(colour)) < 0.02, axis=-1)))

    return has(GT_COLOUR), has(PRED_COLOUR)


def test_overlay_2d(tmp_path, data_dir):
    gt = tifffile.imread(data_dir / "bbbc007" / "labels" / "A9_p7d.tif")
    image = (gt > 0).astype(np.float32) * 100 + np.random.default_rng(0).normal(0, 5, gt.shape)
    path = overlay(image, gt, np.roll(gt, 3, axis=1), tmp_path / "o.png", title="t")
    assert colours_present(path) == (True, True)
    height, width = mpimg.imread(path).shape[:2]
    assert width > 2 * height  # three panels side by side


def test_overlay_3d_uses_physical_aspect(tmp_path, data_dir):
    gt = tifffile.imread(data_dir / "synthetic-nuclei-3d" / "labels.tif")
    image = (gt > 0).astype(np.float32)
    flat = overlay(image, gt, gt, tmp_path / "iso.png", title="iso", spacing=(1.0, 1.0, 1.0))
    tall = overlay(image, gt, gt, tmp_path / "aniso.png", title="aniso", spacing=(4.0, 1.0, 1.0))
    assert colours_present(flat) == (True, True)
    # z planes drawn four times as thick make the zx and zy rows, so the figure, taller
    assert mpimg.imread(tall).shape[0] > mpimg.imread(flat).shape[0]


def test_plots(tmp_path):
    hist = {"edges": [i / 20 for i in range(21)], "counts": [1] + [0] * 18 + [5]}
    assert iou_histogram({"model": hist, "baseline": None}, tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    rows = [{"thresh": t / 10, "f1": 1 - t / 10, "ap": None, "panoptic_quality": 0.5} for t in range(1, 10)]
    assert matching_curve({"model": rows}, tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"

"""Figures: outline overlays (2D, and orthogonal planes of 3D at their physical aspect), colour
composites of several channels, the training curve's kept-checkpoint mark, plots."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest
import tifffile

from segpipe.report.figures import (
    BEST_EPOCH_COLOUR,
    EDGE_COLOUR,
    GT_COLOUR,
    PRED_COLOUR,
    channel_colours,
    composite,
    cut_planes,
    iou_histogram,
    matching_curve,
    overlay,
    training_curve,
)


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


def test_composite_by_hand():
    ramp = np.tile(np.arange(100, dtype=np.float32), (4, 1))  # (Y, X) = (4, 100), 0..99 along x
    grey = composite(ramp[np.newaxis])
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    # two channels, the first empty: green stays 0, red and blue carry the second channel (magenta)
    two = composite(np.stack([np.zeros_like(ramp), ramp]))
    assert two.shape == (4, 100, 3) and np.all(two[..., 1] == 0)
    assert np.array_equal(two[..., 0], two[..., 2]) and two[0, -1, 0] == 1.0 and two[0, 0, 0] == 0.0
    assert two[0, 50, 0] == grey[0, 50, 0] > 0.4  # the same percentile scaling as one channel
    # the other way round: green only
    assert np.all(composite(np.stack([ramp, np.zeros_like(ramp)]))[..., [0, 2]] == 0)
    # three channels are red, green and blue; both full add up to white, clipped at 1
    three = composite(np.stack([ramp, np.zeros_like(ramp), ramp]))
    assert np.all(three[..., 1] == 0) and np.array_equal(three[..., 0], three[..., 2])
    assert [name for name, _ in channel_colours(2)] == ["green", "magenta"]
    assert [name for name, _ in channel_colours(3)] == ["red", "green", "blue"]
    assert [name for name, _ in channel_colours(8)][3:] == ["grey", "cyan", "magenta", "yellow", "red"]


def test_two_channel_overlay_with_an_empty_first_channel(tmp_path, data_dir):
    """Drawn from the first channel alone this image would be black; the composite shows the
    second channel in magenta, with black-edged outlines on top."""
    gt = tifffile.imread(data_dir / "bbbc007" / "labels" / "A9_p7d.tif")
    signal = (gt > 0).astype(np.float32) * 100 + np.random.default_rng(0).normal(0, 5, gt.shape)
    image = np.stack([np.zeros_like(signal), signal])
    path = overlay(image, gt, np.roll(gt, 3, axis=1), tmp_path / "two.png", title="two channels")
    rgb = mpimg.imread(path)[..., :3]
    magenta = (rgb[..., 0] > 0.9) & (rgb[..., 2] > 0.9) & (rgb[..., 1] < 0.1)  # bright objects of channel 2
    assert magenta.sum() > 1000
    assert colours_present(path) == (True, True)
    edge = np.all(np.abs(rgb - np.array(EDGE_COLOUR)) < 0.02, axis=-1)
    assert edge.sum() > 0
    # one channel as before: grey, no black edges needed on grey
    grey = mpimg.imread(overlay(signal, gt, gt, tmp_path / "one.png", title="one channel"))[..., :3]
    assert not ((grey[..., 0] > 0.9) & (grey[..., 2] > 0.9) & (grey[..., 1] < 0.1)).any()


def test_overlay_3d_composite(tmp_path, data_dir):
    gt = tifffile.imread(data_dir / "synthetic-nuclei-3d" / "labels.tif")
    image = np.stack([np.zeros(gt.shape, np.float32), (gt > 0).astype(np.float32)])
    path = overlay(image, gt, gt, tmp_path / "v.png", title="v", spacing=(2.0, 1.0, 1.0))
    rgb = mpimg.imread(path)[..., :3]
    assert ((rgb[..., 0] > 0.9) & (rgb[..., 2] > 0.9) & (rgb[..., 1] < 0.1)).sum() > 100
    assert colours_present(path) == (True, True)
    with pytest.raises(ValueError, match="do not fit"):
        overlay(image[:, :-1], gt, gt, tmp_path / "bad.png", title="bad")


HISTORY = [
    {"epoch": float(e), "train_loss": 1 / e, "val_score": 0.04 * e if e % 5 == 0 else None,
     "val_seg": 0.04 * e if e % 5 == 0 else None, "val_dice": None}
    for e in range(1, 21)
]


def best_epoch_column(path) -> tuple[int, int]:
    """The pixel column holding most of the kept-checkpoint colour, and how many pixels it holds."""
    rgb = mpimg.imread(path)[..., :3]
    counts = np.all(np.abs(rgb - np.array(BEST_EPOCH_COLOUR)) < 0.02, axis=-1).sum(axis=0)
    return int(counts.argmax()), int(counts.max())


def test_training_curve_marks_the_kept_checkpoint(tmp_path):
    assert best_epoch_column(training_curve(HISTORY, tmp_path / "none.png"))[1] == 0  # no mark without best_epoch
    columns = {}
    for epoch in (5, 10, 15):
        columns[epoch], pixels = best_epoch_column(training_curve(HISTORY, tmp_path / f"{epoch}.png", best_epoch=epoch))
        assert pixels > 100  # a vertical line across the axes
    # the line sits at its epoch: the x axis is linear in epochs
    assert columns[5] < columns[10] < columns[15]
    assert abs(columns[10] - (columns[5] + columns[15]) / 2) <= 2


def test_training_curve_draws_the_score_that_chooses_the_checkpoint(tmp_path):
    """The checkpoint is chosen by validation OP_CSB; the curve drew only SEG and Dice."""
    from matplotlib.colors import to_rgb

    with_op = [{**row, "val_op_csb": None if row["val_seg"] is None else row["val_seg"] + 0.15} for row in HISTORY]

    def purple(path) -> int:
        rgb = mpimg.imread(path)[..., :3]
        return int(np.all(np.abs(rgb - np.array(to_rgb("tab:purple"))) < 0.02, axis=-1).sum())

    assert purple(training_curve(HISTORY, tmp_path / "seg.png")) == 0
    assert purple(training_curve(with_op, tmp_path / "op.png")) > 100


def test_objects_in_error_are_filled_in_their_colour(tmp_path):
    """A merge, a split, a miss and a false object, each filled in its colour over a black image;
    an object found well, and the background, left as they are."""
    from segpipe.report.figures import ERROR_ALPHA, ERROR_COLOURS, _error_title, _errors_filled
    from segpipe.scoring.errors import object_errors

    gt, pred = np.zeros((40, 60), np.uint16), np.zeros((40, 60), np.uint16)
    gt[2:10, 2:10], gt[2:10, 10:18], pred[2:10, 2:19] = 1, 2, 10  # merged
    gt[20:30, 2:20], pred[20:30, 2:11], pred[20:30, 11:20] = 3, 20, 21  # split
    gt[2:10, 30:38] = 4  # missed
    pred[30:38, 40:48] = 40  # false
    gt[20:28, 40:48], pred[20:28, 40:48] = 5, 50  # found
    errors = object_errors(gt, pred)
    canvas = _errors_filled(np.zeros((40, 60, 3), np.float32), gt, pred, errors)
    for (y, x), kind in (((5, 5), "merged"), ((25, 5), "split"), ((5, 33), "missed"), ((33, 43), "false")):
        np.testing.assert_allclose(canvas[y, x], ERROR_ALPHA * np.array(ERROR_COLOURS[kind][1]), atol=1e-6, err_msg=kind)
    assert not canvas[24, 44].any() and not canvas[15, 25].any()
    assert _error_title(errors) == "both; filled: 1 merged, 1 split, 1 missed, 1 false"
    assert _error_title(object_errors(gt, gt)) == "both (no object in error)"
    path = overlay(np.zeros((40, 60), np.float32), gt, pred, tmp_path / "e.png", title="errors", errors=True)
    rgb = mpimg.imread(path)[..., :3]
    for kind, (_, colour) in ERROR_COLOURS.items():
        assert np.any(np.all(np.abs(rgb - ERROR_ALPHA * np.array(colour)) < 0.02, axis=-1)), kind
    plain = mpimg.imread(overlay(np.zeros((40, 60), np.float32), gt, pred, tmp_path / "p.png", title="plain"))[..., :3]
    assert not np.any(np.all(np.abs(plain - ERROR_ALPHA * np.array(ERROR_COLOURS["missed"][1])) < 0.02, axis=-1))


def test_objects_in_areas_not_annotated_are_no_error():
    from segpipe.scoring.errors import object_errors

    gt, pred = np.zeros((20, 20), np.uint16), np.zeros((20, 20), np.uint16)
    pred[2:6, 12:16] = 7  # in the unannotated right half
    ignore = np.zeros_like(gt, bool)
    ignore[:, 10:] = True
    assert object_errors(gt, pred).false.tolist() == [7]
    assert object_errors(gt, pred, ignore=ignore).false.size == 0


def test_a_long_title_stays_inside_the_figure(tmp_path):
    """A sample's title naming why it was chosen ran past both edges of the figure ("hys_10um: ... (5")."""
    from segpipe.report.figures import outlines

    labels = np.zeros((64, 64), np.uint8)
    labels[20:40, 20:40] = 1
    for k, name in enumerate(("phys_10um_field_from_the_second_microscope", "plate_07_well_B12_" * 8)):  # a long name too
        title = (f"{name}: 4 objects in 1/4 of the median image's size (16 at that size), "
                 "more than 3 times the median at that size (4) (4 objects)")
        rgb = mpimg.imread(outlines(labels.astype(np.float32), labels, tmp_path / f"long{k}.png", title=title))[..., :3]
        dark = rgb.min(axis=-1) < 0.5  # the title's letters (the panels start lower)
        top = dark[: rgb.shape[0] // 5]
        assert top.any()
        assert not top[:, :3].any() and not top[:, -3:].any()  # no letter cut at either edge

"""The shipped generalist ``cells-2d``: opened by name; nothing found where an image holds nothing
(:mod:`segpipe.inference.blank`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from segpipe.inference.blank import RADIUS
from segpipe.models.shipped import CELLS_2D, shipped_model, shipped_names
from segpipe.pipeline.segment import segment
from segpipe.pipeline.segment_files import SegmentFolder
from segpipe.prediction.params import PredictParams
from segpipe.prediction.predict import Predictor


def test_the_generalist_is_shipped_and_opens_by_name():
    assert CELLS_2D in shipped_names()
    model = shipped_model(CELLS_2D)
    assert model.card.generalist and model.card.in_channels == 2
    assert shipped_model("no-such-model") is None


BLANK = {
    "zero": np.zeros((200, 300), np.uint16),
    "constant": np.full((200, 300), 812, np.uint16),
    "two_constant_channels": np.stack([np.full((200, 300), 40, np.uint8), np.full((200, 300), 200, np.uint8)]),
}
DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.mark.parametrize("name", list(BLANK))
def test_the_generalist_finds_no_object_in_a_blank_field(name, tmp_path):
    """A blank image normalizes to one value, which the network answers with shapes on its window
    grid (56 objects in a 256 x 256 blank image): blank pixels are background."""
    image = BLANK[name]
    tifffile.imwrite(tmp_path / f"{name}.tif", image, metadata={"axes": "CYX" if image.ndim == 3 else "YX"})
    predictor = Predictor.load(shipped_model(CELLS_2D), PredictParams(device="cpu"))
    segment([str(tmp_path / f"{name}.tif")], predictor, SegmentFolder(tmp_path / "out"), progress=False)
    labels = tifffile.imread(tmp_path / "out" / "labels" / f"{name}_labels.tif")
    assert labels.shape == image.shape[-2:]
    assert labels.max() == 0, f"{name}: {labels.max()} objects in a blank field"


def test_the_generalist_finds_the_disks_of_a_noise_free_image(tmp_path):
    """25 disks at 220 on an even background of 20, no noise (a rendered or thresholded image): each
    disk is an object (its even background read as fill had left the disks alone to measure, equal
    percentiles, and nothing was labelled)."""
    yy, xx = np.mgrid[:250, :250]
    image = np.where((yy % 50 - 25) ** 2 + (xx % 50 - 25) ** 2 < 100, 220, 20).astype(np.uint8)
    tifffile.imwrite(tmp_path / "disks.tif", image)
    predictor = Predictor.load(shipped_model(CELLS_2D), PredictParams(device="cpu"))
    segment([str(tmp_path / "disks.tif")], predictor, SegmentFolder(tmp_path / "out"), progress=False)
    labels = tifffile.imread(tmp_path / "out" / "labels" / "disks_labels.tif")
    centres = labels[25::50, 25::50]
    assert labels.max() == 25 and len(np.unique(centres)) == 25 and centres.min() > 0


def test_the_generalist_finds_nuclei_beside_zero_fill_and_nothing_in_it(tmp_path):
    """A field of nuclei in the corner of a stitched mosaic whose other tiles are empty (zero):
    nuclei where the field is, nothing in the fill beyond the blank rule's margin (there were 57
    objects all over it)."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:128, :128]
    mosaic = np.zeros((256, 384), field.dtype)
    mosaic[:128, :128] = field
    tifffile.imwrite(tmp_path / "mosaic.tif", mosaic)
    predictor = Predictor.load(shipped_model(CELLS_2D), PredictParams(device="cpu"))
    segment([str(tmp_path / "mosaic.tif")], predictor, SegmentFolder(tmp_path / "out"), progress=False)
    labels = tifffile.imread(tmp_path / "out" / "labels" / "mosaic_labels.tif")
    assert len(np.unique(labels[:128, :128])) > 10
    assert labels[128 + RADIUS :].max() == 0 and labels[:, 128 + RADIUS :].max() == 0


def test_the_generalist_gives_the_same_objects_whatever_the_images_units(tmp_path):
    """The generalist has no intensity units of its own (it learnt generated images): it divided
    every image's range by at least its training images' floor (149), so a field stored as floats
    in 0..1 reached the network almost blank and came out other than the same field in 0..1000."""
    field = tifffile.imread(DATA / "bbbc007" / "images" / "A9_p10d.tif")[:128, :128].astype(np.float32)
    unit = (field - field.min()) / (field.max() - field.min())
    for name, image in (("unit", unit), ("thousand", 1000 * unit), ("offset", 2 * unit - 1)):
        tifffile.imwrite(tmp_path / f"{name}.tif", image.astype(np.float32))
    predictor = Predictor.load(shipped_model(CELLS_2D), PredictParams(device="cpu"))
    assert predictor.card.normalization.min_range is None
    segment([str(tmp_path / "*.tif")], predictor, SegmentFolder(tmp_path / "out"), progress=False)
    masks = {name: tifffile.imread(tmp_path / "out" / "labels" / f"{name}_labels.tif") > 0 for name in ("unit", "thousand", "offset")}
    assert masks["unit"].sum() > 1000
    for name in ("thousand", "offset"):
        assert np.count_nonzero(masks[name] != masks["unit"]) <= 0.001 * masks["unit"].size, name

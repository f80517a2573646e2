"""A frame of nothing but noise, told from one with something in it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from scipy import ndimage

from segpipe.inference.noise import (
    QUIET_RADIUS,
    SAMPLE_PIXELS,
    SURROUND,
    THRESHOLD,
    noise_only,
    noise_sigma,
    quiet,
    read_sample,
    structure,
    structure_map,
    white_response,
)

DATA = Path(__file__).resolve().parents[2] / "data"


def disc(shape, centre, radius) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_the_filters_response_to_white_noise_is_the_closed_form(scale):
    """Against the filter run on a large field of white noise (the sample's deviation within 1%)."""
    noise = np.random.default_rng(scale).normal(0, 1, (2048, 2048))
    response = ndimage.gaussian_filter(noise, scale) - ndimage.gaussian_filter(noise, SURROUND * scale)
    inner = response[4 * SURROUND * scale : -4 * SURROUND * scale, 4 * SURROUND * scale : -4 * SURROUND * scale]
    assert inner.std() == pytest.approx(white_response(scale), rel=0.01)


def test_the_noise_deviation_is_read_through_objects_and_counts():
    rng = np.random.default_rng(0)
    field = rng.normal(100, 7, (256, 256))
    field[disc(field.shape, (128, 128), 60)] += 500
    assert noise_sigma(field) == pytest.approx(7, rel=0.05)
    for counts in (0.3, 2.0, 50.0):  # Poisson noise: the deviation is the square root of the mean
        assert noise_sigma(rng.poisson(counts, (256, 256)).astype(np.float32)) == pytest.approx(counts**0.5, rel=0.1)


def test_prediction_uses_this_threshold_by_default():
    from segpipe.inference import InferenceParams

    assert InferenceParams().noise_only == THRESHOLD


@pytest.mark.parametrize("side", [64, 256, 1024])
@pytest.mark.parametrize(
    "make",
    [
        lambda rng, n: rng.normal(100, 10, (n, n)),
        lambda rng, n: rng.poisson(1.0, (n, n)).astype(np.uint16),  # a dark field: a count or two a pixel
        lambda rng, n: rng.poisson(0.3, (n, n)).astype(np.uint16),  # most neighbours equal: the median deviation is 0
        lambda rng, n: (rng.poisson(2.0, (n, n)).astype(np.float32) - 0.4) / 7.3,  # counts after a normalization
        lambda rng, n: np.clip(rng.normal(20, 1, (n, n)), 0, 255).astype(np.uint8),
        lambda rng, n: rng.normal(100, 10, (n, n)) + np.linspace(0, 50, n)[None] * n / 1024,  # uneven light, 5 deviations a 1024
    ],
    ids=["gaussian", "poisson-1", "poisson-0.3", "normalized-counts", "uint8", "gradient"],
)
def test_noise_alone_scores_under_the_threshold(make, side):
    for seed in range(3):
        assert structure(make(np.random.default_rng(seed), side)) < THRESHOLD * 0.8


def test_a_hot_pixel_is_not_structure_and_one_faint_cell_is():
    rng = np.random.default_rng(4)
    field = rng.normal(100, 10, (512, 512))
    field[rng.integers(0, 512, 20), rng.integers(0, 512, 20)] = 60000  # hot pixels of a camera
    assert structure(field) < THRESHOLD
    field[disc(field.shape, (200, 300), 10)] += 10  # one cell of 20 pixels, as bright as the noise is wide
    assert structure(field) > THRESHOLD * 1.2


def test_a_flat_plane_is_no_structure_and_one_object_on_a_flat_one_is():
    assert structure(np.full((64, 64), 7, np.uint16)) == 0
    sparse = np.zeros((64, 64), np.float32)
    sparse[10:14, 20:24] = 5.0  # no noise at all: the one object stands out
    assert structure(sparse) > THRESHOLD
    assert structure(np.random.default_rng(0).normal(0, 1, (16, 400))) == np.inf  # too few rows to judge


@pytest.mark.parametrize("dataset", ["bbbc007", "c2c12-phase", "fluo-n3dh-cho"])
def test_every_bundled_image_holds_far_more_than_noise(dataset):
    for path in sorted((DATA / dataset / "images").iterdir()):
        image = tifffile.imread(path)
        planes = image.reshape(-1, *image.shape[-2:]) if image.ndim == 3 and image.shape[-1] > 4 else [image]
        middle = planes[len(planes) // 2]
        assert structure(middle[..., 0] if middle.ndim == 3 else middle) > 5 * THRESHOLD, path.name


def test_a_volume_holds_only_noise_when_every_plane_does():
    rng = np.random.default_rng(5)
    volume = rng.normal(50, 5, (1, 9, 96, 96))
    assert noise_only(volume)
    volume[0, 8][disc((96, 96), (40, 50), 8)] += 15  # a nucleus's tip in the last plane
    assert not noise_only(volume)
    two = np.concatenate([rng.normal(50, 5, (1, 96, 96)), tifffile.imread(DATA / "dsb2018-nuclei-2d" / "image.tif")[None, :96, :96]])
    assert not noise_only(two)  # a channel of noise beside one of nuclei


def test_a_large_frame_is_judged_on_a_strided_sample(tmp_path):
    source = zarr.create_array(str(tmp_path / "big.zarr"), shape=(1, 2, 2500, 2100), chunks=(1, 1, 512, 512), dtype=np.uint8)
    sample = read_sample(source, (1,), 2)
    assert sample.shape == (1, 834, 700) and sample.size <= SAMPLE_PIXELS  # every third row and column
    volume = zarr.create_array(str(tmp_path / "vol.zarr"), shape=(1, 64, 1024, 1024), chunks=(1, 8, 256, 256), dtype=np.uint8)
    assert read_sample(volume, (), 3).shape == (1, 64, 512, 512)  # 16 million voxels at most


def test_a_volumes_middle_plane_is_read_first_and_alone_when_it_holds_something(tmp_path):
    """A real volume is judged on one plane; a volume of noise with one nucleus off the middle is read whole."""
    from segpipe.inference.noise import frame_noise_only

    rng = np.random.default_rng(8)
    volume = rng.normal(50, 5, (1, 2, 9, 96, 96)).astype(np.float32)  # (C, t, z, y, x)
    volume[0, 0, 4][disc((96, 96), (40, 50), 12)] += 40  # frame 0: a nucleus in the middle plane
    volume[0, 1, 1][disc((96, 96), (40, 50), 12)] += 40  # frame 1: one off the middle
    reads = []

    class Counting:
        shape, ndim = volume.shape, volume.ndim

        def __getitem__(self, key):
            reads.append(key)
            return volume[key]

    assert not frame_noise_only(Counting(), (0,), 3) and len(reads) == 1
    assert not frame_noise_only(Counting(), (1,), 3) and len(reads) == 3
    volume[0, 1, 1] = rng.normal(50, 5, (96, 96))
    assert frame_noise_only(Counting(), (1,), 3)


def test_the_map_is_the_structure_pixel_by_pixel():
    rng = np.random.default_rng(2)
    image = rng.normal(100, 10, (256, 256))
    image[disc(image.shape, (80, 170), 10)] += 20
    scores = structure_map(image)
    assert scores.shape == image.shape and scores.dtype == np.float32
    assert float(scores.max()) == pytest.approx(structure(image), rel=1e-5)
    assert np.unravel_index(np.argmax(scores), scores.shape) in {(y, x) for y in range(75, 86) for x in range(165, 176)}
    assert (structure_map(np.full((64, 64), 3.0)) == 0).all() and np.isinf(structure_map(np.ones((16, 64)))).all()


def test_quiet_is_the_noise_away_from_anything_that_stands_out():
    """Cells on the left of a field, noise on the right: quiet from a little past the cells on (the
    filters reach beyond an object's edge, and QUIET_RADIUS more), never on or near a cell."""
    rng = np.random.default_rng(4)
    image = rng.normal(50, 5, (1, 256, 384))
    cells = np.zeros((256, 384), bool)
    for y in range(24, 240, 40):
        for x in range(24, 130, 40):
            cells |= disc(cells.shape, (y, x), 12)
    image[0][cells] += 15  # three noise deviations
    still = quiet(image)
    assert still.shape == cells.shape
    near = ndimage.binary_dilation(cells, iterations=QUIET_RADIUS)
    assert not (still & near).any()
    assert still[:, 150:].all() and not still[:, :100].any()
    assert not quiet(image, threshold=1e9)[..., :0].any() and quiet(image, threshold=1e9).all()


def test_a_population_beyond_six_deviations_is_not_clipped_flat():
    """An 8-bit field of smooth cells reads a noise of about one count; a patch of cells darker
    than six of those, on a darker ground (style1 of the Cellpose dataset), was clipped to one flat
    value, and its middle read as quiet. The clip now widens to the 0.05th and 99.95th percentiles."""
    rng = np.random.default_rng(5)
    image = np.full((512, 512), 35.0)
    image[150:350, 150:350] = 22.0  # the patch's ground, 13 counts under the field's
    patch = np.zeros(image.shape, bool)
    for y in range(166, 340, 32):
        for x in range(166, 340, 32):
            patch |= disc(image.shape, (y, x), 12)
    image[patch] = 10.0  # its cells
    image = np.clip(np.round(image + rng.normal(0, 1, image.shape)), 0, 255).astype(np.uint8)[None]
    assert noise_sigma(image[0].astype(np.float32)) < 1.5
    assert not quiet(image)[150:350, 150:350].any()


@pytest.mark.parametrize("ndim", [2, 3])
def test_quiet_rows_found_block_by_block_are_the_whole_frames(monkeypatch, ndim):
    """A stream asks for the quiet pixels band by band: blocks of a few rows, read with the filters'
    margin, give what the whole frame gives (but for a pixel or so at the threshold: each block
    estimates the noise from its own pixels), a band across two blocks included, frame after frame."""
    import segpipe.inference.noise as module

    rng = np.random.default_rng(6)
    spatial = (1200, 96) if ndim == 2 else (80, 64, 80)  # blocks of at least four margins: 544 rows, 32 planes
    source = rng.normal(50, 5, (1, 2, *spatial)).astype(np.float32)  # two frames
    plane = disc(spatial[-2:], (spatial[-2] // 3, spatial[-1] // 4), 10)
    source[0, 0, ..., plane] += 20
    source[0, 1, ..., plane[::-1]] += 20
    monkeypatch.setattr(module, "QUIET_BLOCK", 5 * int(np.prod(spatial[1:])))  # fewer rows than the least block
    rows = module.QuietRows(source, ndim)
    for frame in ((0,), (1,)):
        whole = quiet(source[:, frame[0]])
        found, differ = [], 0
        assert whole.any() and not whole.all()
        for start in range(0, spatial[0], 7):
            box = (slice(start, min(start + 7, spatial[0])), slice(3, spatial[1]))
            differ += int((rows(frame, box) != whole[box]).sum())  # pixels at the threshold: noise estimated per block
            found.append(rows._rows)
        assert len(set(found)) >= 3  # blocks found one after another, bands across their ends included
        assert differ <= 0.001 * whole.size

"""A frame of nothing but noise, told from one with something in it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from scipy import ndimage

from segpipe.inference.noise import (
    SAMPLE_PIXELS,
    SURROUND,
    THRESHOLD,
    noise_only,
    noise_sigma,
    read_sample,
    structure,
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

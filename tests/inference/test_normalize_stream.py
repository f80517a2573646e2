"""Streaming normalization: bit-identical to normalize() on images read whole, close on estimates."""

import numpy as np
import pytest
import zarr

from pydantic import ValidationError

from segpipe.inference.normalize import Normalization, NormalizationSpec, channel_percentiles, normalize, stream_normalization

SPECS = [
    NormalizationSpec(method="percentile", low=1.0, high=99.8),
    NormalizationSpec(method="zscore", low=0.5, high=99.5),
    NormalizationSpec(method="zscore", low=0.5, high=99.5, nonzero=True),
    NormalizationSpec(method="ct", window=(-200.0, 900.0), mean=80.5, std=150.25),
]


@pytest.fixture
def stored(tmp_path):
    rng = np.random.default_rng(0)
    image = np.stack([rng.gamma(2.0, 300.0, size=(23, 41, 37)), rng.normal(500, 120, size=(23, 41, 37))])
    image = np.clip(image, -1000, 60000).astype(np.int16)
    array = zarr.create_array(str(tmp_path / "img.zarr"), shape=image.shape, dtype=image.dtype, chunks=(2, 8, 16, 16))
    array[...] = image
    return image, array


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.method + ("-nonzero" if s.nonzero else ""))
def test_small_images_normalize_exactly_as_in_memory(stored, spec):
    image, array = stored
    image[:, :, :10] = 0  # a background of exactly 0 (nonzero z-scoring leaves it out)
    array[...] = image
    normalization = stream_normalization(array, spec)
    expected = normalize(image, spec)
    np.testing.assert_array_equal(normalization.apply(image), expected)
    window = (slice(None), slice(3, 11), slice(20, 41), slice(0, 9))
    np.testing.assert_array_equal(normalization.apply(np.asarray(array[window])), expected[window])
    assert Normalization.from_record(normalization.to_record()) == normalization


def test_large_channels_are_estimated_from_sampled_chunks(stored, tmp_path):
    """A fifth of the 4x4x4 chunks, drawn at random, give percentiles and moments within a few percent."""
    image, _ = stored
    array = zarr.create_array(str(tmp_path / "small_chunks.zarr"), shape=image.shape, dtype=image.dtype, chunks=(2, 4, 4, 4))
    array[...] = image
    options = {"exact_limit": 1000, "sample": 8000}
    exact = [np.percentile(image[c], (1.0, 99.8)) for c in range(2)]
    estimates = [channel_percentiles(array, c, (1.0, 99.8), **options) for c in range(2)]
    for (lo, hi), (elo, ehi) in zip(exact, estimates):
        assert (elo, ehi) != (lo, hi)  # a sample, not the whole channel
        assert abs(elo - lo) < 0.05 * (hi - lo) and abs(ehi - hi) < 0.05 * (hi - lo)
    assert estimates == [channel_percentiles(array, c, (1.0, 99.8), **options) for c in range(2)]
    zscore = stream_normalization(array, SPECS[1], **options)
    values = zscore.apply(image)
    assert np.all(np.abs(values.reshape(2, -1).mean(axis=1)) < 0.05)
    assert np.all(np.abs(values.reshape(2, -1).std(axis=1) - 1) < 0.05)


def test_unknown_or_incomplete_specs_are_refused():
    with pytest.raises(ValidationError, match="method"):
        NormalizationSpec(method="minmax")
    with pytest.raises(ValidationError, match="needs window, mean, std"):
        NormalizationSpec(method="ct")


def test_nonzero_zscore_measures_only_the_nonzero_voxels():
    tissue = np.array([10.0, 20.0, 30.0, 40.0])
    image = np.concatenate([np.zeros(12), tissue]).reshape(1, 4, 4)
    out = normalize(image, NormalizationSpec(method="zscore", low=0.0, high=100.0, nonzero=True))
    mean, std = 25.0, np.sqrt(125.0)  # of 10, 20, 30, 40
    np.testing.assert_allclose(out[0, 3], (tissue - mean) / std, rtol=1e-6)
    np.testing.assert_allclose(out[0, :3], (10.0 - mean) / std, rtol=1e-6)  # background clipped to the lowest tissue value
    whole = normalize(image, NormalizationSpec(method="zscore", low=0.0, high=100.0))
    np.testing.assert_allclose(whole[0, 3], (tissue - 6.25) / np.std(image), rtol=1e-6)  # every voxel counted


def test_nonzero_zscore_gives_a_tissue_the_same_values_whatever_background_a_crop_holds():
    """Two crops of one skull-stripped volume, one mostly background: the same tissue, the same input."""
    rng = np.random.default_rng(3)
    volume = np.zeros((1, 20, 20, 40), np.float32)
    volume[:, 4:16, 4:16, 4:24] = rng.normal(300.0, 40.0, size=(1, 12, 12, 20))
    crops = volume[..., :24], volume[..., 14:]  # 60% and 25% of their voxels are tissue
    for nonzero, same in ((True, True), (False, False)):
        spec = NormalizationSpec(method="zscore", low=0.0, high=100.0, nonzero=nonzero)
        first, second = (normalize(crop, spec) for crop in crops)
        tissue = volume[..., 14:24] != 0
        shared_first, shared_second = first[..., 14:24][tissue], second[..., :10][tissue]
        assert np.allclose(shared_first, shared_second, atol=0.05) is same

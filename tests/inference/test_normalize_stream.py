"""Streaming normalization: bit-identical to normalize() on images read whole, close on estimates."""

import numpy as np
import pytest
import zarr

from pydantic import ValidationError

from segpipe.inference.normalize import (
    Normalization,
    NormalizationSpec,
    channel_percentiles,
    intensity_percentiles,
    normalize,
    stream_normalization,
)

SPECS = [
    NormalizationSpec(method="percentile", low=1.0, high=99.8),
    NormalizationSpec(method="percentile", low=1.0, high=99.8, skip_fill=True),
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


def _spec_id(spec: NormalizationSpec) -> str:
    return spec.method + ("-nonzero" if spec.nonzero else "") + ("-skip-fill" if spec.skip_fill else "")


@pytest.mark.parametrize("spec", SPECS, ids=_spec_id)
def test_small_images_normalize_exactly_as_in_memory(stored, spec):
    image, array = stored
    image[:, :, :10] = 0  # a background of exactly 0 (nonzero z-scoring and skip_fill leave it out)
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
    zscore = stream_normalization(array, SPECS[2], **options)
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


def _mosaic(rng, *, fill_share: float) -> tuple[np.ndarray, np.ndarray]:
    """A noisy field (background 100, a few bright cells) and the same field with zero fill beside it."""
    field = rng.normal(100.0, 5.0, size=(60, 60))
    for y, x in ((15, 15), (40, 20), (30, 45)):
        field[y - 5 : y + 5, x - 5 : x + 5] += 900.0
    width = int(round(60 * fill_share / (1 - fill_share)))
    return field, np.concatenate([field, np.zeros((60, width))], axis=1)


@pytest.mark.parametrize("fill_share", [0.2, 0.5, 0.9])
def test_percentiles_outside_the_fill_are_the_fields_own(fill_share):
    """However much zero fill a mosaic holds, its percentiles outside the fill are those of the field
    alone (numpy on the field); over every pixel the fill becomes the low percentile."""
    field, mosaic = _mosaic(np.random.default_rng(0), fill_share=fill_share)
    alone = [float(v) for v in np.percentile(field, (1.0, 99.8))]
    assert intensity_percentiles(mosaic, (1.0, 99.8), skip_fill=True) == alone
    assert intensity_percentiles(mosaic, (1.0, 99.8))[0] == 0.0  # more fill than 1%: the fill sets the floor
    spec = NormalizationSpec(method="percentile", low=1.0, high=99.8, skip_fill=True)
    np.testing.assert_array_equal(normalize(mosaic[None], spec)[0, :, :60], normalize(field[None], spec)[0])


def test_fill_far_below_the_background_reads_as_the_floor():
    """A camera's offset (100) under the field, fill at 0: the fill normalizes to 0 as the background
    does, and so does everything below the low percentile; over every pixel the background is lifted to 0.18."""
    field, mosaic = _mosaic(np.random.default_rng(1), fill_share=0.5)
    mosaic[:, :60] += 100.0
    skip = normalize(mosaic[None], NormalizationSpec(method="percentile", low=1.0, high=99.8, skip_fill=True))[0]
    lo, hi = np.percentile(field + 100.0, (1.0, 99.8))
    assert np.all(skip[:, 60:] == 0.0)  # the fill
    below = mosaic[:, :60] < lo
    assert below.sum() == 36 and np.all(skip[:, :60][below] == 0.0)  # 1% of the field's 3,600 pixels
    np.testing.assert_allclose(skip[:, :60][~below], (mosaic[:, :60][~below] - lo) / (hi - lo), rtol=1e-5, atol=1e-6)
    every = normalize(mosaic[None], NormalizationSpec(method="percentile", low=1.0, high=99.8))[0]
    assert every[:, 60:].max() == 0.0 and np.percentile(every[:, :60], 1.0) > 0.15  # the background lifted


def test_a_constant_channel_keeps_its_value_as_both_percentiles():
    """A channel that is all fill (a missing nuclear stain) is measured whole: both percentiles are its value."""
    assert intensity_percentiles(np.full((20, 20), 7.0), (1.0, 99.8), skip_fill=True) == [7.0, 7.0]


def test_large_channels_leave_out_the_fill_of_each_sampled_chunk(tmp_path):
    """Drawn chunks lose their fill, chunks wholly of fill are dropped: the estimate is the field's."""
    rng = np.random.default_rng(2)
    field, mosaic = _mosaic(rng, fill_share=0.5)
    image = mosaic[None].astype(np.float32)
    array = zarr.create_array(str(tmp_path / "mosaic.zarr"), shape=image.shape, dtype=image.dtype, chunks=(1, 10, 10))
    array[...] = image
    options = {"exact_limit": 1000, "sample": 2000}
    lo, hi = np.percentile(field, (1.0, 99.8))
    elo, ehi = channel_percentiles(array, 0, (1.0, 99.8), skip_fill=True, **options)
    assert abs(elo - lo) < 0.02 * (hi - lo) and abs(ehi - hi) < 0.05 * (hi - lo)
    assert channel_percentiles(array, 0, (1.0, 99.8), **options)[0] == 0.0
    constant = zarr.create_array(str(tmp_path / "constant.zarr"), shape=(1, 40, 40), dtype=np.float32, chunks=(1, 10, 10))
    constant[...] = 5.0
    assert channel_percentiles(constant, 0, (1.0, 99.8), skip_fill=True, **options) == [5.0, 5.0]


def test_a_noise_free_image_of_two_levels_is_measured_whole(tmp_path):
    """Background 20 and disks at 220, no noise: the even background reads as fill, and the disks
    alone would give equal percentiles (a flat channel, labelled nothing); the channel is measured
    whole instead, in memory and from sampled chunks."""
    yy, xx = np.mgrid[:80, :80]
    image = np.where((yy % 20 - 10) ** 2 + (xx % 20 - 10) ** 2 < 36, 220.0, 20.0).astype(np.float32)
    assert intensity_percentiles(image, (1.0, 99.8), skip_fill=True) == [20.0, 220.0]
    stray = image.copy()
    stray[10, 10] = 221.0  # one pixel off inside a disk: the percentiles outside the fill still equal
    assert intensity_percentiles(stray, (1.0, 99.8), skip_fill=True) == [20.0, 220.0]
    array = zarr.create_array(str(tmp_path / "disks.zarr"), shape=(1, 80, 80), dtype=np.float32, chunks=(1, 20, 20))
    array[...] = image[None]
    assert channel_percentiles(array, 0, (1.0, 99.8), skip_fill=True, exact_limit=100, sample=1600) == [20.0, 220.0]


def test_zero_share_counts_voxels_zero_in_every_channel_and_estimates_it_from_chunks():
    from segpipe.inference.normalize import zero_share

    rng = np.random.default_rng(0)
    image = rng.uniform(1, 2, (2, 40, 64, 64)).astype(np.float32)
    image[:, :, :16] = 0  # a quarter of the volume is background in both channels
    image[0, :, 16:24] = 0  # zero in one channel only: not background
    assert zero_share(image) == 0.25
    stored = zarr.create_array({}, shape=image.shape, chunks=(1, 8, 16, 16), dtype=image.dtype)
    stored[:] = image
    assert abs(zero_share(stored, voxels=1 << 14) - 0.25) < 0.1 and zero_share(stored, voxels=1 << 30) == 0.25


def test_only_a_model_measuring_nonzero_voxels_is_warned_of_a_background_that_is_not_zero():
    """A skull-stripped MRI's background is 0 and left out of the statistics; the same scan
    shifted by 100 has none at 0 and was scaled otherwise, silently (grey matter Dice 0.91 -> 0.79)."""
    from segpipe.inference.normalize import background_not_zero

    scan = np.zeros((1, 20, 30, 30), np.float32)
    scan[:, 5:15, 8:22, 8:22] = 50
    nonzero, plain = SPECS[3], SPECS[2]
    assert background_not_zero(scan, nonzero) is None and background_not_zero(scan + 100, nonzero) == 0.0
    assert background_not_zero(scan + 100, plain) is None and background_not_zero(scan + 100, SPECS[0]) is None


def test_an_image_of_another_number_type_is_scaled_without_the_training_floor():
    """A 16-bit-trained floor of 200 divided a 0..1 float image by 200 (all of it read as nearly 0);
    it now scales by its own range, as the same image in 16 bits is, and a dim 16-bit field keeps the floor."""
    from segpipe.inference.normalize import NormalizationSpec, for_image, normalize, stream_normalization

    rng = np.random.default_rng(0)
    counts = rng.integers(100, 900, size=(1, 64, 64)).astype(np.uint16)
    floats = (counts / 65535.0).astype(np.float32)
    spec = NormalizationSpec(method="percentile", low=1.0, high=99.8, min_range=(200.0,), floor_for="uint16")
    assert for_image(spec, np.float32).min_range is None and for_image(spec, np.uint16) is spec
    assert for_image(spec, np.uint8).min_range is None and for_image(spec, np.int32) is spec  # 8-bit: another scale
    np.testing.assert_allclose(normalize(floats, spec), normalize(counts, spec), atol=1e-4)
    np.testing.assert_allclose(stream_normalization(floats, spec).apply(floats), normalize(counts, spec), atol=1e-4)
    dim = (counts // 10).astype(np.uint16)  # a range of about 80, under the floor: divided by 200
    lo = np.percentile(dim, 1.0)
    np.testing.assert_allclose(normalize(dim, spec), (dim - lo) / 200.0, atol=1e-5)
    anyone = spec.model_copy(update={"floor_for": None})  # a card without the field: the floor for every image
    assert float(normalize(floats, anyone).max()) < 0.01

"""Streamed resampling: scipy.ndimage.zoom's numbers (grid mode, nearest edges), slab by slab, in bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from segpipe.inference.resample import resample, resampled_shape


def zoomed(array: np.ndarray, shape, *, order: int) -> np.ndarray:
    """scipy's answer: ``array`` zoomed to ``shape`` with pixel centres aligned (``grid_mode=True``)."""
    factors = [n_out / n_in for n_in, n_out in zip(array.shape, shape)]
    out = ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True)
    assert out.shape == tuple(shape)
    return out


def resampled(source, shape, *, order: int = 1, dtype=np.float64, **kwargs) -> np.ndarray:
    target = np.full(shape, np.nan if np.dtype(dtype).kind == "f" else 0, dtype=dtype)
    resample(source, target, order=order, **kwargs)
    return target


CASES = [
    # (source shape (C, [lead,] spatial), spatial axes, target spatial shape)
    ((1, 37, 53), 2, (18, 106)),  # y halved, x doubled
    ((2, 40, 30), 2, (99, 7)),  # channels; odd factors, strong down
    ((1, 16, 16), 2, (16, 40)),  # one axis unchanged
    ((1, 9, 20, 17), 3, (36, 10, 8)),  # anisotropic 3D: z x4, y and x x0.5
    ((2, 6, 11, 13), 3, (5, 23, 13)),
    ((1, 3, 20, 24), 2, (31, 12)),  # a leading frame axis (2D+t)
]


@pytest.mark.parametrize("order", [1, 0])
@pytest.mark.parametrize("slab_voxels", [1, 150, 1 << 22], ids=["row", "slabs", "whole"])
@pytest.mark.parametrize(("shape", "ndim", "out"), CASES, ids=[f"{c[0]}->{c[2]}" for c in CASES])
def test_equals_scipy_zoom(shape, ndim, out, order, slab_voxels):
    rng = np.random.default_rng(0)
    image = rng.normal(size=shape)
    target_shape = (*shape[: len(shape) - ndim], *out)
    expected = zoomed(image, target_shape, order=order)
    ours = resampled(image, target_shape, order=order, ndim=ndim, slab_voxels=slab_voxels)
    if order == 0:
        np.testing.assert_array_equal(ours, expected)
    else:
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("order", [1, 0])
def test_a_zarr_source_with_small_chunks_into_a_zarr_target(tmp_path, order):
    """uint16 read chunk by chunk, float32 arithmetic; the target's chunks set whole-chunk slabs."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 4000, size=(2, 13, 30, 21)).astype(np.uint16)
    source = zarr.create_array(str(tmp_path / "in.zarr"), shape=image.shape, dtype=np.uint16, chunks=(1, 4, 7, 5))
    source[...] = image
    out = (2, 50, 12, 40)
    target = zarr.create_array(str(tmp_path / "out.zarr"), shape=out, dtype=np.float32, chunks=(2, 8, 8, 16))
    stats = resample(source, target, order=order, slab_voxels=2 * 8 * 12 * 40 * 2)
    assert stats.slabs == 4 and stats.written_voxels == 2 * 16 * 12 * 40  # two chunk rows a slab
    expected = zoomed(image.astype(np.float64), out, order=order)
    np.testing.assert_allclose(target[...], expected, rtol=1e-6, atol=1e-6 * 4000)
    if order == 0:
        np.testing.assert_array_equal(target[...], expected.astype(np.float32))


def test_integer_targets_are_rounded():
    """Interpolated values land in integer targets rounded half away from zero, as scipy writes them."""
    image = np.array([[[0, 3, 10, 7, 1, 0, 5]]], dtype=np.int32)
    expected = ndimage.zoom(image, (1, 1, 15 / 7), order=1, mode="nearest", grid_mode=True)
    np.testing.assert_array_equal(resampled(image, (1, 1, 15), dtype=np.int32), expected)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 12), st.integers(1, 25)), min_size=2, max_size=3),
    st.sampled_from([0, 1]),
    st.integers(1, 400),
)
def test_any_sizes_and_slabs(sizes, order, slab_voxels):
    shape = tuple(n for n, _ in sizes)
    out = tuple(m for _, m in sizes)
    image = np.random.default_rng(len(shape)).normal(size=(1, *shape))
    ours = resampled(image, (1, *out), order=order, slab_voxels=slab_voxels)
    np.testing.assert_allclose(ours, zoomed(image, (1, *out), order=order), rtol=0, atol=1e-12)


def test_equal_spacings_copy_the_image():
    image = np.random.default_rng(2).integers(0, 255, size=(1, 2, 17, 19)).astype(np.uint8)
    shape = resampled_shape(image.shape[2:], (0.65, 0.65), (0.65, 0.65))
    assert shape == (17, 19)
    np.testing.assert_array_equal(resampled(image, (1, 2, *shape), dtype=np.uint8, ndim=2, slab_voxels=40), image)


def test_resampled_shape_rounds_to_nearest_and_keeps_a_pixel():
    assert resampled_shape((40, 40), (0.5, 0.5), (1.0, 1.0)) == (20, 20)
    assert resampled_shape((12, 64, 64), (2.0, 0.5, 0.5), (1.0, 1.0, 1.0)) == (24, 32, 32)
    assert resampled_shape((5, 7), (1.0, 1.0), (2.0, 2.0)) == (3, 4)  # 2.5 -> 3, 3.5 -> 4
    assert resampled_shape((3,), (1.0,), (10.0,)) == (1,)
    with pytest.raises(ValueError, match="positive"):
        resampled_shape((3,), (0.0,), (1.0,))


class Counting:
    """An array that records the size of every block read from it or written to it."""

    def __init__(self, array: np.ndarray):
        self.array, self.shape, self.ndim, self.dtype = array, array.shape, array.ndim, array.dtype
        self.reads: list[int] = []
        self.writes: list[int] = []

    def __getitem__(self, key):
        block = self.array[key]
        self.reads.append(block.size)
        return block

    def __setitem__(self, key, values):
        self.writes.append(np.asarray(values).size)
        self.array[key] = values


@pytest.mark.parametrize(("shape", "out"), [((1, 240, 180), (480, 90)), ((1, 120, 30, 30), (30, 60, 60))], ids=["2d", "3d"])
def test_memory_is_bounded_by_a_slab(shape, out):
    """Each slab reads only the input rows it needs and writes about ``slab_voxels`` values."""
    image = np.random.default_rng(3).random(shape, dtype=np.float32)
    source = Counting(image)
    target = Counting(np.zeros((1, *out), np.float32))
    plane = int(np.prod(out[1:]))
    stats = resample(source, target, slab_voxels=2 * plane + plane // 2)  # two output rows a slab
    assert max(target.writes) == stats.written_voxels == 2 * plane
    assert max(source.reads) == stats.read_voxels
    rows = int(np.ceil(shape[1] / out[0])) + 2  # the input rows between two output rows' centres, and their neighbours
    assert stats.read_voxels <= rows * image[0, 0].size
    assert stats.read_voxels < image.size / 15 and stats.written_voxels < np.prod(out) / 10
    assert sum(target.writes) == np.prod(out)
    np.testing.assert_allclose(target.array, zoomed(image.astype(np.float64), (1, *out), order=1), atol=1e-6)


def test_shapes_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="channels and frames must agree"):
        resample(np.zeros((2, 5, 5)), np.zeros((1, 5, 5)))
    with pytest.raises(ValueError, match="channels and frames must agree"):
        resample(np.zeros((1, 3, 5, 5)), np.zeros((1, 4, 5, 5)), ndim=2)
    with pytest.raises(ValueError, match="order"):
        resample(np.zeros((1, 5)), np.zeros((1, 5)), order=3)

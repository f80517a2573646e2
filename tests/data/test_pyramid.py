"""Pyramid levels: which levels an image gets, averaging and picking, and streamed levels equal to levels made whole."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from segpipe.data.pyramid import (
    Beside,
    LevelWriter,
    average,
    build_levels,
    chain,
    downsample_all,
    level_factors,
    level_shape,
    pick,
    steps_between,
)
from segpipe.data import pyramid
from segpipe.data.store import create_levels


@pytest.mark.parametrize(
    ("shape", "spacing", "levels", "expected"),
    [
        ((1000, 600), (1, 1), None, [(1, 1), (2, 2), (4, 4)]),  # 1000x600 -> 500x300 -> 250x150
        ((256, 4000), (1, 1), None, [(1, 1)]),  # the smaller side is already 256
        ((1000, 600), (1, 1), 1, [(1, 1)]),  # pyramid off
        ((1000, 600), (1, 1), 2, [(1, 1), (2, 2)]),
        ((100, 1024, 1024), (1, 1, 1), None, [(1, 1, 1), (2, 2, 2), (4, 4, 4)]),  # isotropic: z halves too
        ((30, 1024, 1024), (4, 1, 1), None, [(1, 1, 1), (1, 2, 2), (1, 4, 4)]),  # z 4x coarser: kept
        # z 2x coarser: kept until y/x reach 2, then halved with them (2 <= sqrt(2) * 2)
        ((64, 2048, 2048), (2, 1, 1), None, [(1, 1, 1), (1, 2, 2), (2, 4, 4), (4, 8, 8)]),
        ((1, 1024, 1024), (1, 1, 1), None, [(1, 1, 1), (1, 2, 2), (1, 4, 4)]),  # one plane: never halved
    ],
)
def test_level_factors(shape, spacing, levels, expected):
    assert level_factors(shape, spacing, levels=levels) == expected


def test_average_by_hand_odd_sides_and_rounding():
    block = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.uint8)
    # blocks: (1+2+4+5)/4 = 3; (3+3+6+6)/4 = 4.5 -> 4 (round half to even); (7+8+7+8)/4 = 7.5 -> 8; 9
    np.testing.assert_array_equal(average(block, (2, 2)), [[3, 4], [8, 9]])
    assert average(block, (2, 2)).dtype == np.uint8
    floats = np.array([[0.0, 1.0], [2.0, 5.0]], dtype=np.float32)
    np.testing.assert_allclose(average(floats, (2, 2)), [[2.0]])
    np.testing.assert_allclose(average(floats, (1, 2)), [[0.5], [3.5]])  # only x halved


def test_average_keeps_leading_axes_and_saturates_nothing():
    block = np.full((2, 4, 4), 65535, dtype=np.uint16)
    block[1] = 0
    out = average(block, (2, 2))
    assert out.shape == (2, 2, 2)
    assert (out[0] == 65535).all() and (out[1] == 0).all()


def test_pick_takes_existing_labels_only():
    labels = np.array([[1, 0, 2], [0, 3, 0], [4, 0, 5]], dtype=np.uint32)
    np.testing.assert_array_equal(pick(labels, (2, 2)), [[1, 2], [4, 5]])


def _level_arrays(root, base_shape, lead, factors, chunks, dtype):
    arrays = []
    for i, factor in enumerate(factors[1:], start=1):
        shape = lead + level_shape(base_shape, factor)
        arrays.append(root.create_array(f"s{i}", shape=shape, dtype=dtype, chunks=tuple(min(c, s) for c, s in zip(chunks, shape))))
    return arrays


@pytest.mark.parametrize(
    ("shape", "factors", "depth"),
    [
        ((2, 37, 45), [(1, 1), (2, 2), (4, 4), (8, 8)], 5),  # odd sides, odd slab depth
        ((2, 37, 45), [(1, 1), (2, 2)], 16),
        ((1, 11, 19, 23), [(1, 1, 1), (1, 2, 2), (2, 4, 4)], 3),  # z kept, then halved
    ],
)
@pytest.mark.parametrize("kind", ["image", "labels"])
@pytest.mark.parametrize("piece_bytes", [4 * 2**20, 300], ids=["whole", "in-pieces"])
@pytest.mark.parametrize("beside", [False, True], ids=["inline", "own-thread"])
def test_streamed_levels_equal_levels_made_whole(tmp_path, monkeypatch, shape, factors, depth, kind, piece_bytes, beside):
    monkeypatch.setattr(pyramid, "PIECE_BYTES", piece_bytes)  # 300 bytes: a piece is one or two rows
    rng = np.random.default_rng(0)
    ndim = len(factors[0])
    if kind == "image":
        data, reduce, lead = rng.integers(0, 4000, shape).astype(np.uint16), average, shape[:1]
    else:
        data, reduce, lead = rng.integers(0, 50, shape[1:]).astype(np.uint32), pick, ()
    spatial = data.shape[len(lead):]
    root = zarr.open_group(str(tmp_path / "p.zarr"), mode="w")
    chunks = lead + (depth,) + tuple(spatial[1:])
    arrays = _level_arrays(root, spatial, lead, factors, chunks, data.dtype)
    writer = chain(arrays, steps_between(factors), reduce=reduce, ndim=ndim)
    writer = Beside(writer) if beside else writer
    axis = len(lead)
    for start in range(0, spatial[0], depth):  # slabs, as ingest writes them
        writer.push(np.take(data, range(start, min(start + depth, spatial[0])), axis=axis))
    writer.close()
    for array, expected in zip(arrays, downsample_all(data, factors, reduce)):
        np.testing.assert_array_equal(array[...], expected)


def test_level_writer_writes_whole_chunk_rows_only_until_closed(tmp_path):
    root = zarr.open_group(str(tmp_path / "w.zarr"), mode="w")
    target = root.create_array("s1", shape=(20, 8), dtype=np.uint8, chunks=(4, 8), fill_value=255)
    writer = LevelWriter(target, steps=(2, 2), reduce=pick, ndim=2)
    writer.push(np.zeros((11, 16), np.uint8))  # 10 rows reduce to 5: one chunk row written, 1 row held, 1 pending
    assert (target[:4] == 0).all() and (target[4:] == 255).all()
    writer.push(np.zeros((29, 16), np.uint8))
    writer.close()
    assert (target[...] == 0).all()


def test_an_error_in_the_levels_thread_reaches_the_caller(tmp_path):
    root = zarr.open_group(str(tmp_path / "e.zarr"), mode="w")
    target = root.create_array("s1", shape=(8, 4), dtype=np.uint8, chunks=(2, 4))

    def failing(block, steps):
        raise MemoryError("no room for the level")

    writer = Beside(LevelWriter(target, steps=(2, 2), reduce=failing, ndim=2))
    writer.push(np.zeros((4, 8), np.uint8))
    with pytest.raises(MemoryError, match="no room"):
        writer.push(np.zeros((4, 8), np.uint8))  # the first push's error, at the next call
    writer.close()


def test_build_levels_after_the_fact_per_frame(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.random((2, 3, 9, 21, 17)).astype(np.float32)  # t, c, z, y, x
    root = zarr.open_group(str(tmp_path / "b.zarr"), mode="w")
    base = root.create_array("s0", data=data, chunks=(1, 3, 4, 21, 17), dimension_names=["t", "c", "z", "y", "x"])
    factors = [(1, 1, 1), (2, 2, 2), (2, 4, 4)]
    arrays = create_levels(root, base, factors, ndim=3)
    build_levels(base, arrays, steps_between(factors), reduce=average, ndim=3)
    for t in range(2):
        for array, expected in zip(arrays, downsample_all(data[t], factors, average)):
            np.testing.assert_allclose(array[t], expected, rtol=1e-6)

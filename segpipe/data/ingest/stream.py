"""Copy a source into a zarr array one slab (row of chunks) at a time.

A slab spans the chunk depth of the array's first spatial axis (``z`` in 3D, ``y`` in 2D) and
all of the others, so each chunk is written once, whole. While one slab is compressed and
written (zarr compresses chunks in its own threads), the next is read, so reading and writing
overlap and memory holds about three slabs, whatever the image size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import zarr

from segpipe.data.readers.source import Window

ReadFn = Callable[[Window], np.ndarray]
BlockFn = Callable[[np.ndarray, tuple[int, ...]], np.ndarray | None]


def slab_windows(window: Window, *, ndim: int, depth: int) -> Iterator[tuple[Window, int]]:
    """Sub-windows of ``window`` along its first spatial axis (of ``ndim``), ``depth`` at a time.

    Yields:
        The sub-window (absolute, in the source) and its start relative to ``window``.
    """
    axis = 3 - ndim  # z in 3D, y in 2D
    bounds = window[axis]
    for start in range(bounds.start, bounds.stop, depth):
        sub = list(window)
        sub[axis] = slice(start, min(start + depth, bounds.stop))
        yield tuple(sub), start - bounds.start  # type: ignore[misc]


def stream_copy(
    read: ReadFn,
    array: zarr.Array,
    *,
    window: Window,
    ndim: int,
    channels: bool,
    on_block: BlockFn | None = None,
    prefetch: bool = True,
) -> None:
    """Fill ``array`` from ``read`` slab by slab.

    Args:
        read: Returns a ``(C, z, y, x)`` block for a source window.
        array: Destination, ``(C, [z,] y, x)`` if ``channels`` else ``([z,] y, x)``, shaped like
            ``window``.
        window: Concrete ``(z, y, x)`` slices of the source to copy.
        ndim: Spatial dimensions of ``array``.
        channels: Whether ``array`` has a leading channel axis.
        on_block: Called with each block (as it will be written) and its offset in ``array``;
            may check it, and may return a replacement (e.g. cast labels).
        prefetch: Read the next slab in a second thread while writing the current one.
    """
    depth = array.chunks[1 if channels else 0]
    lead = (slice(None),) if channels else ()
    axis_in_array = len(lead)

    def load(sub: Window) -> np.ndarray:
        block = read(sub)
        if ndim == 2:
            block = block[:, 0]
        return block if channels else block[0]

    slabs = list(slab_windows(window, ndim=ndim, depth=depth))
    prefetch = prefetch and len(slabs) > 1  # nothing to overlap with a single slab
    with ThreadPoolExecutor(max_workers=1) if prefetch else contextlib.nullcontext() as pool:
        pending = pool.submit(load, slabs[0][0]) if prefetch else None
        for i, (sub, start) in enumerate(slabs):
            block = pending.result() if pending is not None else load(sub)
            if prefetch and i + 1 < len(slabs):
                pending = pool.submit(load, slabs[i + 1][0])
            offset = [0] * array.ndim
            offset[axis_in_array] = start
            if on_block is not None:
                replaced = on_block(block, tuple(offset))
                block = block if replaced is None else replaced
            index = list(lead) + [slice(None)] * ndim
            index[axis_in_array] = slice(start, start + block.shape[axis_in_array])
            array[tuple(index)] = block
            del block

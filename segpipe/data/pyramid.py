"""Multiscale pyramids: which levels an image gets, and how they are computed with bounded memory.

Each level halves the one before along y and x, and along z too when z is not much coarser
than y/x (its spacing at most √2 times theirs: halving then keeps voxels closest to cubes);
levels are added while the smaller in-plane side of the last one is above ``min_size``.

Images are downsampled by averaging 2x2 (2x2x2) blocks, the last row of an odd side averaged
with itself; label maps by taking every second voxel, so no label value is invented and no
object shifts. :class:`LevelWriter` computes the levels from rows of the full-resolution level
as they are written (rows along the first spatial axis, in order), each level written in
whole chunk rows: memory holds about one chunk row per level, whatever the image size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import zarr

MIN_SIZE = 256
#: Rows are reduced in pieces of about this many bytes, so the float copies averaging makes stay small.
PIECE_BYTES = 4 * 1024 * 1024

Reduce = Callable[[np.ndarray, Sequence[int]], np.ndarray]


def level_factors(
    shape: Sequence[int], spacing: Sequence[float], *, levels: int | None = None, min_size: int = MIN_SIZE
) -> list[tuple[int, ...]]:
    """Downsampling factor of every level against the full resolution, per spatial axis.

    Args:
        shape: Spatial shape, ``([z,] y, x)``.
        spacing: Pixel size per spatial axis.
        levels: Most levels (``1``: the full resolution only); ``None``: no limit but the size.
        min_size: No level is made from one whose smaller in-plane side is this or less.

    Returns:
        ``[(1, 1[, 1]), ...]``: level 0 first.
    """
    ndim = len(shape)
    factors = [(1,) * ndim]
    while levels is None or len(factors) < levels:
        current = factors[-1]
        sizes = level_shape(shape, current)
        if min(sizes[-2:]) <= min_size:
            break
        step = [1] * (ndim - 2) + [2, 2]
        if ndim == 3 and sizes[0] > 1:
            plane = min(spacing[1] * current[1], spacing[2] * current[2])
            step[0] = 2 if spacing[0] * current[0] <= math.sqrt(2) * plane else 1
        factors.append(tuple(f * s for f, s in zip(current, step)))
    return factors


def level_shape(shape: Sequence[int], factors: Sequence[int]) -> tuple[int, ...]:
    """Spatial shape of the level with ``factors`` (odd sides round up)."""
    return tuple(-(-int(s) // int(f)) for s, f in zip(shape, factors))


def steps_between(factors: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Per-axis step (1 or 2) from each level to the next."""
    return [tuple(b // a for a, b in zip(upper, lower)) for upper, lower in zip(factors, factors[1:])]


def average(block: np.ndarray, steps: Sequence[int]) -> np.ndarray:
    """Mean of blocks of ``steps`` (1 or 2 per axis) over the last ``len(steps)`` axes, in ``block``'s dtype.

    An odd side's last row is averaged with itself. Integers are rounded to the nearest value.
    Sums run in float32 for 8- and 16-bit integers (exact: at most 8 values of 65535), in
    float64 otherwise; the first halving casts only half the block.
    """
    lead = block.ndim - len(steps)
    work = np.float32 if block.dtype.itemsize <= 2 and block.dtype.kind in "uib" else np.float64
    out = block
    for axis, step in enumerate(steps, start=lead):
        if step == 1:
            continue
        if out.shape[axis] % 2:
            out = np.concatenate([out, np.take(out, [out.shape[axis] - 1], axis=axis)], axis=axis)
        even = out[(slice(None),) * axis + (slice(0, None, 2),)]
        odd = out[(slice(None),) * axis + (slice(1, None, 2),)]
        summed = even.astype(work)
        np.add(summed, odd, out=summed)
        out = summed
    if out is block:
        return block.copy()
    out *= 1.0 / math.prod(steps)
    if block.dtype.kind in "uib":
        np.rint(out, out=out)
        if block.dtype.kind != "b":
            info = np.iinfo(block.dtype)
            np.clip(out, info.min, info.max, out=out)
    return out.astype(block.dtype, copy=False)


def pick(block: np.ndarray, steps: Sequence[int]) -> np.ndarray:
    """Every ``step``-th value from the first along the last ``len(steps)`` axes (for label maps)."""
    lead = block.ndim - len(steps)
    return np.ascontiguousarray(block[(slice(None),) * lead + tuple(slice(0, None, s) for s in steps)])


def downsample_all(array: np.ndarray, factors: Sequence[Sequence[int]], reduce: Reduce) -> list[np.ndarray]:
    """Every level below the first of an in-memory array, each made from the one before."""
    levels, current = [], array
    for steps in steps_between(factors):
        current = reduce(current, steps)
        levels.append(current)
    return levels


class LevelWriter:
    """Writes one pyramid level from consecutive rows of the level above it, and feeds the next.

    Rows arrive along the first spatial axis, in order, through :meth:`push`; an odd row is held
    until the next push (or :meth:`close`) pairs it. Reduced rows are written in whole chunk rows
    of ``array`` (the last one at :meth:`close`) and passed on to ``below``.

    Args:
        array: This level's array.
        steps: Step from the level above, per spatial axis.
        reduce: :func:`average` (images) or :func:`pick` (labels).
        ndim: Spatial axes (the last ones of every block).
        prefix: Index of the leading axes this writer fills (a frame of a time series), ``()`` for all.
        below: The writer of the next level, if any.
    """

    def __init__(
        self,
        array: zarr.Array,
        *,
        steps: Sequence[int],
        reduce: Reduce,
        ndim: int,
        prefix: tuple[int, ...] = (),
        below: LevelWriter | None = None,
    ):
        self.array, self.steps, self.reduce, self.prefix, self.below = array, tuple(steps), reduce, prefix, below
        self.axis = array.ndim - len(prefix) - ndim  # the first spatial axis, in a block
        self.depth = int(array.chunks[len(prefix) + self.axis])
        self.pending: np.ndarray | None = None
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.written = 0

    def push(self, rows: np.ndarray) -> None:
        """Take the next rows of the level above."""
        if self.pending is not None:
            rows = np.concatenate([self.pending, rows], axis=self.axis)
            self.pending = None
        keep = rows.shape[self.axis] % self.steps[0]
        if keep:
            self.pending = np.take(rows, range(rows.shape[self.axis] - keep, rows.shape[self.axis]), axis=self.axis)
            rows = np.take(rows, range(rows.shape[self.axis] - keep), axis=self.axis)
        if rows.shape[self.axis]:
            self._emit(self._reduce(rows))

    def close(self) -> None:
        """Reduce the held row, write what is buffered and close the levels below."""
        if self.pending is not None:
            self._emit(self._reduce(self.pending))
            self.pending = None
        self._write(final=True)
        if self.below is not None:
            self.below.close()

    def _reduce(self, rows: np.ndarray) -> np.ndarray:
        """``reduce`` over ``rows`` in pieces of whole steps of about :data:`PIECE_BYTES`."""
        n = rows.shape[self.axis]
        step = self.steps[0]
        piece = max(step, PIECE_BYTES // max(rows.nbytes // n, 1) // step * step)
        if piece >= n:
            return self.reduce(rows, self.steps)
        head = (slice(None),) * self.axis
        parts = [self.reduce(rows[(*head, slice(start, start + piece))], self.steps) for start in range(0, n, piece)]
        return np.concatenate(parts, axis=self.axis)

    def _emit(self, reduced: np.ndarray) -> None:
        self.buffer.append(reduced)
        self.buffered += reduced.shape[self.axis]
        if self.buffered >= self.depth:
            self._write(final=False)
        if self.below is not None:
            self.below.push(reduced)

    def _write(self, *, final: bool) -> None:
        if not self.buffer:
            return
        rows = np.concatenate(self.buffer, axis=self.axis) if len(self.buffer) > 1 else self.buffer[0]
        n = rows.shape[self.axis] if final else rows.shape[self.axis] // self.depth * self.depth
        head = (slice(None),) * self.axis
        self.array[(*self.prefix, *head, slice(self.written, self.written + n))] = rows[(*head, slice(0, n))]
        self.written += n
        rest = rows[(*head, slice(n, None))]
        self.buffer = [rest] if rest.shape[self.axis] else []
        self.buffered = rest.shape[self.axis]


class Beside:
    """A :class:`LevelWriter` fed from a thread of its own, so the levels are reduced and written
    while the caller writes the next full-resolution rows; one push in flight at a time (memory:
    one more block), in order. Errors surface at the next push or at :meth:`close`."""

    def __init__(self, writer: LevelWriter):
        self.writer = writer
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyramid")
        self.pending: Future | None = None

    def push(self, rows: np.ndarray) -> None:
        self._wait()
        self.pending = self.pool.submit(self.writer.push, rows)

    def close(self) -> None:
        try:
            self._wait()
            self.writer.close()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()


def chain(
    arrays: Sequence[zarr.Array], steps: Sequence[Sequence[int]], *, reduce: Reduce, ndim: int, prefix: tuple[int, ...] = ()
) -> LevelWriter | None:
    """Writers for ``arrays`` (levels 1, 2, ...), each fed by the one before; the first is returned."""
    writer = None
    for array, step in reversed(list(zip(arrays, steps))):
        writer = LevelWriter(array, steps=step, reduce=reduce, ndim=ndim, prefix=prefix, below=writer)
    return writer


def build_levels(
    base: zarr.Array, arrays: Sequence[zarr.Array], steps: Sequence[Sequence[int]], *, reduce: Reduce, ndim: int
) -> None:
    """Fill ``arrays`` from the written level ``base``, read one chunk row at a time (per frame of leading axes).

    ``base`` may have time axes (named ``t``) before its blocks; a channel axis stays in the
    blocks (it is never cut).
    """
    if not arrays:
        return
    writer = None
    for prefix, rows in chunk_rows(base, ndim):
        if rows.start == 0:
            if writer is not None:
                writer.close()
            writer = chain(arrays, steps, reduce=reduce, ndim=ndim, prefix=prefix)
        writer.push(np.asarray(base[(*prefix, *(slice(None),) * (base.ndim - ndim - len(prefix)), rows)]))
    if writer is not None:
        writer.close()


def chunk_rows(array: zarr.Array, ndim: int):
    """``(frame index, rows)`` covering ``array`` one chunk row of its first spatial axis at a time.

    The frame index holds the time axes (named ``t``) before the rest; ``rows`` is a slice of
    the first spatial axis, in order, starting at 0 for each frame.
    """
    frames = _frame_axes(array, ndim)
    axis = array.ndim - ndim
    depth = int(array.chunks[axis])
    for prefix in np.ndindex(*array.shape[:frames]):
        for start in range(0, array.shape[axis], depth):
            yield prefix, slice(start, min(start + depth, array.shape[axis]))


def _frame_axes(array: zarr.Array, ndim: int) -> int:
    """Leading axes to loop over: the ``t`` axes named in the array's dimension names."""
    names = getattr(array.metadata, "dimension_names", None) or ()
    return sum(1 for name in names[: array.ndim - ndim] if name == "t")

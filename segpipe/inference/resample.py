"""Resampling between pixel grids, slab by slab, with the numbers of ``scipy.ndimage.zoom``.

:func:`resample` reads a channel-first array ``(C, *lead, *spatial)`` (zarr or numpy) and writes
another with the same channel and leading (frame) axes and other spatial sizes, one slab of
output rows along the first spatial axis at a time. Memory is bounded by a slab of the output
(about ``slab_voxels`` values, at least one row) plus the input rows that slab needs and the
temporaries of one interpolation pass (each at most the size of the larger of the two).

Alignment is pixel centres, as ``scipy.ndimage.zoom(..., grid_mode=True, mode="nearest")``:
along an axis of ``n_in`` input and ``n_out`` output pixels, output pixel ``k`` is taken at input
coordinate ``(k + 0.5) * n_in / n_out - 0.5`` (the first and last pixels' outer edges meet),
clamped to ``[0, n_in - 1]`` (the edge pixels extend outwards). ``order=1`` interpolates
linearly between the two nearest input pixels, ``order=0`` takes the nearest one (ties go up,
``floor(x + 0.5)``, as scipy does). Both are separable, so they are applied one axis at a time,
the axes that shrink first; the result equals scipy's to float rounding (``float32`` arithmetic,
``float64`` for ``float64`` sources; ``order=0`` copies values exactly).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: Output values per slab by default (channels included): 16 MiB of float32.
SLAB_VOXELS = 1 << 22


#: Relative difference of pixel size, on any axis, from which an image goes to another grid
#: (prediction to the model's, training images to the one the model trains at).
SPACING_TOLERANCE = 0.01


def spacing_differs(spacing: Sequence[float], target: Sequence[float]) -> bool:
    """Whether ``spacing`` is more than :data:`SPACING_TOLERANCE` (relative) away from ``target`` on some axis."""
    return any(abs(s / t - 1.0) > SPACING_TOLERANCE for s, t in zip(spacing, target))


def resampled_shape(shape: Sequence[int], from_spacing: Sequence[float], to_spacing: Sequence[float]) -> tuple[int, ...]:
    """The size of ``shape`` pixels of ``from_spacing`` on a grid of ``to_spacing``: rounded to nearest, at least 1."""
    if not len(shape) == len(from_spacing) == len(to_spacing):
        raise ValueError(f"shape {tuple(shape)}, spacing {tuple(from_spacing)} and {tuple(to_spacing)} differ in length")
    if any(s <= 0 for s in (*from_spacing, *to_spacing)):
        raise ValueError(f"spacings must be positive, got {tuple(from_spacing)} and {tuple(to_spacing)}")
    return tuple(max(1, math.floor(n * f / t + 0.5)) for n, f, t in zip(shape, from_spacing, to_spacing))


@dataclass(frozen=True)
class AxisMap:
    """Where each output pixel of one axis reads: ``low`` (and ``high`` with ``weight`` of it, linear)."""

    low: np.ndarray
    high: np.ndarray | None = None
    weight: np.ndarray | None = None

    @property
    def identity(self) -> bool:
        return self.high is None and self.low.size == 0


def axis_map(n_in: int, n_out: int, order: int) -> AxisMap:
    """Input pixels and weights of every output pixel of an axis (``scipy.ndimage.zoom``'s, grid mode)."""
    if n_in == n_out:
        return AxisMap(np.zeros(0, np.int64))
    zoom = n_in / n_out  # float64, as scipy computes it
    centres = (np.arange(n_out, dtype=np.float64) + 0.5) * zoom - 0.5
    np.clip(centres, 0.0, n_in - 1, out=centres)
    if order == 0:
        return AxisMap(np.minimum(np.floor(centres + 0.5).astype(np.int64), n_in - 1))
    low = np.floor(centres).astype(np.int64)
    return AxisMap(low, np.minimum(low + 1, n_in - 1), centres - low)


@dataclass
class ResampleStats:
    """What a run did: slabs written, the largest block read and written (values), seconds."""

    slabs: int = 0
    read_voxels: int = 0
    written_voxels: int = 0
    seconds: float = 0.0


def resample(
    source,
    target,
    *,
    ndim: int | None = None,
    order: int = 1,
    slab_voxels: int = SLAB_VOXELS,
    on_rows: Callable[[tuple[int, ...], int], None] | None = None,
) -> ResampleStats:
    """Resample every frame of ``source`` onto ``target``'s grid, slab by slab.

    Args:
        source: ``(C, *lead, *spatial)`` zarr or numpy array (anything with ``shape`` and slicing).
        target: Array of the same ``C`` and ``lead`` and the output's spatial shape; written in
            slabs ``target[:, *frame, a:b] = values`` (cast to ``target.dtype``; integers rounded
            half away from zero and clipped to the type when interpolated). Slabs are whole
            multiples of its chunks' rows where a slab holds at least one chunk row.
        ndim: Spatial axes (the last ``ndim``); ``None``: every axis after the channels.
        order: 1 linear, 0 nearest.
        slab_voxels: Output values per slab (channels included); at least one row is written at a time.
        on_rows: Called as ``on_rows(frame, row)`` after the output rows below ``row`` of ``frame`` are written.

    Returns:
        Slabs written and the largest blocks read and written.
    """
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (linear), got {order}")
    started = time.perf_counter()
    ndim = source.ndim - 1 if ndim is None else int(ndim)
    src, dst = tuple(int(s) for s in source.shape), tuple(int(s) for s in target.shape)
    lead_axes = len(src) - 1 - ndim
    if ndim < 1 or lead_axes < 0 or len(dst) != len(src) or dst[: 1 + lead_axes] != src[: 1 + lead_axes]:
        raise ValueError(f"cannot resample {src} onto {dst} with {ndim} spatial axes: channels and frames must agree")
    if any(n < 1 for n in src[1 + lead_axes :] + dst[1 + lead_axes :]):
        raise ValueError(f"cannot resample {src} onto {dst}: empty spatial axes")
    channels, lead = src[0], src[1 : 1 + lead_axes]
    shape_in, shape_out = src[1 + lead_axes :], dst[1 + lead_axes :]
    maps = [axis_map(n_in, n_out, order) for n_in, n_out in zip(shape_in, shape_out)]
    work = np.float64 if np.dtype(source.dtype) == np.float64 else np.float32
    rows = _slab_rows(channels * math.prod(shape_out[1:]), slab_voxels, target, 1 + lead_axes)
    stats = ResampleStats()
    for frame in (np.ndindex(*lead) if lead else [()]):
        for a in range(0, shape_out[0], rows):
            b = min(a + rows, shape_out[0])
            first = maps[0]
            if first.identity:
                lo, hi, local = a, b, None
            else:
                lo = int(first.low[a])
                hi = int((first.high if first.high is not None else first.low)[b - 1]) + 1
                local = AxisMap(
                    first.low[a:b] - lo,
                    None if first.high is None else first.high[a:b] - lo,
                    None if first.weight is None else first.weight[a:b],
                )
            block = np.asarray(source[(slice(None), *frame, slice(lo, hi))])
            stats.read_voxels = max(stats.read_voxels, block.size)
            values = _interpolate(block, [local, *maps[1:]], work)
            target[(slice(None), *frame, slice(a, b))] = _cast(values, np.dtype(target.dtype), order)
            stats.written_voxels = max(stats.written_voxels, values.size)
            stats.slabs += 1
            del block, values
            if on_rows is not None:
                on_rows(tuple(frame), b)
    stats.seconds = time.perf_counter() - started
    return stats


def to_spacing(image: np.ndarray, spacing: Sequence[float], target: Sequence[float]) -> np.ndarray:
    """An in-memory channel-first ``image`` (float) at pixel size ``target``, linearly; returned
    unchanged when ``spacing`` is ``target`` within :data:`SPACING_TOLERANCE` (as prediction decides)."""
    if not spacing_differs(spacing, target):
        return image
    out = np.empty((image.shape[0], *resampled_shape(image.shape[1:], spacing, target)), np.float32)
    resample(image, out, order=1)
    return out


def _slab_rows(row_voxels: int, slab_voxels: int, target, axis: int) -> int:
    """Output rows per slab: ``slab_voxels`` worth, at least one, whole chunk rows of ``target`` where that fits."""
    rows = max(1, int(slab_voxels) // max(row_voxels, 1))
    chunks = getattr(target, "chunks", None)
    if chunks is not None and len(chunks) > axis:
        step = int(chunks[axis])
        if rows >= step:
            rows -= rows % step
    return rows


def _interpolate(block: np.ndarray, maps: Sequence[AxisMap | None], work) -> np.ndarray:
    """Apply each spatial axis' map to ``block`` (``(C, *spatial)``), the axes that shrink the most first."""
    spatial = block.ndim - len(maps)
    todo = [(axis, m) for axis, m in enumerate(maps) if m is not None and not m.identity]
    todo.sort(key=lambda item: item[1].low.size / block.shape[spatial + item[0]])
    out = block
    for axis, m in todo:
        out = _along(out, spatial + axis, m, work)
    return out


def _along(block: np.ndarray, axis: int, m: AxisMap, work) -> np.ndarray:
    low = np.take(block, m.low, axis=axis)
    if m.high is None:
        return low
    low = low.astype(work, copy=False)
    high = np.take(block, m.high, axis=axis).astype(work, copy=False)
    weight = m.weight.astype(work).reshape([-1 if a == axis else 1 for a in range(block.ndim)])
    np.subtract(high, low, out=high)
    np.multiply(high, weight, out=high)
    np.add(low, high, out=low)
    return low


def _cast(values: np.ndarray, dtype: np.dtype, order: int) -> np.ndarray:
    if values.dtype == dtype:
        return values
    if order and dtype.kind in "iu":  # as scipy writes integers: half away from zero (clipped to the type)
        info = np.iinfo(dtype)
        values = np.clip(np.trunc(values + np.copysign(0.5, values)), info.min, info.max)
    return values.astype(dtype)

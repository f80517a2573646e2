"""Per-object measurements of a label image: size, centroid and bounding box in physical units,
mean intensity per channel; the numbers scikit-image's ``regionprops_table`` gives, streamed.

Objects are measured slab by slab along the first spatial axis (the label image and its source
are read one slab at a time), by sums per label (``numpy.bincount``), so a volume larger than
memory is measured with memory bounded by a slab.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: Voxels read at a time.
SLAB_VOXELS = 1 << 24


def measure_objects(
    labels,
    image=None,
    *,
    spacing: Sequence[float],
    channel_names: Sequence[str] | None = None,
    slab_voxels: int = SLAB_VOXELS,
) -> dict[str, np.ndarray]:
    """Columns of one measurement row per object of ``labels`` (label order).

    Args:
        labels: Instance (or class) labels ``(*spatial)``, zarr or numpy; 0 is background.
        image: The image the labels were made from, ``(C, *spatial)``, for mean intensities.
        spacing: Physical size of a pixel along each spatial axis.
        channel_names: Names for the intensity columns (default ``0``, ``1``, ...).
        slab_voxels: Voxels per slab read.

    Returns:
        ``label``; ``area`` (2D) or ``volume`` (3D) in physical units (pixels times the pixel
        size); ``centroid-<axis>`` in physical units; ``bbox-<axis>-min`` and ``-max`` in
        pixels (``max`` exclusive, as scikit-image gives them); ``mean_intensity-<channel>``.
    """
    shape = tuple(int(s) for s in labels.shape)
    ndim = len(shape)
    axes = "zyx"[3 - ndim :]
    rows = max(1, slab_voxels // max(1, math.prod(shape[1:])))
    count = np.zeros(0, np.int64)
    sums = np.zeros((ndim, 0))
    low = np.zeros((ndim, 0), np.int64)
    high = np.zeros((ndim, 0), np.int64)
    channels = 0 if image is None else int(image.shape[0])
    intensity = np.zeros((channels, 0))
    for start in range(0, shape[0], rows):
        block = np.asarray(labels[start : start + rows]).astype(np.int64, copy=False)
        flat = block.ravel()
        top = int(flat.max(initial=0)) + 1
        if top > count.size:
            count, sums, low, high, intensity = _grow(count, sums, low, high, intensity, top)
        count += np.bincount(flat, minlength=count.size)
        coordinates = np.indices(block.shape, sparse=True)
        for axis in range(ndim):
            position = np.broadcast_to(coordinates[axis] + (start if axis == 0 else 0), block.shape).ravel()
            sums[axis] += np.bincount(flat, weights=position, minlength=count.size)
        for label, box in enumerate(ndimage.find_objects(block), start=1):
            if box is not None:
                offsets = [start] + [0] * (ndim - 1)
                for axis, (piece, offset) in enumerate(zip(box, offsets)):
                    low[axis, label] = min(low[axis, label], piece.start + offset)
                    high[axis, label] = max(high[axis, label], piece.stop + offset)
        if image is not None:
            pixels = np.asarray(image[(slice(None), slice(start, start + rows))], dtype=np.float64)
            for c in range(channels):
                intensity[c] += np.bincount(flat, weights=pixels[c].ravel(), minlength=count.size)
    ids = np.flatnonzero(count)
    ids = ids[ids > 0]
    n = count[ids].astype(np.float64)
    step = np.asarray(spacing, dtype=np.float64)
    out: dict[str, np.ndarray] = {"label": ids}
    out["area" if ndim == 2 else "volume"] = n * float(np.prod(step))
    for axis, name in enumerate(axes):
        out[f"centroid-{name}"] = sums[axis][ids] / n * step[axis]
    for axis, name in enumerate(axes):
        out[f"bbox-{name}-min"] = low[axis][ids]
        out[f"bbox-{name}-max"] = high[axis][ids]
    names = list(channel_names) if channel_names is not None else [str(c) for c in range(channels)]
    for c in range(channels):
        out[f"mean_intensity-{names[c]}"] = intensity[c][ids] / n
    return out


def _grow(count, sums, low, high, intensity, size: int):
    extra = size - count.size
    big = np.iinfo(np.int64).max
    return (
        np.concatenate([count, np.zeros(extra, np.int64)]),
        np.concatenate([sums, np.zeros((sums.shape[0], extra))], axis=1),
        np.concatenate([low, np.full((low.shape[0], extra), big, np.int64)], axis=1),
        np.concatenate([high, np.full((high.shape[0], extra), -1, np.int64)], axis=1),
        np.concatenate([intensity, np.zeros((intensity.shape[0], extra))], axis=1),
    )

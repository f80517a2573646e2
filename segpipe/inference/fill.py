"""Fill: where an image holds no measurement, only a flat patch at its least value.

The zero fill around a stitched mosaic or a deskewed volume, or a channel clipped to black over
an area, is flat at the channel's minimum; a real image's background is noisy and never that flat
there. Fill is left out of a channel's percentiles (:mod:`segpipe.inference.normalize`, a card's
``skip_fill``) and out of where a first look at an image is taken (:func:`content_box`: the
object-size estimate, a generalist's choice of inputs for a new image and of its channel order
for a training set look at the image's content, not at the centre of its canvas). :mod:`segpipe.inference.blank` is the related rule for predictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: Side of the flat patch that makes fill (the blank rule's 7 pixels).
FILL_SIDE = 7
#: Pixels of a frame read, at a regular stride, to find its content (:func:`content_box`).
CONTENT_PIXELS = 1 << 22


def fill_mask(channel: np.ndarray, *, side: int = FILL_SIDE) -> np.ndarray:
    """The fill of one channel: pixels in a neighbourhood ``side`` pixels wide on every axis that
    holds only the channel's least value (the neighbourhood may lie anywhere around the pixel, so
    a fill region is found to its edge; the channel's edges are extended, so a stack of fewer than
    ``side`` slices has fill too)."""
    at_least = channel == channel.min()
    if np.count_nonzero(at_least) < side**channel.ndim:  # too few to fill one neighbourhood
        return np.zeros(channel.shape, dtype=bool)
    flat = everywhere(at_least, side)
    if not flat.any():
        return flat
    grown = flat.view(np.uint8)
    for axis in range(channel.ndim):
        grown = ndimage.maximum_filter1d(grown, side, axis=axis, mode="nearest")
    return grown.astype(bool)


def everywhere(mask: np.ndarray, size: int) -> np.ndarray:
    """Pixels whose whole neighbourhood (``size`` a side, edges extended) is in ``mask``; the
    search ends at the first axis that leaves none."""
    out = mask.view(np.uint8)
    for axis in reversed(range(mask.ndim)):
        out = ndimage.minimum_filter1d(out, size, axis=axis, mode="nearest")
        if not out.any():
            break
    return out.astype(bool)


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """The bounding box of ``mask``'s pixels (some must be set), widened by ``margin`` within the array."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(0, int(hit[0]) - margin), min(mask.shape[axis], int(hit[-1]) + 1 + margin)))
    return tuple(box)


def outside_fill(channel: np.ndarray) -> np.ndarray:
    """The values of ``channel`` outside its fill, flattened; every value when it has no fill or
    is all fill (a constant channel)."""
    fill = fill_mask(channel)
    if not fill.any() or fill.all():
        return channel.reshape(-1)
    return channel[~fill]


def content_box(image, *, spatial_dims: int, frame: Sequence[int] = (), pixels: int = CONTENT_PIXELS) -> tuple[slice, ...]:
    """The bounding box of the pixels of one frame of a channel-first image ``(C, *frames,
    *spatial)`` (zarr or numpy) that are not fill in some channel; the whole frame when all of it
    is fill or none. Frames of more than ``pixels`` pixels are read at a regular stride: the box
    then ends up to a stride outside the content, and a fill region narrower than ``FILL_SIDE``
    strides is taken as content."""
    shape = tuple(int(n) for n in image.shape[image.ndim - spatial_dims :])
    stride = max(1, math.ceil((math.prod(shape) / pixels) ** (1 / spatial_dims)))
    view = np.asarray(image[(slice(None), *frame, *(slice(None, None, stride),) * spatial_dims)])
    content = ~np.logical_and.reduce([fill_mask(channel) for channel in view])
    if content.all() or not content.any():
        return tuple(slice(0, n) for n in shape)
    return tuple(
        slice(max(0, b.start * stride - (stride - 1)), min(n, b.stop * stride))
        for b, n in zip(bounding_box(content), shape)
    )

"""Thin images as prediction will see them: a slab of a patch, padded as a window is, padding ignored.

An image thinner than the network's window along an axis (a region split's validation and test
strips, a stack of few slices) is predicted in one window padded on both sides, by reflection or
by repeating its edges (:func:`segpipe.inference.memory.padding_mode`). Training patches are cut
from the larger training images and never look like that, so the network can read the padding as
content: on the synthetic 3D set's 13-row test strip every false object touched a padded face.

Where some labelled image of a dataset is thinner than the patch along an axis
(:func:`thin_extents`), :class:`RandThinSlabd` keeps a central slab of a patch along that axis, as
thin as such images are or thicker, pads it back to the patch as the sliding window would, and
marks the padding as not annotated, so the loss leaves it out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai import transforms as mt

from segpipe.inference.resample import resampled_shape

#: The share of patches cut to a slab, where a dataset has thin images.
SLAB_PROB = 0.33


def thin_extents(images, patch_size: Sequence[int], spacing: Sequence[float]) -> dict[int, int]:
    """``{spatial axis: the smallest extent}`` of the axes along which some of ``images`` is thinner
    than ``patch_size`` on the model's grid (``spacing``); empty when none is."""
    thinnest: dict[int, int] = {}
    ndim = len(patch_size)
    for image in images:
        shape = resampled_shape(image.image.shape[-ndim:], image.spacing[-ndim:], spacing)
        for axis, (n, p) in enumerate(zip(shape, patch_size)):
            if n < p:
                thinnest[axis] = min(n, thinnest.get(axis, n))
    return thinnest


def slab_indices(size: int, length: int) -> np.ndarray:
    """For each of ``size`` positions, the position it is read from when the central ``length`` are
    kept and padded on both sides as MONAI's sliding window pads (half before, rounded down): by
    reflection where the slab is longer than the padding, else by repeating its edge."""
    before = (size - length) // 2
    offset = np.arange(size) - before
    if length > size - length:
        offset = np.abs(offset)
        offset = np.where(offset > length - 1, 2 * (length - 1) - offset, offset)
    return before + np.clip(offset, 0, length - 1)


class RandThinSlabd(mt.RandomizableTransform, mt.MapTransform):
    """With probability ``prob``, keep a central slab of the patch along one of ``extents``' axes
    (``{axis: the thinnest extent}``; the slab as thin as that or thicker), pad the image back as a
    window is padded (:func:`slab_indices`) and mark the padding in ``ignore`` (which every sample
    then carries, zero where nothing is ignored)."""

    def __init__(self, keys: Sequence[str], *, extents: dict[int, int], prob: float = SLAB_PROB):
        mt.MapTransform.__init__(self, keys)
        mt.RandomizableTransform.__init__(self, prob)
        self.extents = dict(extents)

    def __call__(self, data: dict) -> dict:
        self.randomize(None)
        if not self._do_transform or not self.extents:
            return data
        out = dict(data)
        axis = int(self.R.choice(sorted(self.extents)))
        size = int(out["image"].shape[axis + 1])
        lowest = min(self.extents[axis], size - 1)
        if lowest < 1:
            return data
        length = int(self.R.randint(lowest, size))  # lowest .. size - 1
        index = slab_indices(size, length)
        out["image"] = _take(out["image"], index, axis + 1)
        before = (size - length) // 2
        padded = np.ones(size, bool)
        padded[before:before + length] = False
        shape = [1] * out["ignore"].ndim
        shape[axis + 1] = size
        mask = padded.reshape(shape)
        ignore = out["ignore"]
        if isinstance(ignore, torch.Tensor):
            out["ignore"] = torch.maximum(ignore, torch.as_tensor(mask, dtype=ignore.dtype))
        else:
            out["ignore"] = np.maximum(ignore, mask.astype(ignore.dtype))
        return out


def _take(array, index: np.ndarray, axis: int):
    if isinstance(array, torch.Tensor):
        return torch.index_select(array, axis, torch.as_tensor(index, device=array.device))
    return np.take(array, index, axis=axis)

"""The raw input of a package's test tensors: a sample that shows the model at work, or a synthetic image."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from segpipe.errors import ModelError
from segpipe.inference.normalize import NormalizationSpec
from segpipe.models.bioimageio.sizes import grid_size, min_size
from segpipe.models.card import ModelCard

#: Largest synthetic test image per axis, and largest crop of a real one.
SYNTHETIC_SIZE = {2: 128, 3: 48}
SAMPLE_SIZE = {2: 256, 3: 64}


def raw_test_input(card: ModelCard, sample: np.ndarray | None) -> np.ndarray:
    """The raw test input ``(C, *spatial)`` as float32: the sample cropped, or a synthetic image."""
    ndim = card.spatial_dims
    if sample is None:
        shape = tuple(grid_size(min(p, SYNTHETIC_SIZE[ndim]), card, a) for a, p in enumerate(card.patch_size))
        return synthetic_image(shape, card.in_channels, card.normalization)
    sample = check_sample(card, sample)
    keep = [grid_size(min(s, SAMPLE_SIZE[ndim]), card, a, up=False) for a, s in enumerate(sample.shape[1:])]
    return np.ascontiguousarray(sample[(slice(None), *_busiest_crop(sample[0], keep))], dtype=np.float32)


def check_sample(card: ModelCard, sample: np.ndarray, *, name: str = "test sample") -> np.ndarray:
    """``sample`` as an array, if it can show ``card``'s model at work: ``(C, *spatial)``, large
    enough, finite, and not one value throughout.

    Raises:
        ModelError: Naming ``name`` and what is wrong.
    """
    ndim, sample = card.spatial_dims, np.asarray(sample)
    if sample.ndim != ndim + 1 or sample.shape[0] != card.in_channels:
        raise ModelError(
            f"{name}: has shape {sample.shape}; model {card.name!r} needs ({card.in_channels}, "
            f"{', '.join('...' for _ in range(ndim))}): channels first, {ndim} spatial axes"
        )
    lows = [min_size(card, a) for a in range(ndim)]
    if any(s < low for s, low in zip(sample.shape[1:], lows)):
        raise ModelError(f"{name}: {list(sample.shape[1:])} pixels is too small a sample: at least {lows} pixels")
    if np.issubdtype(sample.dtype, np.floating) and not np.isfinite(sample).all():
        raise ModelError(f"{name}: holds {int(np.count_nonzero(~np.isfinite(sample)))} NaN or Inf values; a sample must be finite")
    if sample.min() == sample.max():
        raise ModelError(f"{name}: is {sample.flat[0]} throughout; a sample needs objects for the package's test to show the model")
    return sample


def _busiest_crop(channel: np.ndarray, keep: Sequence[int]) -> tuple[slice, ...]:
    """The crop of size ``keep`` with the widest intensity range (1st to 99.8th percentile), among
    crops at half-crop steps: a crop of empty background would test the network on noise alone."""
    starts = [sorted({*range(0, s - k + 1, max(1, k // 2)), s - k}) for s, k in zip(channel.shape, keep)]
    best, best_range = None, -1.0
    for corner in itertools.product(*starts):
        box = tuple(slice(c, c + k) for c, k in zip(corner, keep))
        low, high = np.percentile(channel[box], (1.0, 99.8))
        if high - low > best_range:
            best, best_range = box, float(high - low)
    return best


def synthetic_image(shape: Sequence[int], channels: int, spec: NormalizationSpec, *, seed: int = 0) -> np.ndarray:
    """A seeded raw image of bright blobs on a dim, noisy background, ``(channels, *shape)`` float32.

    Intensities suit the normalization: 100..1100 for the per-image methods, the window's range for CT.
    """
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    planes = []
    for _ in range(channels):
        blobs = np.zeros(shape, np.float32)
        for _ in range(8):
            centre = [rng.uniform(0, s) for s in shape]
            radius = rng.uniform(3.0, max(4.0, min(shape) / 6))
            blobs += np.exp(-sum((g - c) ** 2 for g, c in zip(grids, centre)) / (2 * radius**2))
        planes.append(np.clip(blobs, 0, 1) + rng.normal(0, 0.03, shape))
    unit = np.stack(planes)
    if spec.method == "ct":
        low, high = spec.window
        return (low + (high - low) * unit).astype(np.float32)
    return (100 + 1000 * unit).astype(np.float32)

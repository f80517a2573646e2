"""Percentile normalization of images too large to load: percentiles from a sample of chunks.

Small channels (up to ``exact_limit`` voxels) are read whole and go through
:func:`segpipe.transforms.intensity_percentiles`, so the result is identical to
:func:`segpipe.transforms.percentile_normalize` on the loaded image. Larger channels are
estimated from whole chunks drawn at random (fixed seed, so a re-run gets the same numbers).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segpipe.transforms import SAMPLE_LIMIT, intensity_percentiles

EXACT_LIMIT = 1 << 25  # 32 Mi voxels: read whole, exactly as percentile_normalize does


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x - low) / scale``, with the arithmetic of ``percentile_normalize``."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def apply(self, block: np.ndarray) -> np.ndarray:
        """Normalize a channel-first block to float32."""
        out = np.empty(block.shape, dtype=np.float32)
        for c, channel in enumerate(block):
            lo, hi = self.low[c], self.high[c]
            out[c] = (channel.astype(np.float32) - lo) / max(hi - lo, 1e-6)
        return out


def channel_percentiles(
    array, channel: int, percentiles: Sequence[float], *, exact_limit: int = EXACT_LIMIT, seed: int = 0
) -> list[float]:
    """Percentiles of one channel of a channel-first (zarr or numpy) array.

    Args:
        array: ``(C, ...)`` array; zarr arrays are read chunk by chunk.
        channel: Which channel.
        percentiles: Percentiles in 0..100.
        exact_limit: Channels with at most this many voxels are read whole (exact result).
        seed: Seed of the chunk draw for larger channels.
    """
    shape = tuple(array.shape[1:])
    if math.prod(shape) <= exact_limit:
        return intensity_percentiles(np.asarray(array[channel]), percentiles)
    chunks = tuple(getattr(array, "chunks", (1, *shape))[1:])
    grid = [range(0, n, c) for n, c in zip(shape, chunks)]
    corners = list(itertools.product(*grid))
    per_chunk = math.prod(chunks)
    wanted = min(len(corners), max(32, math.ceil(2 * SAMPLE_LIMIT / per_chunk)))
    picks = np.sort(np.random.default_rng(seed).choice(len(corners), size=wanted, replace=False))
    values = []
    for index in picks:
        corner = corners[index]
        box = tuple(slice(o, min(o + c, n)) for o, c, n in zip(corner, chunks, shape))
        values.append(np.asarray(array[(channel, *box)]).reshape(-1))
    sample = np.concatenate(values)
    step = max(1, sample.size // SAMPLE_LIMIT)
    return [float(v) for v in np.percentile(sample[::step], percentiles)]


def stream_normalization(
    array, *, low: float, high: float, exact_limit: int = EXACT_LIMIT
) -> Normalization:
    """Per-channel ``low``..``high`` percentiles of a channel-first array, for :class:`Normalization`."""
    bounds = [channel_percentiles(array, c, (low, high), exact_limit=exact_limit) for c in range(array.shape[0])]
    return Normalization(tuple(b[0] for b in bounds), tuple(b[1] for b in bounds))

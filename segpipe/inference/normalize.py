"""Intensity normalization of images too large to load, as :func:`segpipe.transforms.normalize` does it.

Statistics (percentiles; for z-scoring also the mean and deviation of the clipped channel) come
from the whole channel when it has at most ``exact_limit`` voxels, computed with the same
expressions as :mod:`segpipe.transforms`, so the normalized windows are bit-identical to
slicing the in-memory normalized image. Larger channels are estimated from whole chunks drawn
at random (fixed seed, so a re-run gets the same numbers). The window method (CT) needs no
statistics of the image.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from segpipe.transforms import SAMPLE_LIMIT, intensity_percentiles

EXACT_LIMIT = 1 << 25  # 32 Mi voxels: read whole, exactly as segpipe.transforms does
SAMPLE_VOXELS = 2 * SAMPLE_LIMIT  # voxels drawn (in whole chunks) from larger channels


@dataclass(frozen=True)
class Normalization:
    """Per channel ``(clip(x, clip_low, clip_high) - shift) / divisor`` in float32 (clip optional).

    Attributes:
        shift: Subtracted, per channel.
        divisor: Divided by, per channel (already floored at 1e-6).
        clip_low: Lower clip per channel, or ``None`` for no clipping.
        clip_high: Upper clip per channel, or ``None``.
    """

    shift: tuple[float, ...]
    divisor: tuple[float, ...]
    clip_low: tuple[float, ...] | None = None
    clip_high: tuple[float, ...] | None = None

    def apply(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Normalize a channel-first block to float32 (into ``out`` when given), in place.

        The same float32 operations as :mod:`segpipe.transforms` (Python floats are rounded to
        float32 first, as NumPy does for them), so the results are bit-identical.
        """
        out = np.empty(block.shape, dtype=np.float32) if out is None else out
        for c, channel in enumerate(block):
            values = out[c]
            values[...] = channel
            if self.clip_low is not None:
                np.clip(values, np.float32(self.clip_low[c]), np.float32(self.clip_high[c]), out=values)
            np.subtract(values, np.float32(self.shift[c]), out=values)
            np.divide(values, np.float32(self.divisor[c]), out=values)
        return out

    def to_record(self) -> dict:
        """JSON-able form (for a prediction group's attributes)."""
        return {k: (list(v) if v is not None else None) for k, v in asdict(self).items()}

    @classmethod
    def from_record(cls, record: dict) -> Normalization:
        return cls(**{k: (tuple(v) if v is not None else None) for k, v in record.items()})


def _chunk_sample(array, channel: int, *, voxels: int = SAMPLE_VOXELS, seed: int = 0) -> np.ndarray:
    """Voxels of whole chunks of one channel, drawn at random: at least ``voxels`` (and 32 chunks)."""
    shape = tuple(array.shape[1:])
    chunks = tuple(getattr(array, "chunks", (1, *shape))[1:])
    corners = list(itertools.product(*[range(0, n, c) for n, c in zip(shape, chunks)]))
    wanted = min(len(corners), max(32, math.ceil(voxels / math.prod(chunks))))
    picks = np.sort(np.random.default_rng(seed).choice(len(corners), size=wanted, replace=False))
    values = []
    for index in picks:
        box = tuple(slice(o, min(o + c, n)) for o, c, n in zip(corners[index], chunks, shape))
        values.append(np.asarray(array[(channel, *box)]).reshape(-1))
    return np.concatenate(values)


def channel_percentiles(
    array, channel: int, percentiles: Sequence[float], *, exact_limit: int = EXACT_LIMIT, sample: int = SAMPLE_VOXELS
) -> list[float]:
    """Percentiles of one channel of a channel-first (zarr or numpy) array.

    Args:
        array: ``(C, ...)`` array.
        channel: Which channel.
        percentiles: In 0..100.
        exact_limit: Channels up to this many voxels are read whole.
        sample: Voxels drawn from larger channels.
    """
    if math.prod(array.shape[1:]) <= exact_limit:
        return intensity_percentiles(np.asarray(array[channel]), percentiles)
    values = _chunk_sample(array, channel, voxels=sample)
    step = max(1, values.size // SAMPLE_LIMIT)
    return [float(v) for v in np.percentile(values[::step], percentiles)]


def _zscore(array, channel: int, low: float, high: float, exact_limit: int, voxels: int) -> tuple[float, float, float, float]:
    """Clip bounds, mean and floored deviation of one channel, as ``zscore_normalize`` computes them."""
    if math.prod(array.shape[1:]) <= exact_limit:
        values = np.asarray(array[channel])
        lo, hi = intensity_percentiles(values, (low, high))
        clipped = np.clip(values.astype(np.float32), lo, hi)
        return lo, hi, float(clipped.mean()), max(float(clipped.std()), 1e-6)
    sample = _chunk_sample(array, channel, voxels=voxels)
    lo, hi = (float(v) for v in np.percentile(sample[:: max(1, sample.size // SAMPLE_LIMIT)], (low, high)))
    clipped = np.clip(sample.astype(np.float64), lo, hi)
    return lo, hi, float(np.float32(clipped.mean())), max(float(clipped.std()), 1e-6)


def stream_normalization(
    array, spec: dict, *, exact_limit: int = EXACT_LIMIT, sample: int = SAMPLE_VOXELS
) -> Normalization:
    """The normalization a model card's ``normalization`` entry prescribes for ``array`` (``(C, ...)``).

    Args:
        array: Channel-first zarr or numpy image.
        spec: ``{"method": "percentile" | "zscore" | "ct", ...}`` as in :func:`segpipe.transforms.normalize`.
        exact_limit: Channels up to this many voxels are read whole (exact statistics).
        sample: Voxels drawn, in whole chunks, from larger channels.

    Raises:
        ValueError: An unknown method.
    """
    channels = range(array.shape[0])
    method = spec["method"]
    if method == "percentile":
        bounds = [
            channel_percentiles(array, c, (spec["low"], spec["high"]), exact_limit=exact_limit, sample=sample)
            for c in channels
        ]
        return Normalization(tuple(lo for lo, _ in bounds), tuple(max(hi - lo, 1e-6) for lo, hi in bounds))
    if method == "zscore":
        stats = [_zscore(array, c, spec["low"], spec["high"], exact_limit, sample) for c in channels]
        return Normalization(
            tuple(s[2] for s in stats), tuple(s[3] for s in stats), tuple(s[0] for s in stats), tuple(s[1] for s in stats)
        )
    if method == "ct":
        n = len(channels)
        low, high = (float(v) for v in spec["window"])
        return Normalization(
            (float(spec["mean"]),) * n, (max(float(spec["std"]), 1e-6),) * n, (low,) * n, (high,) * n
        )
    raise ValueError(f"unknown normalization method {method!r}")

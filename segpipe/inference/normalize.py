"""Intensity normalization: what a model card prescribes, in memory and for images too large to load.

:class:`NormalizationSpec` is the card's entry; :func:`normalize` applies it to an in-memory image,
:func:`stream_normalization` measures the same statistics on a zarr image without loading it.

Statistics (percentiles; for z-scoring also the mean and deviation of the clipped channel) come
from the whole channel when it has at most ``exact_limit`` voxels, computed with the same
expressions as :func:`normalize`, so the normalized windows are bit-identical to
slicing the in-memory normalized image. Larger channels are estimated from whole chunks drawn
at random (fixed seed, so a re-run gets the same numbers). The window method (CT) needs no
statistics of the image.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from segpipe.inference.fill import fill_mask, outside_fill

SAMPLE_LIMIT = 2_000_000  # pixels drawn to estimate percentiles of large images


class NormalizationSpec(BaseModel):
    """How a model scales input intensities (a model card's ``normalization``).

    Attributes:
        method: ``percentile``: each channel's ``low``..``high`` percentiles to 0..1 (microscopy);
            ``zscore``: clip to the ``low``..``high`` percentiles, then zero mean and unit
            variance per image (MRI); ``ct``: clip to ``window``, then subtract ``mean`` and
            divide by ``std``, measured once on the training foreground (CT, absolute units).
        low: Lower percentile (``percentile``, ``zscore``).
        high: Upper percentile.
        window: Intensity window (``ct``).
        mean: Subtracted (``ct``).
        std: Divided by (``ct``).
        nonzero: ``zscore`` only: take the percentiles, mean and deviation of the voxels that are
            not exactly 0 (skull-stripped MRI, whose background is 0; nnU-Net's masked
            normalization), so they do not shift with how much background a crop holds; the
            background is clipped with the rest. Off when no voxel is nonzero.
        min_range: Per channel, the least percentile range an image is scaled by (``percentile``):
            a field with nothing in it has a tiny range, and stretching its noise to 0..1 would
            show the network objects that are not there. Planned from the training images.
        floor_for: The pixel type of the training images ``min_range`` was measured on: ``float``,
            or their narrowest integer type (``uint16``). An image of another number type (floats
            from 0 to 1 against 16-bit training images) or of a narrower integer type (8-bit
            against 16-bit) is on another scale, and is scaled by its own range alone
            (:func:`for_image`). None: the floor holds for every image.
        skip_fill: ``percentile`` only: take each channel's percentiles outside its fill
            (:func:`~segpipe.inference.fill.fill_mask`: flat patches at the channel's least value, such as the zero fill
            around a stitched mosaic or a deskewed volume), so the fill does not set the low
            percentile and the real background keeps its place at 0 however much fill there is;
            and read every value below the low percentile (the fill among them) as that
            percentile, so fill far below the background (a camera's offset) reads as background,
            not as a deep black the network never saw. Planned on; a card without it takes every
            pixel and keeps values below the low percentile.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["percentile", "zscore", "ct"]
    low: float | None = None
    high: float | None = None
    window: tuple[float, float] | None = None
    mean: float | None = None
    std: float | None = None
    min_range: tuple[float, ...] | None = None
    floor_for: str | None = None
    nonzero: bool = False
    skip_fill: bool = False

    @model_validator(mode="after")
    def _complete(self) -> NormalizationSpec:
        needed = ("window", "mean", "std") if self.method == "ct" else ("low", "high")
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"normalization {self.method!r} needs {', '.join(missing)}")
        return self


def number_type(dtype) -> Literal["integer", "float"]:
    """``float`` for floating-point pixels, ``integer`` for the rest (bool included)."""
    return "float" if np.issubdtype(np.dtype(dtype), np.floating) else "integer"


def floor_holds(spec: NormalizationSpec, dtype) -> bool:
    """Whether ``spec.min_range`` applies to an image of ``dtype``: one of the training images' number
    type, and for integers at least as wide as theirs (``spec.floor_for``)."""
    if not spec.min_range:
        return False
    trained, dtype = spec.floor_for, np.dtype(dtype)
    if trained is None:
        return True
    if trained == "float" or number_type(dtype) == "float":
        return trained == number_type(dtype)
    return dtype.itemsize >= np.dtype(trained).itemsize


def for_image(spec: NormalizationSpec, dtype) -> NormalizationSpec:
    """``spec`` for an image of ``dtype``: without its floor where :func:`floor_holds` says it is
    not for it (the training images' floor, in their units, would flatten it to nothing)."""
    if not spec.min_range or floor_holds(spec, dtype):
        return spec
    return spec.model_copy(update={"min_range": None, "floor_for": None})


def percentile_normalize(
    image: np.ndarray,
    *,
    low: float = 1.0,
    high: float = 99.8,
    min_range: Sequence[float] | None = None,
    skip_fill: bool = False,
) -> np.ndarray:
    """Scale each channel so its ``low``..``high`` percentiles map to 0..1 (CSBDeep convention).

    Percentiles of large arrays are estimated from a regular subsample. Values above the range
    are kept (not clipped), so bright objects stay distinguishable; values below it too, unless
    ``skip_fill``.

    Args:
        image: Channel-first array ``(C, *spatial)``.
        low: Lower percentile.
        high: Upper percentile.
        min_range: Per channel, the least range to divide by (default: none, 1e-6).
        skip_fill: Take the percentiles outside each channel's fill (:func:`~segpipe.inference.fill.fill_mask`)
            and read values below the low percentile as it.

    Returns:
        float32 array of the same shape.
    """
    out = np.empty(image.shape, dtype=np.float32)
    for c, channel in enumerate(image):
        lo, hi = intensity_percentiles(channel, (low, high), skip_fill=skip_fill)
        values = channel.astype(np.float32)
        if skip_fill:
            np.maximum(values, np.float32(lo), out=values)
        out[c] = (values - lo) / _divisor(hi - lo, min_range, c)
    return out


def _divisor(spread: float, min_range: Sequence[float] | None, channel: int) -> float:
    """The percentile range, floored at ``min_range[channel]`` (and at 1e-6)."""
    floor = min_range[min(channel, len(min_range) - 1)] if min_range else 0.0
    return max(spread, floor, 1e-6)


def zscore_normalize(image: np.ndarray, *, low: float = 0.5, high: float = 99.5, nonzero: bool = False) -> np.ndarray:
    """Clip each channel to its ``low``..``high`` percentiles, then subtract the mean and divide by the std.

    The nnU-Net scheme for MRI and other modalities without absolute units; with ``nonzero``
    the statistics are those of the voxels that are not 0 (see :class:`NormalizationSpec`).
    """
    out = np.empty(image.shape, dtype=np.float32)
    for c, channel in enumerate(image):
        lo, hi, mean, std = zscore_statistics(_measured(channel, nonzero), low=low, high=high)
        out[c] = (np.clip(channel.astype(np.float32), lo, hi) - mean) / std
    return out


def zscore_statistics(values: np.ndarray, *, low: float, high: float) -> tuple[float, float, float, float]:
    """Clip bounds (the ``low`` and ``high`` percentiles), mean and floored deviation of the clipped ``values``."""
    lo, hi = intensity_percentiles(values, (low, high))
    clipped = np.clip(values.astype(np.float32), lo, hi)
    return lo, hi, float(clipped.mean()), max(float(clipped.std()), 1e-6)


def _measured(values: np.ndarray, nonzero: bool) -> np.ndarray:
    """The values statistics are taken of: all, or with ``nonzero`` those not 0 (all when every one is 0)."""
    if not nonzero:
        return values
    kept = values[values != 0]
    return kept if kept.size else values


def window_normalize(image: np.ndarray, *, window: Sequence[float], mean: float, std: float) -> np.ndarray:
    """Clip to a fixed intensity window and z-score with dataset statistics (CT, absolute units)."""
    clipped = np.clip(image.astype(np.float32), window[0], window[1])
    return (clipped - mean) / max(std, 1e-6)


def normalize(image: np.ndarray, spec: NormalizationSpec) -> np.ndarray:
    """Normalize a channel-first image as the model card's ``normalization`` entry says.

    Args:
        image: ``(C, *spatial)`` array.
        spec: The method and its parameters.
    """
    if spec.method == "percentile":
        spec = for_image(spec, image.dtype)
        return percentile_normalize(image, low=spec.low, high=spec.high, min_range=spec.min_range, skip_fill=spec.skip_fill)
    if spec.method == "zscore":
        return zscore_normalize(image, low=spec.low, high=spec.high, nonzero=spec.nonzero)
    return window_normalize(image, window=spec.window, mean=spec.mean, std=spec.std)


def intensity_percentiles(channel: np.ndarray, percentiles: Sequence[float], *, skip_fill: bool = False) -> list[float]:
    """Percentiles of one channel (of its pixels outside the fill with ``skip_fill``), from a
    regular subsample when they are many. Where those outside the fill are all equal, they are of
    every pixel (:func:`_fill_or_whole`)."""
    if not skip_fill:
        return _percentiles(channel.reshape(-1), percentiles)
    return _fill_or_whole(_percentiles(outside_fill(channel), percentiles), lambda: _percentiles(channel.reshape(-1), percentiles))


def _percentiles(values: np.ndarray, percentiles: Sequence[float]) -> list[float]:
    step = max(1, values.size // SAMPLE_LIMIT)
    return [float(v) for v in np.percentile(values[::step], percentiles)]


def _fill_or_whole(outside: list[float], whole) -> list[float]:
    """``outside`` (percentiles outside the fill), or ``whole()`` (of every pixel) where the ones
    outside are all equal: in a noise-free image of two levels the even background reads as fill,
    and the objects alone would make the channel flat (nothing labelled)."""
    return whole() if outside[0] == outside[-1] else outside


EXACT_LIMIT = 1 << 25  # 32 Mi voxels: read whole, exactly as normalize() does
SAMPLE_VOXELS = 2 * SAMPLE_LIMIT  # voxels drawn (in whole chunks) from larger channels


@dataclass(frozen=True)
class Normalization:
    """Per channel ``(clip(x, clip_low, clip_high) - shift) / divisor`` in float32 (clip optional).

    Attributes:
        shift: Subtracted, per channel.
        divisor: Divided by, per channel (already floored at 1e-6).
        clip_low: Lower clip per channel, or ``None`` for no clipping.
        clip_high: Upper clip per channel, or ``None``.
        floored: Values below ``shift`` are read as ``shift`` (a percentile normalization that
            skips fill, :class:`NormalizationSpec`).
    """

    shift: tuple[float, ...]
    divisor: tuple[float, ...]
    clip_low: tuple[float, ...] | None = None
    clip_high: tuple[float, ...] | None = None
    floored: bool = False

    def apply(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Normalize a channel-first block to float32 (into ``out`` when given), in place.

        The same float32 operations as :mod:`segpipe.training.augment` (Python floats are rounded to
        float32 first, as NumPy does for them), so the results are bit-identical.
        """
        out = np.empty(block.shape, dtype=np.float32) if out is None else out
        for c, channel in enumerate(block):
            values = out[c]
            values[...] = channel
            if self.clip_low is not None:
                np.clip(values, np.float32(self.clip_low[c]), np.float32(self.clip_high[c]), out=values)
            if self.floored:
                np.maximum(values, np.float32(self.shift[c]), out=values)
            np.subtract(values, np.float32(self.shift[c]), out=values)
            np.divide(values, np.float32(self.divisor[c]), out=values)
        return out

    def to_record(self) -> dict:
        """JSON-able form (for a prediction group's attributes)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_record(cls, record: dict) -> Normalization:
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in record.items()})


def _chunk_sample(
    array, channel: int, *, voxels: int = SAMPLE_VOXELS, seed: int = 0, skip_fill: bool = False
) -> np.ndarray:
    """Voxels of whole chunks of one channel, drawn at random: at least ``voxels`` (and 32 chunks);
    with ``skip_fill``, each chunk's voxels outside its own fill."""
    shape = tuple(array.shape[1:])
    chunks = tuple(getattr(array, "chunks", (1, *shape))[1:])
    corners = list(itertools.product(*[range(0, n, c) for n, c in zip(shape, chunks)]))
    wanted = min(len(corners), max(32, math.ceil(voxels / math.prod(chunks))))
    picks = np.sort(np.random.default_rng(seed).choice(len(corners), size=wanted, replace=False))
    values = []
    for index in picks:
        box = tuple(slice(o, min(o + c, n)) for o, c, n in zip(corners[index], chunks, shape))
        block = np.asarray(array[(channel, *box)])
        values.append(block[~fill_mask(block)] if skip_fill else block.reshape(-1))
    kept = np.concatenate(values)
    return kept if kept.size else _chunk_sample(array, channel, voxels=voxels, seed=seed)  # all fill: constant


def zero_share(array, *, voxels: int = 1 << 18) -> float:
    """The share of an image's voxels that are 0 in every channel (``(C, ...)``): exact for a
    numpy array, from about ``voxels`` voxels in whole chunks of a larger zarr one."""
    if isinstance(array, np.ndarray) or math.prod(array.shape[1:]) <= voxels:
        return float(np.mean(np.all(np.asarray(array) == 0, axis=0)))
    zero = np.ones(0, bool)
    for channel in range(array.shape[0]):  # the same chunks for every channel (one seed)
        sample = _chunk_sample(array, channel, voxels=voxels) == 0
        zero = sample if channel == 0 else zero & sample
    return float(np.mean(zero))


#: A model that measures the nonzero voxels (``NormalizationSpec.nonzero``, planned where a
#: quarter of the training voxels were 0) is warned about an image with fewer zero voxels than this share.
FEW_ZEROS = 0.01


def background_not_zero(array, spec: NormalizationSpec) -> float | None:
    """The share of ``array``'s voxels at 0 when ``spec`` measures only the nonzero ones and the
    image has almost none (its background is at another value, so it is measured as tissue and the
    image is scaled otherwise than the training images were); else ``None``."""
    if spec.method != "zscore" or not spec.nonzero:
        return None
    share = zero_share(array)
    return share if share < FEW_ZEROS else None


def channel_percentiles(
    array,
    channel: int,
    percentiles: Sequence[float],
    *,
    exact_limit: int = EXACT_LIMIT,
    sample: int = SAMPLE_VOXELS,
    skip_fill: bool = False,
) -> list[float]:
    """Percentiles of one channel of a channel-first (zarr or numpy) array.

    Args:
        array: ``(C, ...)`` array.
        channel: Which channel.
        percentiles: In 0..100.
        exact_limit: Channels up to this many voxels are read whole.
        sample: Voxels drawn from larger channels.
        skip_fill: Take the percentiles outside the channel's fill (:func:`~segpipe.inference.fill.fill_mask`; of each
            drawn chunk's own fill for larger channels).
    """
    if math.prod(array.shape[1:]) <= exact_limit:
        return intensity_percentiles(np.asarray(array[channel]), percentiles, skip_fill=skip_fill)
    values = _percentiles(_chunk_sample(array, channel, voxels=sample, skip_fill=skip_fill), percentiles)
    if not skip_fill:
        return values
    return _fill_or_whole(values, lambda: _percentiles(_chunk_sample(array, channel, voxels=sample), percentiles))


def _zscore(
    array, channel: int, low: float, high: float, exact_limit: int, voxels: int, nonzero: bool = False
) -> tuple[float, float, float, float]:
    """Clip bounds, mean and floored deviation of one channel, as ``zscore_normalize`` computes them."""
    if math.prod(array.shape[1:]) <= exact_limit:
        return zscore_statistics(_measured(np.asarray(array[channel]), nonzero), low=low, high=high)
    sample = _measured(_chunk_sample(array, channel, voxels=voxels), nonzero)
    lo, hi = (float(v) for v in np.percentile(sample[:: max(1, sample.size // SAMPLE_LIMIT)], (low, high)))
    clipped = np.clip(sample.astype(np.float64), lo, hi)
    return lo, hi, float(np.float32(clipped.mean())), max(float(clipped.std()), 1e-6)


def percentile_normalization(bounds: Sequence[Sequence[float]], spec: NormalizationSpec) -> Normalization:
    """The ``percentile`` normalization of channels whose ``spec.low``..``spec.high`` percentiles are
    ``bounds`` (one ``(low, high)`` pair per channel), each range floored at ``spec.min_range``."""
    return Normalization(
        tuple(lo for lo, _ in bounds),
        tuple(_divisor(hi - lo, spec.min_range, c) for c, (lo, hi) in enumerate(bounds)),
        floored=spec.skip_fill,
    )


def stream_normalization(
    array, spec: NormalizationSpec, *, exact_limit: int = EXACT_LIMIT, sample: int = SAMPLE_VOXELS
) -> Normalization:
    """The normalization a model card's ``normalization`` entry prescribes for ``array`` (``(C, ...)``).

    Args:
        array: Channel-first zarr or numpy image.
        spec: The model card's normalization.
        exact_limit: Channels up to this many voxels are read whole (exact statistics).
        sample: Voxels drawn, in whole chunks, from larger channels.
    """
    channels = range(array.shape[0])
    if spec.method == "percentile":
        spec = for_image(spec, array.dtype)
        bounds = [
            channel_percentiles(
                array, c, (spec.low, spec.high), exact_limit=exact_limit, sample=sample, skip_fill=spec.skip_fill
            )
            for c in channels
        ]
        return percentile_normalization(bounds, spec)
    if spec.method == "zscore":
        stats = [_zscore(array, c, spec.low, spec.high, exact_limit, sample, spec.nonzero) for c in channels]
        return Normalization(
            tuple(s[2] for s in stats), tuple(s[3] for s in stats), tuple(s[0] for s in stats), tuple(s[1] for s in stats)
        )
    n = len(channels)
    low, high = (float(v) for v in spec.window)
    return Normalization((float(spec.mean),) * n, (max(float(spec.std), 1e-6),) * n, (low,) * n, (high,) * n)

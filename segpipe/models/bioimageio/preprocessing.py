"""segpipe's normalization in the format's terms: the ``preprocessing`` steps, what they make of an
image, and what they cannot say."""

from __future__ import annotations

import numpy as np

from segpipe.inference.normalize import (
    NormalizationSpec,
    normalize,
    percentile_normalize,
)


def preprocessing_steps(spec, norm: NormalizationSpec, axes) -> list:
    """segpipe's normalization as bioimageio.spec preprocessing steps (per sample and channel)."""
    if norm.method == "percentile":
        kwargs = spec.ScaleRangeKwargs(axes=axes, min_percentile=norm.low, max_percentile=norm.high, eps=1e-6)
        return [spec.ScaleRangeDescr(kwargs=kwargs)]
    if norm.method == "zscore":  # approximate: see _zscore_as_bioimageio
        return [
            spec.ClipDescr(kwargs=spec.ClipKwargs(axes=axes, min_percentile=norm.low, max_percentile=norm.high)),
            spec.ZeroMeanUnitVarianceDescr(kwargs=spec.ZeroMeanUnitVarianceKwargs(axes=axes, eps=1e-6)),
        ]
    std = max(float(norm.std), 1e-6)
    return [
        spec.ClipDescr(kwargs=spec.ClipKwargs(min=float(norm.window[0]), max=float(norm.window[1]))),
        spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=1.0 / std, offset=-float(norm.mean) / std)),
    ]


def preprocess(raw: np.ndarray, spec: NormalizationSpec) -> np.ndarray:
    """The network input the package's ``preprocessing`` makes of ``raw``.

    ``ct``: segpipe's own normalization (the package describes it exactly). ``percentile``:
    ``scale_range``'s, every pixel's percentiles and no range floor, which differs from segpipe's
    where the card has ``skip_fill`` or ``min_range`` (the package's README says how); ``zscore``:
    what bioimageio.core computes, which differs too (see :func:`_zscore_as_bioimageio`). The
    package's test outputs are made from this, so that consumers running the package reproduce them.
    """
    if spec.method == "zscore":
        return _zscore_as_bioimageio(raw, low=spec.low, high=spec.high)
    if spec.method == "percentile":
        return percentile_normalize(raw, low=spec.low, high=spec.high)
    return normalize(raw, spec)


def _zscore_as_bioimageio(raw: np.ndarray, *, low: float, high: float, eps: float = 1e-6) -> np.ndarray:
    """bioimageio.core 0.11's ``clip`` (percentiles) then ``zero_mean_unit_variance``, per channel.

    segpipe clips to the percentiles and takes the mean and deviation of the clipped image;
    bioimageio.core measures every statistic on the unprocessed input, so its mean and
    deviation are those of the unclipped image (and its clip percentiles use ``inverted_cdf``).
    """
    out = np.empty(raw.shape, np.float32)
    for c, channel in enumerate(raw.astype(np.float32)):
        lo, hi = np.percentile(channel, (low, high), method="inverted_cdf")
        mean, std = channel.mean(dtype=np.float64), channel.std(dtype=np.float64)
        out[c] = (np.clip(channel, lo, hi) - mean) / (std + eps)
    return out


def fill_text(norm: NormalizationSpec) -> str:
    """What the package cannot say of segpipe's percentiles taken outside the fill, when the model takes them so."""
    if not norm.skip_fill:
        return ""
    return (
        " segpipe takes the percentiles of the pixels outside each channel's fill (flat patches, 7 pixels a side, "
        "at the channel's least value, such as the zero fill around a stitched mosaic) and reads values below the "
        "low percentile as it (so the fill reads as background); `scale_range` takes every pixel and keeps values "
        "below, so on an image with more fill than the low percentile's share consumers that only run the package "
        "map the fill to 0 and the real background above it, and on others the darkest pixels differ slightly."
    )


def floor_text(norm: NormalizationSpec) -> str:
    """What the package cannot say of segpipe's range floor, when the model has one."""
    if not norm.min_range:
        return ""
    floors = ", ".join(f"{v:g}" for v in norm.min_range)
    return (
        f" segpipe also never divides by less than {floors} (per channel: a quarter of the training images' "
        f"typical range{', for ' + norm.floor_for + ' images like them' if norm.floor_for else ''}), so that a nearly empty, noisy field is not stretched into objects; `scale_range` has "
        "no such floor, so on such fields consumers that only run the package stretch the noise and may find "
        "objects segpipe does not."
    )

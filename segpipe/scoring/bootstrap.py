"""Percentile bootstrap confidence intervals for dataset scores, and what they resample.

Every dataset score in :mod:`segpipe.scoring` is a ratio of sums (SEG: summed Jaccard over
summed object counts; F1: ``2 sum TP / sum(2 TP + FP + FN)``; a mean over images: summed
values over the number of images where the value is defined). Resampling the units the sums
run over with replacement and recomputing the ratio gives the bootstrap distribution; the
interval is its ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles.

Which units are resampled (:func:`choose_method`):

* **Images**, when there are at least ``min_images`` of them (default :data:`MIN_IMAGES` = 10).
  Images are independent of each other, so this is the honest unit, but a percentile bootstrap
  of ``n`` values is too narrow for small ``n``: it uses the plug-in spread (divisor ``n``)
  and normal rather than Student quantiles. For the mean of ``n`` values its 95% interval is
  about ``1.96 sqrt((n - 1) / n) / t(0.975, n - 1)`` times the width of the t interval:
  0.11 at 2 images, 0.37 at 3, 0.63 at 5, 0.82 at 10, 0.91 at 20; and ``n`` images have only
  ``C(2n - 1, n)`` distinct resamples (3 at 2 images: the "interval" is then just the two
  per-image values). From 10 images on the interval is within a fifth of the t interval's
  width; a higher threshold would leave most microscopy test splits (5 to 20 images) with no
  image-level interval at all.
* **Objects**, with fewer images, for object-level scores: SEG over the ground-truth objects
  (each with its Jaccard index); F1, precision, recall, AP and PQ at an IoU threshold over the
  ground-truth objects (matched or missed) plus the predicted objects left unmatched at that
  threshold; DET over the reference objects (each with its AOGM-D share: 10 when missed, its
  share of the splits when merged) plus the predicted objects covering none (1 each). Objects
  within an image are not independent (they share the image's quality, staining, focus), so
  these intervals are optimistic: narrower than the image-to-image variation warrants.
* **None**: image-level and pixel scores (IoU, Dice, HD95, ASD) with fewer images get no
  interval, and neither does a score with fewer than two units.

:class:`CiMethod` records the choice for each interval (``metrics.json``: ``ci_method``). The
same ``seed`` gives the same intervals; a :class:`Resampler` draws the same units for every
score it serves, so scores resampled over the same units (SEG and DET over images) can be
combined draw by draw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

#: Fewest images that are resampled themselves (see the module docstring for why 10).
MIN_IMAGES = 10

# Entries of one chunk of draws (resamples x units), bounding the memory of large object counts.
_CHUNK = 1 << 20


@dataclass(frozen=True)
class BootstrapPlan:
    """How intervals are drawn.

    Attributes:
        n_resamples: Bootstrap resamples.
        seed: Seed of :func:`numpy.random.default_rng`.
        level: Coverage of the interval.
        min_images: Fewest images that are resampled; with fewer, objects or nothing.
    """

    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95
    min_images: int = MIN_IMAGES

    def __post_init__(self) -> None:
        if self.n_resamples < 1:
            raise ValueError(f"n_resamples must be at least 1, got {self.n_resamples}")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")
        if self.min_images < 2:
            raise ValueError(f"min_images must be at least 2, got {self.min_images}")


@dataclass(frozen=True)
class CiMethod:
    """What one interval (or group of intervals) resampled.

    Attributes:
        unit: ``"images"``, ``"objects"``, or ``None`` when there is no interval.
        what: The resampled units in words (``"ground-truth objects"``); ``None`` without interval.
        n: Units resampled (0 without interval).
        n_images: Images scored.
        resamples: Bootstrap resamples (0 without interval).
        level: Coverage of the interval.
        seed: Seed of the draws.
        min_images: Fewest images that are resampled.
        reason: Why there is no interval (``None`` when there is one).
    """

    unit: Literal["images", "objects"] | None
    what: str | None
    n: int
    n_images: int
    resamples: int
    level: float
    seed: int
    min_images: int
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return asdict(self)


def choose_method(
    plan: BootstrapPlan, *, n_images: int, objects: int | None = None, what: str | None = None
) -> CiMethod:
    """The units an interval resamples under the policy of the module docstring.

    Args:
        plan: Resamples, seed, level and ``min_images``.
        n_images: Images scored.
        objects: Units of an object-level score (``None`` for image-level and pixel scores).
        what: Those units in words.

    Returns:
        Images when there are ``plan.min_images`` or more; else objects when the score has at
        least two; else no interval, with the reason.
    """
    common = {"n_images": n_images, "level": plan.level, "seed": plan.seed, "min_images": plan.min_images}
    if n_images >= plan.min_images:
        return CiMethod("images", "images", n_images, resamples=plan.n_resamples, **common)
    if objects is None:
        return CiMethod(None, None, 0, resamples=0, reason="too few images", **common)
    if objects < 2:
        return CiMethod(None, None, 0, resamples=0, reason="too few objects", **common)
    return CiMethod("objects", what, objects, resamples=plan.n_resamples, **common)


def no_interval(plan: BootstrapPlan, *, n_images: int, reason: str) -> CiMethod:
    """A :class:`CiMethod` for a score that gets no interval, with the reason."""
    return CiMethod(
        None, None, 0, n_images=n_images, resamples=0, level=plan.level, seed=plan.seed,
        min_images=plan.min_images, reason=reason,
    )


class Resampler:
    """The draws of one bootstrap over ``n_units`` units, shared by every score it serves.

    Each call draws the same resamples again from ``plan.seed`` (in chunks, so memory stays
    bounded however many units there are); with fewer than two units, or ``draw=False``, there
    are no draws and every interval is ``None``.

    Args:
        n_units: Number of units (images or objects); values are given one per unit.
        plan: Resamples, seed and level.
        draw: Whether to resample at all (``False``: e.g. images too few to resample).
    """

    def __init__(self, n_units: int, plan: BootstrapPlan, *, draw: bool = True) -> None:
        self.n_units = int(n_units)
        self.plan = plan
        self.draw = bool(draw)

    @property
    def active(self) -> bool:
        """Whether there are draws (``draw`` and two units or more)."""
        return self.draw and self.n_units >= 2

    def totals(self, values: np.ndarray) -> np.ndarray | None:
        """Sums of per-unit values in every resample.

        Args:
            values: ``(n_units,)`` or ``(k, n_units)``: one value per unit (per row).

        Returns:
            ``(n_resamples,)`` or ``(n_resamples, k)`` sums, or ``None`` without draws.
        """
        values = np.asarray(values, np.float64)
        if values.shape[-1:] != (self.n_units,) or values.ndim > 2:
            raise ValueError(f"expected one value per unit ({self.n_units}), got shape {values.shape}")
        if not self.active:
            return None
        n, total = self.n_units, self.plan.n_resamples
        rng = np.random.default_rng(self.plan.seed)
        rows = max(1, _CHUNK // n)
        out = []
        for start in range(0, total, rows):
            b = min(rows, total - start)
            draws = rng.integers(0, n, size=(b, n))
            # counts[r, i]: how often resample r drew unit i
            counts = np.bincount((np.arange(b)[:, None] * n + draws).ravel(), minlength=b * n).reshape(b, n)
            out.append(counts.astype(np.float64) @ values.T)
        return np.concatenate(out)

    def ratios(self, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray | None:
        """``sum(numerator) / sum(denominator)`` in every resample (NaN where the sum is 0).

        Args:
            numerator: One value per unit.
            denominator: One value per unit.

        Returns:
            One ratio per resample, or ``None`` without draws.
        """
        numerator = np.asarray(numerator, np.float64)
        denominator = np.asarray(denominator, np.float64)
        if numerator.shape != (self.n_units,) or denominator.shape != (self.n_units,):
            raise ValueError(
                f"expected one value per unit ({self.n_units}), got {numerator.shape} and {denominator.shape}"
            )
        sums = self.totals(np.stack([numerator, denominator]))
        if sums is None:
            return None
        num, den = sums[:, 0], sums[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den != 0, num / np.where(den != 0, den, 1), np.nan)

    def interval(self, samples: np.ndarray | None) -> list[float] | None:
        """Percentile interval of resampled values; NaN resamples (score undefined) are left out.

        Returns:
            ``[low, high]``, or ``None`` when there are no defined resamples.
        """
        if samples is None:
            return None
        samples = np.asarray(samples, np.float64)
        samples = samples[~np.isnan(samples)]
        if samples.size == 0:
            return None
        tail = (1 - self.plan.level) / 2 * 100
        low, high = np.percentile(samples, [tail, 100 - tail])
        return [float(low), float(high)]

    def ratio_ci(
        self,
        numerator: np.ndarray,
        denominator: np.ndarray,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> list[float] | None:
        """Interval of ``transform(sum(numerator) / sum(denominator))`` over the resamples.

        Args:
            numerator: One value per unit.
            denominator: One value per unit.
            transform: Applied to the resampled ratios (e.g. DET from AOGM-D / AOGM-D0).

        Returns:
            ``[low, high]``, or ``None`` without draws or when the ratio is undefined (zero
            denominator) in every resample.
        """
        samples = self.ratios(numerator, denominator)
        if samples is not None and transform is not None:
            samples = transform(samples)
        return self.interval(samples)

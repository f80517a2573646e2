"""Percentile bootstrap confidence intervals for dataset scores pooled over images.

Every dataset score in :mod:`segpipe.scoring` is a ratio of sums over images (SEG: summed
Jaccard over summed object counts; F1: ``2 sum TP / sum(2 TP + FP + FN)``; a mean over
images: summed values over the number of images where the value is defined). Resampling the
images with replacement and recomputing that ratio gives the bootstrap distribution; the
interval is its ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles. Images are the unit
that is resampled, because objects of one image are not independent.

The same ``seed`` gives the same intervals; every score of a dataset is resampled with the
same image draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BootstrapPlan:
    """How intervals are drawn.

    Attributes:
        n_resamples: Bootstrap resamples of the images.
        seed: Seed of :func:`numpy.random.default_rng`.
        level: Coverage of the interval.
    """

    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        if self.n_resamples < 1:
            raise ValueError(f"n_resamples must be at least 1, got {self.n_resamples}")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")


class Resampler:
    """The image draws of one bootstrap, shared by every score of a dataset.

    Args:
        n_images: Number of images (the resampled units).
        plan: Resamples, seed and level.
    """

    def __init__(self, n_images: int, plan: BootstrapPlan) -> None:
        self.n_images = n_images
        self.plan = plan
        if n_images >= 2:
            rng = np.random.default_rng(plan.seed)
            draws = rng.integers(0, n_images, size=(plan.n_resamples, n_images))
            rows = np.repeat(np.arange(plan.n_resamples), n_images)
            # weights[b, i]: how often resample b drew image i
            self.weights = np.bincount(
                rows * n_images + draws.ravel(), minlength=plan.n_resamples * n_images
            ).reshape(plan.n_resamples, n_images).astype(np.float64)
        else:
            self.weights = None

    def ratios(self, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray | None:
        """``sum(numerator) / sum(denominator)`` in every resample (NaN where the sum is 0).

        Args:
            numerator: One value per image.
            denominator: One value per image.

        Returns:
            One ratio per resample, or ``None`` with fewer than two images.
        """
        if self.weights is None:
            return None
        numerator = np.asarray(numerator, np.float64)
        denominator = np.asarray(denominator, np.float64)
        if numerator.shape != (self.n_images,) or denominator.shape != (self.n_images,):
            raise ValueError(
                f"expected one value per image ({self.n_images}), got {numerator.shape} and {denominator.shape}"
            )
        num = self.weights @ numerator
        den = self.weights @ denominator
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
            numerator: One value per image.
            denominator: One value per image.
            transform: Applied to the resampled ratios (e.g. DET from AOGM-D / AOGM-D0).

        Returns:
            ``[low, high]``, or ``None`` with fewer than two images or when the ratio is
            undefined (zero denominator) in every resample.
        """
        samples = self.ratios(numerator, denominator)
        if samples is not None and transform is not None:
            samples = transform(samples)
        return self.interval(samples)

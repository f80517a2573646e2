"""Bootstrap intervals: the unit policy, exact small cases, seeding, undefined resamples."""

from __future__ import annotations

import numpy as np
import pytest

from segpipe.scoring import BootstrapPlan, Resampler
from segpipe.scoring import bootstrap
from segpipe.scoring.bootstrap import MIN_IMAGES, choose_method


def test_draws_of_every_unit(monkeypatch):
    rs = Resampler(5, BootstrapPlan(n_resamples=200, seed=3))
    counts = rs.totals(np.eye(5))  # (resamples, units): how often each resample drew each unit
    assert counts.shape == (200, 5) and np.all(counts.sum(1) == 5)  # each resample draws n units
    assert counts.min() == 0 and counts.max() >= 3  # with replacement
    assert np.array_equal(counts, Resampler(5, BootstrapPlan(n_resamples=200, seed=3)).totals(np.eye(5)))
    assert not np.array_equal(counts, Resampler(5, BootstrapPlan(n_resamples=200, seed=4)).totals(np.eye(5)))
    monkeypatch.setattr(bootstrap, "_CHUNK", 7)  # one resample per chunk: the same draws
    assert np.array_equal(counts, Resampler(5, BootstrapPlan(n_resamples=200, seed=3)).totals(np.eye(5)))


def test_pooled_ratio_interval_by_hand():
    # image 0: 1 of 4 objects; image 1: 9 of 12. Resamples {00, 01, 10, 11} give
    # 2/8, 10/16, 10/16, 18/24: the extreme ones each carry a quarter of the mass.
    rs = Resampler(2, BootstrapPlan())
    assert rs.ratio_ci(np.array([1, 9]), np.array([4, 12])) == [0.25, 0.75]
    samples = rs.ratios(np.array([1, 9]), np.array([4, 12]))
    assert set(np.round(samples, 12)) == {0.25, 0.625, 0.75}


def test_zero_denominators_are_left_out():
    rs = Resampler(2, BootstrapPlan())
    # image 0 has no objects: resamples of image 0 only are undefined, the rest give 0.5
    assert rs.ratio_ci(np.array([0, 1]), np.array([0, 2])) == [0.5, 0.5]
    assert rs.ratio_ci(np.zeros(2), np.zeros(2)) is None


def test_transform_single_unit_and_no_draws():
    rs = Resampler(2, BootstrapPlan())
    assert rs.ratio_ci(np.array([3.0, 0.0]), np.array([2.0, 2.0]), transform=lambda r: 1 - np.minimum(r, 1)) == [0.0, 1.0]
    assert Resampler(1, BootstrapPlan()).ratio_ci(np.array([1]), np.array([2])) is None
    assert Resampler(2, BootstrapPlan(), draw=False).ratio_ci(np.array([1, 9]), np.array([4, 12])) is None


def test_object_bootstrap_by_hand():
    """Objects are units like any other: the interval of a mean of per-object values."""
    rs = Resampler(5, BootstrapPlan())
    assert rs.ratio_ci(np.full(5, 0.5), np.ones(5)) == [0.5, 0.5]  # every object 0.5: nothing varies
    # Jaccard 1, 1, 1, 0: a resample's mean is k/4 with k ~ Binomial(4, 3/4), P(k = 0) = 1/256 and
    # P(k <= 1) = 13/256 = 5.1%, so the 2.5th percentile is 1/4; P(k = 4) = 81/256, so the 97.5th is 1.
    assert Resampler(4, BootstrapPlan()).ratio_ci(np.array([1.0, 1, 1, 0]), np.ones(4)) == [0.25, 1.0]


@pytest.mark.parametrize(
    ("n_images", "objects", "expected"),
    [
        (2, 202, ("objects", 202, 1000, None)),  # too few images: the objects of an object-level score
        (2, None, (None, 0, 0, "too few images")),  # too few images, and an image-level score
        (2, 1, (None, 0, 0, "too few objects")),
        (MIN_IMAGES - 1, 40, ("objects", 40, 1000, None)),
        (MIN_IMAGES, 40, ("images", MIN_IMAGES, 1000, None)),  # enough images: images, whatever the score
        (12, None, ("images", 12, 1000, None)),
    ],
)
def test_unit_policy(n_images, objects, expected):
    method = choose_method(BootstrapPlan(), n_images=n_images, objects=objects, what="ground-truth objects")
    assert (method.unit, method.n, method.resamples, method.reason) == expected
    assert method.as_dict() == {
        "unit": expected[0], "what": {"objects": "ground-truth objects", "images": "images", None: None}[expected[0]],
        "n": expected[1], "n_images": n_images, "resamples": expected[2], "level": 0.95, "seed": 0,
        "min_images": MIN_IMAGES, "reason": expected[3],
    }


def test_interval_covers_the_truth_for_many_images():
    rng = np.random.default_rng(1)
    n = 200
    den = rng.integers(5, 50, n).astype(float)
    num = rng.binomial(den.astype(int), 0.7).astype(float)
    low, high = Resampler(n, BootstrapPlan(seed=2)).ratio_ci(num, den)
    assert low < num.sum() / den.sum() < high
    assert low < 0.7 < high and high - low < 0.05


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"n_resamples": 0}, "n_resamples"), ({"level": 1.0}, "level"), ({"min_images": 1}, "min_images")]
)
def test_plan_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BootstrapPlan(**kwargs)


def test_shape_check():
    with pytest.raises(ValueError, match="one value per unit"):
        Resampler(3, BootstrapPlan()).ratios(np.ones(2), np.ones(2))

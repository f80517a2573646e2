"""Bootstrap intervals over images: exact small cases, seeding, undefined resamples."""

from __future__ import annotations

import numpy as np
import pytest

from segpipe.scoring import BootstrapPlan, Resampler


def test_weights_are_draws_of_every_image():
    rs = Resampler(5, BootstrapPlan(n_resamples=200, seed=3))
    assert rs.weights.shape == (200, 5)
    assert np.all(rs.weights.sum(1) == 5)  # each resample draws n images
    assert np.array_equal(rs.weights, Resampler(5, BootstrapPlan(n_resamples=200, seed=3)).weights)
    assert not np.array_equal(rs.weights, Resampler(5, BootstrapPlan(n_resamples=200, seed=4)).weights)


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


def test_transform_and_single_image():
    rs = Resampler(2, BootstrapPlan())
    assert rs.ratio_ci(np.array([3.0, 0.0]), np.array([2.0, 2.0]), transform=lambda r: 1 - np.minimum(r, 1)) == [0.0, 1.0]
    assert Resampler(1, BootstrapPlan()).ratio_ci(np.array([1]), np.array([2])) is None


def test_interval_covers_the_truth_for_many_images():
    rng = np.random.default_rng(1)
    n = 200
    den = rng.integers(5, 50, n).astype(float)
    num = rng.binomial(den.astype(int), 0.7).astype(float)
    low, high = Resampler(n, BootstrapPlan(seed=2)).ratio_ci(num, den)
    assert low < num.sum() / den.sum() < high
    assert low < 0.7 < high and high - low < 0.05


@pytest.mark.parametrize(("kwargs", "match"), [({"n_resamples": 0}, "n_resamples"), ({"level": 1.0}, "level")])
def test_plan_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BootstrapPlan(**kwargs)


def test_shape_check():
    with pytest.raises(ValueError, match="one value per image"):
        Resampler(3, BootstrapPlan()).ratios(np.ones(2), np.ones(2))

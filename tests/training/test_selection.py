"""The checkpoint training keeps: the latest within two standard errors of the best validation score."""

from __future__ import annotations

import math

from segpipe.training.selection import CheckpointChoice


def kept(checks: list[tuple[int, float, float]]) -> int | None:
    """The epoch kept after ``(epoch, score, standard error)`` checks in order."""
    choice, epoch_kept = CheckpointChoice(), None
    for epoch, score, noise in checks:
        if choice.keeps(score, noise=noise):
            epoch_kept = epoch
    return epoch_kept


def test_a_later_checkpoint_within_the_noise_replaces_an_earlier_best():
    """bbbc007's one validation field (flow weight 4): epoch 10 scored 0.933 with a standard error
    of 0.0104 (measured), the later checks 0.910-0.924: the last (epoch 40, 0.924) is kept."""
    checks = [(5, 0.874, 0.02), (10, 0.933, 0.0104), (15, 0.927, 0.011), (20, 0.910, 0.011),
              (25, 0.912, 0.011), (30, 0.923, 0.011), (35, 0.924, 0.011), (40, 0.924, 0.0113)]
    assert kept(checks) == 40
    assert kept([(e, s, 0.0) for e, s, _ in checks]) == 10  # without noise: the strict best


def test_a_later_checkpoint_within_two_standard_errors_replaces_an_earlier_best():
    """synthetic-nuclei-3d (measured 2026-12-03): epoch 5 validated 0.7773 with a standard error
    of 0.0746 over its 15 nuclei, epoch 10 0.6879, 1.2 standard errors lower; on the test strip
    epoch 10 scored SEG 0.783 and epoch 5 0.703. Epoch 10 is kept; within one error it was not."""
    checks = [(5, 0.7773, 0.0746), (10, 0.6879, 0.0847)]
    assert kept(checks) == 10
    assert kept([(e, s, n / 2) for e, s, n in checks]) == 5  # the same gap at half the noise


def test_a_checkpoint_better_by_more_than_the_margin_is_kept():
    """A volume whose later checks fall clearly (0.964, then 0.911 with an error of 0.02): epoch 5 stays."""
    assert kept([(5, 0.964, 0.02), (10, 0.911, 0.02)]) == 5


def test_the_margin_is_the_best_checks_noise_and_ties_go_to_the_later():
    choice = CheckpointChoice()
    assert choice.keeps(0.80, noise=0.05)
    assert choice.keeps(0.82, noise=0.01)  # a new best: twice its own noise (0.02) is now the margin
    assert not choice.keeps(0.79, noise=0.05)  # within 0.1 of 0.82, not within 0.02
    assert choice.keeps(0.805, noise=0.0)
    assert (choice.best, choice.noise) == (0.82, 0.01)
    assert CheckpointChoice(0.5, 0.0).keeps(0.5)  # equal to the best: the later one


def test_nan_scores_are_never_kept_and_nan_noise_counts_as_none():
    choice = CheckpointChoice()
    assert not choice.keeps(math.nan, noise=0.1)
    assert choice.keeps(0.6, noise=math.nan) and choice.noise == 0.0
    assert not choice.keeps(0.59)

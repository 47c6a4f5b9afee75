"""The paired and stratified bootstraps of `planner.stats` that the findings table uses."""

from __future__ import annotations

import numpy as np
import pytest

from planner.stats import (
    bootstrap_stat,
    mean_ci,
    normal_ci,
    paired_diff_ci,
    percentile_interval,
    stratified_boot_means,
)


def _pairs(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(0, 1, n)  # shared by both methods: what pairing cancels
    a = np.clip(difficulty + 0.05 + rng.normal(0, 0.02, n), 0, 1)
    b = np.clip(difficulty + rng.normal(0, 0.02, n), 0, 1)
    return a, b


def test_paired_diff_ci_is_seeded_and_narrower_than_unpaired() -> None:
    a, b = _pairs()
    first = paired_diff_ci(a, b, 0.95, 1000, np.random.default_rng(3))
    assert first == paired_diff_ci(a, b, 0.95, 1000, np.random.default_rng(3))
    d, lo, hi = first
    assert d == pytest.approx(float(np.mean(a - b)))
    assert lo < d < hi and lo > 0
    _, alo, ahi = mean_ci(a, 0.95, 1000, np.random.default_rng(3))
    _, blo, bhi = mean_ci(b, 0.95, 1000, np.random.default_rng(4))
    assert hi - lo < (ahi - alo + bhi - blo) / 4


def test_paired_diff_ci_normal_and_degenerate_cases() -> None:
    a, b = _pairs(50)
    assert paired_diff_ci(a, b, 0.95, 0, np.random.default_rng(0)) == pytest.approx(
        normal_ci(a - b)
    )
    assert paired_diff_ci([0.5], [0.25], 0.95, 100, np.random.default_rng(0)) == (0.25,) * 3
    same = paired_diff_ci(a, a, 0.95, 200, np.random.default_rng(0))
    assert same == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="one length"):
        paired_diff_ci(a, b[:-1], 0.95, 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="NaN"):
        paired_diff_ci([np.nan, 1.0], [0.0, 1.0], 0.95, 10, np.random.default_rng(0))


def test_stratified_boot_means_keeps_groups_apart() -> None:
    groups = np.array([3, 1, 1, 3, 2, 2, 2])
    values = np.array([[10.0, 0.0], [1, 1], [3, 1], [10, 0], [5, 2], [7, 2], [6, 2]])
    draws = stratified_boot_means(values, groups, 500, np.random.default_rng(0))
    assert draws.shape == (500, 3, 2)  # groups sorted: 1, 2, 3
    # A group's draws stay within its own values; a constant group never moves.
    assert draws[:, 0, 0].min() >= 1 and draws[:, 0, 0].max() <= 3
    assert (draws[:, 2] == [10.0, 0.0]).all() and (draws[:, 1, 1] == 2).all()
    assert draws[:, 1, 0].mean() == pytest.approx(6.0, abs=0.1)
    again = stratified_boot_means(values, groups, 500, np.random.default_rng(0))
    assert np.array_equal(draws, again)
    one = stratified_boot_means(values[:, 0], groups, 4, np.random.default_rng(0))
    assert one.shape == (4, 3, 1)
    with pytest.raises(ValueError, match="labels"):
        stratified_boot_means(values, groups[:-1], 4, np.random.default_rng(0))


def test_bootstrap_stat_and_infinite_draws() -> None:
    a, b = _pairs(100)
    both = np.column_stack([a, b])
    point, lo, hi = bootstrap_stat(
        both, lambda v: float((v[:, 0] - v[:, 1]).mean()), 0.95, 500, np.random.default_rng(1)
    )
    assert point == pytest.approx(float(np.mean(a - b))) and lo < point < hi
    assert bootstrap_stat(both, lambda v: 1.0, 0.95, 0, np.random.default_rng(1)) == (1.0,) * 3
    lo, hi = percentile_interval(np.array([1.0, 2.0, np.inf, np.inf, np.inf]), 0.5)
    assert (float(lo), float(hi)) == (2.0, np.inf)

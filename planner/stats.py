"""Intervals and bootstraps: the one home for the project's confidence intervals.

Every interval the project prints or writes comes from here, so that "95% CI" means the same
thing in a plan, an exchange, a policy's promise and a testbed quality figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import norm

# The two-sided 95% normal quantile, written out so that results never depend on scipy's rounding.
Z95 = 1.959963984540054


def mean_ci(
    values: np.ndarray, ci: float, n_boot: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """Mean and a percentile-bootstrap CI over rows (normal approximation when n_boot == 0).

    values: [problems] or [problems, series]; returns arrays per series when 2-D.
    """
    v = np.asarray(values, float)
    one = v.ndim == 1
    v2 = v[:, None] if one else v
    n = v2.shape[0]
    mean = v2.mean(axis=0)
    if n < 2:
        lo = hi = mean
    elif n_boot == 0:
        z = norm.ppf(0.5 + ci / 2)
        half = z * v2.std(axis=0, ddof=1) / math.sqrt(n)
        # A mean never leaves the range of its values (accuracies near 1 gave ci_hi > 1).
        lo, hi = np.maximum(mean - half, v2.min(axis=0)), np.minimum(mean + half, v2.max(axis=0))
    else:
        boots = np.empty((n_boot, v2.shape[1]))
        step = max(1, 2_000_000 // max(n, 1))
        for start in range(0, n_boot, step):
            stop = min(n_boot, start + step)
            idx = rng.integers(0, n, size=(stop - start, n))
            boots[start:stop] = v2[idx].mean(axis=1)
        lo = np.quantile(boots, (1 - ci) / 2, axis=0)
        hi = np.quantile(boots, 1 - (1 - ci) / 2, axis=0)
    if one:
        return float(mean[0]), float(np.asarray(lo).ravel()[0]), float(np.asarray(hi).ravel()[0])
    return mean, lo, hi  # type: ignore[return-value]


def normal_ci(d: np.ndarray | Sequence[float], z: float = Z95) -> tuple[float, float, float]:
    """Mean and the normal-approximation interval mean ± z·SE, unclamped (for paired
    differences, which may leave the range of their values). One value: a zero-width interval."""
    v = np.asarray(d, dtype=float)
    mean = float(np.mean(v))
    se = float(np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0
    return mean, mean - z * se, mean + z * se


def half_width(values: Sequence[float], z: float = Z95) -> float:
    """Half-width of the normal 95% interval of a mean (NaN for fewer than two values)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float("nan")
    return z * float(v.std(ddof=1)) / math.sqrt(len(v))


def paired_diff_ci(
    a: np.ndarray | Sequence[float],
    b: np.ndarray | Sequence[float],
    ci: float,
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """Mean of a − b over paired rows (problems) and its CI, resampling the pairs together.

    Percentile bootstrap with `n_boot` resamples; with n_boot == 0 the normal interval
    mean ± z·SE, unclamped (a difference may leave the range of its values). Fewer than two
    pairs: a zero-width interval. The pairing is what makes the interval narrow: two methods
    scored on the same problems share each problem's difficulty.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"paired values must be two 1-D arrays of one length, got {x.shape}, {y.shape}"
        )
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("paired values must not be NaN")
    d = x - y
    if len(d) == 0:
        raise ValueError("no pairs")
    if n_boot == 0 or len(d) < 2:
        return normal_ci(d, float(norm.ppf(0.5 + ci / 2)))
    return mean_ci(d, ci, n_boot, rng)


def stratified_boot_means(
    values: np.ndarray, groups: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap draws of each group's mean, resampling rows within each group, so that every
    draw keeps the groups' sizes (e.g. problems within difficulty bins).

    values: [rows] or [rows, series]; groups: [rows] labels. Returns [n_boot, groups, series]
    (groups in sorted order of their labels; series of length 1 for 1-D values). Draw i of every
    group comes from one generator in group order, so the result depends only on the inputs and
    the generator's state.
    """
    v = np.asarray(values, dtype=float)
    v2 = v[:, None] if v.ndim == 1 else v
    g = np.asarray(groups)
    if len(g) != v2.shape[0]:
        raise ValueError(f"groups has {len(g)} labels for {v2.shape[0]} rows")
    labels = np.unique(g)
    out = np.empty((n_boot, len(labels), v2.shape[1]))
    for k, label in enumerate(labels):
        rows = v2[g == label]
        idx = rng.integers(0, len(rows), size=(n_boot, len(rows)))  # (n_boot, n_group)
        out[:, k] = rows[idx].mean(axis=1)
    return out


def percentile_interval(draws: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """The central `ci` percentile interval of bootstrap draws along axis 0.

    Inverted-CDF percentiles (no interpolation between draws), so that a statistic that may be
    infinite (an efficiency multiple the reference never reaches) keeps infinite bounds instead
    of NaN from inf − inf.
    """
    d = np.asarray(draws, dtype=float)
    lo = np.quantile(d, (1 - ci) / 2, axis=0, method="inverted_cdf")
    hi = np.quantile(d, 1 - (1 - ci) / 2, axis=0, method="inverted_cdf")
    return lo, hi


def bootstrap_stat(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    ci: float,
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """A statistic of the rows of `values` ([rows, ...], e.g. problems) and its percentile
    bootstrap interval (`percentile_interval`), resampling whole rows so that the columns of a
    row (the methods compared on one problem) stay paired. A resample on which the statistic is
    undefined (NaN: a ratio whose denominator rows were all left out) is left out of the
    interval; infinite draws stay (`percentile_interval`)."""
    v = np.asarray(values, dtype=float)
    point = float(statistic(v))
    if n_boot == 0 or len(v) < 2:
        return point, point, point
    draws = np.empty(n_boot)
    for i in range(n_boot):
        draws[i] = statistic(v[rng.integers(0, len(v), size=len(v))])
    draws = draws[~np.isnan(draws)]
    if not len(draws):
        return point, point, point
    lo, hi = percentile_interval(draws, ci)
    return point, float(lo), float(hi)


def wilson_interval(p: np.ndarray | float, n: np.ndarray | float, ci: float) -> tuple:
    """Wilson score interval of a proportion p observed on n items (arrays broadcast).

    The small-sample floor of a promise: an accuracy averaged over n problems, each in [0, 1], has
    a variance of at most p(1 - p)/n, so this interval is never narrower than what n problems can
    tell, and unlike a bootstrap it does not collapse to [1, 1] when a handful of problems are all
    solved (n = 5 at p = 1 gives [0.57, 1] at 95%). n <= 0 gives [0, 1].
    """
    z = float(norm.ppf(0.5 + ci / 2))
    p_ = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    n_ = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = 1 + z**2 / n_
        centre = (p_ + z**2 / (2 * n_)) / denom
        half = z * np.sqrt(p_ * (1 - p_) / n_ + z**2 / (4 * n_**2)) / denom
    lo = np.where(n_ > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    hi = np.where(n_ > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    # Within rounding of p itself at the ends (p = 0 or 1).
    lo, hi = np.minimum(lo, p_), np.maximum(hi, p_)
    return (float(lo), float(hi)) if lo.ndim == 0 else (lo, hi)

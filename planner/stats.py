"""Intervals and bootstraps: the one home for the project's confidence intervals.

Every interval the project prints or writes comes from here, so that "95% CI" means the same
thing in a plan, an exchange, a policy's promise and a testbed quality figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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

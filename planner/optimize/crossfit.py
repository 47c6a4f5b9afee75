"""Two-fold cross-fitted selection within difficulty bins, on dense arrays (the plan's core).

`cross_fit` chooses, per bin and fold, the option with the highest mean accuracy on that fold and
scores each problem with the option chosen on the other fold of its bin; `efficiency_multiple`
reads how much more budget a reference curve needs to reach an accuracy. Also what
benchmarks/bench_plan.py times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


@dataclass
class CrossFit:
    """Result of cross-fitted selection on dense arrays.

    chosen[t, b, f]: option chosen on fold f of bin b at target t (-1 when nothing is eligible);
    deploy[t, b]: option chosen on the whole bin; per_problem[t, p]: the accuracy problem p gets
    from the option chosen on the other fold of its bin (NaN when nothing was eligible).
    """

    chosen: np.ndarray
    deploy: np.ndarray
    per_problem: np.ndarray
    group_means: np.ndarray = field(repr=False)
    in_sample_bins: list[int] = field(default_factory=list)


def cross_fit(
    acc: np.ndarray,
    cost: np.ndarray,
    bins: np.ndarray,
    folds: np.ndarray,
    targets: Sequence[float],
    eligible: np.ndarray | None = None,
) -> CrossFit:
    """Two-fold cross-validated selection within bins.

    acc: [problems, options] accuracies; cost: [options]; bins: [problems] in 0..B-1;
    folds: [problems] in {0, 1}. Options are compared by mean accuracy; ties go to the option
    that comes first, so callers order options by (cost, name) to prefer the cheaper one.
    """
    n_prob, n_opt = acc.shape
    n_bins = int(bins.max()) + 1 if n_prob else 0
    group = bins * 2 + folds
    n_groups = n_bins * 2
    onehot = sp.csr_matrix(
        (np.ones(n_prob, dtype=acc.dtype), (group, np.arange(n_prob))), shape=(n_groups, n_prob)
    )
    sums = np.asarray(onehot @ acc)
    counts = np.bincount(group, minlength=n_groups).astype(float)
    bin_sums = sums[0::2] + sums[1::2]
    bin_counts = counts[0::2] + counts[1::2]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
        bin_means = bin_sums / bin_counts[:, None]
    base_ok = np.ones(n_opt, bool) if eligible is None else eligible
    n_t = len(targets)
    chosen = np.full((n_t, n_bins, 2), -1, dtype=np.int64)
    deploy = np.full((n_t, n_bins), -1, dtype=np.int64)
    per_problem = np.full((n_t, n_prob), np.nan)
    in_sample: set[int] = set()
    rows = np.arange(n_prob)
    for ti, t in enumerate(targets):
        ok = base_ok & (cost <= t * (1 + 1e-9))
        if not ok.any():
            continue
        masked = np.where(ok[None, :], means, -np.inf)
        masked_bin = np.where(ok[None, :], bin_means, -np.inf)
        pick = np.argmax(np.nan_to_num(masked, nan=-np.inf), axis=1).reshape(n_bins, 2)
        dep = np.argmax(np.nan_to_num(masked_bin, nan=-np.inf), axis=1)
        for b in range(n_bins):
            for f in (0, 1):
                if counts[2 * b + f] == 0:
                    # An empty fold (a bin of one problem) cannot select: fall back to the bin.
                    pick[b, f] = dep[b]
                    if bin_counts[b] > 0:
                        in_sample.add(b + 1)
        chosen[ti] = pick
        deploy[ti] = dep
        sel = pick[bins, 1 - folds]
        per_problem[ti] = acc[rows, sel]
    return CrossFit(chosen, deploy, per_problem, means, sorted(in_sample))


def efficiency_multiple(
    target: float, accuracy: float, ref_cost: np.ndarray, ref_acc: np.ndarray
) -> float | None:
    """Budget at which the reference curve first reaches `accuracy`, divided by `target`.

    Interpolated linearly on log budget between the reference's points; None when the reference
    never reaches it (reported as "> max").
    """
    order = np.argsort(ref_cost, kind="stable")
    c, a = ref_cost[order], ref_acc[order]
    hit = np.flatnonzero(a >= accuracy - 1e-12)
    if len(hit) == 0 or math.isnan(accuracy):
        return None
    j = int(hit[0])
    if j == 0:
        return float(c[0] / target)
    lc0, lc1 = math.log(c[j - 1]), math.log(c[j])
    frac = (accuracy - a[j - 1]) / (a[j] - a[j - 1]) if a[j] != a[j - 1] else 1.0
    return float(math.exp(lc0 + frac * (lc1 - lc0)) / target)

"""Choosing options from the sums of a training set: one option for all bins, or per bin with
partial pooling over a shortlist (the pieces that `planner.optimize.procedure` cross-fits).

With 60-500 problems and 100-200 options per bin, the per-bin maximum of noisy means chases noise
(the winner's curse), and its held-out value falls below a single well-chosen option. Three
guards, each a pure function of the training sums:

- **Partial pooling** (`pooled_scores`): a bin's accuracy of option j is shrunk toward the same
  option's accuracy over all bins, (n_b m_bj + n0 M_j) / (n_b + n0): the empirical-Bayes
  posterior mean of a bin effect with a prior worth n0 problems centred on the pooled mean. n0 = 0
  is "each bin alone" (the paper), n0 -> inf "one option for every bin". The weight depends on the
  bin's size and n0 only, never on the option, so an order that holds in a bin's means and in the
  pooled means (pass@k non-decreasing in k, say) holds in the shrunk ones.
- **A shortlist** (`dominated`): an option that can win in no group is dropped before any bin
  chooses: in every bin, and over all problems, some option that costs no more is better by more
  than z standard errors of each (se_i + se_j, a conservative bound on the paired one). A
  specialist that leads in one bin only stays; no bin should pick an option beaten everywhere on
  a lucky handful of its own problems.
- **The single option** (`pick_single`): the best option over all problems, without probes (a
  router that does not probe pays none), a candidate at every budget.

Arrays carry leading batch dimensions (training sets) before the bin and option axes. Ties go to
the first option: callers order options by (cost, name), so the cheaper option wins a tie.
"""

from __future__ import annotations

import numpy as np

# Budgets compare with a relative tolerance, as everywhere in the plan.
_REL = 1 + 1e-9


def pooled_moments(
    s1: np.ndarray, s2: np.ndarray, n: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled mean, its standard error and the problem count over all bins.

    s1, s2: [..., bins, options] sums of accuracy and of squared accuracy; n: [..., bins] counts.
    Returns mean [..., options], se [..., options] (of the mean, unbiased variance; 0 for fewer
    than two problems) and N [...].
    """
    total = n.sum(axis=-1)
    t1, t2 = s1.sum(axis=-2), s2.sum(axis=-2)
    nn = np.maximum(total, 1.0)[..., None]
    mean = t1 / nn
    var = np.maximum(t2 / nn - mean**2, 0.0) * nn / np.maximum(nn - 1.0, 1.0)
    se = np.where(nn >= 2, np.sqrt(var / nn), 0.0)
    return mean, se, total


def pooled_scores(
    s1: np.ndarray, n: np.ndarray, pooled: np.ndarray, n0: float | np.ndarray
) -> np.ndarray:
    """[..., bins, options] each bin's accuracy shrunk toward the pooled one with n0 problems of
    weight (a number, or an array broadcastable to [..., 1, 1]); a bin with no weight at all
    takes the pooled mean."""
    w = n[..., None] + n0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (s1 + n0 * pooled[..., None, :]) / w
    return np.where(w > 0, out, pooled[..., None, :])


def dominated(
    s1: np.ndarray,
    s2: np.ndarray,
    n: np.ndarray,
    cost: np.ndarray,
    z: float,
    ok: np.ndarray | None = None,
) -> np.ndarray:
    """[..., options] True where an option can win in no group, with a margin: in every bin, and
    over all problems, some option that costs no more has a lower bound above its upper bound
    (mean -/+ z standard errors of the group's mean).

    s1, s2: [..., bins, options] sums of accuracy and of its square; n: [..., bins] counts.
    Different bins may be won by different rivals, so a specialist that is best in one bin only
    stays. Only options in `ok` (the deployable ones) are rivals: pass@k is an upper bound, not
    a rival. O(bins x options) per set: a running maximum over options sorted by cost.
    """
    mean, se, _ = pooled_moments(s1, s2, n)
    groups = [(mean, se)]
    nb = np.maximum(n, 1.0)[..., None]
    m_b = s1 / nb
    var_b = np.maximum(s2 / nb - m_b**2, 0.0) * nb / np.maximum(nb - 1.0, 1.0)
    se_b = np.where(nb >= 2, np.sqrt(var_b / nb), np.inf)  # a bin of one problem: no bound
    groups += [(m_b[..., b, :], se_b[..., b, :]) for b in range(s1.shape[-2])]
    order = np.argsort(cost, kind="stable")
    c = cost[order]
    last = np.searchsorted(c, c * _REL, side="right") - 1
    beaten = np.ones(mean.shape, dtype=bool)
    for m, e in groups:
        low = np.where(True if ok is None else ok, m - z * e, -np.inf)[..., order]
        best = np.maximum.accumulate(low, axis=-1)[..., last]
        out = np.empty(mean.shape, dtype=bool)
        out[..., order] = best > (m + z * e)[..., order] + 1e-12
        beaten &= out
    return beaten


def pick_single(pooled: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """[...] the eligible option with the highest pooled mean (-1 where none is eligible)."""
    masked = np.where(ok, pooled, -np.inf)
    pick = masked.argmax(axis=-1)
    return np.where(ok.any(axis=-1), pick, -1)


def pick_per_bin(scores: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """[..., bins] each bin's eligible option with the highest score (-1 where none is).

    ok: [..., options] (the same eligible set in every bin)."""
    masked = np.where(ok[..., None, :], scores, -np.inf)
    pick = masked.argmax(axis=-1)
    return np.where(ok.any(axis=-1)[..., None], pick, -1)


def eligible(cost: np.ndarray, target: float) -> np.ndarray:
    """[options] True where the option's cost fits the budget."""
    return cost <= target * _REL

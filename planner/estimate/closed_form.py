"""Exact closed forms of a pool's expected accuracy at budget k <= n (all k-subsets at once).

- pass@k (coverage): 1 - C(n-c, k) / C(n, k) (Chen et al. 2021, the unbiased estimator);
- best-of-k by verifier score: sum_{i>=k} C(i-1, k-1) / C(n, k) * correct_(i) over the pool
  sorted by score, with correctness averaged inside score ties (the winner among tied scores is
  drawn at random).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln


def _log_comb(n: np.ndarray | float, k: np.ndarray | float) -> np.ndarray:
    return (
        gammaln(np.asarray(n, float) + 1)
        - gammaln(np.asarray(k, float) + 1)
        - gammaln(np.asarray(n, float) - np.asarray(k, float) + 1)
    )


def pass_at_k(n: int, c: np.ndarray | int, k: int) -> np.ndarray:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k)."""
    c = np.asarray(c, dtype=float)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    fail = n - c
    with np.errstate(invalid="ignore"):
        ratio = np.exp(_log_comb(fail, k) - _log_comb(n, k))
    return np.where(fail < k, 1.0, 1.0 - ratio)


def best_of_k_weights(n: int, k: int) -> np.ndarray:
    """P(the i-th smallest of n is the largest of a random k-subset), i = 1..n:
    C(i-1,k-1)/C(n,k)."""
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    i = np.arange(1, n + 1, dtype=float)
    w = np.zeros(n)
    ok = i >= k
    w[ok] = np.exp(_log_comb(i[ok] - 1, k - 1) - _log_comb(n, k))
    return w


def tie_averaged_sorted(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Sort ascending by score (rows independently) and replace correctness by its mean within
    each tie group. Works on 1-D arrays or 2-D [problems, n]."""
    s = np.atleast_2d(np.asarray(scores, float))
    c = np.atleast_2d(np.asarray(correct, float))
    order = np.argsort(s, axis=1, kind="stable")
    ss = np.take_along_axis(s, order, axis=1)
    cs = np.take_along_axis(c, order, axis=1)
    p, n = ss.shape
    new_group = np.ones_like(ss, dtype=bool)
    new_group[:, 1:] = ss[:, 1:] != ss[:, :-1]
    gid = np.cumsum(new_group, axis=1) - 1 + (np.arange(p) * n)[:, None]
    sums = np.bincount(gid.ravel(), weights=cs.ravel(), minlength=p * n)
    cnts = np.bincount(gid.ravel(), minlength=p * n)
    means = sums[gid] / cnts[gid]
    return means if np.ndim(scores) > 1 else means[0]


def best_of_k(scores: np.ndarray, correct: np.ndarray, k: int) -> np.ndarray:
    """Exact expected accuracy of picking the highest-scored of a random k-subset
    (rows = problems)."""
    s = np.atleast_2d(scores)
    w = best_of_k_weights(s.shape[1], k)
    out = tie_averaged_sorted(s, correct) @ w
    return out if np.ndim(scores) > 1 else out[0]

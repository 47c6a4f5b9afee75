"""Voting estimators: majority and weighted majority over random k-subsets of a pool.

The answer of a subset is the one with the largest total vote (one per sample under majority,
the verifier score under weighted majority, a chain's summed votes for revisions); ties between
answers count as the fraction of tied answers that are right. Exact enumeration when C(n, k) is
small, otherwise the mean over `mc_samples` random k-subsets with its standard error.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


def resolve_votes(totals: np.ndarray, class_correct: np.ndarray) -> np.ndarray:
    """Expected correctness of the winning answer of each subset (random tie-break).

    totals: [..., A] vote totals per answer class; class_correct: broadcastable to totals.
    Returns totals.shape[:-1].
    """
    best = totals.max(axis=-1, keepdims=True)
    # Sums of the same weights in another order may differ by an ulp: compare with a tolerance.
    tied = (totals >= best - 1e-9 * np.maximum(np.abs(best), 1.0)) & (best > 0)
    n_tied = tied.sum(axis=-1)
    hits = np.where(tied, class_correct, 0.0).sum(axis=-1)
    return np.where(n_tied > 0, hits / np.maximum(n_tied, 1), 0.0)


@dataclass(frozen=True)
class VoteEstimate:
    accuracy: float
    se: float
    exact: bool


def _subset_rows(
    n: int, k: int, mc_samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, bool]:
    if math.comb(n, k) <= mc_samples:
        return np.array(list(itertools.combinations(range(n), k)), dtype=np.int64).reshape(
            -1, k
        ), True
    return np.argsort(rng.random((mc_samples, n)), axis=1)[:, :k], False


def vote_curve(
    unit_votes: np.ndarray,
    class_correct: np.ndarray,
    budgets: Sequence[int],
    mc_samples: int,
    rng: np.random.Generator,
) -> list[VoteEstimate]:
    """Expected accuracy of (weighted) voting over random subsets of `units`.

    `unit_votes[u, a]` is the vote weight unit u gives answer a (one-hot for a sample under
    majority, its score for weighted majority, the sum over a chain's answers for revisions).
    Exact when every subset can be enumerated within `mc_samples`, otherwise Monte Carlo.
    """
    n_units = unit_votes.shape[0]
    out = []
    for k in budgets:
        rows, exact = _subset_rows(n_units, k, mc_samples, rng)
        totals = unit_votes[rows].sum(axis=1) if k > 0 else np.zeros((1, unit_votes.shape[1]))
        acc = resolve_votes(totals, class_correct)
        se = 0.0 if exact else float(acc.std(ddof=1) / math.sqrt(len(acc))) if len(acc) > 1 else 0.0
        out.append(VoteEstimate(float(acc.mean()), se, exact))
    return out


def vote_curves_batch(
    classes: np.ndarray,
    weights: np.ndarray,
    class_correct: np.ndarray,
    budgets: Sequence[int],
    mc_samples: int,
    rng: np.random.Generator,
    chunk_cells: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voting curves for many pools of equal size at once (rows = problems).

    classes: [P, n] answer class per sample (-1 = no answer); weights: [P, n] vote weights (ones
    for majority, scores for weighted majority); class_correct: [P, A] correctness per class.
    Returns (accuracy [P, K], standard error [P, K], exact [K]).

    Budgets whose C(n, k) subsets fit in `mc_samples` are enumerated exactly. The others share
    one set of `mc_samples` random permutations: the subset at budget k is the first k of each
    permutation, so counts grow incrementally and the whole curve costs one pass over each pool
    per permutation. Each pool is first shuffled by its own random permutation, so every pool sees
    independent uniform subsets even when the permutations are shared (and even when a dump
    stores its pool sorted by score).
    """
    cls = np.asarray(classes, np.int64)
    p_count, n = cls.shape
    n_cls = max(int(class_correct.shape[1]), 1)
    ok = (
        np.zeros((p_count, n_cls))
        if class_correct.shape[1] == 0
        else np.asarray(class_correct, float)
    )
    w = np.where(cls >= 0, np.asarray(weights, float), 0.0)
    # Plain counting (no weights) is markedly faster in bincount; a missing answer needs weight 0.
    unit = bool((w == 1.0).all())
    cls = np.where(cls >= 0, cls, 0)
    k_count = len(budgets)
    acc = np.zeros((p_count, k_count))
    se = np.zeros((p_count, k_count))
    exact = np.array([math.comb(n, k) <= mc_samples for k in budgets], bool)

    # Pools differ in how many distinct answers they have; chunks of pools with similar counts
    # keep the [pools, subsets, answers] vote arrays small.
    per_pool = ok.shape[1] - np.argmax(ok[:, ::-1] != 0, axis=1)
    per_pool = np.maximum(np.where(ok.any(axis=1), per_pool, 1), cls.max(axis=1) + 1)
    order = np.argsort(per_pool, kind="stable")

    def run(subsets: np.ndarray, cols: list[int], incremental: bool, ks: list[int]) -> None:
        m = subsets.shape[0]
        start = 0
        while start < p_count:
            width = int(
                per_pool[order[min(p_count, start + max(1, chunk_cells // (m * n_cls))) - 1]]
            )
            stop = min(p_count, start + max(1, chunk_cells // (m * width)))
            rows = order[start:stop]
            width = int(per_pool[rows].max())
            start = stop
            pc = len(rows)
            base = ((np.arange(pc)[:, None] * m + np.arange(m)[None, :]) * width)[:, :, None]
            totals = np.zeros(pc * m * width)
            c_rows, w_rows, ok_rows = cls[rows], w[rows], ok[rows, None, :width]
            done = 0
            for col, k in zip(cols, ks, strict=True):
                idx = subsets[:, done:k] if incremental else subsets
                flat = c_rows[:, idx]
                flat += base
                part = np.bincount(
                    flat.ravel(),
                    weights=None if unit else w_rows[:, idx].ravel(),
                    minlength=pc * m * width,
                )
                if incremental:
                    totals += part
                    done = k
                    res = resolve_votes(totals.reshape(pc, m, width), ok_rows)
                else:
                    res = resolve_votes(part.reshape(pc, m, width), ok_rows)
                acc[rows, col] = res.mean(axis=1)
                if not exact[col] and m > 1:
                    se[rows, col] = res.std(axis=1, ddof=1) / math.sqrt(m)

    for col, k in enumerate(budgets):
        if exact[col]:
            rows = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64).reshape(
                -1, k
            )
            run(rows, [col], False, [k])
    mc_cols = [c for c in np.argsort(budgets, kind="stable") if not exact[c]]
    if mc_cols:
        # One own shuffle per pool, then permutations shared by all pools.
        shuffle = np.argsort(rng.random((p_count, n)), axis=1)
        cls = np.take_along_axis(cls, shuffle, axis=1)
        w = np.take_along_axis(w, shuffle, axis=1)
        perms = np.argsort(rng.random((mc_samples, n)), axis=1)
        run(perms, [int(c) for c in mc_cols], True, [budgets[c] for c in mc_cols])
    return acc, se, exact


def vote_curve_sparse(
    classes: np.ndarray,
    weights: np.ndarray,
    class_correct: np.ndarray,
    budgets: Sequence[int],
    mc_samples: int,
    rng: np.random.Generator,
) -> list[VoteEstimate]:
    """`vote_curves_batch` for a single pool."""
    acc, se, exact = vote_curves_batch(
        np.asarray(classes)[None, :],
        np.asarray(weights, float)[None, :],
        np.asarray(class_correct, float)[None, :],
        budgets,
        mc_samples,
        rng,
    )
    return [
        VoteEstimate(float(a), float(e), bool(x))
        for a, e, x in zip(acc[0], se[0], exact, strict=True)
    ]


def answer_classes(answers: Sequence[object], correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map answers to class ids (-1 = no answer) and each class's correctness (mean over its rows:
    a grader is expected to agree with itself, but we do not assume it)."""
    ids: dict[str, int] = {}
    cls = np.full(len(answers), -1, dtype=np.int64)
    for i, a in enumerate(answers):
        if a is None or (isinstance(a, float) and math.isnan(a)):
            continue
        cls[i] = ids.setdefault(str(a), len(ids))
    if not ids:
        return cls, np.zeros(0)
    valid = cls >= 0
    sums = np.bincount(cls[valid], weights=correct[valid].astype(float), minlength=len(ids))
    cnts = np.bincount(cls[valid], minlength=len(ids))
    return cls, sums / cnts


def pool_classes(
    pids: np.ndarray, answers: np.ndarray, correct: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Class ids per problem ([P, n], -1 = no answer) and class correctness ([P, A]).

    Rows are sorted by problem, so factorising (problem, answer) gives each problem a contiguous
    range of ids; subtracting the range's start makes them local.
    """
    p_count = len(answers) // n
    has = np.array(
        [a is not None and not (isinstance(a, float) and math.isnan(a)) for a in answers], bool
    )
    keys = pd.MultiIndex.from_arrays([pids[has], pd.Index(answers[has]).astype(str)])
    codes, _ = pd.factorize(keys)
    gid = np.full(len(answers), -1, np.int64)
    gid[has] = codes
    row_p = np.repeat(np.arange(p_count), n)
    first = np.full(p_count, np.iinfo(np.int64).max)
    np.minimum.at(first, row_p[has], gid[has])
    local = np.where(has, gid - first[row_p], -1)
    n_cls = int(local.max()) + 1 if has.any() else 0
    sums = np.zeros((p_count, max(n_cls, 1)))
    cnts = np.zeros((p_count, max(n_cls, 1)))
    np.add.at(sums, (row_p[has], local[has]), correct[has].astype(float))
    np.add.at(cnts, (row_p[has], local[has]), 1.0)
    with np.errstate(invalid="ignore"):
        ok = np.where(cnts > 0, sums / np.maximum(cnts, 1), 0.0)
    return local.reshape(p_count, n), ok

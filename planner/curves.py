"""Curve estimators: expected accuracy at every budget from one pool of samples per problem.

Generate once, read every budget. For a pool of n independent samples, the accuracy at budget
k <= n is the average over all k-subsets of the pool:

- pass@k (coverage): exact, 1 - C(n-c, k) / C(n, k);
- best-of-k by verifier score: exact, sum_{i>=k} C(i-1, k-1) / C(n, k) * correct_(i) over the
  pool sorted by score, with correctness averaged inside score ties (the winner among tied
  scores is drawn at random);
- majority@k and weighted-majority@k (largest summed score per distinct answer): exact
  enumeration when C(n, k) is small, otherwise the mean over `mc_samples` random k-subsets with
  its standard error; ties between answers count as the fraction of tied answers that are right.

Revision chains are subsampled whole (a chain is the unit); search strategies are read one run
per budget. See `planner.strategies` for the kinds.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import gammaln

from planner.errors import PlannerError
from planner.schema import canonical_config, parse_config
from planner.strategies import AGGS, CHAINS, POOL, SEARCH, search_budget, strategy_kind

# ------------------------------------------------------------------------------------------------
# Exact closed forms


def log_comb(n: np.ndarray | float, k: np.ndarray | float) -> np.ndarray:
    return gammaln(np.asarray(n, float) + 1) - gammaln(np.asarray(k, float) + 1) - gammaln(
        np.asarray(n, float) - np.asarray(k, float) + 1
    )


def pass_at_k(n: int, c: np.ndarray | int, k: int) -> np.ndarray:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k)."""
    c = np.asarray(c, dtype=float)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    fail = n - c
    with np.errstate(invalid="ignore"):
        ratio = np.exp(log_comb(fail, k) - log_comb(n, k))
    return np.where(fail < k, 1.0, 1.0 - ratio)


def best_of_k_weights(n: int, k: int) -> np.ndarray:
    """P(the i-th smallest of n is the largest of a random k-subset), i = 1..n: C(i-1,k-1)/C(n,k)."""
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    i = np.arange(1, n + 1, dtype=float)
    w = np.zeros(n)
    ok = i >= k
    w[ok] = np.exp(log_comb(i[ok] - 1, k - 1) - log_comb(n, k))
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
    """Exact expected accuracy of picking the highest-scored of a random k-subset (rows = problems)."""
    s = np.atleast_2d(scores)
    w = best_of_k_weights(s.shape[1], k)
    out = tie_averaged_sorted(s, correct) @ w
    return out if np.ndim(scores) > 1 else out[0]


# ------------------------------------------------------------------------------------------------
# Voting: majority and weighted majority


def _resolve_votes(totals: np.ndarray, class_correct: np.ndarray) -> np.ndarray:
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


def _subset_rows(n: int, k: int, mc_samples: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    if math.comb(n, k) <= mc_samples:
        return np.array(list(itertools.combinations(range(n), k)), dtype=np.int64).reshape(-1, k), True
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
        acc = _resolve_votes(totals, class_correct)
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
    ok = np.zeros((p_count, n_cls)) if class_correct.shape[1] == 0 else np.asarray(class_correct, float)
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
            width = int(per_pool[order[min(p_count, start + max(1, chunk_cells // (m * n_cls))) - 1]])
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
                part = np.bincount(flat.ravel(), weights=None if unit else w_rows[:, idx].ravel(),
                                   minlength=pc * m * width)
                if incremental:
                    totals += part
                    done = k
                    res = _resolve_votes(totals.reshape(pc, m, width), ok_rows)
                else:
                    res = _resolve_votes(part.reshape(pc, m, width), ok_rows)
                acc[rows, col] = res.mean(axis=1)
                if not exact[col] and m > 1:
                    se[rows, col] = res.std(axis=1, ddof=1) / math.sqrt(m)

    for col, k in enumerate(budgets):
        if exact[col]:
            rows = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64).reshape(-1, k)
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
        np.asarray(classes)[None, :], np.asarray(weights, float)[None, :],
        np.asarray(class_correct, float)[None, :], budgets, mc_samples, rng,
    )
    return [VoteEstimate(float(a), float(e), bool(x)) for a, e, x in zip(acc[0], se[0], exact, strict=True)]


# ------------------------------------------------------------------------------------------------
# Reading a samples table into curves


@dataclass(frozen=True)
class CurveOptions:
    """How `profile_from_samples` reads the samples.

    budgets: the budgets (generations) to report; None means powers of two up to each pool.
    aggs: step-score aggregations to report for verifier-based selection (`last` reads `score`).
    mc_samples: random subsets per budget for majority votes when enumeration is too large.
    """

    budgets: tuple[int, ...] | None = None
    aggs: tuple[str, ...] = AGGS
    mc_samples: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [a for a in self.aggs if a not in AGGS]
        if bad:
            raise ValueError(f"unknown aggregation {bad[0]!r} (known: {', '.join(AGGS)})")
        if self.mc_samples < 1:
            raise ValueError("mc_samples must be >= 1")
        if self.budgets is not None and any(b < 1 for b in self.budgets):
            raise ValueError("budgets must be >= 1")


def powers_of_two(n: int) -> list[int]:
    return [2**i for i in range(math.floor(math.log2(n)) + 1)] if n >= 1 else []


def aggregate_steps(step_scores: Iterable[Sequence[float]], fallback: np.ndarray, agg: str) -> np.ndarray:
    """Aggregate each row's step scores; rows without step scores fall back to `score`."""
    if agg == "last":
        return np.asarray(fallback, float)
    out = np.empty(len(fallback))
    for i, steps in enumerate(step_scores):
        arr = np.asarray(steps, float)
        if arr.size == 0:
            out[i] = fallback[i]
        elif agg == "min":
            out[i] = arr.min()
        elif agg == "prod":
            out[i] = float(np.prod(arr))
        elif agg == "mean":
            out[i] = arr.mean()
        else:  # pragma: no cover - guarded by CurveOptions
            raise ValueError(agg)
    return out


def _stable_seed(seed: int, *parts: str) -> int:
    h = hashlib.sha256("\x1f".join((str(seed), *parts)).encode()).digest()
    return int.from_bytes(h[:8], "little")


def _answer_classes(answers: Sequence[object], correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _check_weights(scores: np.ndarray, group: str, agg: str) -> None:
    if (scores < 0).any():
        raise PlannerError(
            f"samples {group}: weighted majority needs non-negative scores, found {scores.min():.4g} "
            f"(agg={agg}); re-import the scores as probabilities (ttc samples import "
            "--score-transform sigmoid)"
        )


@dataclass
class _Row:
    problem_id: str
    strategy: str
    config: dict
    budget: float
    accuracy: float
    accuracy_se: float
    flops: float
    tokens: float
    prompt_tokens: float
    wall_s: float

    def as_dict(self) -> dict:
        return {
            "problem_id": self.problem_id,
            "strategy": self.strategy,
            "config": canonical_config(self.config),
            "budget": float(self.budget),
            "accuracy": float(min(max(self.accuracy, 0.0), 1.0)),
            "accuracy_se": float(self.accuracy_se),
            "flops": float(self.flops),
            "tokens": float(self.tokens),
            "prompt_tokens": float(self.prompt_tokens),
            "wall_s": float(self.wall_s),
        }


def _mean_or_nan(x: np.ndarray) -> float:
    return float("nan") if np.isnan(x).any() else float(np.mean(x))


def _pool_classes(pids: np.ndarray, answers: np.ndarray, correct: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Class ids per problem ([P, n], -1 = no answer) and class correctness ([P, A]).

    Rows are sorted by problem, so factorising (problem, answer) gives each problem a contiguous
    range of ids; subtracting the range's start makes them local.
    """
    p_count = len(answers) // n
    has = np.array([a is not None and not (isinstance(a, float) and math.isnan(a)) for a in answers], bool)
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


def _pool_group(
    strategy: str, base: dict, verifier: str, grp: pd.DataFrame, opts: CurveOptions, with_votes: bool,
) -> list[pd.DataFrame]:
    """All curves of one (strategy, config, verifier) pool group, batched over problems of equal
    pool size (the pools' rows sorted by problem, run, position)."""
    sizes = grp.groupby("problem_id", sort=True).size()
    out: list[pd.DataFrame] = []
    cfg_text = canonical_config(base)
    for n, pids_n in sizes.groupby(sizes, sort=True):
        n = int(n)
        budgets = [b for b in (opts.budgets or powers_of_two(n)) if b <= n]
        if not budgets:
            continue
        g = grp[grp["problem_id"].isin(set(pids_n.index))]
        pids = g["problem_id"].to_numpy(object)
        names = pids[::n]
        p_count = len(names)
        shape = (p_count, n)
        correct = g["correct"].to_numpy(bool).reshape(shape)
        gen = g["gen_flops"].to_numpy(float).reshape(shape).mean(axis=1)
        ver = g["verifier_flops"].to_numpy(float).reshape(shape).mean(axis=1)
        tok = g["gen_tokens"].to_numpy(float).reshape(shape).mean(axis=1)
        prm = g["prompt_tokens"].to_numpy(float).reshape(shape).mean(axis=1)
        wall = g["wall_s"].to_numpy(float).reshape(shape).mean(axis=1)  # NaN stays NaN
        ks = np.asarray(budgets, float)

        batch = (names, ks, gen, ver, tok, prm, wall)

        def emit(cfg: dict, acc: np.ndarray, se: np.ndarray | None, uses_verifier: bool,
                 batch: tuple = batch) -> None:
            names, ks, gen, ver, tok, prm, wall = batch
            per = gen + (ver if uses_verifier else 0.0)
            out.append(pd.DataFrame({
                "problem_id": np.repeat(names, len(ks)),
                "strategy": strategy,
                "config": canonical_config(cfg),
                "budget": np.tile(ks, len(names)),
                "accuracy": np.clip(acc, 0.0, 1.0).ravel(),
                "accuracy_se": (np.zeros_like(acc) if se is None else se).ravel(),
                "flops": np.outer(per, ks).ravel(),
                "tokens": np.outer(tok, ks).ravel(),
                "prompt_tokens": np.outer(prm, ks).ravel(),
                "wall_s": np.outer(wall, ks).ravel(),
            }))

        cls, cls_ok = _pool_classes(pids, g["answer"].to_numpy(object), g["correct"].to_numpy(bool), n)
        if with_votes:
            c = correct.sum(axis=1)
            emit({**base, "select": "coverage", "agg": "none", "verifier": "none"},
                 np.column_stack([pass_at_k(n, c, k) for k in budgets]), None, False)
            rng = np.random.default_rng(_stable_seed(opts.seed, strategy, cfg_text, str(n), "majority"))
            acc, se, _ = vote_curves_batch(cls, np.ones(shape), cls_ok, budgets, opts.mc_samples, rng)
            emit({**base, "select": "majority", "agg": "none", "verifier": "none"}, acc, se, False)
        if verifier == "none":
            continue
        score = g["score"].to_numpy(float)
        steps = g["step_scores"].tolist()
        has_steps = any(len(x) > 0 for x in steps)
        for agg in opts.aggs:
            if agg != "last" and not has_steps:
                continue
            s = aggregate_steps(steps, score, agg).reshape(shape)
            sorted_ok = tie_averaged_sorted(s, correct)
            emit({**base, "select": "best", "agg": agg, "verifier": verifier},
                 np.column_stack([sorted_ok @ best_of_k_weights(n, k) for k in budgets]), None, True)
            _check_weights(s, f"{strategy} {cfg_text} verifier={verifier}", agg)
            rng = np.random.default_rng(_stable_seed(opts.seed, strategy, cfg_text, str(n), verifier, agg))
            acc, se, _ = vote_curves_batch(cls, s, cls_ok, budgets, opts.mc_samples, rng)
            emit({**base, "select": "weighted", "agg": agg, "verifier": verifier}, acc, se, True)
    return out


def _chain_rows(
    pid: str, strategy: str, base: dict, verifier: str, g: pd.DataFrame, opts: CurveOptions,
    with_votes: bool,
) -> list[_Row]:
    """Revision chains: subsample whole chains; budget = chains x length (parallel x sequential)."""
    chains = [c.sort_values("position") for _, c in g.groupby("run", sort=True)]
    n_chains = len(chains)
    full_len = min(len(c) for c in chains)
    lengths = sorted(set(powers_of_two(full_len)) | {full_len})
    counts = powers_of_two(n_chains)
    answers_all = g["answer"].tolist()
    cls_all, cls_ok = _answer_classes(answers_all, g["correct"].to_numpy(bool))
    cls_of = dict(zip(zip(g["run"], g["position"], strict=True), cls_all, strict=True))
    rows: list[_Row] = []
    score_by_agg = {}
    if verifier != "none":
        steps = g["step_scores"].tolist()
        has_steps = any(len(s) > 0 for s in steps)
        for agg in opts.aggs:
            if agg == "last" or has_steps:
                s = aggregate_steps(steps, g["score"].to_numpy(float), agg)
                score_by_agg[agg] = dict(zip(zip(g["run"], g["position"], strict=True), s, strict=True))
    for length in lengths:
        heads = [c.iloc[:length] for c in chains]
        keys = [list(zip(h["run"], h["position"], strict=True)) for h in heads]
        ok = [h["correct"].to_numpy(bool) for h in heads]
        gen = np.array([h["gen_flops"].sum() for h in heads])
        ver = np.array([h["verifier_flops"].sum() for h in heads])
        tok = np.mean([h["gen_tokens"].sum() for h in heads])
        pr = np.mean([h["prompt_tokens"].sum() for h in heads])
        wall = _mean_or_nan(np.array([h["wall_s"].sum() for h in heads]))
        for c in counts:
            budget = c * length
            if opts.budgets is not None and budget not in opts.budgets:
                continue

            per_chain = (gen.mean(), ver.mean(), tok, pr, wall)

            def emit(cfg: dict, acc: float, se: float, uses_verifier: bool,
                     c: int = c, length: int = length, cost: tuple = per_chain) -> None:
                g_fl, v_fl, tk, p_tk, w_s = cost
                fl = c * (g_fl + (v_fl if uses_verifier else 0.0))
                # chains/length: what this budget uses; run_*: the run it is read from (two
                # revision runs of different shapes give distinct options).
                cfg = {**cfg, "run_chains": n_chains, "run_length": full_len, "chains": c, "length": length}
                rows.append(_Row(pid, strategy, cfg, c * length, acc, se, fl, c * tk, c * p_tk, c * w_s))

            if with_votes:
                unit_ok = np.array([o.any() for o in ok], float)
                emit({**base, "select": "coverage", "agg": "none", "verifier": "none"},
                     float(pass_at_k(n_chains, int(unit_ok.sum()), c)), 0.0, False)
                if len(cls_ok):
                    votes = np.zeros((n_chains, len(cls_ok)))
                    for u, ks in enumerate(keys):
                        for key in ks:
                            if cls_of[key] >= 0:
                                votes[u, cls_of[key]] += 1.0
                    rng = np.random.default_rng(_stable_seed(opts.seed, strategy, canonical_config(base), pid, "maj", str(length)))
                    est = vote_curve(votes, cls_ok, [c], opts.mc_samples, rng)[0]
                    emit({**base, "select": "majority", "agg": "none", "verifier": "none"}, est.accuracy, est.se, False)
            for agg, smap in score_by_agg.items():
                # best: the highest-scored answer over all chosen chains = best of the chain bests.
                unit_best = np.array([max(smap[k] for k in ks) for ks in keys])
                unit_ok = np.array([
                    np.mean([o for k, o in zip(ks, oo, strict=True) if smap[k] == b])
                    for ks, oo, b in zip(keys, ok, unit_best, strict=True)
                ])
                emit({**base, "select": "best", "agg": agg, "verifier": verifier},
                     float(best_of_k(unit_best, unit_ok, c)), 0.0, True)
                if len(cls_ok):
                    votes = np.zeros((n_chains, len(cls_ok)))
                    for u, ks in enumerate(keys):
                        for key in ks:
                            if cls_of[key] >= 0:
                                votes[u, cls_of[key]] += smap[key]
                    _check_weights(votes, f"{strategy} verifier={verifier} problem={pid}", agg)
                    rng = np.random.default_rng(_stable_seed(opts.seed, strategy, canonical_config(base), verifier, agg, pid, str(length)))
                    est = vote_curve(votes, cls_ok, [c], opts.mc_samples, rng)[0]
                    emit({**base, "select": "weighted", "agg": agg, "verifier": verifier}, est.accuracy, est.se, True)
    return rows


def _search_rows(
    pid: str, strategy: str, base: dict, verifier: str, g: pd.DataFrame, opts: CurveOptions,
) -> list[_Row]:
    """Search strategies: one run per budget; each run's final candidates are selected among."""
    budget = search_budget(strategy, base)
    if opts.budgets is not None and budget not in opts.budgets:
        return []
    runs = [r for _, r in g.groupby("run", sort=True)]
    totals = {
        name: np.array([r[col].sum() for r in runs], float)
        for name, col in (("gen", "gen_flops"), ("ver", "verifier_flops"), ("tok", "gen_tokens"),
                          ("pr", "prompt_tokens"), ("wall", "wall_s"))
    }
    flops = float(np.mean(totals["gen"] + totals["ver"]))
    cost = (flops, float(totals["tok"].mean()), float(totals["pr"].mean()), _mean_or_nan(totals["wall"]))
    rows: list[_Row] = []

    def emit(cfg: dict, accs: list[float]) -> None:
        a = np.asarray(accs)
        se = float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else 0.0
        rows.append(_Row(pid, strategy, cfg, budget, float(a.mean()), se, *cost))

    steps_all = g["step_scores"].tolist()
    has_steps = any(len(s) > 0 for s in steps_all)
    per_select: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        ok = r["correct"].to_numpy(bool)
        cls, cls_ok = _answer_classes(r["answer"].tolist(), ok)
        per_select.setdefault(("coverage", "none"), []).append(float(ok.any()))
        if len(cls_ok):
            counts = np.bincount(cls[cls >= 0], minlength=len(cls_ok)).astype(float)[None, :]
            maj = float(_resolve_votes(counts, cls_ok)[0])
        else:
            maj = 0.0
        per_select.setdefault(("majority", "none"), []).append(maj)
        for agg in opts.aggs:
            if agg != "last" and not has_steps:
                continue
            s = aggregate_steps(r["step_scores"].tolist(), r["score"].to_numpy(float), agg)
            per_select.setdefault(("best", agg), []).append(float(best_of_k(s, ok, len(s))))
            if len(cls_ok):
                _check_weights(s, f"{strategy} verifier={verifier} problem={pid}", agg)
                tot = np.bincount(cls[cls >= 0], weights=s[cls >= 0], minlength=len(cls_ok))[None, :]
                w = float(_resolve_votes(tot, cls_ok)[0])
            else:
                w = 0.0
            per_select.setdefault(("weighted", agg), []).append(w)
    for (select, agg), accs in per_select.items():
        # The search itself used the verifier, so every select keeps the verifier's id.
        emit({**base, "select": select, "agg": agg, "verifier": verifier}, accs)
    return rows


def profile_from_samples(samples: pd.DataFrame, opts: CurveOptions | None = None) -> pd.DataFrame:
    """The profile table (see planner.schema.PROFILE) for every group of a samples table."""
    opts = opts or CurveOptions()
    if samples.empty:
        raise PlannerError("samples table is empty")
    rows: list[_Row] = []
    frames: list[pd.DataFrame] = []
    df = samples.sort_values(["strategy", "config", "verifier", "problem_id", "run", "position"], kind="stable")
    voted: set[tuple[str, str]] = set()
    seen_votes: set[tuple[str, str, str]] = set()
    for (strategy, config, verifier), grp in df.groupby(["strategy", "config", "verifier"], sort=True):
        kind = strategy_kind(strategy)
        base = parse_config(config)
        for key in ("select", "agg", "verifier"):
            base.pop(key, None)
        if kind == POOL:
            # Votes and coverage need no verifier: compute them once per pool, not per verifier.
            with_votes = (strategy, config) not in voted
            voted.add((strategy, config))
            frames += _pool_group(strategy, base, verifier, grp, opts, with_votes)
            continue
        for pid, g in grp.groupby("problem_id", sort=True):
            vote_key = (strategy, config, pid)
            with_votes = vote_key not in seen_votes
            seen_votes.add(vote_key)
            if kind == CHAINS:
                rows += _chain_rows(pid, strategy, base, verifier, g, opts, with_votes)
            elif kind == SEARCH:
                rows += _search_rows(pid, strategy, base, verifier, g, opts)
    if rows:
        frames.append(pd.DataFrame([r.as_dict() for r in rows]))
    if not frames:
        raise PlannerError("no profile rows: every requested budget exceeds the pools' sizes")
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["problem_id", "strategy", "config", "budget"], kind="stable").reset_index(drop=True)

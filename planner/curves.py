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
    """Per subset row: expected correctness of the winning answer (random tie-break)."""
    best = totals.max(axis=1, keepdims=True)
    # Sums of the same weights in another order may differ by an ulp: compare with a tolerance.
    tol = 1e-9 * np.maximum(np.abs(best), 1.0)
    tied = (totals >= best - tol) & (best > 0)
    n_tied = tied.sum(axis=1)
    hits = (tied * class_correct[None, :]).sum(axis=1)
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


def vote_curve_sparse(
    classes: np.ndarray,
    weights: np.ndarray,
    class_correct: np.ndarray,
    budgets: Sequence[int],
    mc_samples: int,
    rng: np.random.Generator,
) -> list[VoteEstimate]:
    """`vote_curve` for single-answer units (a pool), without materialising a dense unit matrix.

    Monte Carlo budgets share one set of random permutations: the subset at budget k is the
    first k of each permutation, so counts grow incrementally and the whole curve costs one pass
    over the pool per permutation.
    """
    n = len(classes)
    n_cls = len(class_correct)
    valid = classes >= 0
    cls = np.where(valid, classes, 0)
    w = np.where(valid, weights, 0.0)
    out: list[VoteEstimate | None] = [None] * len(budgets)
    mc_idx = []
    for j, k in enumerate(budgets):
        if math.comb(n, k) <= mc_samples:
            rows = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64).reshape(-1, k)
            flat = (np.arange(len(rows))[:, None] * n_cls + cls[rows]).ravel()
            totals = np.bincount(flat, weights=w[rows].ravel(), minlength=len(rows) * n_cls)
            acc = _resolve_votes(totals.reshape(len(rows), n_cls), class_correct)
            out[j] = VoteEstimate(float(acc.mean()), 0.0, True)
        else:
            mc_idx.append(j)
    if mc_idx:
        m = mc_samples
        perm = np.argsort(rng.random((m, n)), axis=1)
        totals = np.zeros(m * n_cls)
        base = (np.arange(m) * n_cls)[:, None]
        done = 0
        for j in sorted(mc_idx, key=lambda i: budgets[i]):
            k = budgets[j]
            chunk = perm[:, done:k]
            totals += np.bincount((base + cls[chunk]).ravel(), weights=w[chunk].ravel(), minlength=m * n_cls)
            done = k
            acc = _resolve_votes(totals.reshape(m, n_cls), class_correct)
            out[j] = VoteEstimate(float(acc.mean()), float(acc.std(ddof=1) / math.sqrt(m)), False)
    return [o for o in out if o is not None]


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
    mc_samples: int = 1000
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


def _pool_rows(
    pid: str, strategy: str, base: dict, verifier: str, g: pd.DataFrame, opts: CurveOptions,
    with_votes: bool,
) -> list[_Row]:
    """All curves of one problem's pool under one verifier."""
    n = len(g)
    budgets = [b for b in (opts.budgets or powers_of_two(n)) if b <= n]
    if not budgets:
        return []
    correct = g["correct"].to_numpy(bool)
    gen_flops = g["gen_flops"].to_numpy(float)
    ver_flops = g["verifier_flops"].to_numpy(float)
    tokens = g["gen_tokens"].to_numpy(float).mean()
    prompt = g["prompt_tokens"].to_numpy(float).mean()
    wall = _mean_or_nan(g["wall_s"].to_numpy(float))
    gen_mean, ver_mean = gen_flops.mean(), ver_flops.mean()
    rows: list[_Row] = []

    def emit(cfg: dict, k: int, acc: float, se: float, uses_verifier: bool) -> None:
        flops = k * (gen_mean + (ver_mean if uses_verifier else 0.0))
        rows.append(_Row(pid, strategy, cfg, k, acc, se, flops, k * tokens, k * prompt, k * wall))

    if with_votes:
        cov = {**base, "select": "coverage", "agg": "none", "verifier": "none"}
        for k in budgets:
            emit(cov, k, float(pass_at_k(n, int(correct.sum()), k)), 0.0, False)
        cls, cls_ok = _answer_classes(g["answer"].tolist(), correct)
        rng = np.random.default_rng(_stable_seed(opts.seed, strategy, canonical_config(base), pid, "maj"))
        maj = {**base, "select": "majority", "agg": "none", "verifier": "none"}
        if len(cls_ok) == 0:
            for k in budgets:
                emit(maj, k, 0.0, 0.0, False)
        else:
            for k, est in zip(budgets, vote_curve_sparse(cls, np.ones(n), cls_ok, budgets, opts.mc_samples, rng), strict=True):
                emit(maj, k, est.accuracy, est.se, False)
    if verifier == "none":
        return rows
    score = g["score"].to_numpy(float)
    steps = g["step_scores"].tolist()
    has_steps = any(len(s) > 0 for s in steps)
    cls, cls_ok = _answer_classes(g["answer"].tolist(), correct)
    for agg in opts.aggs:
        if agg != "last" and not has_steps:
            continue
        s = aggregate_steps(steps, score, agg)
        best = {**base, "select": "best", "agg": agg, "verifier": verifier}
        sorted_ok = tie_averaged_sorted(s, correct)
        for k in budgets:
            emit(best, k, float(sorted_ok @ best_of_k_weights(n, k)), 0.0, True)
        wcfg = {**base, "select": "weighted", "agg": agg, "verifier": verifier}
        _check_weights(s, f"{strategy} {canonical_config(base)} verifier={verifier} problem={pid}", agg)
        if len(cls_ok) == 0:
            for k in budgets:
                emit(wcfg, k, 0.0, 0.0, True)
            continue
        rng = np.random.default_rng(_stable_seed(opts.seed, strategy, canonical_config(base), verifier, agg, pid))
        for k, est in zip(budgets, vote_curve_sparse(cls, s, cls_ok, budgets, opts.mc_samples, rng), strict=True):
            emit(wcfg, k, est.accuracy, est.se, True)
    return rows


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
                cfg = {**cfg, "chains": c, "length": length}
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
    df = samples.sort_values(["strategy", "config", "verifier", "problem_id", "run", "position"], kind="stable")
    seen_votes: set[tuple[str, str, str]] = set()
    for (strategy, config, verifier), grp in df.groupby(["strategy", "config", "verifier"], sort=True):
        kind = strategy_kind(strategy)
        base = parse_config(config)
        for key in ("select", "agg", "verifier"):
            base.pop(key, None)
        for pid, g in grp.groupby("problem_id", sort=True):
            # Votes and coverage need no verifier: compute them once per pool, not per verifier.
            vote_key = (strategy, config, pid)
            with_votes = vote_key not in seen_votes
            seen_votes.add(vote_key)
            if kind == POOL:
                rows += _pool_rows(pid, strategy, base, verifier, g, opts, with_votes)
            elif kind == CHAINS:
                rows += _chain_rows(pid, strategy, base, verifier, g, opts, with_votes)
            elif kind == SEARCH:
                rows += _search_rows(pid, strategy, base, verifier, g, opts)
    if not rows:
        raise PlannerError("no profile rows: every requested budget exceeds the pools' sizes")
    out = pd.DataFrame([r.as_dict() for r in rows])
    return out.sort_values(["problem_id", "strategy", "config", "budget"], kind="stable").reset_index(drop=True)

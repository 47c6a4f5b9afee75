"""Samples table -> profile table: expected accuracy and cost of every option at every budget.

Generate once, read every budget. For a pool of n independent samples, the accuracy at budget
k <= n is the average over all k-subsets of the pool: pass@k and best-of-k by verifier score are
exact closed forms (`planner.estimate.closed_form`), majority and weighted majority exact or
Monte Carlo (`planner.estimate.votes`). Revision chains are subsampled whole (a chain is the
unit); search strategies are read one run per budget. See `planner.strategies` for the
kinds.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.estimate.closed_form import (
    best_of_k,
    best_of_k_weights,
    pass_at_k,
    tie_averaged_sorted,
)
from planner.estimate.votes import (
    answer_classes,
    pool_classes,
    resolve_votes,
    vote_curve,
    vote_curves_batch,
)
from planner.strategies import (
    AGGS,
    CHAINS,
    POOL,
    SEARCH,
    aggregate_steps,
    search_budget,
    strategy_kind,
)
from planner.tables import canonical_config, parse_config


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


def _powers_of_two(n: int) -> list[int]:
    return [2**i for i in range(math.floor(math.log2(n)) + 1)] if n >= 1 else []


def _stable_seed(seed: int, *parts: str) -> int:
    h = hashlib.sha256("\x1f".join((str(seed), *parts)).encode()).digest()
    return int.from_bytes(h[:8], "little")


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


def _pool_group(
    strategy: str,
    base: dict,
    verifier: str,
    grp: pd.DataFrame,
    opts: CurveOptions,
    with_votes: bool,
) -> list[pd.DataFrame]:
    """All curves of one (strategy, config, verifier) pool group, batched over problems of equal
    pool size (the pools' rows sorted by problem, run, position)."""
    sizes = grp.groupby("problem_id", sort=True).size()
    out: list[pd.DataFrame] = []
    cfg_text = canonical_config(base)
    for n, pids_n in sizes.groupby(sizes, sort=True):
        n = int(n)
        budgets = [b for b in (opts.budgets or _powers_of_two(n)) if b <= n]
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

        def emit(
            cfg: dict,
            acc: np.ndarray,
            se: np.ndarray | None,
            uses_verifier: bool,
            batch: tuple = batch,
        ) -> None:
            names, ks, gen, ver, tok, prm, wall = batch
            per = gen + (ver if uses_verifier else 0.0)
            out.append(
                pd.DataFrame(
                    {
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
                    }
                )
            )

        cls, cls_ok = pool_classes(
            pids, g["answer"].to_numpy(object), g["correct"].to_numpy(bool), n
        )
        if with_votes:
            c = correct.sum(axis=1)
            emit(
                {**base, "select": "coverage", "agg": "none", "verifier": "none"},
                np.column_stack([pass_at_k(n, c, k) for k in budgets]),
                None,
                False,
            )
            rng = np.random.default_rng(
                _stable_seed(opts.seed, strategy, cfg_text, str(n), "majority")
            )
            acc, se, _ = vote_curves_batch(
                cls, np.ones(shape), cls_ok, budgets, opts.mc_samples, rng
            )
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
            emit(
                {**base, "select": "best", "agg": agg, "verifier": verifier},
                np.column_stack([sorted_ok @ best_of_k_weights(n, k) for k in budgets]),
                None,
                True,
            )
            _check_weights(s, f"{strategy} {cfg_text} verifier={verifier}", agg)
            rng = np.random.default_rng(
                _stable_seed(opts.seed, strategy, cfg_text, str(n), verifier, agg)
            )
            acc, se, _ = vote_curves_batch(cls, s, cls_ok, budgets, opts.mc_samples, rng)
            emit({**base, "select": "weighted", "agg": agg, "verifier": verifier}, acc, se, True)
    return out


def _chain_rows(
    pid: str,
    strategy: str,
    base: dict,
    verifier: str,
    g: pd.DataFrame,
    opts: CurveOptions,
    with_votes: bool,
) -> list[_Row]:
    """Revision chains: subsample whole chains; budget = chains x length (parallel x sequential)."""
    chains = [c.sort_values("position") for _, c in g.groupby("run", sort=True)]
    n_chains = len(chains)
    full_len = min(len(c) for c in chains)
    lengths = sorted(set(_powers_of_two(full_len)) | {full_len})
    counts = _powers_of_two(n_chains)
    answers_all = g["answer"].tolist()
    cls_all, cls_ok = answer_classes(answers_all, g["correct"].to_numpy(bool))
    cls_of = dict(zip(zip(g["run"], g["position"], strict=True), cls_all, strict=True))
    rows: list[_Row] = []
    score_by_agg = {}
    if verifier != "none":
        steps = g["step_scores"].tolist()
        has_steps = any(len(s) > 0 for s in steps)
        for agg in opts.aggs:
            if agg == "last" or has_steps:
                s = aggregate_steps(steps, g["score"].to_numpy(float), agg)
                score_by_agg[agg] = dict(
                    zip(zip(g["run"], g["position"], strict=True), s, strict=True)
                )
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

            def emit(
                cfg: dict,
                acc: float,
                se: float,
                uses_verifier: bool,
                c: int = c,
                length: int = length,
                cost: tuple = per_chain,
            ) -> None:
                g_fl, v_fl, tk, p_tk, w_s = cost
                fl = c * (g_fl + (v_fl if uses_verifier else 0.0))
                # chains/length: what this budget uses; run_*: the run it is read from (two
                # revision runs of different shapes give distinct options).
                cfg = {
                    **cfg,
                    "run_chains": n_chains,
                    "run_length": full_len,
                    "chains": c,
                    "length": length,
                }
                rows.append(
                    _Row(pid, strategy, cfg, c * length, acc, se, fl, c * tk, c * p_tk, c * w_s)
                )

            if with_votes:
                unit_ok = np.array([o.any() for o in ok], float)
                emit(
                    {**base, "select": "coverage", "agg": "none", "verifier": "none"},
                    float(pass_at_k(n_chains, int(unit_ok.sum()), c)),
                    0.0,
                    False,
                )
                if len(cls_ok):
                    votes = np.zeros((n_chains, len(cls_ok)))
                    for u, ks in enumerate(keys):
                        for key in ks:
                            if cls_of[key] >= 0:
                                votes[u, cls_of[key]] += 1.0
                    rng = np.random.default_rng(
                        _stable_seed(
                            opts.seed, strategy, canonical_config(base), pid, "maj", str(length)
                        )
                    )
                    est = vote_curve(votes, cls_ok, [c], opts.mc_samples, rng)[0]
                    emit(
                        {**base, "select": "majority", "agg": "none", "verifier": "none"},
                        est.accuracy,
                        est.se,
                        False,
                    )
            for agg, smap in score_by_agg.items():
                # best: the highest-scored answer over all chosen chains = best of the chain bests.
                unit_best = np.array([max(smap[k] for k in ks) for ks in keys])
                unit_ok = np.array(
                    [
                        np.mean([o for k, o in zip(ks, oo, strict=True) if smap[k] == b])
                        for ks, oo, b in zip(keys, ok, unit_best, strict=True)
                    ]
                )
                emit(
                    {**base, "select": "best", "agg": agg, "verifier": verifier},
                    float(best_of_k(unit_best, unit_ok, c)),
                    0.0,
                    True,
                )
                if len(cls_ok):
                    votes = np.zeros((n_chains, len(cls_ok)))
                    for u, ks in enumerate(keys):
                        for key in ks:
                            if cls_of[key] >= 0:
                                votes[u, cls_of[key]] += smap[key]
                    _check_weights(votes, f"{strategy} verifier={verifier} problem={pid}", agg)
                    rng = np.random.default_rng(
                        _stable_seed(
                            opts.seed,
                            strategy,
                            canonical_config(base),
                            verifier,
                            agg,
                            pid,
                            str(length),
                        )
                    )
                    est = vote_curve(votes, cls_ok, [c], opts.mc_samples, rng)[0]
                    emit(
                        {**base, "select": "weighted", "agg": agg, "verifier": verifier},
                        est.accuracy,
                        est.se,
                        True,
                    )
    return rows


def _search_rows(
    pid: str,
    strategy: str,
    base: dict,
    verifier: str,
    g: pd.DataFrame,
    opts: CurveOptions,
) -> list[_Row]:
    """Search strategies: one run per budget; each run's final candidates are selected among."""
    budget = search_budget(strategy, base)
    if opts.budgets is not None and budget not in opts.budgets:
        return []
    runs = [r for _, r in g.groupby("run", sort=True)]
    totals = {
        name: np.array([r[col].sum() for r in runs], float)
        for name, col in (
            ("gen", "gen_flops"),
            ("ver", "verifier_flops"),
            ("tok", "gen_tokens"),
            ("pr", "prompt_tokens"),
            ("wall", "wall_s"),
        )
    }
    flops = float(np.mean(totals["gen"] + totals["ver"]))
    cost = (
        flops,
        float(totals["tok"].mean()),
        float(totals["pr"].mean()),
        _mean_or_nan(totals["wall"]),
    )
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
        cls, cls_ok = answer_classes(r["answer"].tolist(), ok)
        per_select.setdefault(("coverage", "none"), []).append(float(ok.any()))
        if len(cls_ok):
            counts = np.bincount(cls[cls >= 0], minlength=len(cls_ok)).astype(float)[None, :]
            maj = float(resolve_votes(counts, cls_ok)[0])
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
                tot = np.bincount(cls[cls >= 0], weights=s[cls >= 0], minlength=len(cls_ok))[
                    None, :
                ]
                w = float(resolve_votes(tot, cls_ok)[0])
            else:
                w = 0.0
            per_select.setdefault(("weighted", agg), []).append(w)
    for (select, agg), accs in per_select.items():
        # The search itself used the verifier, so every select keeps the verifier's id.
        emit({**base, "select": select, "agg": agg, "verifier": verifier}, accs)
    return rows


def profile_from_samples(samples: pd.DataFrame, opts: CurveOptions | None = None) -> pd.DataFrame:
    """The profile table (see planner.tables.schema.PROFILE) for every group of a samples table."""
    opts = opts or CurveOptions()
    if samples.empty:
        raise PlannerError("samples table is empty")
    rows: list[_Row] = []
    frames: list[pd.DataFrame] = []
    df = samples.sort_values(
        ["strategy", "config", "verifier", "problem_id", "run", "position"], kind="stable"
    )
    voted: set[tuple[str, str]] = set()
    seen_votes: set[tuple[str, str, str]] = set()
    for (strategy, config, verifier), grp in df.groupby(
        ["strategy", "config", "verifier"], sort=True
    ):
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
    return out.sort_values(
        ["problem_id", "strategy", "config", "budget"], kind="stable"
    ).reset_index(drop=True)

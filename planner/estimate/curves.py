"""Samples table -> profile table: expected accuracy and cost of every option at every budget.

Generate once, read every budget. For a pool of n independent samples, the accuracy at budget
k <= n is the average over all k-subsets of the pool: pass@k and best-of-k by verifier score are
exact closed forms (`planner.estimate.closed_form`), majority and weighted majority exact or
Monte Carlo (`planner.estimate.votes`); the pool reader and the reading options are
`planner.estimate.pools`. Revision chains are subsampled whole (a chain is the unit); search
strategies are read one run per budget. Both are read here, one problem at a time, and
`profile_from_samples` dispatches every group of a samples table to its reader. See
`planner.strategies` for the kinds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.estimate.closed_form import best_of_k, pass_at_k
from planner.estimate.pools import (
    CurveOptions,
    check_weights,
    pool_group,
    powers_of_two,
    stable_seed,
)
from planner.estimate.votes import answer_classes, resolve_votes, vote_curve
from planner.strategies import CHAINS, POOL, SEARCH, aggregate_steps, search_budget, strategy_kind
from planner.tables import canonical_config, parse_config


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
    lengths = sorted(set(powers_of_two(full_len)) | {full_len})
    counts = powers_of_two(n_chains)
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
                        stable_seed(
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
                    check_weights(votes, f"{strategy} verifier={verifier} problem={pid}", agg)
                    rng = np.random.default_rng(
                        stable_seed(
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
            ("wall", "wall_s"),
        )
    }
    # every final row holds the run's whole prompt; each of the n beams read it (the profile's
    # rule: every parallel stream's prompt), however many finals the run kept
    totals["pr"] = np.array([r["prompt_tokens"].max() * float(base["n"]) for r in runs], float)
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
                check_weights(s, f"{strategy} verifier={verifier} problem={pid}", agg)
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
            frames += pool_group(strategy, base, verifier, grp, opts, with_votes)
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

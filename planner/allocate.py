"""Budget allocation across difficulty bins: an exact multiple-choice knapsack.

Given, per difficulty bin b (a share w_b of the queries), a menu of options j (strategy, config,
budget) with expected accuracy a_bj and cost c_bj per query, choose one option per bin to

    maximise  Σ_b w_b · a_bj · x_bj
    s.t.      Σ_j x_bj = 1 for every bin,   Σ_b w_b · c_bj · x_bj ≤ mean budget,   x ∈ {0, 1}

solved exactly with `scipy.optimize.milp` (HiGHS branch and bound), ties broken towards the cheaper
allocation by a second solve. The Pareto frontier of accuracy vs mean cost is computed exactly by
merging the bins' own frontiers. The baseline is the paper's compute-optimal at a fixed budget per
prompt (every bin gets the same number of generations, the best option per bin at that budget);
the allocation is compared with it at equal mean cost (Damani et al. 2024 allocate across queries).

This module also turns a profile directory into the per-bin option table that the exchange and
the what-if commands share (`bin_options`).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.schema import parse_config, read_problems, read_profile

OPTION_KEY = ("strategy", "config", "budget")
BIN_COLUMNS = {"oracle": "oracle_bin", "predicted": "predicted_bin", "level": "level"}


# ----------------------------------------------------------------------------------------------
# Profile → per-bin options


@dataclass(frozen=True)
class BinnedProfile:
    """A profile joined to its problems' difficulty bins.

    rows: profile rows (deployable options only) with a `bin` column.
    options: one row per bin × option: acc, acc_se, flops, tokens, prompt_tokens, wall_s (bin means
        over problems), n (problems).
    weights: share of problems per bin (sums to 1).
    """

    rows: pd.DataFrame
    options: pd.DataFrame
    weights: dict[int, float]
    bin_column: str
    source: str
    metadata: dict[str, Any]
    folds: dict[str, int]

    @property
    def bins(self) -> list[int]:
        return sorted(self.weights)


def _select(config: str) -> str:
    try:
        return str(parse_config(config).get("select", ""))
    except (ValueError, PlannerError):
        return ""


def bin_options(profile: pd.DataFrame, problems: pd.DataFrame, bins: str = "oracle",
                source: str = "profile", metadata: dict[str, Any] | None = None) -> BinnedProfile:
    """Join the profile to the problems' bins and average every option within each bin.

    `select=coverage` rows (pass@k, an upper bound) are dropped: no deployable option reaches them.
    The bin accuracy's standard error combines the spread over problems and the Monte Carlo error:
    se = sqrt(var(acc)/n + mean(accuracy_se²)/n).
    """
    if bins not in BIN_COLUMNS:
        raise PlannerError(f"unknown bins {bins!r}; choose one of {', '.join(BIN_COLUMNS)}")
    col = BIN_COLUMNS[bins]
    probs = problems[["problem_id", "fold", col]].dropna(subset=[col])
    if bins == "level" and not probs.empty:
        from planner.difficulty import label_bins

        probs = probs.assign(level=label_bins(probs["level"]).to_numpy())
    if probs.empty:
        raise PlannerError(f"{source}: problems table has no {col} values (run the difficulty step first)")
    df = profile[profile["config"].map(_select) != "coverage"]
    df = df.merge(probs.rename(columns={col: "bin"}), on="problem_id", how="inner")
    if df.empty:
        raise PlannerError(f"{source}: no profile rows match a binned problem")
    df["bin"] = df["bin"].astype(int)
    df = df.sort_values(["bin", *OPTION_KEY, "problem_id"], kind="mergesort").reset_index(drop=True)
    g = df.groupby(["bin", *OPTION_KEY], sort=True)
    opts = g.agg(
        acc=("accuracy", "mean"),
        acc_sd=("accuracy", "std"),
        mc_var=("accuracy_se", lambda s: float(np.mean(np.square(s)))),
        flops=("flops", "mean"),
        tokens=("tokens", "mean"),
        prompt_tokens=("prompt_tokens", "mean"),
        wall_s=("wall_s", "mean"),
        n=("problem_id", "nunique"),
    ).reset_index()
    opts["acc_se"] = np.sqrt(opts["acc_sd"].fillna(0.0) ** 2 / opts["n"] + opts["mc_var"] / opts["n"])
    opts = opts.drop(columns=["acc_sd", "mc_var"])
    counts = df.groupby("bin")["problem_id"].nunique()
    weights = {int(b): float(c) / float(counts.sum()) for b, c in counts.items()}
    folds = dict(zip(probs["problem_id"], probs["fold"].astype(int), strict=True))
    return BinnedProfile(df, opts, weights, col, source, dict(metadata or {}), folds)


def load_binned_profile(path: str | os.PathLike[str], bins: str = "oracle") -> BinnedProfile:
    """Read PROFILE/profile.parquet and PROFILE/problems.parquet and bin the options."""
    profile, meta = read_profile(path)
    probs = read_problems(path)
    if probs is None:
        raise PlannerError(f"{path}: problems.parquet not found beside the profile (needed for difficulty bins)")
    return bin_options(profile, probs[0], bins, str(path), meta)


def require_bins(bp: BinnedProfile, needed: list[int]) -> None:
    """Raise when the profile lacks a bin the caller needs."""
    missing = [b for b in needed if b not in bp.weights]
    if missing:
        raise PlannerError(
            f"{bp.source}: profile has no problems in {bp.bin_column} {', '.join(map(str, missing))} "
            f"(it has {', '.join(map(str, bp.bins))})"
        )


# ----------------------------------------------------------------------------------------------
# The knapsack


@dataclass(frozen=True)
class Allocation:
    choice: tuple[int, ...]  # option index per bin
    accuracy: float  # Σ w_b a_b
    cost: float  # Σ w_b c_b


def _validate(values: list[np.ndarray], costs: list[np.ndarray], weights: np.ndarray) -> None:
    if len(values) != len(costs) or len(values) != len(weights) or not values:
        raise PlannerError("allocate: need one value and cost vector per bin")
    for v, c in zip(values, costs, strict=True):
        if len(v) == 0 or len(v) != len(c):
            raise PlannerError("allocate: every bin needs at least one option, with a cost each")
        if not (np.all(np.isfinite(v)) and np.all(np.isfinite(c))):
            raise PlannerError("allocate: values and costs must be finite")


def min_feasible_budget(costs: list[np.ndarray], weights: np.ndarray) -> float:
    return float(sum(w * np.min(c) for w, c in zip(weights, costs, strict=True)))


def solve_mckp(values: list[np.ndarray], costs: list[np.ndarray], weights: np.ndarray,
               budget: float, what: str = "cost") -> Allocation:
    """Exact multiple-choice knapsack with scipy.optimize.milp; raises when infeasible, naming the
    minimum feasible mean budget. Among allocations of equal accuracy the cheapest is returned."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    weights = np.asarray(weights, dtype=float)
    _validate(values, costs, weights)
    need = min_feasible_budget(costs, weights)
    if budget < need * (1 - 1e-12) - 1e-300:
        raise PlannerError(
            f"infeasible budget {budget:.6g}: the minimum feasible mean {what} is {need:.6g} "
            "(the cheapest option in every bin)"
        )
    sizes = [len(v) for v in values]
    n = sum(sizes)
    starts = np.cumsum([0, *sizes[:-1]])
    v_all = np.concatenate([w * np.asarray(v, float) for w, v in zip(weights, values, strict=True)])
    c_all = np.concatenate([w * np.asarray(c, float) for w, c in zip(weights, costs, strict=True)])
    onehot = np.zeros((len(sizes), n))
    for i, (s, k) in enumerate(zip(starts, sizes, strict=True)):
        onehot[i, s:s + k] = 1.0
    scale = max(float(np.max(np.abs(c_all))), 1e-300)  # costs in FLOPs reach 1e15: rescale
    cons = [LinearConstraint(onehot, 1.0, 1.0),
            LinearConstraint(c_all[None, :] / scale, -np.inf, max(budget, need) / scale + 1e-9)]
    integrality = np.ones(n)
    res = milp(-v_all, constraints=cons, integrality=integrality, bounds=Bounds(0, 1))
    if res.status != 0 or res.x is None:
        raise PlannerError(f"allocate: MILP solver failed ({res.message})")
    best = float(v_all @ np.round(res.x))
    # Second pass: the cheapest allocation within rounding of the best accuracy.
    cons2 = [*cons, LinearConstraint(v_all[None, :], best - 1e-9, np.inf)]
    res2 = milp(c_all / scale, constraints=cons2, integrality=integrality, bounds=Bounds(0, 1))
    x = np.round(res2.x if res2.status == 0 and res2.x is not None else res.x)
    choice = tuple(int(np.argmax(x[s:s + k])) for s, k in zip(starts, sizes, strict=True))
    return _allocation(values, costs, weights, choice)


def _allocation(values: list[np.ndarray], costs: list[np.ndarray], weights: np.ndarray,
                choice: tuple[int, ...]) -> Allocation:
    acc = float(sum(w * v[j] for w, v, j in zip(weights, values, choice, strict=True)))
    cost = float(sum(w * c[j] for w, c, j in zip(weights, costs, choice, strict=True)))
    return Allocation(choice, acc, cost)


def brute_force_mckp(values: list[np.ndarray], costs: list[np.ndarray], weights: np.ndarray,
                     budget: float) -> Allocation | None:
    """Enumerate every allocation (tests and tiny instances only)."""
    weights = np.asarray(weights, dtype=float)
    best: Allocation | None = None
    for choice in itertools.product(*[range(len(v)) for v in values]):
        a = _allocation(values, costs, weights, choice)
        if a.cost <= budget * (1 + 1e-12) and (best is None or a.accuracy > best.accuracy + 1e-12):
            best = a
    return best


def pareto_frontier(values: list[np.ndarray], costs: list[np.ndarray],
                    weights: np.ndarray) -> list[Allocation]:
    """Exact accuracy-vs-mean-cost frontier: merge bins one at a time, keeping only allocations
    that no other beats on both cost and accuracy. Sorted by cost (and accuracy) ascending."""
    weights = np.asarray(weights, dtype=float)
    _validate(values, costs, weights)
    front: list[tuple[float, float, tuple[int, ...]]] = [(0.0, 0.0, ())]
    for w, v, c in zip(weights, values, costs, strict=True):
        merged = [(fc + w * float(c[j]), fa + w * float(v[j]), (*ch, j))
                  for fc, fa, ch in front for j in range(len(v))]
        merged.sort(key=lambda t: (t[0], -t[1], t[2]))
        front = []
        for item in merged:
            if not front or item[1] > front[-1][1] + 1e-12:
                front.append(item)
    return [Allocation(ch, a, c) for c, a, ch in front]


# ----------------------------------------------------------------------------------------------
# Allocation over a binned profile


COST_METRICS = ("flops", "generations", "usd", "latency_s")


@dataclass(frozen=True)
class Menu:
    """Per bin, the candidate options (rows of BinnedProfile.options) with their cost column."""

    bins: list[int]
    weights: np.ndarray
    tables: list[pd.DataFrame]
    metric: str

    def values(self) -> list[np.ndarray]:
        return [t["acc"].to_numpy(float) for t in self.tables]

    def costs(self) -> list[np.ndarray]:
        return [t["cost"].to_numpy(float) for t in self.tables]


def build_menu(bp: BinnedProfile, metric: str = "flops", cost_column: pd.Series | None = None,
               keep: pd.Series | None = None) -> Menu:
    """Options per bin with `cost` = the metric (flops, generations = budget, or a column the cost
    simulator computed: usd per query, latency). `keep` filters options (e.g. a latency SLO)."""
    if metric not in COST_METRICS:
        raise PlannerError(f"unknown cost metric {metric!r}; choose one of {', '.join(COST_METRICS)}")
    opts = bp.options.copy()
    if cost_column is not None:
        opts["cost"] = cost_column.to_numpy(float)
    elif metric == "flops":
        if not (opts["flops"] > 0).any():
            raise PlannerError(f"{bp.source}: the profile records no FLOPs (all 0, e.g. imported samples); "
                               "use --metric generations")
        opts["cost"] = opts["flops"]
    elif metric == "generations":
        opts["cost"] = opts["budget"]
    else:
        raise PlannerError(f"cost metric {metric} needs the cost simulator (give --hardware and --model)")
    if keep is not None:
        opts = opts[keep.to_numpy(bool)]
    tables = []
    for b in bp.bins:
        t = opts[opts["bin"] == b].reset_index(drop=True)
        if t.empty:
            raise PlannerError(f"{bp.source}: no option left for {bp.bin_column} {b} (latency SLO too tight?)")
        tables.append(t)
    return Menu(bp.bins, np.array([bp.weights[b] for b in bp.bins]), tables, metric)


def describe(menu: Menu, alloc: Allocation) -> dict[str, Any]:
    per_bin = []
    for b, w, t, j in zip(menu.bins, menu.weights, menu.tables, alloc.choice, strict=True):
        r = t.iloc[j]
        per_bin.append({
            "bin": int(b), "share": float(w), "strategy": r["strategy"], "config": json.loads(r["config"]),
            "budget": float(r["budget"]), "accuracy": float(r["acc"]), "accuracy_se": float(r["acc_se"]),
            "cost": float(r["cost"]), "flops": float(r["flops"]),
        })
    return {"accuracy": alloc.accuracy, "mean_cost": alloc.cost, "per_bin": per_bin}


def fixed_budget_baseline(menu: Menu) -> list[dict[str, Any]]:
    """The paper's compute-optimal at a fixed budget per prompt, one row per budget present in
    every bin: each bin takes its best option at that budget (ties: the cheaper)."""
    out = []
    common = set.intersection(*[set(t["budget"].tolist()) for t in menu.tables])
    for budget in sorted(common):
        choice = []
        for t in menu.tables:
            cand = t[t["budget"] == budget]
            order = np.lexsort((cand["cost"].to_numpy(), -cand["acc"].to_numpy()))
            choice.append(int(cand.index[order[0]]))
        a = _allocation(menu.values(), menu.costs(), menu.weights, tuple(choice))
        out.append({"budget": float(budget), "allocation": a})
    return out


def compare_with_fixed(menu: Menu) -> list[dict[str, Any]]:
    """For every fixed budget: the MILP allocation at the same mean cost, and the gain."""
    rows = []
    for base in fixed_budget_baseline(menu):
        a0: Allocation = base["allocation"]
        a1 = solve_mckp(menu.values(), menu.costs(), menu.weights, a0.cost, menu.metric)
        rows.append({
            "fixed_budget": base["budget"], "mean_cost": a0.cost,
            "fixed_accuracy": a0.accuracy, "allocated_accuracy": a1.accuracy,
            "allocated_mean_cost": a1.cost, "gain_points": 100.0 * (a1.accuracy - a0.accuracy),
        })
    return rows


def frontier_table(menu: Menu) -> list[dict[str, Any]]:
    return [{"mean_cost": a.cost, "accuracy": a.accuracy,
             "budgets": [float(t.iloc[j]["budget"]) for t, j in zip(menu.tables, a.choice, strict=True)]}
            for a in pareto_frontier(menu.values(), menu.costs(), menu.weights)]


def cross_fitted_accuracy(bp: BinnedProfile, metric: str, budget: float) -> float | None:
    """Honest accuracy of the allocation: choose it on one fold's problems, score it on the other,
    swap and average (the paper's two-fold protocol). None when the problems have a single fold."""
    folds = sorted(set(bp.folds.values()))
    if len(folds) < 2:
        return None
    total, count = 0.0, 0
    rows = bp.rows
    for f in folds:
        train = rows[rows["problem_id"].map(bp.folds) != f]
        test = rows[rows["problem_id"].map(bp.folds) == f]
        if train.empty or test.empty:
            continue
        sub = bin_options(train[list(_PROFILE_COLS)], _problems_of(bp, train), "oracle", bp.source)
        menu = build_menu(sub, metric) if metric in ("flops", "generations") else None
        if menu is None or sub.bins != bp.bins:
            return None
        try:
            a = solve_mckp(menu.values(), menu.costs(), menu.weights, budget, metric)
        except PlannerError:
            return None
        for b, t, j in zip(menu.bins, menu.tables, a.choice, strict=True):
            r = t.iloc[j]
            sel = test[(test["bin"] == b) & (test["strategy"] == r["strategy"])
                       & (test["config"] == r["config"]) & (test["budget"] == r["budget"])]
            total += float(sel["accuracy"].sum())
            count += len(sel)
    return total / count if count else None


_PROFILE_COLS = ("problem_id", "strategy", "config", "budget", "accuracy", "accuracy_se", "flops",
                 "tokens", "prompt_tokens", "wall_s")


def _problems_of(bp: BinnedProfile, rows: pd.DataFrame) -> pd.DataFrame:
    p = rows[["problem_id", "bin"]].drop_duplicates("problem_id")
    return pd.DataFrame({"problem_id": p["problem_id"], "fold": p["problem_id"].map(bp.folds),
                         "oracle_bin": p["bin"]})


def isclose(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)

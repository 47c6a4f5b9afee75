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
`allocation_report` puts the three together for `ttc allocate`.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp

from planner.errors import PlannerError
from planner.optimize.binned import BinnedProfile, bin_options


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


def solve_mckp(
    values: list[np.ndarray],
    costs: list[np.ndarray],
    weights: np.ndarray,
    budget: float,
    what: str = "cost",
) -> Allocation:
    """Exact multiple-choice knapsack with scipy.optimize.milp; raises when infeasible, naming the
    minimum feasible mean budget. Among allocations of equal accuracy the cheapest is returned."""
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
        onehot[i, s : s + k] = 1.0
    scale = max(float(np.max(np.abs(c_all))), 1e-300)  # costs in FLOPs reach 1e15: rescale
    cons = [
        LinearConstraint(onehot, 1.0, 1.0),
        LinearConstraint(c_all[None, :] / scale, -np.inf, max(budget, need) / scale + 1e-9),
    ]
    integrality = np.ones(n)
    res = milp(-v_all, constraints=cons, integrality=integrality, bounds=Bounds(0, 1))
    if res.status != 0 or res.x is None:
        raise PlannerError(f"allocate: MILP solver failed ({res.message})")
    best = float(v_all @ np.round(res.x))
    # Second pass: the cheapest allocation within rounding of the best accuracy.
    cons2 = [*cons, LinearConstraint(v_all[None, :], best - 1e-9, np.inf)]
    res2 = milp(c_all / scale, constraints=cons2, integrality=integrality, bounds=Bounds(0, 1))
    x = np.round(res2.x if res2.status == 0 and res2.x is not None else res.x)
    choice = tuple(int(np.argmax(x[s : s + k])) for s, k in zip(starts, sizes, strict=True))
    return _allocation(values, costs, weights, choice)


def _allocation(
    values: list[np.ndarray], costs: list[np.ndarray], weights: np.ndarray, choice: tuple[int, ...]
) -> Allocation:
    acc = float(sum(w * v[j] for w, v, j in zip(weights, values, choice, strict=True)))
    cost = float(sum(w * c[j] for w, c, j in zip(weights, costs, choice, strict=True)))
    return Allocation(choice, acc, cost)


def brute_force_mckp(
    values: list[np.ndarray], costs: list[np.ndarray], weights: np.ndarray, budget: float
) -> Allocation | None:
    """Enumerate every allocation (tests and tiny instances only)."""
    weights = np.asarray(weights, dtype=float)
    best: Allocation | None = None
    for choice in itertools.product(*[range(len(v)) for v in values]):
        a = _allocation(values, costs, weights, choice)
        if a.cost <= budget * (1 + 1e-12) and (best is None or a.accuracy > best.accuracy + 1e-12):
            best = a
    return best


def pareto_frontier(
    values: list[np.ndarray], costs: list[np.ndarray], weights: np.ndarray
) -> list[Allocation]:
    """Exact accuracy-vs-mean-cost frontier: merge bins one at a time, keeping only allocations
    that no other beats on both cost and accuracy. Sorted by cost (and accuracy) ascending."""
    weights = np.asarray(weights, dtype=float)
    _validate(values, costs, weights)
    front: list[tuple[float, float, tuple[int, ...]]] = [(0.0, 0.0, ())]
    for w, v, c in zip(weights, values, costs, strict=True):
        merged = [
            (fc + w * float(c[j]), fa + w * float(v[j]), (*ch, j))
            for fc, fa, ch in front
            for j in range(len(v))
        ]
        merged.sort(key=lambda t: (t[0], -t[1], t[2]))
        front = []
        for item in merged:
            if not front or item[1] > front[-1][1] + 1e-12:
                front.append(item)
    return [Allocation(ch, a, c) for c, a, ch in front]


# ----------------------------------------------------------------------------------------------
# Allocation over a binned profile


COST_METRICS = ("flops", "generations", "usd", "latency_s")
_UNITS = {
    "flops": "FLOPs per query",
    "generations": "generations per query",
    "usd": "$ per query",
    "latency_s": "seconds per query",
}


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


def build_menu(
    bp: BinnedProfile,
    metric: str = "flops",
    cost_column: pd.Series | None = None,
    keep: pd.Series | None = None,
) -> Menu:
    """Options per bin with `cost` = the metric (flops, generations = budget, or a column the cost
    simulator computed: usd per query, latency). `keep` filters options (e.g. a latency SLO)."""
    if metric not in COST_METRICS:
        raise PlannerError(
            f"unknown cost metric {metric!r}; choose one of {', '.join(COST_METRICS)}"
        )
    opts = bp.options.copy()
    if cost_column is not None:
        opts["cost"] = cost_column.to_numpy(float)
    elif metric == "flops":
        if not (opts["flops"] > 0).any():
            raise PlannerError(
                f"{bp.source}: the profile records no FLOPs (all 0, e.g. imported samples); "
                "use --metric generations"
            )
        opts["cost"] = opts["flops"]
    elif metric == "generations":
        opts["cost"] = opts["budget"]
    else:
        raise PlannerError(
            f"cost metric {metric} needs the cost simulator (give --hardware and --model)"
        )
    if keep is not None:
        opts = opts[keep.to_numpy(bool)]
    tables = []
    for b in bp.bins:
        t = opts[opts["bin"] == b].reset_index(drop=True)
        if t.empty:
            raise PlannerError(
                f"{bp.source}: no option left for {bp.bin_column} {b} (latency SLO too tight?)"
            )
        tables.append(t)
    return Menu(bp.bins, np.array([bp.weights[b] for b in bp.bins]), tables, metric)


def _describe(menu: Menu, alloc: Allocation) -> dict[str, Any]:
    per_bin = []
    for b, w, t, j in zip(menu.bins, menu.weights, menu.tables, alloc.choice, strict=True):
        r = t.iloc[j]
        per_bin.append(
            {
                "bin": int(b),
                "share": float(w),
                "strategy": r["strategy"],
                "config": json.loads(r["config"]),
                "budget": float(r["budget"]),
                "accuracy": float(r["acc"]),
                "accuracy_se": float(r["acc_se"]),
                "cost": float(r["cost"]),
                "flops": float(r["flops"]),
            }
        )
    return {"accuracy": alloc.accuracy, "mean_cost": alloc.cost, "per_bin": per_bin}


def _fixed_budget_baseline(menu: Menu) -> list[dict[str, Any]]:
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
    for base in _fixed_budget_baseline(menu):
        a0: Allocation = base["allocation"]
        a1 = solve_mckp(menu.values(), menu.costs(), menu.weights, a0.cost, menu.metric)
        rows.append(
            {
                "fixed_budget": base["budget"],
                "mean_cost": a0.cost,
                "fixed_accuracy": a0.accuracy,
                "allocated_accuracy": a1.accuracy,
                "allocated_mean_cost": a1.cost,
                "gain_points": 100.0 * (a1.accuracy - a0.accuracy),
            }
        )
    return rows


def _frontier_table(menu: Menu) -> list[dict[str, Any]]:
    return [
        {
            "mean_cost": a.cost,
            "accuracy": a.accuracy,
            "budgets": [
                float(t.iloc[j]["budget"]) for t, j in zip(menu.tables, a.choice, strict=True)
            ],
        }
        for a in pareto_frontier(menu.values(), menu.costs(), menu.weights)
    ]


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
            sel = test[
                (test["bin"] == b)
                & (test["strategy"] == r["strategy"])
                & (test["config"] == r["config"])
                & (test["budget"] == r["budget"])
            ]
            total += float(sel["accuracy"].sum())
            count += len(sel)
    return total / count if count else None


_PROFILE_COLS = (
    "problem_id",
    "strategy",
    "config",
    "budget",
    "accuracy",
    "accuracy_se",
    "flops",
    "tokens",
    "prompt_tokens",
    "wall_s",
)


def _problems_of(bp: BinnedProfile, rows: pd.DataFrame) -> pd.DataFrame:
    p = rows[["problem_id", "bin"]].drop_duplicates("problem_id")
    return pd.DataFrame(
        {
            "problem_id": p["problem_id"],
            "fold": p["problem_id"].map(bp.folds),
            "oracle_bin": p["bin"],
        }
    )


def allocation_report(
    bp: BinnedProfile,
    metric: str = "flops",
    budget: float | None = None,
    cost_column: pd.Series | None = None,
    keep: pd.Series | None = None,
    slo_s: float | None = None,
) -> dict[str, Any]:
    """What `ttc allocate` reports: the allocation at a mean `budget` (when given) with its
    cross-fitted accuracy, the gain over the paper's fixed budget per prompt at equal mean cost,
    and the Pareto frontier. `cost_column` and `keep` come from the cost simulator (usd per query,
    a latency SLO); `slo_s` is recorded."""
    menu = build_menu(bp, metric, cost_column, keep)
    out: dict[str, Any] = {
        "bins": bp.bin_column,
        "metric": metric,
        "unit": _UNITS[metric],
        "weights": {str(b): w for b, w in zip(menu.bins, menu.weights, strict=True)},
        "slo_s": slo_s,
    }
    if budget is not None:
        a = solve_mckp(menu.values(), menu.costs(), menu.weights, budget, metric)
        out["allocation"] = {"budget": budget, **_describe(menu, a)}
        if metric in ("flops", "generations") and keep is None:
            out["allocation"]["cross_fitted_accuracy"] = cross_fitted_accuracy(bp, metric, budget)
    out["vs_fixed_budget"] = compare_with_fixed(menu)
    out["frontier"] = _frontier_table(menu)
    return out

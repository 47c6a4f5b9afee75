"""Allocation across bins: the MILP against brute force, the exact frontier, the fixed-budget
baseline and infeasible budgets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from profiles import write_profile

from planner.errors import PlannerError
from planner.optimize.allocate import (
    brute_force_mckp,
    build_menu,
    compare_with_fixed,
    cross_fitted_accuracy,
    min_feasible_budget,
    pareto_frontier,
    solve_mckp,
)
from planner.optimize.binned import load_binned_profile


def _instance(rng: np.random.Generator, bins: int, options: int) -> tuple[list, list, np.ndarray]:
    values = [rng.uniform(0, 1, options) for _ in range(bins)]
    costs = [rng.uniform(1, 100, options) for _ in range(bins)]
    w = rng.uniform(0.5, 2, bins)
    return values, costs, w / w.sum()


@pytest.mark.parametrize("seed", range(12))
def test_milp_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values, costs, w = _instance(rng, bins=int(rng.integers(2, 5)), options=int(rng.integers(2, 6)))
    lo = min_feasible_budget(costs, w)
    hi = sum(wi * c.max() for wi, c in zip(w, costs, strict=True))
    for budget in np.linspace(lo, hi, 5):
        exact = brute_force_mckp(values, costs, w, budget)
        got = solve_mckp(values, costs, w, budget)
        assert exact is not None
        assert got.accuracy == pytest.approx(exact.accuracy, abs=1e-9)
        assert got.cost <= budget * (1 + 1e-9)


def test_milp_prefers_cheaper_on_ties() -> None:
    values = [np.array([0.5, 0.5]), np.array([0.3, 0.3])]
    costs = [np.array([10.0, 1.0]), np.array([1.0, 5.0])]
    a = solve_mckp(values, costs, np.array([0.5, 0.5]), 100)
    assert a.choice == (1, 0)


def test_milp_huge_costs() -> None:
    # FLOPs per query reach 1e15; the solver must not lose the budget constraint to scaling.
    values = [np.array([0.1, 0.6, 0.9]), np.array([0.2, 0.4, 0.5])]
    costs = [np.array([1e12, 1e14, 1e15]), np.array([1e12, 5e13, 1e15])]
    w = np.array([0.5, 0.5])
    for budget in (1e12, 3e13, 5.5e13, 6e14, 1e15):
        exact = brute_force_mckp(values, costs, w, budget)
        assert solve_mckp(values, costs, w, budget).accuracy == pytest.approx(exact.accuracy)


def test_infeasible_budget_names_minimum() -> None:
    values = [np.array([0.1, 0.9]), np.array([0.2, 0.8])]
    costs = [np.array([2.0, 8.0]), np.array([4.0, 6.0])]
    with pytest.raises(PlannerError, match=r"minimum feasible mean flops is 3\b"):
        solve_mckp(values, costs, np.array([0.5, 0.5]), 2.5, "flops")


@pytest.mark.parametrize("seed", range(6))
def test_frontier_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    values, costs, w = _instance(rng, bins=3, options=4)
    front = pareto_frontier(values, costs, w)
    costs_f = [a.cost for a in front]
    accs_f = [a.accuracy for a in front]
    assert costs_f == sorted(costs_f) and accs_f == sorted(accs_f)
    assert len(set(np.round(accs_f, 12))) == len(accs_f)  # strictly improving
    # Each frontier point is the best accuracy at its cost, and the MILP agrees.
    for a in front:
        best = brute_force_mckp(values, costs, w, a.cost)
        assert best.accuracy == pytest.approx(a.accuracy, abs=1e-9)
        assert solve_mckp(values, costs, w, a.cost).accuracy == pytest.approx(a.accuracy, abs=1e-9)


def test_allocation_on_a_profile(tmp_path: Path) -> None:
    bp = load_binned_profile(write_profile(tmp_path / "p"))
    menu = build_menu(bp, "generations")
    rows = compare_with_fixed(menu)
    assert [r["fixed_budget"] for r in rows] == [1.0, 2.0, 4.0, 8.0, 16.0]
    for r in rows:
        # The allocation contains the fixed-budget choice, so it can only gain.
        assert r["allocated_accuracy"] >= r["fixed_accuracy"] - 1e-12
        assert r["allocated_mean_cost"] <= r["mean_cost"] + 1e-9
    # Hard bin 4 gains nothing from samples; the allocation moves budget to bins 2-3.
    assert any(r["gain_points"] > 0.5 for r in rows)
    a = solve_mckp(menu.values(), menu.costs(), menu.weights, 4.0)
    chosen = {b: t.iloc[j] for b, t, j in zip(menu.bins, menu.tables, a.choice, strict=True)}
    assert chosen[4]["budget"] == 1.0
    assert min(chosen[b]["budget"] for b in (1, 2, 3)) > chosen[4]["budget"]
    # Coverage rows never enter the menu.
    assert all('"coverage"' not in c for t in menu.tables for c in t["config"])
    cf = cross_fitted_accuracy(bp, "generations", 4.0)
    assert cf is not None and 0 < cf <= a.accuracy + 0.05


def test_build_menu_errors(tmp_path: Path) -> None:
    bp = load_binned_profile(write_profile(tmp_path / "p"))
    with pytest.raises(PlannerError, match="needs the cost simulator"):
        build_menu(bp, "usd")
    with pytest.raises(PlannerError, match="unknown cost metric"):
        build_menu(bp, "joules")
    import pandas as pd

    with pytest.raises(PlannerError, match="no option left"):
        build_menu(bp, "flops", keep=pd.Series(bp.options["bin"] != 3))

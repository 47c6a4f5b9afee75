"""Which options can still win: the test adaptive profiling runs between its rounds.

An option can still win in a group of problems (a difficulty bin, or all problems: the single
option for every prompt) when its upper confidence bound is above the best lower bound among the
other options that cost no more: mean_j + z se_j > max over i != j with cost_i <= cost_j of
(mean_i - z se_i). Checking at its own cost suffices, since a larger budget only adds rivals.
The option the plan would pick today at each budget (the most accurate within it, ties to the
first in the plan's order of cost and name) always stays, so a group where every option fails
keeps its cheapest option only. An option that can win nowhere (no bin, nor all problems
together) is dominated with confidence and need not be profiled further: successive elimination
on confidence bounds, applied to the plan's own question. Bounds use the standard error over
problems of each option's expected accuracy; z trades savings against the risk of dropping an
option that would have won.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.strategies import DEPLOYABLE_SELECTS
from planner.tables import parse_config

OPTION_KEY = ["strategy", "config", "budget"]


def _bounds(acc: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of each column's mean over rows (mean -/+ z standard errors)."""
    n = acc.shape[0]
    mean = acc.mean(axis=0)
    se = acc.std(axis=0, ddof=1) / np.sqrt(n) if n >= 2 else np.full_like(mean, np.inf)
    return mean - z * se, mean + z * se


def contenders(
    profile: pd.DataFrame, problems: pd.DataFrame, z: float, bin_column: str = "oracle_bin"
) -> pd.DataFrame:
    """One row per deployable option of `profile` (measured on every problem of it): its
    mean accuracy, `can_win` and, where it can, the first group ("all" or "bin B") where it can.

    profile: the profile table; problems: its problems table with `bin_column`.
    """
    if z < 0:
        raise PlannerError(f"z must be >= 0, got {z}")
    sel = profile["config"].map(lambda c: parse_config(c).get("select", "weighted"))
    prof = profile[sel.isin(DEPLOYABLE_SELECTS).to_numpy()]
    wide = prof.pivot_table(index="problem_id", columns=OPTION_KEY, values="accuracy")
    wide = wide.dropna(axis=1)
    if wide.empty:
        raise PlannerError("no deployable option was measured on every problem")
    acc = wide.to_numpy(float)
    keys = wide.columns.to_frame(index=False)
    cost = keys["budget"].to_numpy(float)
    bins = problems.set_index("problem_id").loc[wide.index, bin_column].to_numpy()
    groups = [("all", np.ones(len(bins), bool))] + [
        (f"bin {int(b)}", bins == b) for b in sorted(set(bins.tolist()))
    ]
    # The plan's order: by cost, then strategy and config; ties go to the first.
    order = np.lexsort((keys["config"].to_numpy(), keys["strategy"].to_numpy(), cost))
    rank = np.empty(len(cost), np.int64)
    rank[order] = np.arange(len(cost))
    where = np.full(len(cost), "", dtype=object)
    for name, rows in groups:
        if rows.sum() == 0:
            continue
        lo, hi = _bounds(acc[rows], z)
        # An option must beat, strictly, the best lower bound among the options that cost no
        # more (itself excepted): where every option fails (or every one succeeds) nothing is
        # beaten, and only the group's winner in the plan's order (the cheapest) is kept.
        beaten = np.empty(len(cost), bool)
        for j in range(len(cost)):
            rivals = (cost <= cost[j] * (1 + 1e-9)) & (np.arange(len(cost)) != j)
            beaten[j] = not rivals.any() or hi[j] > lo[rivals].max() + 1e-12
        mean = acc[rows].mean(axis=0)
        # At every budget, the option the plan would pick there today stays.
        winner = np.zeros(len(cost), bool)
        for c in np.unique(cost):
            elig = np.flatnonzero(cost <= c * (1 + 1e-9))
            top = mean[elig].max()
            winner[min(elig[mean[elig] >= top - 1e-12], key=lambda j: rank[j])] = True
        ok = beaten | winner
        where = np.where((where == "") & ok, name, where)
    out = keys.copy()
    out["mean"] = acc.mean(axis=0)
    out["can_win"] = where != ""
    out["where"] = where
    return out

"""Which options can still win: the test adaptive profiling runs between its rounds.

An option can still win at budget t in a group of problems (a difficulty bin, or all problems:
the single option for every prompt) when its upper confidence bound reaches the best lower bound
among the options that cost no more: UCB_j = mean_j + z se_j >= max over i with cost_i <= cost_j
of (mean_i - z se_i). Checking at t = cost_j suffices, since a larger budget only adds rivals.
An option that can win nowhere (no bin, nor all problems together) is dominated with confidence
and need not be profiled further: successive elimination on confidence bounds, applied to the
plan's own question. Bounds use the standard error over problems of each option's expected
accuracy; z trades savings against the risk of dropping an option that would have won.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.strategies import DEPLOYABLE_SELECTS
from planner.tables import parse_config

OPTION_KEY = ["strategy", "config", "budget"]


def _bounds(acc: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of each column's mean over rows."""
    n = acc.shape[0]
    mean = acc.mean(axis=0)
    se = acc.std(axis=0, ddof=1) / np.sqrt(n) if n >= 2 else np.full_like(mean, np.inf)
    # A column with no spread on a few problems is not known exactly: at least the
    # Bernoulli-worst 0.5/sqrt(n), so that two perfect options on 8 problems are not split.
    se = np.maximum(se, 0.5 / np.sqrt(max(n, 1)))
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
    order = np.argsort(cost, kind="stable")
    cs = cost[order]
    last = np.searchsorted(cs, cs * (1 + 1e-9), side="right") - 1
    where = np.full(len(cost), "", dtype=object)
    for name, rows in groups:
        if rows.sum() == 0:
            continue
        lo, hi = _bounds(acc[rows], z)
        # The best lower bound among options that cost no more (equal cost included).
        best_lo = np.maximum.accumulate(lo[order])[last]
        ok = np.empty(len(cost), bool)
        ok[order] = hi[order] >= best_lo - 1e-12
        where = np.where((where == "") & ok, name, where)
    out = keys.copy()
    out["mean"] = acc.mean(axis=0)
    out["can_win"] = where != ""
    out["where"] = where
    return out

"""The allocation's Pareto frontier: the best accuracy at each mean budget across bins.

The planner computes the frontier exactly (`planner.optimize.allocation_report`: a different
option per difficulty bin, the mean budget weighted by the bins' shares) and the paper's fixed
budget per prompt at the same mean cost; this module draws both.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from planner.optimize import allocation_report, bin_options
from reports.figures._common import HEIGHT, WIDTH, guarded, need, pow2_axis
from reports.run import RunTables

_UNIT = {
    "generations": ("mean budget (generations per query, log2)", 2),
    "flops": ("mean FLOPs per query (log10)", 10),
}


def frontier_table(
    profile: pd.DataFrame, problems: pd.DataFrame, metric: str = "generations", bins: str = "oracle"
) -> pd.DataFrame:
    """The frontier points and the fixed-budget baseline as one table: kind, mean_cost, acc (%),
    and the per-bin budgets of each frontier point."""
    rep = allocation_report(bin_options(profile, problems, bins, "profile"), metric)
    rows = [
        {
            "kind": "allocated per bin (Pareto frontier)",
            "mean_cost": f["mean_cost"],
            "acc": 100 * f["accuracy"],
            "budgets": " / ".join(f"{b:g}" for b in f["budgets"]),
        }
        for f in rep["frontier"]
    ]
    rows += [
        {
            "kind": "same budget for every prompt",
            "mean_cost": r["mean_cost"],
            "acc": 100 * r["fixed_accuracy"],
            "budgets": f"{r['fixed_budget']:g} in every bin",
        }
        for r in rep["vs_fixed_budget"]
    ]
    return pd.DataFrame(rows).sort_values(["kind", "mean_cost", "acc"]).reset_index(drop=True)


def pareto_frontier_chart(
    profile: pd.DataFrame, problems: pd.DataFrame, metric: str = "generations", bins: str = "oracle"
) -> alt.LayerChart:
    """Accuracy against mean budget: the exact frontier of per-bin allocations (a step line) and
    the paper's fixed budget per prompt (points) at the same mean cost."""
    title, base = _UNIT[metric]
    data = frontier_table(profile, problems, metric, bins)
    kinds = sorted(data["kind"].unique())
    enc = {
        "x": alt.X(
            "mean_cost:Q",
            title=title,
            scale=alt.Scale(type="log", base=base),
            axis=pow2_axis(data["mean_cost"]) if base == 2 else alt.Axis(format="~s"),
        ),
        "y": alt.Y("acc:Q", title="expected accuracy (%, in-sample per bin)"),
        "color": alt.Color("kind:N", title=None, sort=kinds),
        "tooltip": ["kind:N", "mean_cost:Q", "acc:Q", "budgets:N"],
    }
    front = data[data["kind"] == kinds[0]]
    fixed = data[data["kind"] != kinds[0]]
    layers = [
        alt.Chart(front).mark_line(interpolate="step-after", point=True).encode(**enc),
        alt.Chart(fixed).mark_point(size=80, shape="diamond", filled=True).encode(**enc),
    ]
    return alt.layer(*layers).properties(
        width=2 * WIDTH,
        height=HEIGHT + 60,
        title="Allocation across difficulty bins: Pareto frontier of accuracy against mean budget",
    )


def build_pareto(run: RunTables) -> alt.TopLevelMixin:
    name = "Pareto frontier"
    profile = need(run.profile, f"{name}: needs profile.parquet (written by ttc curves)")
    problems = need(run.problems, f"{name}: needs problems.parquet (written by ttc curves)")
    return guarded(name, lambda: pareto_frontier_chart(profile, problems))

"""Accuracy against budget: per strategy, compute-optimal against the baselines, beam search
against best-of-N, and the revisions' parallel:sequential ratio.

Each public function takes planner tables (a profile with its problems, or the plan's curves)
and returns an altair chart; the `build_*` functions pick those tables from a run.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from planner.strategies import SEARCH, STRATEGY_KINDS
from planner.tables import parse_config
from reports.figures._common import (
    HEIGHT,
    WIDTH,
    Missing,
    band_line,
    best_per_budget,
    binned_options,
    budget_axis,
    faceted,
    guarded,
    need,
    paper_aggs,
    pow2_axis,
)
from reports.run import RunTables

_TIP = ["series:N", "budget:Q", "acc:Q", "ci_lo:Q", "ci_hi:Q", "flops:Q", "n:Q", "config:N"]


def accuracy_vs_budget(
    profile: pd.DataFrame,
    problems: pd.DataFrame,
    unit: str = "generations",
    bins: str = "oracle",
) -> alt.FacetChart:
    """Accuracy against budget for every strategy and answer selection, over all problems and
    per difficulty bin, with 95% intervals. Each line takes the best config of its series at each
    budget (e.g. the best beam width); `unit` puts generations (log2) or FLOPs on the x axis."""
    x, scale, x_title = budget_axis(unit)
    data = best_per_budget(paper_aggs(binned_options(profile, problems, bins)))
    if unit == "flops":
        data = data[data["flops"] > 0]
        if data.empty:
            raise Missing("the profile records no FLOPs (e.g. an imported dump)")
    axis = pow2_axis(data["budget"]) if unit == "generations" else None
    series = sorted(data["series"].unique())
    layer = band_line(x, scale, x_title, "series", "strategy, selection", series, _TIP, axis)
    what = "generations" if unit == "generations" else "FLOPs"
    return faceted(layer, data, f"Accuracy against budget ({what}) per strategy, 95% intervals")


def compute_optimal_vs_baselines(
    curves: pd.DataFrame, unit: str = "generations"
) -> alt.VConcatChart:
    """The plan's compute-optimal curve against majority, best-of-N and weighted best-of-N per
    verifier (the plan's `curves` table, 95% bands), and below it the compute-efficiency
    multiple per budget (the budget weighted best-of-N needs to match compute-optimal, / budget)."""
    df = curves[curves["method"] != "coverage"].copy()
    if df.empty:
        raise Missing("the plan's curves hold no deployable method")
    df["acc"] = 100 * df["accuracy"]
    df["ci_lo"] = 100 * df["ci_lo"]
    df["ci_hi"] = 100 * df["ci_hi"]
    df = df.sort_values(["method", "budget"]).reset_index(drop=True)
    methods = sorted(df["method"].unique(), key=lambda m: (m != "compute_optimal", m))
    scale = alt.Scale(type="log", base=2) if unit == "generations" else alt.Scale(type="log")
    x_title = (
        "budget (generations per query, log2)"
        if unit == "generations"
        else "budget (FLOPs per query, log10)"
    )
    axis = pow2_axis(df["budget"]) if unit == "generations" else None
    tip = ["method:N", "budget:Q", "acc:Q", "ci_lo:Q", "ci_hi:Q", "generations:Q", "flops:Q"]
    top = alt.layer(
        *band_line("budget", scale, x_title, "method", "method", methods, tip, axis).layer,
        data=df,
    ).properties(
        width=2 * WIDTH,
        height=HEIGHT + 60,
        title="Compute-optimal against majority and best-of-N per verifier (95% bands)",
    )
    eff = df[df["method"] == "compute_optimal"][["budget", "efficiency_multiple"]].copy()
    eff["label"] = [
        "> max" if np.isnan(e) else f"{e:.2g}x" for e in eff["efficiency_multiple"].astype(float)
    ]
    eff["multiple"] = eff["efficiency_multiple"].fillna(0.0)
    eff = eff.sort_values("budget").reset_index(drop=True)
    base = alt.Chart(eff).encode(
        x=alt.X("budget:O", title=x_title.replace(", log2", "").replace(", log10", "")),
    )
    bars = base.mark_bar(opacity=0.7).encode(
        y=alt.Y("multiple:Q", title="efficiency multiple (x budget)"),
        tooltip=["budget:Q", "label:N"],
    )
    text = base.mark_text(dy=-6).encode(y="multiple:Q", text="label:N")
    bottom = alt.layer(bars, text).properties(
        width=2 * WIDTH,
        height=HEIGHT - 40,
        title="Compute-efficiency multiple: weighted best-of-N's budget to match, / budget",
    )
    return alt.vconcat(top, bottom)


def beam_vs_best_of_n(
    profile: pd.DataFrame, problems: pd.DataFrame, bins: str = "oracle"
) -> alt.FacetChart:
    """Search (beam, lookahead, DVTS) against best-of-N weighted per difficulty bin, with 95%
    intervals: the paper's crossover (search ahead at low budgets, behind at high budgets on easy
    bins). Both sides select the final answer by weighted best-of-N with the last-step score."""
    opts = paper_aggs(binned_options(profile, problems, bins))
    search = opts["strategy"].map(STRATEGY_KINDS) == SEARCH
    weighted = opts["select"] == "weighted"
    data = opts[weighted & (search | (opts["strategy"] == "sample"))]
    verifiers = set(data.loc[data["strategy"] != "sample", "verifier"])
    data = data[data["verifier"].isin(verifiers)]
    if not (data["strategy"] != "sample").any() or not (data["strategy"] == "sample").any():
        raise Missing("needs both search (beam) and best-of-N weighted rows with one verifier")
    data = best_per_budget(data)
    x, scale, x_title = budget_axis("generations")
    series = sorted(data["series"].unique())
    layer = band_line(x, scale, x_title, "series", "strategy", series, _TIP, pow2_axis(data[x]))
    return faceted(layer, data, "Beam search against best-of-N weighted per difficulty bin (95%)")


def revisions_ratio(
    profile: pd.DataFrame, problems: pd.DataFrame, budget: float | None = None, bins: str = "oracle"
) -> alt.FacetChart:
    """Revisions at a fixed budget N: accuracy by the split of N into parallel chains x
    sequential revisions, per difficulty bin (95% intervals). `budget` None: the largest budget
    with at least two splits (the paper's analysis is at N = 128)."""
    rev = profile[profile["strategy"] == "revisions"]
    if rev.empty:
        raise Missing("the profile has no revisions rows")
    opts = paper_aggs(binned_options(rev, problems, bins))
    opts = opts[opts["select"] != "coverage"].copy()
    cfgs = [parse_config(c) for c in opts["config"]]
    opts["chains"] = [int(c.get("chains", 1)) for c in cfgs]
    opts["length"] = [int(c.get("length", 1)) for c in cfgs]
    splits = opts.groupby("budget")["chains"].nunique()
    if budget is None:
        several = splits[splits >= 2]
        if several.empty:
            raise Missing("no budget has two parallel:sequential splits of revisions")
        budget = float(several.index.max())
    data = opts[np.isclose(opts["budget"], budget)].copy()
    if data.empty:
        raise Missing(f"no revisions rows at budget {budget:g}")
    # The split with the most parallel chains last: left = all sequential, right = all parallel.
    data["split"] = [f"{c} x {n}" for c, n in zip(data["chains"], data["length"], strict=True)]
    data = data.sort_values(["scope", "series", "chains", "config"]).reset_index(drop=True)
    order = [f"{c} x {n}" for c, n in sorted(set(zip(data["chains"], data["length"], strict=True)))]
    base = alt.Chart().encode(
        x=alt.X("split:N", sort=order, title="parallel chains x sequential revisions"),
        color=alt.Color("series:N", title="selection", sort=sorted(data["series"].unique())),
    )
    layer = alt.layer(
        base.mark_errorbar().encode(
            y=alt.Y("ci_lo:Q", title="accuracy (%)", scale=alt.Scale(domain=[0, 100])),
            y2="ci_hi:Q",
        ),
        base.mark_line(point=True).encode(
            y="acc:Q", tooltip=["series:N", "split:N", "acc:Q", "ci_lo:Q", "ci_hi:Q", "n:Q"]
        ),
    )
    return faceted(
        layer, data, f"Revisions at budget {budget:g}: accuracy by parallel:sequential split (95%)"
    )


# ----------------------------------------------------------------------------------------------
# From a run


def _profile(run: RunTables, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    profile = need(run.profile, f"{name}: needs profile.parquet (written by ttc curves)")
    problems = need(run.problems, f"{name}: needs problems.parquet (written by ttc curves)")
    return profile, problems


def build_accuracy(run: RunTables) -> alt.TopLevelMixin:
    name = "accuracy against budget"
    profile, problems = _profile(run, name)
    gen = guarded(name, lambda: accuracy_vs_budget(profile, problems))
    if not (profile["flops"] > 0).any():
        return gen
    return alt.vconcat(gen, guarded(name, lambda: accuracy_vs_budget(profile, problems, "flops")))


def build_compute_optimal(run: RunTables) -> alt.TopLevelMixin:
    name = "compute-optimal against baselines"
    curves = need(run.plan_curves, f"{name}: needs plan/curves.parquet (written by ttc plan)")
    unit = str((run.plan_summary or {}).get("unit", "generations"))
    return guarded(name, lambda: compute_optimal_vs_baselines(curves, unit))


def build_beam(run: RunTables) -> alt.TopLevelMixin:
    name = "beam against best-of-N"
    profile, problems = _profile(run, name)
    hint = "ttc profile with a beam strategy and a verifier, then ttc curves"
    return guarded(name, lambda: beam_vs_best_of_n(profile, problems), hint)


def build_revisions(run: RunTables) -> alt.TopLevelMixin:
    name = "revisions"
    profile, problems = _profile(run, name)
    hint = "ttc profile with the revisions strategy, then ttc curves"
    return guarded(name, lambda: revisions_ratio(profile, problems), hint)

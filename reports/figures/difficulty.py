"""Difficulty: predicted against oracle bins, and the accuracy lost by predicting them.

The paper bins problems by oracle pass@1 and counts difficulty as free; a router predicts the bin
from k probe samples and pays for them. The left panel is the confusion matrix of the two
binnings; the right panel plans twice with the planner (`planner.optimize.make_plan`): on oracle
bins with free difficulty, and on predicted bins with the probes charged, so the gap between the
two compute-optimal curves at equal budget is the accuracy lost by predicting.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

from planner.optimize import PlanOptions, make_plan
from reports.figures._common import HEIGHT, WIDTH, Missing, guarded, need, pow2_axis
from reports.run import RunTables

# A light plan (few folds for the promise, which this figure does not show): only the two-fold
# compute-optimal curve is drawn.
_PLAN = {"n_boot": 200, "expect_folds": 2, "expect_repeats": 1, "seed": 0}


def confusion_counts(problems: pd.DataFrame) -> pd.DataFrame:
    """Problems per (oracle bin, predicted bin), every pair of the bins present (zeros kept)."""
    both = problems.dropna(subset=["oracle_bin", "predicted_bin"])
    if both.empty:
        raise Missing("problems.parquet has no problem with both oracle_bin and predicted_bin")
    bins = sorted(set(both["oracle_bin"].astype(int)) | set(both["predicted_bin"].astype(int)))
    counts = both.groupby(["oracle_bin", "predicted_bin"]).size()
    rows = []
    for o in bins:
        n_o = int((both["oracle_bin"] == o).sum())
        for p in bins:
            c = int(counts.get((o, p), 0))
            rows.append(
                {
                    "oracle_bin": o,
                    "predicted_bin": p,
                    "problems": c,
                    "share": 100.0 * c / n_o if n_o else 0.0,
                }
            )
    return pd.DataFrame(rows)


def _compute_optimal(plan_curves: pd.DataFrame, label: str) -> pd.DataFrame:
    co = plan_curves[plan_curves["method"] == "compute_optimal"]
    return pd.DataFrame(
        {
            "bins": label,
            "budget": co["budget"].to_numpy(float),
            "acc": 100 * co["accuracy"].to_numpy(float),
            "ci_lo": 100 * co["ci_lo"].to_numpy(float),
            "ci_hi": 100 * co["ci_hi"].to_numpy(float),
        }
    )


def prediction_loss(
    profile: pd.DataFrame, problems: pd.DataFrame, probe_k: int, probe_verifier: str | None
) -> pd.DataFrame:
    """Compute-optimal accuracy (%, 95% interval) per budget in generations, planned on oracle
    bins (difficulty free, as the paper) and on predicted bins with the k probes charged."""
    oracle = make_plan(profile, problems, PlanOptions(bin_column="oracle_bin", **_PLAN))
    predicted = make_plan(
        profile,
        problems,
        PlanOptions(
            bin_column="predicted_bin", probe_k=probe_k, probe_verifier=probe_verifier, **_PLAN
        ),
    )
    out = pd.concat(
        [
            _compute_optimal(oracle.curves, "oracle bins (free)"),
            _compute_optimal(predicted.curves, f"predicted bins ({probe_k} probes charged)"),
        ],
        ignore_index=True,
    )
    return out.sort_values(["bins", "budget"]).reset_index(drop=True)


def difficulty_figure(
    problems: pd.DataFrame,
    profile: pd.DataFrame | None = None,
    probe: dict[str, Any] | None = None,
) -> alt.TopLevelMixin:
    """The confusion matrix of predicted against oracle bins (share of each oracle bin, with
    counts); with a profile and its probe settings (`probe`: k, verifier, and mean_flops when
    known), beside it the compute-optimal curve on oracle against predicted bins."""
    counts = confusion_counts(problems)
    bins = sorted(counts["oracle_bin"].unique())
    base = alt.Chart(counts).encode(
        x=alt.X("predicted_bin:O", title="predicted bin (1 = easiest)", sort=bins),
        y=alt.Y("oracle_bin:O", title="oracle bin (pass@1 quantile, 1 = easiest)", sort=bins),
    )
    heat = base.mark_rect().encode(
        color=alt.Color("share:Q", title="% of oracle bin", scale=alt.Scale(domain=[0, 100])),
        tooltip=["oracle_bin:O", "predicted_bin:O", "problems:Q", "share:Q"],
    )
    text = base.mark_text().encode(text=alt.Text("problems:Q"))
    agree = 100.0 * counts.loc[counts["oracle_bin"] == counts["predicted_bin"], "problems"].sum()
    agree /= max(1, int(counts["problems"].sum()))
    left = alt.layer(heat, text).properties(
        width=HEIGHT + 30,
        height=HEIGHT + 30,
        title=f"Predicted against oracle bins (problems; {agree:.0f}% on the diagonal)",
    )
    if profile is None or not probe or not probe.get("k"):
        return left
    k = int(probe["k"])
    loss = prediction_loss(profile, problems, k, probe.get("verifier"))
    cost = probe.get("mean_flops")
    cost_text = f", {float(cost):.3g} FLOPs per query" if cost else ""
    x = alt.X(
        "budget:Q",
        title="budget (generations per query incl. probes, log2)",
        scale=alt.Scale(type="log", base=2),
        axis=pow2_axis(loss["budget"]),
    )
    color = alt.Color("bins:N", title="planned on", sort=sorted(loss["bins"].unique()))
    lines = alt.Chart(loss).encode(x=x, color=color)
    right = alt.layer(
        lines.mark_area(opacity=0.15).encode(
            y=alt.Y("ci_lo:Q", title="compute-optimal accuracy (%)"), y2="ci_hi:Q"
        ),
        lines.mark_line(point=True).encode(
            y="acc:Q", tooltip=["bins:N", "budget:Q", "acc:Q", "ci_lo:Q", "ci_hi:Q"]
        ),
    ).properties(
        width=WIDTH + 60,
        height=HEIGHT + 30,
        title=f"Accuracy lost by predicting difficulty (probes: k = {k}{cost_text})",
    )
    return alt.hconcat(left, right).properties(
        title="Difficulty: predicted against oracle bins, and what predicting costs"
    )


def build_difficulty(run: RunTables) -> alt.TopLevelMixin:
    name = "difficulty"
    problems = need(run.problems, f"{name}: needs problems.parquet (written by ttc curves)")
    if "predicted_bin" not in problems or problems["predicted_bin"].isna().all():
        raise Missing(
            f"{name}: needs problems.parquet with predicted_bin (written by ttc curves --probe-k K)"
        )
    probe = dict(run.profile_meta.get("probe") or {})
    summary_probe = (run.plan_summary or {}).get("probe") or {}
    if "mean_flops" in summary_probe:
        probe["mean_flops"] = summary_probe["mean_flops"]
    elif "probe_flops" in problems:
        probe["mean_flops"] = float(problems["probe_flops"].mean())
    has_cost = "probe_flops" in problems and not problems["probe_flops"].isna().any()
    profile = run.profile if has_cost else None
    return guarded(name, lambda: difficulty_figure(problems, profile, probe))

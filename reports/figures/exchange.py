"""The exchange per difficulty bin: the small model with test-time compute against a model M
times larger, at the paper's R = 0.16, 0.79, 22 and at the user's load.

The comparison is the planner's (`planner.costs.exchange_report`: per bin, the small model's
best option within X = M + 3(M - 1)/R times one generation's FLOPs, cross-fitted, against the
larger model's pass@1, paired over problems with a 95% interval); this module only draws it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd

from planner.costs import exchange_report
from planner.costs.exchange import larger_from_profile
from planner.costs.scaling import ratio_for
from planner.optimize import bin_options
from reports.figures._common import HEIGHT, Missing, guarded, need
from reports.run import RunTables

PAPER_RATIOS = (0.16, 0.79, 22.0)
_WINNERS = ["test-time", "tie", "pretraining"]


def exchange_table(report: dict[str, Any], user_ratio: float | None = None) -> pd.DataFrame:
    """One row per R and bin of an `exchange_report`: the difference in accuracy points
    (test-time minus larger model) with its 95% interval, the winner and the option chosen."""
    rows = []
    for i, res in enumerate(report["results"]):
        r, x = float(res["ratio"]), float(res["budget_multiplier"])
        mine = user_ratio is not None and abs(r - user_ratio) <= 1e-12 * max(1.0, r)
        label = f"R = {r:.3g}{' (your load)' if mine else ''}: X = {x:.3g}"
        for b in res["per_bin"]:
            lo, hi = b.get("ci95_points", [None, None])
            opt = b.get("option") or {}
            rows.append(
                {
                    "panel": label,
                    "panel_order": i,
                    "bin": int(b["bin"]),
                    "difference": b.get("difference_points"),
                    "ci_lo": lo,
                    "ci_hi": hi,
                    "winner": b["winner"],
                    "option": f"{opt['strategy']} @ {opt['budget']:g}" if opt else "none fits",
                    "n": b.get("n", 0),
                }
            )
    return pd.DataFrame(rows).sort_values(["panel_order", "bin"]).reset_index(drop=True)


def exchange_chart(report: dict[str, Any], user_ratio: float | None = None) -> alt.FacetChart:
    """Per R, per bin: test-time minus larger-model accuracy (points, 95% interval); above zero
    the small model with test-time compute wins."""
    data = exchange_table(report, user_ratio)
    drawn = data.dropna(subset=["difference"])
    if drawn.empty:
        raise Missing("no bin has a test-time option within the budget multiplier")
    base = alt.Chart().encode(x=alt.X("bin:O", title="difficulty bin (1 = easiest)"))
    layer = alt.layer(
        alt.Chart().mark_rule(color="gray").encode(y=alt.datum(0)),
        base.mark_errorbar().encode(
            y=alt.Y("ci_lo:Q", title="test-time minus larger model (accuracy points)"),
            y2="ci_hi:Q",
        ),
        base.mark_point(filled=True, size=60).encode(
            y="difference:Q",
            color=alt.Color("winner:N", title="winner (95%)", sort=_WINNERS),
            tooltip=["panel:N", "bin:O", "difference:Q", "ci_lo:Q", "ci_hi:Q", "option:N", "n:Q"],
        ),
    ).properties(width=HEIGHT, height=HEIGHT)
    panels = list(dict.fromkeys(drawn["panel"]))
    m = float(report["model_multiplier"])
    return layer.facet(
        column=alt.Column("panel:N", title=None, sort=panels), data=drawn
    ).properties(
        title=f"Small model + test-time compute against a {m:g}x larger model, per bin and R"
    )


def exchange_per_bin(
    profile: pd.DataFrame,
    problems: pd.DataFrame,
    large_profile: pd.DataFrame,
    model_multiplier: float,
    ratios: Sequence[float] = PAPER_RATIOS,
    user_ratio: float | None = None,
    bins: str = "oracle",
) -> alt.FacetChart:
    """The exchange per bin from the small model's profile and the larger model's own profile
    (its pass@1 rows), at `ratios` and the user's R."""
    bp = bin_options(profile, problems, bins, "profile")
    larger = larger_from_profile(large_profile, "large/profile", bp)
    rs = sorted({float(r) for r in ratios} | ({float(user_ratio)} if user_ratio else set()))
    report = exchange_report(bp, larger, float(model_multiplier), rs)
    return exchange_chart(report, user_ratio)


def load_ratio(context: dict[str, Any]) -> float | None:
    """R at the user's load: `context["user_ratio"]`, else from `context["load"]`
    (queries_per_day, days, tokens_per_query, pretrain_tokens) with the planner's formula."""
    if context.get("user_ratio") is not None:
        return float(context["user_ratio"])
    load = context.get("load")
    if not isinstance(load, dict):
        return None
    keys = ("queries_per_day", "days", "tokens_per_query", "pretrain_tokens")
    if not all(k in load for k in keys):
        return None
    return ratio_for(*(float(load[k]) for k in keys))


def build_exchange(run: RunTables) -> alt.TopLevelMixin:
    name = "exchange"
    profile = need(run.profile, f"{name}: needs profile.parquet (written by ttc curves)")
    problems = need(run.problems, f"{name}: needs problems.parquet (written by ttc curves)")
    large = need(
        run.large_profile,
        f"{name}: needs large/profile/profile.parquet, the larger model's profile (ttc demo)",
    )
    m = run.context.get("model_multiplier")
    if m is None:
        raise Missing(f"{name}: needs model_multiplier (M) in report.json (written by ttc demo)")
    ratios = run.context.get("ratios") or PAPER_RATIOS
    return guarded(
        name,
        lambda: exchange_per_bin(
            profile, problems, large, float(m), ratios, load_ratio(run.context)
        ),
    )

"""Cost: accuracy against dollars per 1k queries and against latency per query, per hardware.

Each option of the profile (its accuracy averaged over bins by their share of problems) is
priced by the planner's serving simulator (`planner.costs.cost_rows`) for the served model on
each hardware profile; the latency panel draws the SLO as a line. A hardware profile without a
price per hour (a calibrated CPU records $0/h unless told one) has no place on the cost panel's
log scale: it is left out of that panel, and a line under the figure says so (the chart's
`usermeta.note`, which the HTML report writes in the figure's caption).
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from planner.costs import cost_rows, load_hardware, load_model
from planner.optimize import bin_options
from planner.tables import canonical_config
from reports.figures._common import (
    HEIGHT,
    WIDTH,
    Missing,
    config_parts,
    guarded,
    need,
    series_label,
)
from reports.run import RunTables

DEFAULT_HARDWARE = ("h100-sxm",)


def cost_table(
    profile: pd.DataFrame,
    problems: pd.DataFrame,
    model: str,
    hardware: Sequence[str] = DEFAULT_HARDWARE,
    slo_s: float | None = None,
    bins: str = "oracle",
) -> pd.DataFrame:
    """One row per hardware profile and option: accuracy (%), $ per 1k queries (NaN where the
    hardware has no price per hour; `cost` says it in words), latency per query (s) and whether
    the SLO is met, from `planner.costs.cost_rows`."""
    spec = load_model(model)
    bp = bin_options(profile, problems, bins, "profile")
    rows = []
    for name in hardware:
        hw = load_hardware(name)
        for r in cost_rows(bp, spec, hw, slo_s=slo_s):
            cfg = canonical_config(r["config"])
            p = config_parts(cfg)
            # Without a price per hour the simulator's dollars are 0: no figure to show or plot.
            priced = hw.usd_per_hour > 0
            usd = r["usd_per_1k_queries"] if priced else float("nan")
            rows.append(
                {
                    "hardware": hw.name,
                    "strategy": r["strategy"],
                    "series": series_label(r["strategy"], p["select"], p["verifier"], p["agg"]),
                    "config": cfg,
                    "budget": r["budget"],
                    "acc": 100 * r["accuracy"],
                    "usd_per_1k": usd,
                    "cost": f"{usd:.3g} $ per 1k queries" if priced else "no price per hour",
                    "latency_s": r["latency_s"],
                    "meets_slo": bool(r["meets_slo"]),
                    "priced": priced,
                }
            )
    out = pd.DataFrame(rows)
    out = out[out["config"].map(lambda c: config_parts(c)["agg"] in ("last", "none"))]
    return out.sort_values(["hardware", "series", "budget", "config"]).reset_index(drop=True)


def cost_tradeoff(
    profile: pd.DataFrame,
    problems: pd.DataFrame,
    model: str,
    hardware: Sequence[str] = DEFAULT_HARDWARE,
    slo_s: float | None = None,
) -> alt.HConcatChart:
    """Accuracy against $ per 1k queries and against latency per query (log scales) for every
    option, one colour per hardware profile; the SLO, when given, is a dashed line."""
    data = cost_table(profile, problems, model, hardware, slo_s)
    if data.empty:
        raise Missing("no option to price")
    hw_sort = sorted(data["hardware"].unique())
    strategies = sorted(data["strategy"].unique())
    # `cost` in words, so that a point of unpriced hardware never shows a dollar figure.
    tip = ["hardware:N", "series:N", "budget:Q", "acc:Q", "cost:N", "latency_s:Q"]

    def panel(rows: pd.DataFrame, field: str, title: str) -> alt.Chart:
        return (
            alt.Chart(rows)
            .mark_point(filled=True, opacity=0.8)
            .encode(
                x=alt.X(f"{field}:Q", title=title, scale=alt.Scale(type="log")),
                y=alt.Y("acc:Q", title="accuracy (%, mean over bins)"),
                # one colour per hardware in both panels, also when one leaves some out
                color=alt.Color("hardware:N", title="hardware", scale=alt.Scale(domain=hw_sort)),
                shape=alt.Shape("strategy:N", title="strategy", scale=alt.Scale(domain=strategies)),
                tooltip=tip,
            )
            .properties(width=WIDTH + 40, height=HEIGHT + 30)
        )

    unpriced = sorted(data.loc[~data["priced"], "hardware"].unique())
    note = (
        f"Left out of the cost panel: {', '.join(unpriced)}, whose hardware profile has no "
        "price per hour (ttc calibrate --usd-per-hour records one); the latency panel shows it."
        if unpriced
        else ""
    )
    priced = data[data["priced"]]
    lat = panel(data, "latency_s", "latency per query (s, log)")
    if slo_s is not None:
        rule = (
            alt.Chart(pd.DataFrame({"slo": [float(slo_s)]}))
            .mark_rule(strokeDash=[4, 4], color="red")
            .encode(x="slo:Q")
        )
        lat = alt.layer(lat, rule).properties(title=f"Accuracy against latency (SLO {slo_s:g} s)")
    else:
        lat = lat.properties(title="Accuracy against latency (no SLO given)")
    panels = [lat]
    if not priced.empty:
        usd = panel(priced, "usd_per_1k", "$ per 1k queries (log)")
        panels.insert(0, usd.properties(title="Accuracy against cost"))
    title = f"Serving cost of each option for {load_model(model).name}, per hardware profile"
    if not note:
        return alt.hconcat(*panels).properties(title=title)
    # The note sits under the panels (PNG and SVG too), and in usermeta for the page's caption.
    below = alt.TitleParams(note, orient="bottom", anchor="start", fontSize=12, fontWeight="normal")
    return alt.vconcat(alt.hconcat(*panels).properties(title=below)).properties(
        title=title, usermeta={"note": note}
    )


def _in_run(run: RunTables, name: str) -> str:
    """A path in report.json is relative to the run directory; a shipped name stays a name."""
    p = run.root / name
    return str(p) if p.exists() else name


def build_cost(run: RunTables) -> alt.TopLevelMixin:
    name = "cost"
    profile = need(run.profile, f"{name}: needs profile.parquet (written by ttc curves)")
    problems = need(run.problems, f"{name}: needs problems.parquet (written by ttc curves)")
    model = run.context.get("model")
    if not model:
        raise Missing(
            f"{name}: needs the served model (context 'model': a shipped name or a config "
            "folder) in report.json (written by ttc demo)"
        )
    model = _in_run(run, str(model))
    hardware = [_in_run(run, str(h)) for h in run.context.get("hardware") or DEFAULT_HARDWARE]
    if run.context.get("cpu_hardware"):
        hardware.append(_in_run(run, str(run.context["cpu_hardware"])))
    slo = run.context.get("slo_s")
    return guarded(
        name,
        lambda: cost_tradeoff(
            profile, problems, str(model), hardware, None if slo is None else float(slo)
        ),
    )

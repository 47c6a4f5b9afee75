"""What every figure shares: `Missing`, the per-bin option table in chart form, axes and marks.

The planner computes; these helpers only shape its tables for altair. Every chart is built from
data sorted on its keys and uses no auto-named parameters or views, so the same tables give the
same Vega-Lite JSON byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.optimize import bin_options
from planner.stats import Z95
from planner.tables import parse_config

ALL = "all problems"
BIN_COLUMNS = {"oracle": "oracle_bin", "predicted": "predicted_bin"}
WIDTH, HEIGHT = 240, 170


class Missing(Exception):
    """The run lacks what a figure needs; the message says what, and which file would draw it."""


def need(value: Any, what: str) -> Any:
    """`value`, or Missing with `what` ("<figure>: needs <file> (written by <command>)")."""
    if value is None or (isinstance(value, pd.DataFrame) and value.empty):
        raise Missing(what)
    return value


def guarded(name: str, fn: Callable[[], Any], hint: str = "") -> Any:
    """Run `fn`; a planner error (too few bins, no pass@1 rows, ...) or a Missing means the
    figure cannot be drawn from this run: Missing, named, with the planner's own message and
    `hint` (what would draw it)."""
    try:
        return fn()
    except (PlannerError, Missing) as exc:
        raise Missing(f"{name}: {exc}" + (f" ({hint})" if hint else "")) from None


def config_parts(config: str) -> dict[str, str]:
    """select, agg and verifier of a canonical config ('none' where absent)."""
    cfg = parse_config(config)
    return {k: str(cfg.get(k, "none")) for k in ("select", "agg", "verifier")}


def series_label(strategy: str, select: str, verifier: str, agg: str) -> str:
    """`sample weighted[prm]`, `beam majority`, `sample best[prm] (min)`: strategy, how the
    answer is chosen, by which verifier, and the step aggregation when it is not the paper's."""
    label = f"{strategy} {select}"
    if verifier != "none" and select in ("best", "weighted"):
        label += f"[{verifier}]"
    if agg not in ("last", "none"):
        label += f" ({agg})"
    return label


def scope_label(b: int) -> str:
    return f"bin {int(b)}"


def scope_order(scopes: Iterable[str]) -> list[str]:
    """`all problems` first, then the bins in number order (1 = easiest)."""
    bins = sorted({s for s in scopes if s != ALL}, key=lambda s: int(s.split()[-1]))
    return ([ALL] if ALL in set(scopes) else []) + bins


def binned_options(
    profile: pd.DataFrame, problems: pd.DataFrame, bins: str = "oracle", overall: bool = True
) -> pd.DataFrame:
    """Every deployable option's accuracy per difficulty bin (and over all problems), with the
    planner's standard error (`planner.optimize.bin_options`) turned into a 95% normal interval.

    Columns: scope, strategy, config, select, agg, verifier, series, budget, flops, acc (%),
    ci_lo, ci_hi (%), n. The whole set is binned as one bin for the `all problems` scope.
    """
    col = BIN_COLUMNS[bins]
    if col not in problems.columns or problems[col].isna().all():
        raise Missing(f"problems.parquet has no {col} values")
    per_bin = bin_options(profile, problems, bins).options
    frames = [per_bin.assign(scope=per_bin["bin"].map(scope_label))]
    if overall:
        one = problems.assign(**{col: problems[col].where(problems[col].isna(), 1)})
        frames.append(bin_options(profile, one, bins).options.assign(scope=ALL))
    opts = pd.concat(frames, ignore_index=True)
    parts = pd.DataFrame([config_parts(c) for c in opts["config"]], index=opts.index)
    opts = pd.concat([opts, parts], axis=1)
    opts["series"] = [
        series_label(s, sel, v, a)
        for s, sel, v, a in zip(
            opts["strategy"], opts["select"], opts["verifier"], opts["agg"], strict=True
        )
    ]
    half = Z95 * opts["acc_se"]
    opts["ci_lo"] = 100 * np.clip(opts["acc"] - half, 0, 1)
    opts["ci_hi"] = 100 * np.clip(opts["acc"] + half, 0, 1)
    opts["acc"] = 100 * opts["acc"]
    keep = [
        "scope",
        "strategy",
        "config",
        "select",
        "agg",
        "verifier",
        "series",
        "budget",
        "flops",
        "tokens",
        "prompt_tokens",
        "acc",
        "ci_lo",
        "ci_hi",
        "n",
    ]
    return opts[keep].sort_values(["scope", "series", "budget", "config"]).reset_index(drop=True)


def best_per_budget(opts: pd.DataFrame, keys: Sequence[str] = ("scope", "series")) -> pd.DataFrame:
    """The best config of each series at each budget (e.g. the best beam width): ties go to the
    cheaper option, then to the config's spelling, so the choice never depends on row order."""
    order = opts.assign(_neg=-opts["acc"]).sort_values(
        [*keys, "budget", "_neg", "flops", "config"], kind="mergesort"
    )
    best = order.drop_duplicates([*keys, "budget"], keep="first").drop(columns="_neg")
    return best.sort_values([*keys, "budget"]).reset_index(drop=True)


def paper_aggs(opts: pd.DataFrame) -> pd.DataFrame:
    """Keep the paper's last-step score (and vote/coverage rows, which have none): the other
    aggregations are one more axis of the plan, not of these figures."""
    return opts[opts["agg"].isin(["last", "none"])]


def budget_axis(unit: str) -> tuple[str, alt.Scale, str]:
    """Field, scale and title of the x axis for a budget in `unit` (generations or FLOPs)."""
    if unit == "generations":
        return "budget", alt.Scale(type="log", base=2), "budget (generations per query, log2)"
    if unit == "flops":
        return "flops", alt.Scale(type="log", base=10), "FLOPs per query (log10)"
    raise ValueError(f"unit must be 'generations' or 'flops', got {unit!r}")


def pow2_axis(values: Iterable[float]) -> alt.Axis:
    """Ticks at the powers of two spanning `values` (vega's own log2 ticks read 1.5, 2.5 ...)."""
    v = [float(x) for x in values if float(x) > 0]
    lo, hi = (int(np.floor(np.log2(min(v)))), int(np.ceil(np.log2(max(v))))) if v else (0, 0)
    return alt.Axis(values=[float(2**i) for i in range(lo, hi + 1)])


def accuracy_axis(title: str = "accuracy (%)") -> alt.Y:
    return alt.Y("acc:Q", title=title, scale=alt.Scale(domain=[0, 100]))


def band_line(
    x: str,
    x_scale: alt.Scale,
    x_title: str,
    color: str,
    color_title: str,
    color_sort: list[str],
    tooltip: list[str],
    axis: alt.Axis | None = None,
) -> alt.LayerChart:
    """Lines with points and a 95% band (ci_lo..ci_hi) per series: the accuracy-curve layer,
    without data (a facet or `alt.layer(..., data=...)` gives it)."""
    base = alt.Chart().encode(
        x=alt.X(f"{x}:Q", title=x_title, scale=x_scale, axis=axis or alt.Axis(format="~s")),
        color=alt.Color(f"{color}:N", title=color_title, sort=color_sort),
    )
    band = base.mark_area(opacity=0.15).encode(
        y=alt.Y("ci_lo:Q", title="accuracy (%)", scale=alt.Scale(domain=[0, 100])),
        y2="ci_hi:Q",
    )
    line = base.mark_line(point=True).encode(y=accuracy_axis(), tooltip=tooltip)
    return alt.layer(band, line)


def faceted(layer: alt.LayerChart, data: pd.DataFrame, title: str, columns: int = 3) -> alt.Chart:
    """One panel per scope (`all problems`, then bin 1 = easiest ...), with a title."""
    return (
        layer.properties(width=WIDTH, height=HEIGHT)
        .facet(
            facet=alt.Facet(
                "scope:N", title="difficulty bin (1 = easiest)", sort=scope_order(data["scope"])
            ),
            columns=columns,
            data=data,
        )
        .properties(title=title)
    )

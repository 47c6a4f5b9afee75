"""Finding (a): compute-optimal selection against weighted best-of-N, from the plan's own tables.

The reference is the plan's (`summary.json` "reference", weighted best-of-N with its verifier).
Where the run holds the profile and problems the plan was made from, the plan's per-problem
series are rebuilt with the planner's own grid and cross-fit (and checked against the plan's
curves to the last digit), and the intervals are paired bootstraps over problems. Otherwise the
intervals are conservative unpaired ones from the curves' own per-method intervals (the
difference of opposite endpoints), and the evidence says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.optimize import Plan, make_plan, options_from_summary
from planner.optimize.crossfit import efficiency_multiple
from planner.optimize.grid import Grid, build_grid
from planner.stats import bootstrap_stat, paired_diff_ci
from reports.findings.base import (
    CI,
    EPS,
    N_BOOT,
    Finding,
    across_budgets,
    combine,
    interval,
    num,
    pts,
    rng_for,
    side,
    spread,
    untestable,
)
from reports.run import RunTables

CLAIM = (
    "Compute-optimal selection beats weighted best-of-N at equal budget, and matches it with "
    "less compute (an efficiency multiple above 1)."
)
CO = "compute_optimal"


@dataclass(frozen=True)
class _Paired:
    """Per budget: compute-optimal's and the reference's per-problem accuracy, and the
    reference's options (per-problem accuracy, cost) that the efficiency multiple reads."""

    co: dict[float, np.ndarray]
    ref: dict[float, np.ndarray]
    ref_acc: np.ndarray  # [problems, reference options]
    ref_cost: np.ndarray  # [reference options]


def rebuild_plan(run: RunTables, verifier: str | None) -> tuple[Plan, Grid] | str:
    """The plan remade from the run's profile and problems with the options its summary names
    (so its per-problem series are the plan's own), and its grid; or why it cannot be."""
    s = run.plan_summary
    if run.profile is None or run.problems is None or not s:
        return "the run lacks the profile, problems or plan summary the plan was made from"
    try:
        opts = options_from_summary(s, verifier=verifier, n_boot=0)
        return make_plan(run.profile, run.problems, opts), build_grid(
            run.profile, run.problems, opts
        )
    except (KeyError, ValueError, PlannerError) as exc:
        return f"the plan could not be rebuilt from its profile ({exc})"


def same_as_curves(plan: Plan, curves: pd.DataFrame, names: list[str]) -> str | None:
    """None when the rebuilt series are the plan's curves (means to 1e-9), else what differs:
    the pairing would otherwise be of something else."""
    for name in names:
        got = curves[curves["method"] == name].set_index("budget")["accuracy"]
        series = plan.series.get(name, {})
        for t, a in got.items():
            if float(t) not in series or abs(series[float(t)].mean() - float(a)) > 1e-9:
                return f"the rebuilt plan differs from the plan's curves ({name} at {t:g})"
    return None


def _rebuild(run: RunTables, ref: str, curves: pd.DataFrame) -> _Paired | str:
    """The plan's per-problem series, or why they cannot be rebuilt."""
    got = rebuild_plan(run, ref[len("weighted[") : -1])
    if isinstance(got, str):
        return got
    plan, g = got
    differs = same_as_curves(plan, curves, [CO, ref])
    if differs:
        return differs
    mask = g.methods.get(ref, np.zeros(len(g.cost), bool))
    ref_idx = np.flatnonzero(mask)
    # The reference's options at their cost without probes, as the plan's baselines.
    raw = g.gen_cost if plan.summary["unit"] == "generations" else g.flop_cost
    return _Paired(plan.series[CO], plan.series[ref], g.acc[:, ref_idx], raw[ref_idx])


def _multiple(co_acc: float, t: float, cost: np.ndarray, acc: np.ndarray) -> float:
    m = efficiency_multiple(t, co_acc, cost, acc)
    return float("inf") if m is None else m


def _cost_column(curves: pd.DataFrame, unit: str) -> str:
    if unit == "flops":
        return "total_flops" if "total_flops" in curves else "flops"
    return "total_generations" if "total_generations" in curves else "generations"


def finding_a(run: RunTables) -> Finding:
    curves = run.plan_curves
    if curves is None or curves.empty:
        return untestable("a", CLAIM, "no plan curves (curves.parquet, written by ttc plan)")
    methods = sorted(set(curves["method"]))
    ref = (run.plan_summary or {}).get("reference")
    if ref not in methods:
        ref = next((m for m in methods if m.startswith("weighted[")), None)
    if ref is None or CO not in methods:
        return untestable(
            "a",
            CLAIM,
            "the plan has no weighted best-of-N baseline (the profile has no verifier-scored "
            "sample pool)"
            if CO in methods
            else "the plan's curves have no compute_optimal rows",
        )
    co = curves[curves["method"] == CO].set_index("budget")
    wb = curves[curves["method"] == ref].set_index("budget")
    budgets = sorted(float(b) for b in set(co.index) & set(wb.index))
    unit = (run.plan_summary or {}).get("unit", "generations")
    rng = rng_for("a")
    paired = _rebuild(run, ref, curves)
    if not budgets:
        return untestable("a", CLAIM, f"no budget of the plan has both compute_optimal and {ref}")
    rows = []
    for t in budgets:
        if isinstance(paired, _Paired):
            d, lo, hi = paired_diff_ci(paired.co[t], paired.ref[t], CI, N_BOOT, rng)
            both = np.column_stack([paired.co[t], paired.ref_acc])
            m, m_lo, m_hi = bootstrap_stat(
                both,
                lambda v, t=t: _multiple(
                    float(v[:, 0].mean()), t, paired.ref_cost, v[:, 1:].mean(axis=0)
                ),
                CI,
                N_BOOT,
                rng,
            )
        else:
            c, w = co.loc[t], wb.loc[t]
            d, lo, hi = (
                c["accuracy"] - w["accuracy"],
                c["ci_lo"] - w["ci_hi"],
                c["ci_hi"] - w["ci_lo"],
            )
            ref_curve = wb.sort_values(_cost_column(curves, unit))
            cost = ref_curve[_cost_column(curves, unit)].to_numpy(float)
            m = _multiple(float(c["accuracy"]), t, cost, ref_curve["accuracy"].to_numpy(float))
            # The multiple is smallest when compute-optimal is at its low bound and the reference
            # at its high one.
            m_lo = _multiple(float(c["ci_lo"]), t, cost, ref_curve["ci_hi"].to_numpy(float))
            m_hi = _multiple(float(c["ci_hi"]), t, cost, ref_curve["ci_lo"].to_numpy(float))
        rows.append((t, float(d), float(lo), float(hi), m, m_lo, m_hi))
    # "At equal budget" holds only where the reference can spend the budget: beyond its largest
    # option (the largest pool profiled) it is stuck at that option while compute-optimal may
    # spend more, so those budgets are reported but not marked.
    ref_cap = float(wb[_cost_column(curves, unit)].max())
    equal = [r for r in rows if r[0] <= ref_cap * (1 + 1e-9)]
    beyond = [r for r in rows if r[0] > ref_cap * (1 + 1e-9)]
    if not equal:
        return untestable(
            "a", CLAIM, f"no budget of the plan is within the largest {ref} option ({ref_cap:g})"
        )
    beats = across_budgets([side(lo, hi) for _, _, lo, hi, *_ in equal])
    # "Matches it with less compute" is a claim that some budget has a multiple above 1; a
    # multiple below 1 (the reference's option costs less than the budget) contradicts nothing.
    if any(r[5] > 1 + EPS for r in rows):
        matches = "reproduced"
    elif all(r[6] <= 1 + EPS for r in rows):
        matches = "not reproduced"
    else:
        matches = "inconclusive"
    method = (
        f"paired percentile bootstrap over {len(paired.ref_acc)} problems "
        f"({N_BOOT} resamples, {CI:.0%}), the plan rebuilt from its profile"
        if isinstance(paired, _Paired)
        else "conservative unpaired interval from the plan's per-method intervals (difference of "
        f"opposite endpoints) because {paired}"
    )
    top = max(rows, key=lambda r: (r[5], -r[0]))  # where the multiple is surest
    evidence = (
        f"Compute-optimal minus {ref}: "
        f"{spread([(f'budget {t:g}', d, lo, hi) for t, d, lo, hi, *_ in equal])}"
        f"{_beyond(beyond, ref_cap, unit)}; efficiency "
        f"multiple {_fmt_x(top[4])} [{_fmt_x(top[5])}, {_fmt_x(top[6])}] at budget {top[0]:g}; "
        f"{method}."
    )
    numbers = {
        "reference": ref,
        "unit": unit,
        "method": method,
        "ci": CI,
        "n_boot": N_BOOT if isinstance(paired, _Paired) else 0,
        "beats_mark": beats,
        "matches_mark": matches,
        "reference_largest_option": num(ref_cap),
        "per_budget": [
            {
                "budget": num(t),
                **interval(d, lo, hi),
                "efficiency_multiple": num(m),
                "multiple_ci_lo": num(m_lo),
                "multiple_ci_hi": num(m_hi),
                "equal_budget": t <= ref_cap * (1 + 1e-9),
            }
            for t, d, lo, hi, m, m_lo, m_hi in rows
        ],
    }
    return Finding("a", CLAIM, combine([beats, matches]), evidence, numbers)


def _beyond(rows: list[tuple], cap: float, unit: str) -> str:
    if not rows:
        return ""
    each = ", ".join(f"{pts(d, lo, hi)} at {t:g}" for t, d, lo, hi, *_ in rows)
    return f" (not marked, beyond the reference's largest option of {cap:g} {unit}: {each})"


def _fmt_x(m: float) -> str:
    return "> max" if np.isinf(m) else f"{m:.2f}x"

"""Compute-optimal selection: the strategy and config to deploy per difficulty bin and budget.

An option (strategy + config, including how the answer is selected and which verifier scores
it) is eligible at budget t when its cost (generations, or mean FLOPs per query) is at most t:
spending less than the budget is always allowed. With predicted bins, an option chosen per bin
pays the k probes (`planner.optimize.charge`); one option run on every prompt pays none.

The default rule ("pooled", `planner.optimize.deployed`) chooses between one option for every
prompt and per-bin options partially pooled over a shortlist, by nested cross-validation, and
its compute-optimal curve is the cross-fit of that whole procedure, beside `single_best` (the
best single option, cross-fitted alike); the paper's rule ("best": within each bin the option
most accurate on one fold, evaluated on the other, swapped and averaged) is still available, and
its two-fold figures are in the selection and choices tables either way.

Baselines (majority, best-of-N, weighted best-of-N from the independent-sample pool) take their
largest option within t, without probes. The efficiency multiple is the budget at which weighted
best-of-N first reaches compute-optimal's accuracy at t, divided by t (interpolated on log
budget), or "> max" when it never does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.optimize.crossfit import cross_fit
from planner.optimize.deployed import per_bin_deployment, pooled_deployment
from planner.optimize.grid import Grid, build_grid
from planner.optimize.options import PlanOptions
from planner.optimize.rows import bin_rows_at, curve_rows_at, efficiency_by_budget, plan_summary


@dataclass
class Plan:
    """curves: per budget and method, accuracy with CI and mean cost (compute_optimal: the
    cross-fit of the deployed procedure; single_best with the pooled rule).
    selection: per budget, bin and fold (0/1 the paper's two-fold split, -1 the deployed option).
    choices: per bin and budget, the deployed choice with `accuracy`/`ci_lo`/`ci_hi` the paper's
    two-fold cross-validated accuracy of per-bin selection in the bin (NaN where it has no
    option), `expected_accuracy`/`expected_ci_lo`/`expected_ci_hi` the promise a policy makes
    (the cross-fitted accuracy of the deployed procedure in the bin, its interval at least the
    Wilson interval of the bin's size), `selection_agreement` the share of cross-fitted
    selections equal to the deployed option, `in_sample_accuracy` its (optimistic) accuracy on
    the bin's own problems, `optimism` the difference, `probe` whether it needs the probes.
    summary: the figures as JSON; `expected_accuracy` names the estimator's settings.
    series / problem_ids: each method's per-problem accuracy per budget (the curves' rows are
    their means), over the sorted problem ids: what a paired comparison of two methods reads.
    """

    curves: pd.DataFrame
    selection: pd.DataFrame
    choices: pd.DataFrame
    summary: dict
    series: dict[str, dict[float, np.ndarray]] = field(default_factory=dict)
    problem_ids: list[str] = field(default_factory=list)


def _targets(g: Grid, opts: PlanOptions) -> list[float]:
    """The budgets to plan at: the requested ones, else every deployable option's cost
    (generations) or the costs of the majority pool (FLOPs), with the probes charged and, where
    they are, also without them (an option run on every prompt without probing costs that)."""
    if opts.budgets is not None:
        return sorted(set(float(b) for b in opts.budgets))
    if opts.unit == "generations":
        costs = set(g.gen_cost[g.deployable].tolist())
        if g.charged is not None:
            costs |= set(g.cost[g.deployable].tolist())
        return sorted(costs)
    maj = g.methods["majority"]
    base = maj if maj.any() else g.deployable
    costs = set(np.round(g.flop_cost[base], 6).tolist())
    if g.charged is not None:
        costs |= set(np.round(g.cost[base], 6).tolist())
    return sorted(costs)


def make_plan(
    profile: pd.DataFrame, problems: pd.DataFrame, opts: PlanOptions | None = None
) -> Plan:
    """The compute-optimal plan of a profile: per budget, bin and fold the chosen option, the
    deployed choice per bin with its promised accuracy, and the accuracy-vs-budget curves."""
    opts = opts or PlanOptions()
    g = build_grid(profile, problems, opts)
    targets = _targets(g, opts)
    fit = cross_fit(g.acc, g.cost, g.bins, g.folds, targets, g.deployable)
    dep = (
        pooled_deployment(g, targets, opts)
        if opts.select_rule == "pooled"
        else per_bin_deployment(g, fit, targets, opts)
    )
    # One stream for all two-fold intervals, drawn per target: the curves', then each bin's.
    rng = np.random.default_rng(opts.seed)
    curve_rows, sel_rows, choice_rows = [], [], []
    series: dict[str, dict[float, np.ndarray]] = {}
    for ti, t in enumerate(targets):
        rows, values = curve_rows_at(g, dep, ti, t, opts, rng)
        if not rows:
            continue
        curve_rows += rows
        for name, v in values.items():
            series.setdefault(name, {})[float(t)] = v
        sel, choice = bin_rows_at(g, fit, dep, ti, t, opts, rng)
        sel_rows += sel
        choice_rows += choice
    curves = pd.DataFrame(curve_rows)
    if curves.empty:
        raise PlannerError(
            "no budget has an eligible option: the requested budgets are below every option's cost"
        )
    ref_key = f"weighted[{g.ref_verifier}]" if g.ref_verifier else None
    eff = efficiency_by_budget(g, curves, ref_key, opts)
    curves["efficiency_multiple"] = [
        (eff.get(float(b)) if m == "compute_optimal" else None)
        for b, m in zip(curves["budget"], curves["method"], strict=True)
    ]
    curves["efficiency_multiple"] = curves["efficiency_multiple"].astype(float)
    summary = plan_summary(g, fit, dep, targets, curves, choice_rows, eff, ref_key, opts)
    return Plan(curves, pd.DataFrame(sel_rows), pd.DataFrame(choice_rows), summary, series, g.pids)

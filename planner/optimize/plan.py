"""Compute-optimal selection: the best strategy and config per difficulty bin and budget.

As the paper: within each difficulty bin, choose the option (strategy + config, including how
the answer is selected and which verifier scores it) with the highest accuracy on one fold,
evaluate it on the other fold, swap, and average. Each problem is thus scored by an option chosen
without it, and the compute-optimal accuracy is an honest estimate of the procedure. The option
that a deployment would use (the `choices` table) is then chosen on all problems of the bin.

An option is eligible at budget t when its cost (generations, or mean FLOPs per query) is at most
t: spending less than the budget is always allowed. Baselines (majority, best-of-N, weighted
best-of-N from the independent-sample pool) take their largest option within t. The efficiency
multiple is the budget at which weighted best-of-N first reaches compute-optimal's accuracy at t,
divided by t (interpolated on log budget), or "> max" when it never does.

The two-fold figure answers the paper's question (how good is the *procedure*, selecting on half a
bin) but is a pessimistic and noisy promise for the option a deployment runs; the promise per bin
and budget (`choices.expected_accuracy`) is the repeated K-fold estimate of
`planner.optimize.expect`.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """curves: per budget and method, accuracy with CI and mean cost (compute_optimal = two-fold).
    selection: per budget, bin and fold (-1 = whole bin, the deployed option), the chosen option.
    choices: per bin and budget, the deployment choice (chosen on the whole bin) with
    `accuracy`/`ci_lo`/`ci_hi` the paper's two-fold cross-validated accuracy of the procedure in the
    bin, `expected_accuracy`/`expected_ci_lo`/`expected_ci_hi` the repeated K-fold estimate of the
    deployed choice's accuracy (`planner.optimize.expect.kfold_estimate`: the promise a policy
    makes), `selection_agreement` the share of K-fold selections equal to the deployed option, and
    `in_sample_accuracy` its (optimistic) accuracy on the bin's own problems.
    summary: the figures as JSON; `expected_accuracy` names the K-fold estimator's settings.
    """

    curves: pd.DataFrame
    selection: pd.DataFrame
    choices: pd.DataFrame
    summary: dict


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
    for ti, t in enumerate(targets):
        rows = curve_rows_at(g, dep, ti, t, opts, rng)
        if not rows:
            continue
        curve_rows += rows
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
    return Plan(curves, pd.DataFrame(sel_rows), pd.DataFrame(choice_rows), summary)

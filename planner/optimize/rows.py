"""The plan's output rows at each budget: curves, selection and choices, and its JSON summary.

Given the grid, the two-fold cross-fit and the deployed choices with their promise, these steps
only read and report: the accuracy (with CI) and mean cost of compute-optimal and of each
baseline at a budget (`curve_rows_at`), each bin's per-fold selection and deployed choice
(`bin_rows_at`), the efficiency multiple against weighted best-of-N (`efficiency_by_budget`) and
the summary (`plan_summary`). They are separate from `planner.optimize.plan`, which decides what
is chosen, so that the shape of the tables `ttc plan` writes is in one place.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from planner.optimize.crossfit import CrossFit, efficiency_multiple
from planner.optimize.expect import KFoldEstimate
from planner.optimize.grid import Grid
from planner.optimize.options import PlanOptions
from planner.stats import mean_ci


def curve_rows_at(
    g: Grid, fit: CrossFit, ti: int, t: float, opts: PlanOptions, rng: np.random.Generator
) -> list[dict]:
    """Accuracy (with CI) and mean cost at target t of compute-optimal and of each baseline that
    has an option within t; empty when none has."""
    series = {"compute_optimal": fit.per_problem[ti]}
    chosen_cost = {}
    chosen_j: dict[str, int] = {}
    for name, mask in g.methods.items():
        ok = np.flatnonzero(mask & (g.cost <= t * (1 + 1e-9)))
        if len(ok):
            # With probes charged several pool sizes cost the same: take the largest.
            j = (
                ok[np.argmax(g.cost[ok])]
                if g.charged is None
                else ok[np.lexsort((g.gen_cost[ok], g.cost[ok]))[-1]]
            )
            series[name] = g.acc[:, j]
            chosen_cost[name] = (
                float(g.gen_cost[j]),
                float(g.flop_cost[j]),
                float(np.nanmean(g.tokens[:, j])),
            )
            chosen_j[name] = int(j)
    names = [n for n, v in series.items() if not np.isnan(v).any()]
    if not names:
        return []
    n_prob = len(g.pids)
    # The option each problem gets from compute-optimal: the one chosen on the other fold.
    cross = np.array([fit.chosen[ti][g.bins[p], 1 - g.folds[p]] for p in range(n_prob)])
    m, lo, hi = mean_ci(np.column_stack([series[n] for n in names]), opts.ci, opts.n_boot, rng)
    rows = []
    for i, name in enumerate(names):
        if name == "compute_optimal":
            used = cross
            g_used, f_used = g.gen_cost[used].mean(), g.flop_cost[used].mean()
            t_used = float(np.mean(g.tokens[np.arange(n_prob), used]))
        else:
            g_used, f_used, t_used = chosen_cost[name]
        rows.append(
            {
                "budget": float(t),
                "method": name,
                "accuracy": float(m[i]),
                "ci_lo": float(lo[i]),
                "ci_hi": float(hi[i]),
                "generations": float(g_used),
                "flops": float(f_used),
                "tokens": float(t_used),
            }
        )
        if g.charged is not None:
            used_opts = cross if name == "compute_optimal" else np.full(n_prob, chosen_j[name])
            rows[-1].update(g.charged.figures(used_opts))
    return rows


def bin_rows_at(
    g: Grid,
    fit: CrossFit,
    deploy: np.ndarray,
    expected: KFoldEstimate,
    ti: int,
    t: float,
    opts: PlanOptions,
    rng: np.random.Generator,
) -> tuple[list[dict], list[dict]]:
    """Selection rows (each fold's choice and the whole bin's) and the deployed choice of every
    bin at target t."""
    sel_rows, choice_rows = [], []
    bins, folds, acc, options = g.bins, g.folds, g.acc, g.options
    for b, label in enumerate(g.bin_labels):
        for f in (0, 1, -1):
            j = int(deploy[ti][b] if f == -1 else fit.chosen[ti][b, f])
            if j < 0:
                continue
            sel_mask = bins == b if f == -1 else (bins == b) & (folds == f)
            eval_mask = bins == b if f == -1 else (bins == b) & (folds == 1 - f)
            sel_rows.append(
                {
                    "budget": float(t),
                    "bin": label,
                    "fold": f,
                    "strategy": options.at[j, "strategy"],
                    "config": options.at[j, "config"],
                    "option_budget": float(g.gen_cost[j]),
                    "select_accuracy": float(acc[sel_mask, j].mean())
                    if sel_mask.any()
                    else float("nan"),
                    "eval_accuracy": float(acc[eval_mask, j].mean())
                    if eval_mask.any()
                    else float("nan"),
                    "n_select": int(sel_mask.sum()),
                    "n_eval": int(eval_mask.sum()),
                    "flops": float(g.flops[bins == b, j].mean()),
                    "tokens": float(g.tokens[bins == b, j].mean()),
                }
            )
        j = int(deploy[ti][b])
        if j < 0:
            continue
        in_bin = bins == b
        cv, clo, chi = mean_ci(fit.per_problem[ti][in_bin], opts.ci, opts.n_boot, rng)
        choice_rows.append(
            {
                "bin": label,
                "budget": float(t),
                "strategy": options.at[j, "strategy"],
                "config": options.at[j, "config"],
                "option_budget": float(g.gen_cost[j]),
                "accuracy": cv,
                "ci_lo": clo,
                "ci_hi": chi,
                "expected_accuracy": float(expected.accuracy[ti, b]),
                "expected_ci_lo": float(expected.ci_lo[ti, b]),
                "expected_ci_hi": float(expected.ci_hi[ti, b]),
                "selection_agreement": float(expected.agreement[ti, b]),
                "in_sample_accuracy": float(acc[in_bin, j].mean()),
                "flops": float(g.flops[in_bin, j].mean()),
                "tokens": float(g.tokens[in_bin, j].mean()),
                "n_problems": int(in_bin.sum()),
            }
        )
        if g.charged is not None:
            choice_rows[-1].update(g.charged.figures(np.full(int(in_bin.sum()), j), in_bin))
    return sel_rows, choice_rows


def efficiency_by_budget(
    g: Grid, curves: pd.DataFrame, ref_key: str | None
) -> dict[float, float | None]:
    """Efficiency multiple of compute-optimal against the reference weighted best-of-N."""
    eff: dict[float, float | None] = {}
    if ref_key is not None and g.methods[ref_key].any():
        ref = np.flatnonzero(g.methods[ref_key])
        ref_acc = g.acc[:, ref].mean(axis=0)
        co = curves[curves["method"] == "compute_optimal"].set_index("budget")["accuracy"]
        for t, a in co.items():
            eff[float(t)] = efficiency_multiple(float(t), float(a), g.cost[ref], ref_acc)
    return eff


def plan_summary(
    g: Grid,
    fit: CrossFit,
    expected: KFoldEstimate,
    targets: list[float],
    curves: pd.DataFrame,
    choice_rows: list[dict],
    eff: dict[float, float | None],
    ref_key: str | None,
    opts: PlanOptions,
) -> dict:
    """The plan's figures as JSON: its settings, then per budget each method's accuracy and cost,
    the efficiency multiple and the deployed choices."""
    summary = {
        "unit": opts.unit,
        "budgets": [float(t) for t in targets],
        "bins": g.bin_labels,
        "bin_column": opts.bin_column,
        "problems": len(g.pids),
        "options": len(g.options),
        "dropped_incomplete_options": g.dropped,
        "reference": ref_key,
        "ci": opts.ci,
        "ci_method": "bootstrap" if opts.n_boot else "normal",
        "n_boot": opts.n_boot,
        "seed": opts.seed,
        "in_sample_bins": fit.in_sample_bins,
        "expected_accuracy": (
            {
                "method": "repeated-kfold",
                "folds": opts.expect_folds,
                "repeats": opts.expect_repeats,
                "ci_method": expected.ci_method,
            }
            if opts.expect_method == "kfold"
            else {
                "method": "bootstrap-corrected",
                "folds": 0,
                "repeats": opts.n_boot or 200,
                "ci_method": expected.ci_method,
            }
        ),
        "select_rule": opts.select_rule,
        "per_budget": [],
    }
    if g.charged is not None:
        summary["probe"] = g.charged.summary()
    for t in targets:
        sub = curves[curves["budget"] == t]
        if sub.empty:
            continue
        entry: dict = {"budget": float(t), "methods": {}}
        for _, r in sub.iterrows():
            entry["methods"][r["method"]] = {
                k: r[k] for k in ("accuracy", "ci_lo", "ci_hi", "generations", "flops")
            }
        e = eff.get(float(t))
        entry["efficiency_multiple"] = e if e is not None else ("> max" if ref_key else None)
        entry["choices"] = [
            {
                k: c[k]
                for k in (
                    "bin",
                    "strategy",
                    "config",
                    "option_budget",
                    "accuracy",
                    "expected_accuracy",
                )
            }
            for c in choice_rows
            if c["budget"] == t
        ]
        summary["per_budget"].append(entry)
    return summary

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
from planner.optimize.deployed import Deployment, Series, spend
from planner.optimize.grid import Grid
from planner.optimize.options import PlanOptions
from planner.stats import mean_ci, paired_diff_ci


def raw_cost(g: Grid, opts: PlanOptions) -> np.ndarray:
    """[options] each option's cost in the plan's unit without probes: what a fixed strategy run
    on every prompt spends (the baselines never probe)."""
    return g.gen_cost if opts.unit == "generations" else g.flop_cost


def _series_row(name: str, t: float, acc: tuple, s: Series, ti: int) -> dict:
    row = {
        "budget": float(t),
        "method": name,
        "accuracy": float(acc[0]),
        "ci_lo": float(acc[1]),
        "ci_hi": float(acc[2]),
        "generations": float(s.generations[ti]),
        "flops": float(s.flops[ti]),
        "tokens": float(s.tokens[ti]),
    }
    if s.charged is not None:
        row.update({k: float(v[ti]) for k, v in s.charged.items()})
    return row


def curve_rows_at(
    g: Grid, dep: Deployment, ti: int, t: float, opts: PlanOptions, rng: np.random.Generator
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Accuracy (with CI) and mean cost at target t of compute-optimal (and the single best
    option, cross-fitted alike) and of each baseline that has an option within t, and each
    method's per-problem accuracy; empty when compute-optimal has no option. Baselines take
    their largest option within t without probes."""
    series: dict[str, Series] = {}
    for name, s in dep.series.items():
        if not np.isnan(s.per_problem[ti]).any():
            series[name] = s
    raw = raw_cost(g, opts)
    values = {name: s.per_problem[ti] for name, s in series.items()}
    for name, mask in g.methods.items():
        ok = np.flatnonzero(mask & (raw <= t * (1 + 1e-9)))
        if len(ok):
            j = int(ok[np.argmax(raw[ok])])
            values[name] = g.acc[:, j]
            own = Series(
                g.acc[:, j][None],
                np.array([g.gen_cost[j]]),
                np.array([g.flop_cost[j]]),
                np.array([float(np.nanmean(g.tokens[:, j]))]),
            )
            if g.charged is not None:
                own.charged = {
                    "probe_flops": np.zeros(1),
                    "total_generations": own.generations,
                    "total_generations_no_reuse": own.generations,
                    "total_flops": own.flops,
                    "total_flops_no_reuse": own.flops,
                    "total_tokens": own.tokens,
                    "probe_reused": np.zeros(1),
                }
            series[name] = own
    names = [n for n, v in values.items() if not np.isnan(v).any()]
    if "compute_optimal" not in names:
        return [], {}
    m, lo, hi = mean_ci(np.column_stack([values[n] for n in names]), opts.ci, opts.n_boot, rng)
    rows = [
        _series_row(
            name,
            t,
            (m[i], lo[i], hi[i]),
            series[name],
            ti if name in dep.series else 0,
        )
        for i, name in enumerate(names)
    ]
    return rows, {n: values[n] for n in names}


def bin_rows_at(
    g: Grid,
    fit: CrossFit,
    dep: Deployment,
    ti: int,
    t: float,
    opts: PlanOptions,
    rng: np.random.Generator,
) -> tuple[list[dict], list[dict]]:
    """Selection rows (each fold's choice of the paper's two-fold cross-fit, and the deployed
    choice) and the deployed choice of every bin at target t, with its promise, whether it needs
    the probes and the selection's optimism (in-sample minus promised accuracy)."""
    deploy, expected = dep.deploy, dep.expected
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
        two = fit.per_problem[ti][in_bin]
        if np.isnan(two).any():
            # The paper's two-fold selection had no option within t (probes charged) where the
            # deployed one runs without probes.
            cv = clo = chi = float("nan")
        else:
            cv, clo, chi = mean_ci(two, opts.ci, opts.n_boot, rng)
        probe = bool(dep.probe[ti])
        in_sample = float(acc[in_bin, j].mean())
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
                "in_sample_accuracy": in_sample,
                "optimism": in_sample - float(expected.accuracy[ti, b]),
                "probe": probe,
                "candidate": dep.info[ti]["candidate"] if dep.info else opts.select_rule,
                "flops": float(g.flops[in_bin, j].mean()),
                "tokens": float(g.tokens[in_bin, j].mean()),
                "n_problems": int(in_bin.sum()),
            }
        )
        if g.charged is not None:
            used = np.full((1, 1, int(in_bin.sum())), j)
            ch = spend(g, used, np.full(used.shape, probe), np.flatnonzero(in_bin)).charged
            choice_rows[-1].update({k: float(v[0]) for k, v in (ch or {}).items()})
    return sel_rows, choice_rows


def efficiency_by_budget(
    g: Grid, curves: pd.DataFrame, ref_key: str | None, opts: PlanOptions
) -> dict[float, float | None]:
    """Efficiency multiple of compute-optimal against the reference weighted best-of-N (at its
    cost without probes, as the baselines)."""
    eff: dict[float, float | None] = {}
    if ref_key is not None and g.methods[ref_key].any():
        ref = np.flatnonzero(g.methods[ref_key])
        ref_acc = g.acc[:, ref].mean(axis=0)
        co = curves[curves["method"] == "compute_optimal"].set_index("budget")["accuracy"]
        for t, a in co.items():
            eff[float(t)] = efficiency_multiple(float(t), float(a), raw_cost(g, opts)[ref], ref_acc)
    return eff


def plan_summary(
    g: Grid,
    fit: CrossFit,
    dep: Deployment,
    targets: list[float],
    curves: pd.DataFrame,
    choice_rows: list[dict],
    eff: dict[float, float | None],
    ref_key: str | None,
    opts: PlanOptions,
) -> dict:
    """The plan's figures as JSON: its settings, then per budget each method's accuracy and cost,
    the efficiency multiple, the deployed choices and (pooled rule) the selection's figures: the
    candidate deployed, what the plan gains over the single best option (paired, both
    cross-fitted alike) and its optimism (in-sample minus promised accuracy, over all problems)."""
    expected = dep.expected
    summary = {
        "unit": opts.unit,
        "budgets": [float(t) for t in targets],
        "bins": g.bin_labels,
        "bin_column": opts.bin_column,
        "problems": len(g.pids),
        "options": len(g.options),
        "dropped_incomplete_options": g.dropped,
        # Options are compared only on problems all of them were measured on: the ones measured
        # on fewer (stopped by adaptive profiling, or a partial sweep) are left out, and said so.
        "dropped_by_strategy": g.dropped_by_strategy or {},
        "reference": ref_key,
        "ci": opts.ci,
        "ci_method": "bootstrap" if opts.n_boot else "normal",
        "n_boot": opts.n_boot,
        "seed": opts.seed,
        "in_sample_bins": fit.in_sample_bins,
        "expected_accuracy": (
            {
                "method": "nested-kfold" if opts.select_rule == "pooled" else "repeated-kfold",
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
    if opts.select_rule == "pooled":
        spec = opts.selection_spec()
        summary["selection"] = {
            "rule": "pooled",
            "candidates": spec.candidate_names(),
            "strengths": list(spec.strengths),
            "shortlist_z": spec.shortlist_z,
            "inner_folds": spec.inner_folds,
            "se_factor": spec.se_factor,
            "outer_folds": opts.expect_folds,
            "outer_repeats": opts.expect_repeats,
        }
    rng = np.random.default_rng([opts.seed, 3])
    n_b = np.bincount(g.bins, minlength=len(g.bin_labels))
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
        ti = targets.index(t)
        rows = [c for c in choice_rows if c["budget"] == t]
        if rows:
            w = np.array([n_b[g.bin_labels.index(c["bin"])] for c in rows], float)
            entry["optimism"] = float(np.dot(w, [c["optimism"] for c in rows]) / w.sum())
        if dep.info:
            entry["deployed"] = dep.info[ti]
        entry["promise"] = dep.overall(ti, opts.ci, opts.n_boot, opts.seed)
        single = dep.series.get("single_best")
        co = dep.series["compute_optimal"].per_problem[ti]
        if (
            single is not None
            and not np.isnan(single.per_problem[ti]).any()
            and not np.isnan(co).any()
        ):
            d, lo, hi = paired_diff_ci(co, single.per_problem[ti], opts.ci, opts.n_boot, rng)
            entry["gain_over_single"] = {"mean": d, "ci_lo": lo, "ci_hi": hi}
        entry["choices"] = [
            {
                # JSON has no NaN: the paper's two-fold figure is null where it has no option.
                k: None if isinstance(c[k], float) and np.isnan(c[k]) else c[k]
                for k in (
                    "bin",
                    "strategy",
                    "config",
                    "option_budget",
                    "accuracy",
                    "expected_accuracy",
                    "probe",
                )
            }
            for c in choice_rows
            if c["budget"] == t
        ]
        summary["per_budget"].append(entry)
    return summary

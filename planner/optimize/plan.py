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

The two-fold figure answers the paper's question (how good is the *procedure*, selecting on half
a bin) but is a pessimistic and noisy promise for the option a deployment runs; the promise per
bin and budget (`choices.expected_accuracy`) is the repeated K-fold estimate of `planner.optimize.expect`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.optimize.charge import ProbeCharge, charge_probes
from planner.optimize.crossfit import CrossFit, cross_fit, efficiency_multiple
from planner.optimize.expect import (
    KFoldEstimate,
    bootstrap_corrected_estimate,
    deploy_choices,
    kfold_estimate,
    kfold_folds,
)
from planner.optimize.options import PlanOptions
from planner.stats import mean_ci
from planner.strategies import DEPLOYABLE_SELECTS
from planner.tables import parse_config


@dataclass
class Plan:
    """curves: per budget and method, accuracy with CI and mean cost (compute_optimal = two-fold).
    selection: per budget, bin and fold (-1 = whole bin, the deployed option), the chosen option.
    choices: per bin and budget, the deployment choice (chosen on the whole bin) with
    `accuracy`/`ci_lo`/`ci_hi` the paper's two-fold cross-validated accuracy of the procedure in
    the bin, `expected_accuracy`/`expected_ci_lo`/`expected_ci_hi` the repeated K-fold estimate
    of the deployed choice's accuracy (`planner.optimize.expect.kfold_estimate`: the promise a policy
    makes), `selection_agreement` the share of K-fold selections equal to the deployed option, and
    `in_sample_accuracy` its (optimistic) accuracy on the bin's own problems.
    summary: the figures as JSON; `expected_accuracy` names the K-fold estimator's settings.
    """

    curves: pd.DataFrame
    selection: pd.DataFrame
    choices: pd.DataFrame
    summary: dict


def _options(profile: pd.DataFrame) -> pd.DataFrame:
    opts = profile[["strategy", "config", "budget"]].drop_duplicates().reset_index(drop=True)
    cfgs = opts["config"].map(parse_config)
    opts["select"] = cfgs.map(lambda c: c.get("select", "weighted"))
    opts["verifier"] = cfgs.map(lambda c: c.get("verifier", "none"))
    opts["agg"] = cfgs.map(lambda c: c.get("agg", "none"))
    return opts


def _baseline_methods(
    opts: pd.DataFrame, verifier: str | None
) -> tuple[dict[str, np.ndarray], str | None]:
    """Masks over options for each baseline method, and the verifier of the reference curve."""
    pool = opts["strategy"] == "sample"
    methods: dict[str, np.ndarray] = {
        "coverage": (pool & (opts["select"] == "coverage")).to_numpy(),
        "majority": (pool & (opts["select"] == "majority")).to_numpy(),
    }
    verifiers = sorted(v for v in opts.loc[pool, "verifier"].unique() if v != "none")
    if verifier is not None:
        if verifier not in verifiers:
            raise PlannerError(
                f"verifier {verifier!r} not in the profile (known: {', '.join(verifiers) or 'none'})"
            )
        verifiers = [verifier]
    for v in verifiers:
        for sel in ("best", "weighted"):
            mask = (
                pool & (opts["select"] == sel) & (opts["verifier"] == v) & (opts["agg"] == "last")
            )
            methods[f"{sel}[{v}]"] = mask.to_numpy()
    return methods, (verifiers[0] if verifiers else None)


@dataclass(frozen=True)
class _Grid:
    """The profile as dense arrays over problems (sorted ids) x complete options, the options
    ordered by (cost, strategy, config) so that ties go to the cheaper option."""

    pids: list[str]
    bin_labels: list[int]
    bins: np.ndarray  # [problems] bin index 0..B-1
    folds: np.ndarray  # [problems] two-fold label
    options: pd.DataFrame  # strategy, config, budget, select, verifier, agg
    acc: np.ndarray  # [problems, options]
    flops: np.ndarray  # [problems, options]
    tokens: np.ndarray  # [problems, options]
    gen_cost: np.ndarray  # [options] generations
    flop_cost: np.ndarray  # [options] mean FLOPs
    cost: np.ndarray  # [options] in the plan's unit, probes included when charged
    charged: ProbeCharge | None
    deployable: np.ndarray  # [options]
    methods: dict[str, np.ndarray]  # baseline name -> mask over options
    ref_verifier: str | None
    dropped: int  # options not measured on every problem


def _grid(profile: pd.DataFrame, problems: pd.DataFrame, opts: PlanOptions) -> _Grid:
    if opts.bin_column not in problems.columns:
        raise PlannerError(f"problems table has no column '{opts.bin_column}'")
    prob = problems.set_index("problem_id")
    pids = sorted(set(profile["problem_id"]))
    missing = [p for p in pids if p not in prob.index]
    if missing:
        raise PlannerError(f"problem {missing[0]!r} of the profile is not in the problems table")
    bins_raw = prob.loc[pids, opts.bin_column]
    if bins_raw.isna().any():
        raise PlannerError(
            f"problems table: column '{opts.bin_column}' is empty for problem "
            f"{bins_raw.index[bins_raw.isna()][0]!r}"
        )
    bin_labels = sorted(int(b) for b in bins_raw.unique())
    bin_index = {b: i for i, b in enumerate(bin_labels)}
    bins = np.array([bin_index[int(b)] for b in bins_raw], dtype=np.int64)
    folds = prob.loc[pids, "fold"].to_numpy(np.int64) % 2

    options = _options(profile)
    key = pd.MultiIndex.from_frame(options[["strategy", "config", "budget"]])
    prow = pd.Index(pids).get_indexer(profile["problem_id"])
    ocol = key.get_indexer(pd.MultiIndex.from_frame(profile[["strategy", "config", "budget"]]))
    acc = np.full((len(pids), len(options)), np.nan)
    acc[prow, ocol] = profile["accuracy"].to_numpy(float)
    flops = np.full_like(acc, np.nan)
    flops[prow, ocol] = profile["flops"].to_numpy(float)
    tokens = np.full_like(acc, np.nan)
    tokens[prow, ocol] = profile["tokens"].to_numpy(float)

    complete = ~np.isnan(acc).any(axis=0)
    options = options[complete].reset_index(drop=True)
    acc, flops, tokens = acc[:, complete], flops[:, complete], tokens[:, complete]
    if options.empty:
        raise PlannerError("no strategy config was measured on every problem of the profile")
    gen_cost = options["budget"].to_numpy(float)
    flop_cost = flops.mean(axis=0)
    if opts.unit == "flops" and not (flop_cost > 0).all():
        raise PlannerError(
            "the profile records no FLOPs (e.g. an imported dump): plan with --unit generations"
        )
    cost = gen_cost if opts.unit == "generations" else flop_cost
    charged = None
    if opts.probe_k:
        charged = charge_probes(
            options,
            flops,
            tokens,
            prob.loc[pids],
            opts.probe_k,
            opts.probe_verifier,
            opts.probe_reuse,
        )
        cost = charged.generations if opts.unit == "generations" else charged.flops.mean(axis=0)

    # Prefer the cheaper option on equal accuracy, then a fixed order by name.
    order = np.lexsort((options["config"].to_numpy(), options["strategy"].to_numpy(), cost))
    options = options.iloc[order].reset_index(drop=True)
    methods, ref_verifier = _baseline_methods(options, opts.verifier)
    return _Grid(
        pids=pids,
        bin_labels=bin_labels,
        bins=bins,
        folds=folds,
        options=options,
        acc=acc[:, order],
        flops=flops[:, order],
        tokens=tokens[:, order],
        gen_cost=gen_cost[order],
        flop_cost=flop_cost[order],
        cost=cost[order],
        charged=None if charged is None else charged.reorder(order),
        deployable=options["select"].isin(DEPLOYABLE_SELECTS).to_numpy(),
        methods=methods,
        ref_verifier=ref_verifier,
        dropped=int((~complete).sum()),
    )


def _targets(g: _Grid, opts: PlanOptions) -> list[float]:
    """The budgets to plan at: the requested ones, else every deployable option's cost
    (generations) or the costs of the majority pool (FLOPs)."""
    if opts.budgets is not None:
        return sorted(set(float(b) for b in opts.budgets))
    if opts.unit == "generations":
        return sorted(set((g.gen_cost if g.charged is None else g.cost)[g.deployable].tolist()))
    maj = g.methods["majority"]
    base = maj if maj.any() else g.deployable
    return sorted(
        set(np.round(g.flop_cost[base] if g.charged is None else g.cost[base], 6).tolist())
    )


def _deployed(
    g: _Grid, fit: CrossFit, targets: list[float], opts: PlanOptions
) -> tuple[np.ndarray, KFoldEstimate]:
    """The option deployed per target and bin, and the estimate of its accuracy (the promise)."""
    deploy = (
        fit.deploy
        if opts.select_rule == "best"
        else deploy_choices(g.acc, g.cost, g.bins, targets, g.deployable, opts.select_rule)
    )
    # Its own generator, so the two-fold figures keep the bootstrap draws they always had.
    rng = np.random.default_rng([opts.seed, 1])
    if opts.expect_method == "bootstrap":
        expected = bootstrap_corrected_estimate(
            g.acc, g.cost, g.bins, targets, deploy, g.deployable, opts.ci, opts.n_boot or 200, rng
        )
    else:
        kfolds = kfold_folds(g.pids, g.bins, opts.expect_folds, opts.expect_repeats, opts.seed)
        expected = kfold_estimate(
            g.acc,
            g.cost,
            g.bins,
            kfolds,
            targets,
            g.deployable,
            deploy,
            opts.ci,
            opts.n_boot,
            rng,
            opts.select_rule,
        )
    return deploy, expected


def _curve_rows(
    g: _Grid, fit: CrossFit, ti: int, t: float, opts: PlanOptions, rng: np.random.Generator
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


def _bin_rows(
    g: _Grid,
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


def _efficiency(g: _Grid, curves: pd.DataFrame, ref_key: str | None) -> dict[float, float | None]:
    """Efficiency multiple of compute-optimal against the reference weighted best-of-N."""
    eff: dict[float, float | None] = {}
    if ref_key is not None and g.methods[ref_key].any():
        ref = np.flatnonzero(g.methods[ref_key])
        ref_acc = g.acc[:, ref].mean(axis=0)
        co = curves[curves["method"] == "compute_optimal"].set_index("budget")["accuracy"]
        for t, a in co.items():
            eff[float(t)] = efficiency_multiple(float(t), float(a), g.cost[ref], ref_acc)
    return eff


def _summary(
    g: _Grid,
    fit: CrossFit,
    expected: KFoldEstimate,
    targets: list[float],
    curves: pd.DataFrame,
    choice_rows: list[dict],
    eff: dict[float, float | None],
    ref_key: str | None,
    opts: PlanOptions,
) -> dict:
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


def make_plan(
    profile: pd.DataFrame, problems: pd.DataFrame, opts: PlanOptions | None = None
) -> Plan:
    """The compute-optimal plan of a profile: per budget, bin and fold the chosen option, the
    deployed choice per bin with its promised accuracy, and the accuracy-vs-budget curves."""
    opts = opts or PlanOptions()
    g = _grid(profile, problems, opts)
    targets = _targets(g, opts)
    fit = cross_fit(g.acc, g.cost, g.bins, g.folds, targets, g.deployable)
    deploy, expected = _deployed(g, fit, targets, opts)
    # One stream for all two-fold intervals, drawn per target: the curves', then each bin's.
    rng = np.random.default_rng(opts.seed)
    curve_rows, sel_rows, choice_rows = [], [], []
    for ti, t in enumerate(targets):
        rows = _curve_rows(g, fit, ti, t, opts, rng)
        if not rows:
            continue
        curve_rows += rows
        sel, choice = _bin_rows(g, fit, deploy, expected, ti, t, opts, rng)
        sel_rows += sel
        choice_rows += choice
    curves = pd.DataFrame(curve_rows)
    if curves.empty:
        raise PlannerError(
            "no budget has an eligible option: the requested budgets are below every option's cost"
        )
    ref_key = f"weighted[{g.ref_verifier}]" if g.ref_verifier else None
    eff = _efficiency(g, curves, ref_key)
    curves["efficiency_multiple"] = [
        (eff.get(float(b)) if m == "compute_optimal" else None)
        for b, m in zip(curves["budget"], curves["method"], strict=True)
    ]
    curves["efficiency_multiple"] = curves["efficiency_multiple"].astype(float)
    summary = _summary(g, fit, expected, targets, curves, choice_rows, eff, ref_key, opts)
    return Plan(curves, pd.DataFrame(sel_rows), pd.DataFrame(choice_rows), summary)

"""What a plan deploys at each bin and budget, what it promises, and what its curves show.

Two ways to choose, by `PlanOptions.select_rule`:

- "pooled" (the default): the procedure of `planner.optimize.procedure` (one option without
  probes, or per-bin options partially pooled over a shortlist, chosen by inner cross-validation),
  scored by a repeated outer K-fold split around it. The compute-optimal curve is that nested
  cross-fit; the single-option candidate alone, on the same folds, is the `single_best` curve.
  Where the cross-fitted procedure falls below the cross-fitted single option, the plan deploys
  the single option (the guard), so at budget B a policy never promises less than the best single
  option it could run within B on the same data.
- "best" / "one-se" (the paper's per-bin argmax, or its one-standard-error variant): the
  compute-optimal curve is the paper's two-fold cross-fit and the promise the repeated K-fold
  estimate of `planner.optimize.expect`.

Either way, every promise interval is widened to at least the Wilson interval of its bin's
problem count (`planner.stats.wilson_interval`), so a handful of solved problems never promise
[100, 100].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from planner.optimize.crossfit import CrossFit
from planner.optimize.expect import (
    KFoldEstimate,
    bootstrap_corrected_estimate,
    deploy_choices,
    kfold_estimate,
    kfold_folds,
)
from planner.optimize.grid import Grid
from planner.optimize.options import PlanOptions
from planner.optimize.procedure import cross_fit_procedure, nested_folds
from planner.stats import mean_ci, wilson_interval


@dataclass
class Series:
    """A method's per-problem accuracy [targets, problems] and mean spend per target: the
    option's own generations, FLOPs and tokens, and with probes charged the totals (`charged`)."""

    per_problem: np.ndarray
    generations: np.ndarray
    flops: np.ndarray
    tokens: np.ndarray
    charged: dict[str, np.ndarray] | None = None


@dataclass
class Deployment:
    """deploy[t, b]: the option deployed; probe[t]: whether it needs the probes; expected: its
    promise per bin; series: the curves' per-problem series of compute_optimal (and single_best);
    info: per target the selection's own figures (candidate, guard, shares, shortlist)."""

    deploy: np.ndarray
    probe: np.ndarray
    expected: KFoldEstimate
    series: dict[str, Series]
    info: list[dict] = field(default_factory=list)

    def overall(self, ti: int, ci: float, n_boot: int, seed: int) -> dict[str, float] | None:
        """The promise over all problems at target ti (what a decision without probes, which
        knows no bin, promises): the mean of the cross-fitted per-problem accuracy, its
        bootstrap interval widened to at least the Wilson interval of the problem count."""
        v = self.expected.per_problem[ti]
        if np.isnan(v).any() or not len(v):
            return None
        m, lo, hi = mean_ci(v, ci, n_boot, np.random.default_rng([seed, 4, ti]))
        w_lo, w_hi = wilson_interval(m, len(v), ci)
        return {"accuracy": m, "ci_lo": min(lo, w_lo), "ci_hi": max(hi, w_hi), "n": len(v)}


def spend(g: Grid, used: np.ndarray, probed: np.ndarray, rows: np.ndarray | None = None) -> Series:
    """The mean spend of options used[r, t, p] (-1: none), with the probes paid where probed;
    `rows`: the problems of the last axis (default all, in order)."""
    ok = used >= 0
    j = np.maximum(used, 0)
    p = (np.arange(used.shape[-1]) if rows is None else np.asarray(rows))[None, None, :]
    n = np.maximum(ok.sum(axis=(0, 2)), 1)

    def mean(x: np.ndarray) -> np.ndarray:
        return np.where(ok, x, 0.0).sum(axis=(0, 2)) / n

    own_f, own_t = g.flops[p, j], g.tokens[p, j]
    out = Series(np.empty(0), mean(g.gen_cost[j]), mean(own_f), mean(own_t))
    ch = g.charged
    if ch is not None:
        out.charged = {
            "probe_flops": mean(np.where(probed, ch.probe_flops[p], 0.0)),
            "total_generations": mean(np.where(probed, ch.generations[j], g.gen_cost[j])),
            "total_generations_no_reuse": mean(
                np.where(probed, ch.generations_no_reuse[j], g.gen_cost[j])
            ),
            "total_flops": mean(np.where(probed, ch.flops[p, j], own_f)),
            "total_flops_no_reuse": mean(np.where(probed, ch.flops_no_reuse[p, j], own_f)),
            "total_tokens": mean(np.where(probed, ch.tokens[p, j], own_t)),
            "probe_reused": mean(probed & ch.reusable[j]),
        }
    return out


def _floor(est: KFoldEstimate, bins: np.ndarray, ci: float) -> KFoldEstimate:
    """The estimate with each bin's interval widened to at least its Wilson interval."""
    n_b = np.bincount(bins, minlength=est.accuracy.shape[1]).astype(float)
    w_lo, w_hi = wilson_interval(np.nan_to_num(est.accuracy), n_b[None, :], ci)
    ok = ~np.isnan(est.accuracy)
    lo = np.where(ok, np.fmin(est.ci_lo, w_lo), np.nan)
    hi = np.where(ok, np.fmax(est.ci_hi, w_hi), np.nan)
    return KFoldEstimate(
        est.accuracy, lo, hi, est.per_problem, est.agreement, est.ci_method + "+wilson"
    )


def _bin_estimate(
    per_problem: np.ndarray, bins: np.ndarray, n_bins: int, opts: PlanOptions
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per target and bin: the mean of the cross-fitted per-problem accuracy and its bootstrap
    interval over the bin's problems (the selections held fixed: each problem's value already
    comes from choices made without it)."""
    n_t = per_problem.shape[0]
    est = np.full((n_t, n_bins), np.nan)
    lo, hi = est.copy(), est.copy()
    rng = np.random.default_rng([opts.seed, 2])
    for b in range(n_bins):
        m = np.flatnonzero(bins == b)
        ok = [ti for ti in range(n_t) if len(m) and not np.isnan(per_problem[ti, m]).any()]
        if not ok:
            continue
        vals = per_problem[ok][:, m].T  # [problems of the bin, targets]
        if len(m) >= 2:
            e, l_, h_ = mean_ci(vals, opts.ci, opts.n_boot, rng)
        else:
            e = l_ = h_ = vals.mean(axis=0)
        est[ok, b], lo[ok, b], hi[ok, b] = e, l_, h_
    return est, np.fmin(lo, est), np.fmax(hi, est)


def pooled_deployment(g: Grid, targets: list[float], opts: PlanOptions) -> Deployment:
    """Deploy and promise with the pooled procedure, and the guard against the single option."""
    raw = g.gen_cost if opts.unit == "generations" else g.flop_cost
    outer = kfold_folds(g.pids, g.bins, opts.expect_folds, opts.expect_repeats, opts.seed)
    inner = nested_folds(g.pids, g.bins, outer, opts.inner_folds, opts.seed)
    deploy_inner = nested_folds(
        g.pids, g.bins, np.zeros((1, len(g.pids)), np.int64), opts.inner_folds, opts.seed + 1
    )[0]
    pf = cross_fit_procedure(
        g.acc,
        g.bins,
        g.cost,
        raw,
        outer,
        inner,
        deploy_inner,
        targets,
        g.deployable,
        opts.selection_spec(),
    )
    proc_mean = np.nanmean(pf.proc, axis=1)
    single_mean = np.nanmean(pf.single, axis=1)
    has_proc = ~np.isnan(pf.proc).any(axis=1)
    has_single = ~np.isnan(pf.single).any(axis=1)
    # The guard: never deploy (or promise) less than the single option cross-fitted alike.
    guard = has_single & (~has_proc | (single_mean > proc_mean + 1e-12))
    deploy = np.where(guard[:, None], pf.deploy_single[:, None], pf.deploy)
    probe = pf.deploy_probe & ~guard
    per_problem = np.where(guard[:, None], pf.single, pf.proc)
    used = np.where(guard[None, :, None], pf.used_single, pf.used)
    probed = pf.probed & ~guard[None, :, None]
    n_bins = len(g.bin_labels)
    est, lo, hi = _bin_estimate(per_problem, g.bins, n_bins, opts)
    agreement = np.where(guard[:, None], np.nan, pf.agreement)
    expected = _floor(
        KFoldEstimate(
            est, lo, hi, per_problem, agreement, "bootstrap-fixed" if opts.n_boot else "normal"
        ),
        g.bins,
        opts.ci,
    )
    co = spend(g, used, probed)
    co.per_problem = per_problem
    single = spend(g, pf.used_single, np.zeros_like(pf.used_single, dtype=bool))
    single.per_problem = pf.single
    info = [
        {
            "candidate": "single" if guard[ti] else pf.names[int(pf.deploy_candidate[ti])],
            "guard": bool(guard[ti] and pf.deploy_candidate[ti] > 0),
            "probe": bool(probe[ti]),
            "procedure_accuracy": None if not has_proc[ti] else float(proc_mean[ti]),
            "single_accuracy": None if not has_single[ti] else float(single_mean[ti]),
            "candidate_share": {
                name: float(pf.candidate_share[ti, ci]) for ci, name in enumerate(pf.names)
            },
            "shortlist": int(pf.shortlist[ti]),
        }
        for ti in range(len(targets))
    ]
    return Deployment(deploy, probe, expected, {"compute_optimal": co, "single_best": single}, info)


def per_bin_deployment(
    g: Grid, fit: CrossFit, targets: list[float], opts: PlanOptions
) -> Deployment:
    """Deploy with the per-bin rule ("best" or "one-se"): the paper's two-fold curve and the
    repeated K-fold promise (or the bootstrap-corrected one)."""
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
    # The option each problem gets from compute-optimal: the one chosen on the other fold.
    used = fit.chosen[:, g.bins, 1 - g.folds][None]  # [1, T, P]
    co = spend(g, used, np.ones_like(used, dtype=bool))
    co.per_problem = fit.per_problem
    probe = np.full(len(targets), g.charged is not None)
    return Deployment(deploy, probe, _floor(expected, g.bins, opts.ci), {"compute_optimal": co})

"""Compute-optimal selection at scale: 100k problems x 200 configs x 9 budgets.

Prints the wall and CPU time of the dense core of `ttc plan` (two-fold cross-fitted selection
within 5 bins at 9 budgets, then the mean and 95% CI of the compute-optimal accuracy at each
budget) and the peak resident memory. Targets: <= 5 s and <= 2 GB. Then, on the same data, the
wall and CPU time of the promise estimator `ttc plan` runs after it (`planner.optimize.expect`:
seeded 10-fold splits repeated 5 times, and the K-fold estimate of each deployed choice with its
1000-resample bootstrap interval, the plan's defaults); no target, its own line. Last, the
pooled procedure that `ttc plan` runs by default (`--select-rule pooled`: the same outer splits,
5 inner folds, every pooling strength and the single option as candidates, deployed on all
problems), against the two above in the same run: target within 2x of their sum.
Run: `.venv/bin/python benchmarks/bench_plan.py`.
"""

from __future__ import annotations

import os
import resource
import time
import tracemalloc

import numpy as np

from planner.optimize.crossfit import cross_fit
from planner.optimize.expect import kfold_estimate, kfold_folds
from planner.optimize.procedure import SelectionSpec, cross_fit_procedure, nested_folds
from planner.stats import mean_ci

P, C, B, BINS = 100_000, 200, 9, 5
K, R, N_BOOT = 10, 5, 1000  # the promise estimator's settings: `ttc plan`'s defaults


def main() -> None:
    rng = np.random.default_rng(0)
    budgets = np.array([2.0**i for i in range(B)])
    # Options = configs x budgets; accuracy grows with budget, each config with its own slope.
    n_opt = C * B
    cost = np.repeat(budgets, C)
    difficulty = rng.random(P).astype(np.float32)
    slope = rng.random(C).astype(np.float32)
    acc = np.empty((P, n_opt), dtype=np.float32)
    for j, b in enumerate(budgets):
        gain = (np.log2(b) / 8.0) * slope[None, :]
        block = 1.0 - difficulty[:, None] + gain * difficulty[:, None] * 0.5
        block += 0.05 * rng.standard_normal(block.shape, dtype=np.float32)
        acc[:, j * C : (j + 1) * C] = np.clip(block, 0, 1)
    del block
    bins = np.minimum((difficulty * BINS).astype(np.int64), BINS - 1)
    folds = rng.integers(0, 2, P)
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    fit = cross_fit(acc, cost, bins, folds, budgets.tolist())
    cis = [mean_ci(fit.per_problem[t], 0.95, 0, rng) for t in range(B)]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    work_gb = tracemalloc.get_traced_memory()[1] / 1024**3
    tracemalloc.stop()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        f"selection: {P} problems x {C} configs x {B} budgets ({n_opt} options), "
        f"{BINS} bins, 2 folds"
    )
    print(
        f"wall {wall:.2f} s, CPU {cpu:.2f} s (target <= 5 s); peak RSS {peak_gb:.2f} GB "
        f"(target <= 2 GB; input {acc.nbytes / 1024**3:.2f} GB, selection's own peak {work_gb:.2f} "
        f"GB); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    for b, (m, lo, hi) in zip(budgets, cis, strict=True):
        print(f"  budget {b:5.0f}: compute-optimal accuracy {m:.4f} [{lo:.4f}, {hi:.4f}]")

    # The promise of the deployed choices, as make_plan computes it (its own generator, as there).
    ids = [f"p{i:06d}" for i in range(P)]
    t0, c0 = time.perf_counter(), time.process_time()
    kfolds = kfold_folds(ids, bins, K, R, seed=0)
    est = kfold_estimate(
        acc,
        cost,
        bins,
        kfolds,
        budgets.tolist(),
        deploy=fit.deploy,
        ci=0.95,
        n_boot=N_BOOT,
        rng=np.random.default_rng([0, 1]),
    )
    wall, cpu_promise = time.perf_counter() - t0, time.process_time() - c0
    cpu_old = cpu + cpu_promise
    print(
        f"promise (repeated K-fold, K={K}, R={R}, n_boot={N_BOOT}, interval {est.ci_method}): "
        f"wall {wall:.2f} s, CPU {cpu_promise:.2f} s; mean agreement with the deployed choice "
        f"{np.nanmean(est.agreement):.3f}"
    )

    # The pooled rule replaces both: selection and promise come from one nested cross-fit.
    spec = SelectionSpec()
    t0, c0 = time.perf_counter(), time.process_time()
    inner = nested_folds(ids, bins, kfolds, spec.inner_folds, 0)
    deploy_inner = nested_folds(ids, bins, np.zeros((1, P), np.int64), spec.inner_folds, 1)[0]
    pf = cross_fit_procedure(
        acc, bins, cost, cost, kfolds, inner, deploy_inner, budgets.tolist(), spec=spec
    )
    wall, cpu_pooled = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"pooled procedure (nested K-fold, K={K}, R={R}, {spec.inner_folds} inner folds, "
        f"candidates {', '.join(pf.names)}): wall {wall:.2f} s, CPU {cpu_pooled:.2f} s = "
        f"{cpu_pooled / cpu_old:.2f}x the selection and promise above (target <= 2x)"
    )


if __name__ == "__main__":
    main()

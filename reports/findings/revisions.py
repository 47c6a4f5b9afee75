"""Finding (c): the best parallel:sequential split of revisions per difficulty bin.

At one fixed budget (the largest at which the profile has at least two chains x length splits
on every problem), each split's accuracy per oracle bin and the best split per bin (its
*parallel share* log2(chains) / log2(budget): 0 = one long chain, 1 = independent samples;
splits tied at the best share the mean of their shares, so ties lean neither way), with
Spearman's rho of bin (1 = easiest) vs that share.

The best split is an argmax, so with few splits and bins its bootstrap is mostly ties; the mark
therefore reads the same question on a continuous scale, fixed here: the least-squares slope
over bins of the most parallel split's accuracy minus the most sequential split's. A slope above
zero (parallel gains on sequential as problems get harder) moves the best ratio toward parallel.
Both intervals are percentile bootstraps that resample problems within each bin
(`planner.stats.stratified_boot_means`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from planner.stats import percentile_interval, stratified_boot_means
from reports.findings.base import (
    CI,
    N_BOOT,
    Finding,
    num,
    option_table,
    oracle_bins,
    reference_verifier,
    rng_for,
    side,
    single_mark,
    untestable,
)
from reports.run import RunTables

CLAIM = (
    "The best parallel:sequential ratio of revisions moves toward parallel (more chains) as "
    "difficulty rises."
)


def _splits(run: RunTables) -> tuple[float, pd.DataFrame, str] | str:
    """The budget, its splits (one option per chains x length) and the selection used, or why
    there is none."""
    assert run.profile is not None
    opts = option_table(run.profile)
    rev = opts[(opts["strategy"] == "revisions") & (opts["chains"] > 0) & (opts["length"] > 0)]
    if rev.empty:
        return "the profile has no revisions rows"
    weighted = rev[(rev["select"] == "weighted") & (rev["agg"] == "last")]
    verifier = reference_verifier(run.plan_summary, sorted(set(weighted["verifier"])))
    if verifier is not None:
        rev, how = weighted[weighted["verifier"] == verifier], f"weighted[{verifier}]"
    else:
        rev, how = rev[rev["select"] == "majority"], "majority"
    # Two revision runs of different shapes may give one split twice: the first config wins.
    rev = rev.drop_duplicates(["budget", "chains", "length"])
    counts = rev.groupby("budget")["chains"].nunique()
    budgets = sorted(float(b) for b, c in counts.items() if c >= 2 and b > 1)
    if not budgets:
        return "no revisions budget has two or more chains x length splits"
    t = budgets[-1]
    return t, rev[np.isclose(rev["budget"], t)].sort_values("chains"), how


def _best_share(means: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Per [..., bins, splits] means: the mean share of the splits tied at the best."""
    best = means >= means.max(axis=-1, keepdims=True) - 1e-12
    return (best * share).sum(axis=-1) / best.sum(axis=-1)


def _spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of x [bins] with each row of y [draws, bins] (average ranks for ties);
    0 where y is constant (no trend)."""
    rx = pd.Series(x).rank().to_numpy()
    ry = pd.DataFrame(y).rank(axis=1).to_numpy()
    rx, ry = rx - rx.mean(), ry - ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx**2).sum() * (ry**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ry * rx).sum(axis=1) / den
    return np.where(den > 0, rho, 0.0)


def _slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of y [draws, bins] on x [bins]."""
    xc = x - x.mean()
    return ((y - y.mean(axis=1, keepdims=True)) * xc).sum(axis=1) / (xc**2).sum()


def finding_c(run: RunTables) -> Finding:
    if run.profile is None:
        return untestable("c", CLAIM, "no profile (profile.parquet, written by ttc curves)")
    bins = oracle_bins(run.problems)
    if bins is None:
        return untestable("c", CLAIM, "no problems table with oracle bins (problems.parquet)")
    found = _splits(run)
    if isinstance(found, str):
        return untestable("c", CLAIM, found)
    t, splits, how = found
    rows = run.profile[run.profile["strategy"] == "revisions"]
    keys = [(int(c), int(n)) for c, n in zip(splits["chains"], splits["length"], strict=True)]
    acc = pd.DataFrame(
        {
            f"{c}x{n}": rows[(rows["config"] == cfg) & np.isclose(rows["budget"], t)]
            .groupby("problem_id")["accuracy"]
            .mean()
            for (c, n), cfg in zip(keys, splits["config"], strict=True)
        }
    )
    acc = acc.dropna().join(bins, how="inner")
    labels = sorted(int(b) for b in set(acc["oracle_bin"]))
    if len(labels) < 2:
        return untestable("c", CLAIM, "the revisions rows cover fewer than two difficulty bins")
    values = acc.drop(columns="oracle_bin").to_numpy(float)  # [problems, splits]
    share = np.array([np.log2(c) / np.log2(t) for c, _ in keys])
    group = acc["oracle_bin"].to_numpy()
    x = np.array(labels, float)
    means = np.stack([values[group == b].mean(axis=0) for b in labels])  # [bins, splits]
    draws = stratified_boot_means(values, group, N_BOOT, rng_for("c"))  # [n_boot, bins, splits]
    best = _best_share(means, share)  # [bins]
    rho = float(_spearman(x, best[None, :])[0])
    rho_lo, rho_hi = percentile_interval(_spearman(x, _best_share(draws, share)), CI)
    par, seq = int(np.argmax(share)), int(np.argmin(share))
    slope = float(_slope(x, (means[:, par] - means[:, seq])[None, :])[0])
    lo, hi = (
        float(v) for v in percentile_interval(_slope(x, draws[..., par] - draws[..., seq]), CI)
    )
    mark = single_mark(side(lo, hi))
    split = {j: f"{c}x{n}" for j, (c, n) in enumerate(keys)}
    method = (
        f"slope over bins of the most parallel split's ({split[par]}) accuracy minus the most "
        f"sequential's ({split[seq]}), percentile bootstrap over problems within bins "
        f"({N_BOOT} resamples, {CI:.0%}); selection {how}"
    )
    # Per bin, the most sequential split minus the most parallel (the same generations and
    # selection), with its interval: the paper's claim on the easiest bin is that it is above 0.
    seq_ci = [
        percentile_interval(draws[:, i, seq] - draws[:, i, par], CI) for i in range(len(labels))
    ]
    per_bin = [
        {
            "bin": b,
            "n": int((group == b).sum()),
            # splits tied at the best are all named ("1x16 = 16x1"): an argmax would pick one
            "best_split": " = ".join(
                split[j] for j in range(len(keys)) if means[i, j] >= means[i].max() - 1e-12
            ),
            "best_parallel_share": num(best[i]),
            "parallel_advantage": num(means[i, par] - means[i, seq]),
            "sequential_minus_parallel": num(means[i, seq] - means[i, par]),
            "sequential_minus_parallel_ci": [num(float(v)) for v in seq_ci[i]],
            "accuracy": {split[j]: num(means[i, j]) for j in range(len(keys))},
        }
        for i, b in enumerate(labels)
    ]
    shares = ", ".join(f"bin {p['bin']}: {p['best_split']}" for p in per_bin)
    easy = per_bin[0]
    easy_d, (lo_e, hi_e) = easy["sequential_minus_parallel"], easy["sequential_minus_parallel_ci"]
    evidence = (
        f"At budget {t:g} the best chains x length per bin is {shares} (Spearman rho of bin vs "
        f"parallel share {rho:+.2f} [{float(rho_lo):+.2f}, {float(rho_hi):+.2f}]); the parallel "
        f"split's lead grows by {100 * slope:+.1f} pts per bin [{100 * lo:+.1f}, {100 * hi:+.1f}]; "
        f"on the easiest bin ({easy['bin']}) {split[seq]} minus {split[par]} is "
        f"{100 * easy_d:+.1f} pts [{100 * lo_e:+.1f}, {100 * hi_e:+.1f}]; "
        f"{method}."
    )
    numbers = {
        "budget": num(t),
        "selection": how,
        "method": method,
        "ci": CI,
        "n_boot": N_BOOT,
        "slope_per_bin": num(slope),
        "ci_lo": num(lo),
        "ci_hi": num(hi),
        "spearman": num(rho),
        "spearman_ci": [num(float(rho_lo)), num(float(rho_hi))],
        "per_bin": per_bin,
    }
    return Finding("c", CLAIM, mark, evidence, numbers)

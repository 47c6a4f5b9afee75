"""The promise of a deployed choice: the expected accuracy of the option actually deployed.

`ttc plan` deploys, per difficulty bin and budget, the option chosen on all the bin's problems
(`deploy_choices`), and `ttc policy export` promises an accuracy for it
(`choices.expected_accuracy`). The paper's two-fold figure (`planner.optimize.crossfit.cross_fit`)
answers another question, how good the *procedure* is when it selects on half a bin, and is a poor
promise for the deployed option: selecting on half the problems picks worse options than
selecting on all of them (pessimistic), and it rests on one split of a small bin (noisy). The
in-sample accuracy of the deployed option is optimistic instead (winner's curse among many
options).

The promise is therefore a repeated K-fold cross-fitted estimate (`kfold_estimate`, folds from
`kfold_folds`): select on K-1 folds of the bin, score the choice on the held fold, average over
folds and R seeded splits. Its interval is a bootstrap over the bin's problems that re-runs the
selection in every replicate, so it covers the selection's own variability. The selection rule is
the deployed one: "best" (highest accuracy, the paper) or "one-se" (the cheapest option within one
paired standard error of the best, `_one_se_picks`: more stable, since the winner among near-ties
is mostly noise). The alternative estimator (`bootstrap_corrected_estimate`, rule "best" only) is
the deployed option's in-sample accuracy minus a bootstrap estimate of its winner's curse.

`planner.optimize.plan.make_plan` calls this module; intervals come from `planner.stats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from planner.stats import mean_ci

EXPECT_METHODS = ("kfold", "bootstrap")
SELECT_RULES = ("best", "one-se")


def kfold_folds(
    ids: Sequence[str], bins: np.ndarray, k: int, repeats: int, seed: int
) -> np.ndarray:
    """[repeats, problems] fold labels in 0..k-1, balanced within each bin.

    Repeat r permutes each bin's problems (in sorted-id order) with seed + r and deals them round
    robin, so the folds depend on the ids, bins and seed only, never on row order.
    """
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    b_sorted = np.asarray(bins)[order]
    out = np.zeros((repeats, len(order)), dtype=np.int64)
    for r in range(repeats):
        rng = np.random.default_rng(seed + r)
        for value in sorted(set(b_sorted.tolist())):
            idx = order[np.flatnonzero(b_sorted == value)]
            perm = idx[rng.permutation(len(idx))]
            out[r, perm] = np.arange(len(perm)) % k
    return out


@dataclass
class KFoldEstimate:
    """Repeated K-fold cross-fitted accuracy of the selection within each bin.

    accuracy/ci_lo/ci_hi[t, b]: the estimate and its interval; per_problem[t, p]: the mean over
    repeats of the accuracy problem p gets from the option chosen without its fold (NaN when
    nothing is eligible); agreement[t, b]: share of the (repeat, fold) selections that equal the
    deployed option (1 = the choice is stable); ci_method: "bootstrap-reselect" (selection re-run
    in every replicate), "bootstrap-fixed" (selections held fixed: used when re-running would be
    too much work) or "normal".
    """

    accuracy: np.ndarray
    ci_lo: np.ndarray
    ci_hi: np.ndarray
    per_problem: np.ndarray
    agreement: np.ndarray
    ci_method: str


# Multiply-adds above which the bootstrap keeps the selections fixed instead of re-running them.
_RESELECT_WORK = 4e9


def _kfold_means(group_sums: np.ndarray, group_n: np.ndarray) -> np.ndarray:
    """Mean accuracy of each option over the other folds of each (bin, fold).

    group_sums: [..., bins, k, options] (weighted) accuracy sums; group_n: [..., bins, k] weights.
    A fold whose bin has no other problem selects on the whole bin (an in-sample fallback).
    Undefined means are -inf, so that they are never selected.
    """
    bin_sums = group_sums.sum(axis=-2, keepdims=True)
    bin_n = group_n.sum(axis=-1, keepdims=True)
    train_n = bin_n - group_n
    with np.errstate(invalid="ignore", divide="ignore"):
        train = (bin_sums - group_sums) / train_n[..., None]
        whole = bin_sums / bin_n[..., None]
    means = np.where((train_n > 0)[..., None], train, whole)
    return np.nan_to_num(means, nan=-np.inf, copy=False)


def _kfold_picks(means: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """The eligible option with the highest mean (first on ties) for each (..., bin, fold)."""
    idx = np.flatnonzero(ok)
    return idx[np.argmax(means[..., idx], axis=-1)]


def _one_se_picks(
    mean: np.ndarray,
    sq: np.ndarray,
    gram: np.ndarray,
    n: np.ndarray,
    ok: np.ndarray,
    cost: np.ndarray,
) -> np.ndarray:
    """The one-standard-error rule for each (...): the cheapest eligible option whose mean is
    within one paired standard error of the best one's (highest mean among equally cheap ones,
    then the first index).

    mean, sq: [..., options] mean accuracy and mean squared accuracy over the selection rows;
    gram: [..., options, options] mean of a_i * a_j over them; n: [...] their count. The paired
    standard error of option j against the best b is sd(a_j - a_b) / sqrt(n): options that win or
    lose on the same problems have a small one, so a truly worse option is not taken for a tie.
    The variance of the paired difference gets 1/n added (one pseudo-problem on which the two
    disagree, as the rule of succession): options never seen to disagree on n problems, e.g. two
    perfect ones in an easy bin, are then a tie within 1/n rather than split by a difference of
    zero variance, which made the choice (and its cross-fitted promise) unstable at the ceiling.
    With n < 2 the rule is the plain maximum.
    """
    idx = np.flatnonzero(ok)
    best = idx[np.argmax(mean[..., idx], axis=-1)]
    mb = np.take_along_axis(mean, best[..., None], axis=-1)
    sqb = np.take_along_axis(sq, best[..., None], axis=-1)
    cross = np.take_along_axis(gram, best[..., None, None], axis=-1)[..., 0]
    diff = mean - mb
    nn = n[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.maximum(sq - 2 * cross + sqb - diff**2, 0.0) * nn / (nn - 1) + 1.0 / nn
        se = np.where(nn >= 2, np.sqrt(var / nn), 0.0)
    cand = ok & (mean >= mb - se - 1e-12)
    cheapest = np.where(cand, cost, np.inf).min(axis=-1, keepdims=True)
    tier = cand & (cost <= cheapest * (1 + 1e-9))
    return np.argmax(np.where(tier, mean, -np.inf), axis=-1)


def deploy_choices(
    acc: np.ndarray,
    cost: np.ndarray,
    bins: np.ndarray,
    targets: Sequence[float],
    eligible: np.ndarray | None = None,
    rule: str = "best",
) -> np.ndarray:
    """[targets, bins] option deployed in each bin at each budget, chosen on all its problems.

    rule "best": the highest mean accuracy (first index on ties; as `cross_fit`'s deploy);
    "one-se": `_one_se_picks`, which trades at most one paired standard error of accuracy for a
    cheaper and more stable choice (the winner among near-ties is mostly noise).
    """
    if rule not in SELECT_RULES:
        raise ValueError(f"rule must be one of {SELECT_RULES}, got {rule!r}")
    n_prob, n_opt = acc.shape
    n_bins = int(bins.max()) + 1 if n_prob else 0
    base_ok = np.ones(n_opt, bool) if eligible is None else np.asarray(eligible, bool)
    out = np.full((len(targets), n_bins), -1, dtype=np.int64)
    a = np.nan_to_num(acc, nan=0.0)
    for b in range(n_bins):
        rows = a[bins == b]
        if not len(rows):
            continue
        n = np.array(float(len(rows)))
        mean, sq = rows.mean(axis=0), (rows**2).mean(axis=0)
        gram = (rows.T @ rows) / n if rule == "one-se" else None
        for ti, t in enumerate(targets):
            ok = base_ok & (cost <= t * (1 + 1e-9))
            if not ok.any():
                continue
            out[ti, b] = (
                _one_se_picks(mean, sq, gram, n, ok, cost)
                if rule == "one-se"
                else _kfold_picks(mean, ok)
            )
    return out


def _kfold_second_moments(
    acc: np.ndarray, bins: np.ndarray, fold: np.ndarray, n_bins: int, k: int, n_g: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean squared accuracy [bins, k, options], mean cross products [bins, k, options, options]
    and row counts [bins, k] over the training folds of each (bin, fold) (the whole bin when no
    other fold has a problem, as `_kfold_means`)."""
    n_opt = acc.shape[1]
    sq = np.zeros((n_bins, k, n_opt))
    gram = np.zeros((n_bins, k, n_opt, n_opt))
    for b in range(n_bins):
        for f in range(k):
            rows = acc[(bins == b) & (fold == f)]
            if len(rows):
                sq[b, f] = (rows**2).sum(axis=0)
                gram[b, f] = rows.T @ rows
    bin_n = n_g.sum(axis=1, keepdims=True)
    train_n = bin_n - n_g
    use_whole = train_n <= 0
    sq_t = np.where(
        use_whole[..., None], sq.sum(axis=1, keepdims=True), sq.sum(axis=1, keepdims=True) - sq
    )
    gram_t = np.where(
        use_whole[..., None, None],
        gram.sum(axis=1, keepdims=True),
        gram.sum(axis=1, keepdims=True) - gram,
    )
    n_t = np.where(use_whole, bin_n, train_n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sq_t / n_t[..., None], gram_t / n_t[..., None, None], n_t


def kfold_estimate(
    acc: np.ndarray,
    cost: np.ndarray,
    bins: np.ndarray,
    folds: np.ndarray,
    targets: Sequence[float],
    eligible: np.ndarray | None = None,
    deploy: np.ndarray | None = None,
    ci: float = 0.95,
    n_boot: int = 0,
    rng: np.random.Generator | None = None,
    rule: str = "best",
) -> KFoldEstimate:
    """Repeated K-fold cross-fitted accuracy of per-bin selection: the promise of a deployed choice.

    acc: [problems, options]; cost: [options]; bins: [problems] in 0..B-1; folds: [repeats,
    problems] in 0..K-1 (`kfold_folds`); deploy: [targets, bins] deployed options (for
    `agreement`). Options are compared by mean accuracy over the training folds, first index on
    ties (as `cross_fit`). With K folds each choice is made on (K-1)/K of the bin, so the estimate
    is nearly unbiased for the option chosen on the whole bin (unlike two folds, which select on
    half), and each problem is scored by an option chosen without it (unlike the in-sample
    accuracy, which is inflated by the maximum over many options); repeats average out the split.
    The interval is a percentile bootstrap over problems resampled within each bin, re-running the
    whole selection in every replicate; n_boot == 0 gives a normal interval over per_problem.
    rule: how an option is chosen from the training folds, the same rule as the deployed choice
    (`deploy_choices`): "best" or "one-se" (whose bootstrap keeps the selections fixed: re-running
    it needs a weighted Gram matrix per replicate).
    """
    if rule not in SELECT_RULES:
        raise ValueError(f"rule must be one of {SELECT_RULES}, got {rule!r}")
    n_prob, n_opt = acc.shape
    folds = np.atleast_2d(np.asarray(folds, dtype=np.int64))
    n_rep = folds.shape[0]
    k = int(folds.max()) + 1 if n_prob else 1
    n_bins = int(bins.max()) + 1 if n_prob else 0
    n_t = len(targets)
    base_ok = np.ones(n_opt, bool) if eligible is None else np.asarray(eligible, bool)
    oks = (
        np.stack([base_ok & (cost <= t * (1 + 1e-9)) for t in targets])
        if n_t
        else np.zeros((0, n_opt), bool)
    )
    per_problem = np.full((n_t, n_prob), np.nan)
    agreement = np.full((n_t, n_bins), np.nan)
    # No copy of a large input unless it has holes (make_plan drops incomplete options).
    acc_filled = np.nan_to_num(acc, nan=0.0) if np.isnan(acc).any() else acc
    rows = np.arange(n_prob)
    bin_n = np.bincount(bins, minlength=n_bins).astype(float)
    score_sum = np.zeros((n_t, n_prob))
    agree_sum = np.zeros((n_t, n_bins))
    n_groups = n_bins * k
    groups = bins[None, :] * k + folds + (np.arange(n_rep) * n_groups)[:, None]
    # One pass over acc for every repeat's group sums; the one-hot in acc's dtype so that scipy
    # does not make a float64 copy of it.
    onehot = sp.csr_matrix(
        (np.ones(n_rep * n_prob, dtype=acc_filled.dtype), (groups.ravel(), np.tile(rows, n_rep))),
        shape=(n_rep * n_groups, n_prob),
    )
    all_sums = np.asarray(onehot @ acc_filled, dtype=float).reshape(n_rep, n_bins, k, n_opt)
    all_n = (
        np.bincount(groups.ravel(), minlength=n_rep * n_groups)
        .astype(float)
        .reshape(n_rep, n_bins, k)
    )
    for r in range(n_rep):
        sums, n_g = all_sums[r], all_n[r]
        means = _kfold_means(sums, n_g)
        if rule == "one-se":
            sq_mean, gram_mean, train_n = _kfold_second_moments(
                acc_filled, bins, folds[r], n_bins, k, n_g
            )
        for ti in range(n_t):
            if not oks[ti].any():
                continue
            if rule == "one-se":
                pick = _one_se_picks(means, sq_mean, gram_mean, train_n, oks[ti], cost)
            else:
                pick = _kfold_picks(means, oks[ti])
            score_sum[ti] += acc_filled[rows, pick[bins, folds[r]]]
            if deploy is not None:
                agree_sum[ti] += ((pick == deploy[ti][:, None]) * n_g).sum(axis=1)
    for ti in range(n_t):
        if oks[ti].any():
            per_problem[ti] = score_sum[ti] / n_rep
            with np.errstate(invalid="ignore", divide="ignore"):
                agreement[ti] = agree_sum[ti] / (n_rep * bin_n)
    with np.errstate(invalid="ignore", divide="ignore"):
        est = (
            np.stack(
                [
                    np.bincount(bins, weights=np.nan_to_num(per_problem[ti]), minlength=n_bins)
                    / bin_n
                    for ti in range(n_t)
                ]
            )
            if n_t
            else np.zeros((0, n_bins))
        )
    est[~oks.any(axis=1)] = np.nan
    lo, hi = est.copy(), est.copy()
    rng = rng or np.random.default_rng(0)
    members = [np.flatnonzero(bins == b) for b in range(n_bins)]
    if n_boot == 0 or n_prob == 0:
        method = "normal"
        for b, m in enumerate(members):
            for ti in range(n_t):
                if len(m) >= 2 and oks[ti].any():
                    _, lo[ti, b], hi[ti, b] = mean_ci(per_problem[ti, m], ci, 0, rng)
    elif rule == "one-se" or float(n_boot) * n_prob * n_opt * n_rep > _RESELECT_WORK:
        method = "bootstrap-fixed"
        for b, m in enumerate(members):
            ok_t = [ti for ti in range(n_t) if oks[ti].any()]
            if len(m) >= 2 and ok_t:
                _, l_, h_ = mean_ci(per_problem[ok_t][:, m].T, ci, n_boot, rng)
                lo[ok_t, b], hi[ok_t, b] = l_, h_
    else:
        method = "bootstrap-reselect"
        boots = np.zeros((n_boot, n_t, n_bins))
        chunk = max(1, int(2e7 // max(1, n_bins * k * n_opt)))
        for start in range(0, n_boot, chunk):
            nb = min(chunk, n_boot - start)
            # Stratified resampling: each bin keeps its size, as the bins are given.
            w = np.zeros((nb, n_prob))
            for m in members:
                draw = m[rng.integers(0, len(m), size=(nb, len(m)))]
                np.add.at(w, (np.repeat(np.arange(nb), len(m)), draw.ravel()), 1.0)
            for r in range(n_rep):
                gsum = np.zeros((nb, n_bins, k, n_opt))
                gn = np.zeros((nb, n_bins, k))
                for b, m in enumerate(members):
                    for f in range(k):
                        idx = m[folds[r, m] == f]
                        if len(idx):
                            gsum[:, b, f] = w[:, idx] @ acc_filled[idx]
                            gn[:, b, f] = w[:, idx].sum(axis=1)
                means = _kfold_means(gsum, gn)
                for ti in range(n_t):
                    if not oks[ti].any():
                        continue
                    pick = _kfold_picks(means, oks[ti])
                    held = np.take_along_axis(gsum, pick[..., None], axis=-1)[..., 0].sum(axis=-1)
                    boots[start : start + nb, ti] += (
                        held / np.maximum(gn.sum(axis=-1), 1e-300) / n_rep
                    )
        q = np.quantile(boots, [(1 - ci) / 2, 1 - (1 - ci) / 2], axis=0)
        ok_t = oks.any(axis=1)
        lo[ok_t], hi[ok_t] = q[0][ok_t], q[1][ok_t]
    # The estimate itself lies inside its interval (a percentile interval may miss it by a hair).
    lo, hi = np.fmin(lo, est), np.fmax(hi, est)
    return KFoldEstimate(est, lo, hi, per_problem, agreement, method)


def bootstrap_corrected_estimate(
    acc: np.ndarray,
    cost: np.ndarray,
    bins: np.ndarray,
    targets: Sequence[float],
    deploy: np.ndarray,
    eligible: np.ndarray | None = None,
    ci: float = 0.95,
    n_boot: int = 1000,
    rng: np.random.Generator | None = None,
) -> KFoldEstimate:
    """The deployed option's accuracy on its bin minus a bootstrap estimate of its winner's curse.

    For rule "best" only. In each replicate (problems resampled within each bin) the option with
    the highest resampled mean is chosen; the optimism is its resampled mean minus its mean on the
    original problems, averaged over replicates (Efron's bias correction of a maximum). Estimate =
    in-sample accuracy of the deployed option - optimism. Interval: the percentile interval of the
    replicates' chosen means, shifted by -2 x optimism (centred on the estimate). `per_problem`
    holds the deployed option's accuracy; `agreement` the share of replicates that choose it.
    Lower variance than `kfold_estimate` (no held-out fold of a few problems), slightly
    optimistic when many options tie.
    """
    n_prob, n_opt = acc.shape
    n_bins = int(bins.max()) + 1 if n_prob else 0
    n_t = len(targets)
    rng = rng or np.random.default_rng(0)
    n_boot = max(int(n_boot), 1)
    a = np.nan_to_num(acc, nan=0.0)
    base_ok = np.ones(n_opt, bool) if eligible is None else np.asarray(eligible, bool)
    oks = [base_ok & (cost <= t * (1 + 1e-9)) for t in targets]
    est = np.full((n_t, n_bins), np.nan)
    lo, hi, agreement = est.copy(), est.copy(), est.copy()
    per_problem = np.full((n_t, n_prob), np.nan)
    for b in range(n_bins):
        m = np.flatnonzero(bins == b)
        if not len(m):
            continue
        rows = a[m]
        mean = rows.mean(axis=0)
        chosen = np.zeros((n_t, n_boot))
        picks = np.zeros((n_t, n_boot), dtype=np.int64)
        step = max(1, int(2e7 // max(1, len(m) * n_opt)))
        for start in range(0, n_boot, step):
            nb = min(step, n_boot - start)
            idx = rng.integers(0, len(m), size=(nb, len(m)))
            w = np.zeros((nb, len(m)))
            np.add.at(w, (np.repeat(np.arange(nb), len(m)), idx.ravel()), 1.0)
            bm = (w @ rows) / len(m)
            for ti in range(n_t):
                if oks[ti].any():
                    jb = _kfold_picks(bm, oks[ti])
                    picks[ti, start : start + nb] = jb
                    chosen[ti, start : start + nb] = bm[np.arange(nb), jb]
        for ti in range(n_t):
            j = int(deploy[ti, b])
            if j < 0 or not oks[ti].any():
                continue
            optimism = float(np.mean(chosen[ti] - mean[picks[ti]]))
            e = float(mean[j]) - optimism
            q_lo, q_hi = np.quantile(chosen[ti], [(1 - ci) / 2, 1 - (1 - ci) / 2])
            est[ti, b] = min(max(e, 0.0), 1.0)
            lo[ti, b] = min(max(q_lo - 2 * optimism, 0.0), est[ti, b])
            hi[ti, b] = max(min(q_hi - 2 * optimism, 1.0), est[ti, b])
            agreement[ti, b] = float(np.mean(picks[ti] == j))
            per_problem[ti, m] = rows[:, j]
    return KFoldEstimate(est, lo, hi, per_problem, agreement, "bootstrap-corrected")

"""The pooled selection procedure, cross-fitted: what a plan deploys and how well that does.

The procedure, given the problems it may learn from, chooses at each budget between candidates
ordered from the simplest: (0) one option for every prompt, without probes; (1..) per-bin options
with probes charged, partially pooled toward each option's accuracy over all bins with a prior
worth n0 = strength x (problems / bins), strengths from large (nearly one option) to 0 (each bin
alone), each over the shortlist of options that can win somewhere
(`planner.optimize.pooling`). It picks among them by an inner K-fold cross-validation on its own
problems, taking the simplest candidate within `se_factor` paired standard errors of the best
(the one-standard-error rule applied to the pooling strength, so a bin gets its own option only
where the data supports it).

`cross_fit_procedure` runs that procedure inside a repeated outer K-fold split (nested
cross-validation): each problem is scored by the choice made without it, so the result is an
honest estimate of the whole select-then-deploy procedure, pooling strength and probing decision
included. It also runs the single-option candidate alone on the same folds (the baseline that a
plan must beat) and the procedure on all problems (what is deployed).

Everything is computed from sums of accuracy over "atoms" (bin x outer fold x inner fold of each
repeat), so one pass over the [problems, options] matrix per repeat serves every training set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from planner.optimize.pooling import (
    dominated,
    eligible,
    pick_per_bin,
    pick_single,
    pooled_moments,
    pooled_scores,
)


@dataclass(frozen=True)
class SelectionSpec:
    """strengths: n0 of the per-bin candidates in units of the mean bin size (problems / bins);
    shortlist_z: the shortlist's margin in standard errors (None: no shortlist); inner_folds: K of
    the inner cross-validation; se_factor: the rule among candidates (0 = the most accurate,
    1 = the simplest within one paired standard error of it)."""

    strengths: tuple[float, ...] = (4.0, 1.0, 0.25, 0.0)
    shortlist_z: float | None = 2.0
    inner_folds: int = 5
    se_factor: float = 2.0

    def __post_init__(self) -> None:
        if not self.strengths or any(s < 0 or not np.isfinite(s) for s in self.strengths):
            raise ValueError("strengths must be finite numbers >= 0")
        if self.shortlist_z is not None and self.shortlist_z < 0:
            raise ValueError("shortlist_z must be >= 0")
        if self.inner_folds < 2:
            raise ValueError("inner_folds must be >= 2")
        if self.se_factor < 0:
            raise ValueError("se_factor must be >= 0")

    def candidate_names(self) -> list[str]:
        """Candidate 0 is the single option; then the per-bin ones, most pooled first."""
        return ["single"] + [f"pooled:{s:g}" for s in sorted(self.strengths, reverse=True)]


@dataclass
class ProcedureFit:
    """The procedure cross-fitted and deployed.

    proc[t, p], single[t, p]: the accuracy problem p gets from the procedure / the single option
    chosen without its outer fold, averaged over repeats (NaN where nothing was eligible);
    used[r, t, p], probed[r, t, p]: the option it got in repeat r and whether probes were paid;
    used_single[r, t, p]: the single option it got in repeat r;
    deploy[t, b], deploy_probe[t], deploy_candidate[t]: the choice on all problems, and
    deploy_single[t] the single option chosen on all problems;
    agreement[t, b]: share of outer selections equal to the deployed one (weighted by the held
    problems of the bin); candidate_share[t, c]: share of outer selections that took candidate c;
    shortlist[t]: options left by the shortlist on all problems (eligible at t for the bins).
    """

    proc: np.ndarray
    single: np.ndarray
    used: np.ndarray
    probed: np.ndarray
    used_single: np.ndarray
    deploy: np.ndarray
    deploy_probe: np.ndarray
    deploy_candidate: np.ndarray
    deploy_single: np.ndarray
    agreement: np.ndarray
    candidate_share: np.ndarray
    shortlist: np.ndarray
    names: list[str]


def nested_folds(
    ids: Sequence[str], bins: np.ndarray, outer: np.ndarray, k_inner: int, seed: int
) -> np.ndarray:
    """[repeats, problems] inner fold labels, balanced within each (bin, outer fold) cell, so every
    outer training set splits into k_inner folds balanced within bins. Seeded permutations of the
    sorted ids: independent of row order."""
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    out = np.zeros_like(outer)
    for r in range(outer.shape[0]):
        rng = np.random.default_rng([seed, 7, r])
        cell = (np.asarray(bins) * (int(outer.max()) + 1) + outer[r])[order]
        for value in np.unique(cell):
            idx = order[np.flatnonzero(cell == value)]
            out[r, idx[rng.permutation(len(idx))]] = np.arange(len(idx)) % k_inner
    return out


def _atom_sums(
    acc: np.ndarray, bins: np.ndarray, outer: np.ndarray, inner: np.ndarray, n_bins: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums of accuracy, of its square and counts over atoms: [R, bins, K_out, K_in, options]."""
    n_rep, n_prob = outer.shape
    k_in = int(inner.max()) + 1
    n_atoms = n_bins * k * k_in
    groups = (bins[None, :] * k + outer) * k_in + inner + (np.arange(n_rep) * n_atoms)[:, None]
    cols = np.tile(np.arange(n_prob), n_rep)
    onehot = sp.csr_matrix(
        (np.ones(n_rep * n_prob, dtype=acc.dtype), (groups.ravel(), cols)),
        shape=(n_rep * n_atoms, n_prob),
    )
    shape = (n_rep, n_bins, k, k_in, acc.shape[1])
    s1 = np.asarray(onehot @ acc, dtype=float).reshape(shape)
    s2 = np.asarray(onehot @ np.square(acc), dtype=float).reshape(shape)
    n = np.bincount(groups.ravel(), minlength=n_rep * n_atoms).astype(float).reshape(shape[:-1])
    return s1, s2, n


@dataclass(frozen=True)
class _Costs:
    bins: np.ndarray  # [options] cost with the probes charged (per-bin candidates)
    single: np.ndarray  # [options] cost without probes (the single option)
    ok: np.ndarray  # [options] deployable
    targets: tuple[float, ...]


def _candidate_picks(
    s1: np.ndarray, s2: np.ndarray, n: np.ndarray, c: _Costs, spec: SelectionSpec
) -> np.ndarray:
    """[sets, targets, candidates, bins] each candidate's choice from training sums [sets, bins,
    options] (counts [sets, bins]); -1 where nothing is eligible."""
    n_sets, n_bins, _ = s1.shape
    strengths = sorted(spec.strengths, reverse=True)
    mean, _, total = pooled_moments(s1, s2, n)
    keep = (
        np.ones_like(mean, dtype=bool)
        if spec.shortlist_z is None
        else ~dominated(s1, s2, n, c.bins, spec.shortlist_z, c.ok)
    )
    occupied = np.maximum((n > 0).sum(axis=-1), 1)
    scores = [pooled_scores(s1, n, mean, (s * total / occupied)[:, None, None]) for s in strengths]
    out = np.full((n_sets, len(c.targets), 1 + len(strengths), n_bins), -1, dtype=np.int64)
    for ti, t in enumerate(c.targets):
        out[:, ti, 0, :] = pick_single(mean, c.ok & eligible(c.single, t))[:, None]
        ok_b = (c.ok & eligible(c.bins, t))[None, :] & keep
        for ci, sc in enumerate(scores, start=1):
            out[:, ti, ci] = pick_per_bin(sc, ok_b)
    return out


# The paired standard error of the rule among candidates is estimated on at most this many of
# a training set's problems (evenly spaced): an SD is known well from a few thousand, while
# gathering every problem's score of every candidate dominated the time on large profiles. The
# means themselves always come from exact sums.
SE_ROWS = 4000


def _choose(mu: np.ndarray, scores: np.ndarray, n: float, se_factor: float) -> np.ndarray:
    """[targets] the candidate each target takes: the simplest (lowest index) whose inner
    cross-validated mean mu [targets, candidates] (-inf: unavailable) is within se_factor paired
    standard errors of the best's; the SE is the SD over problems of the paired per-problem
    differences in `scores` [targets, candidates, rows], divided by sqrt(n)."""
    best = mu.argmax(axis=-1)
    if se_factor == 0 or scores.shape[-1] < 2:
        return best
    ref = np.take_along_axis(scores, best[:, None, None], axis=1)
    diff = np.nan_to_num(scores - ref)
    se = diff.std(axis=-1, ddof=1) / np.sqrt(n)
    mu_best = np.take_along_axis(mu, best[:, None], axis=1)
    within = np.isfinite(mu) & (mu >= mu_best - se_factor * se - 1e-12)
    return within.argmax(axis=-1)


def _run_set(
    acc: np.ndarray,
    train_rows: np.ndarray,
    train_inner: np.ndarray,
    train_bins: np.ndarray,
    inner_sums: tuple[np.ndarray, np.ndarray, np.ndarray],
    held_sums: np.ndarray,
    full_sums: tuple[np.ndarray, np.ndarray, np.ndarray],
    c: _Costs,
    spec: SelectionSpec,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The procedure on one training set: (picks [targets, bins] of the chosen candidates,
    the chosen candidate [targets], every candidate's picks [targets, candidates, bins]).

    inner_sums: the sums of the inner training sets [K_in, bins, options] (and counts);
    held_sums: the accuracy sums of each inner fold's held problems [K_in, bins, options];
    full_sums: the training set's own sums [1, bins, options]."""
    inner = _candidate_picks(*inner_sums, c, spec)  # [K_in, T, C, B]
    k_in, n_t, n_c, n_b = inner.shape
    # Inner cross-validated mean of every candidate, from the held folds' sums.
    g_idx, b_idx = np.meshgrid(np.arange(k_in), np.arange(n_b), indexing="ij")
    got = held_sums[g_idx[:, None, None, :], b_idx[:, None, None, :], np.maximum(inner, 0)]
    total = np.where(inner >= 0, got, np.nan).sum(axis=(0, 3))  # [T, C]
    mu = np.where(np.isnan(total), -np.inf, total / max(len(train_rows), 1))
    # Per-problem scores for the paired SE, on evenly spaced rows (all of them when few).
    sub = np.arange(len(train_rows))
    if len(sub) > SE_ROWS:
        sub = np.linspace(0, len(sub) - 1, SE_ROWS).astype(np.int64)
    held = np.empty((n_t, n_c, len(sub)))
    # Every problem of one (inner fold, bin) cell is scored by the same picks: one 2-D gather
    # per cell.
    for g in range(k_in):
        for b in range(n_b):
            at = np.flatnonzero((train_inner[sub] == g) & (train_bins[sub] == b))
            if not len(at):
                continue
            cols = inner[g, :, :, b].ravel()  # [T * C]
            vals = acc[np.ix_(train_rows[sub[at]], np.maximum(cols, 0))].astype(float)
            vals[:, cols < 0] = np.nan
            held[:, :, at] = vals.T.reshape(n_t, n_c, len(at))
    chosen = _choose(mu, held, float(len(train_rows)), spec.se_factor)  # [T]
    picks = _candidate_picks(*full_sums, c, spec)[0]  # [T, C, B]
    return picks[np.arange(len(c.targets)), chosen], chosen, picks


def cross_fit_procedure(
    acc: np.ndarray,
    bins: np.ndarray,
    cost_bins: np.ndarray,
    cost_single: np.ndarray,
    outer: np.ndarray,
    inner: np.ndarray,
    deploy_inner: np.ndarray,
    targets: Sequence[float],
    eligible_options: np.ndarray | None = None,
    spec: SelectionSpec | None = None,
) -> ProcedureFit:
    """Nested cross-fit of the pooled procedure, and its deployed choice.

    acc: [problems, options], options ordered by (cost, name); bins: [problems] in 0..B-1;
    cost_bins / cost_single: [options] costs with / without the probes; outer: [R, problems] outer
    K-fold labels (`planner.optimize.expect.kfold_folds`); inner: [R, problems] inner labels
    (`nested_folds`); deploy_inner: [problems] the inner folds of the procedure run on all
    problems.
    """
    spec = spec or SelectionSpec()
    a = np.nan_to_num(acc, nan=0.0) if np.isnan(acc).any() else acc
    n_prob, n_opt = a.shape
    n_bins = int(bins.max()) + 1 if n_prob else 0
    c = _Costs(
        cost_bins,
        cost_single,
        np.ones(n_opt, bool) if eligible_options is None else np.asarray(eligible_options, bool),
        tuple(float(t) for t in targets),
    )
    names = spec.candidate_names()
    outer = np.atleast_2d(outer)
    inner = np.atleast_2d(inner)
    n_rep, k = outer.shape[0], int(outer.max()) + 1
    n_t = len(c.targets)
    s1, s2, cnt = _atom_sums(a, bins, outer, inner, n_bins, k)
    proc = np.zeros((n_t, n_prob))
    single = np.zeros((n_t, n_prob))
    used = np.full((n_rep, n_t, n_prob), -1, dtype=np.int64)
    probed = np.zeros((n_rep, n_t, n_prob), dtype=bool)
    used_single = np.full((n_rep, n_t, n_prob), -1, dtype=np.int64)
    sel = np.full((n_rep, k, n_t, n_bins), -1, dtype=np.int64)
    sel_cand = np.zeros((n_rep, k, n_t), dtype=np.int64)
    held_n = np.zeros((n_rep, k, n_bins))
    for r in range(n_rep):
        tot = [x.sum(axis=(1, 2)) for x in (s1[r], s2[r], cnt[r])]  # [B, (O)]
        by_in = [x.sum(axis=1) for x in (s1[r], s2[r], cnt[r])]  # [B, K_in, (O)]
        for f in range(k):
            fold = [x[:, f].sum(axis=1) for x in (s1[r], s2[r], cnt[r])]  # [B, (O)]
            out_tr = [t_ - f_ for t_, f_ in zip(tot, fold, strict=True)]
            # Inner training set g: the outer training set minus its inner fold g.
            in_tr = [
                np.moveaxis(o[:, None] - (b_ - x[:, f]), 1, 0)
                for o, b_, x in zip(out_tr, by_in, (s1[r], s2[r], cnt[r]), strict=True)
            ]
            rows = np.flatnonzero(outer[r] != f)
            picks, chosen, every = _run_set(
                a,
                rows,
                inner[r, rows],
                bins[rows],
                (in_tr[0], in_tr[1], in_tr[2]),
                np.moveaxis(by_in[0] - s1[r][:, f], 1, 0),
                (out_tr[0][None], out_tr[1][None], out_tr[2][None]),
                c,
                spec,
            )
            ho = np.flatnonzero(outer[r] == f)
            cols = picks[:, bins[ho]]  # [T, P_ho]
            proc[:, ho] += np.where(cols >= 0, a[ho[None, :], np.maximum(cols, 0)], np.nan)
            one = every[:, 0, bins[ho]]
            single[:, ho] += np.where(one >= 0, a[ho[None, :], np.maximum(one, 0)], np.nan)
            used[r][:, ho] = cols
            used_single[r][:, ho] = one
            probed[r][:, ho] = (chosen > 0)[:, None]
            sel[r, f], sel_cand[r, f] = picks, chosen
            held_n[r, f] = np.bincount(bins[ho], minlength=n_bins)
    proc /= n_rep
    single /= n_rep

    d1, d2, dn = _atom_sums(a, bins, np.zeros((1, n_prob), np.int64), deploy_inner[None], n_bins, 1)
    full = [x[0, :, 0] for x in (d1, d2, dn)]  # [B, K_in, (O)]
    tot = [x.sum(axis=1) for x in full]
    in_tr = [np.moveaxis(t_[:, None] - x, 1, 0) for t_, x in zip(tot, full, strict=True)]
    rows = np.arange(n_prob)
    deploy, dep_cand, dep_every = _run_set(
        a,
        rows,
        deploy_inner,
        bins,
        (in_tr[0], in_tr[1], in_tr[2]),
        np.moveaxis(full[0], 1, 0),
        (tot[0][None], tot[1][None], tot[2][None]),
        c,
        spec,
    )
    same = (sel == deploy[None, None]) & ((sel_cand > 0) == (dep_cand > 0)[None, None])[..., None]
    w = held_n[:, :, None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = (same * w).sum(axis=(0, 1)) / w.sum(axis=(0, 1))
    share = np.stack([(sel_cand == ci).mean(axis=(0, 1)) for ci in range(len(names))], axis=-1)
    keep = (
        np.ones(n_opt, bool)
        if spec.shortlist_z is None
        else ~dominated(
            tot[0][None], tot[1][None], tot[2][None], cost_bins, spec.shortlist_z, c.ok
        )[0]
    )
    shortlist = np.array([int((keep & c.ok & eligible(cost_bins, t)).sum()) for t in c.targets])
    return ProcedureFit(
        proc=proc,
        single=single,
        used=used,
        probed=probed,
        used_single=used_single,
        deploy=deploy,
        deploy_probe=dep_cand > 0,
        deploy_candidate=dep_cand,
        deploy_single=dep_every[:, 0, 0],
        agreement=agreement,
        candidate_share=share,
        shortlist=shortlist,
        names=names,
    )

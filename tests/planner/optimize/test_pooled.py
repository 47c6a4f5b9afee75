"""The pooled selection procedure: partial pooling, the shortlist, nested cross-validation, the
single option without probes, the guard and the small-sample floor of the promise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from planner.optimize import PlanOptions, make_plan
from planner.optimize.expect import kfold_folds
from planner.optimize.pooling import dominated, pooled_moments, pooled_scores
from planner.optimize.procedure import SelectionSpec, cross_fit_procedure, nested_folds
from planner.stats import wilson_interval
from planner.tables import canonical_config


def test_pooled_scores_shrink_toward_the_pooled_mean_and_keep_orders() -> None:
    # Two bins x three pool sizes of one pool, pass@k-like: non-decreasing in k in each bin.
    s1 = np.array([[8.0, 9.0, 10.0], [1.0, 3.0, 4.0]])  # sums over 10 and 5 problems
    n = np.array([10.0, 5.0])
    s2 = s1.copy()  # 0/1 accuracies
    mean, se, total = pooled_moments(s1, s2, n)
    assert total == 15 and mean == pytest.approx([9 / 15, 12 / 15, 14 / 15])
    assert (se > 0).all()
    alone = pooled_scores(s1, n, mean, 0.0)
    assert alone == pytest.approx(s1 / n[:, None])
    half = pooled_scores(s1, n, mean, 5.0)
    # Bin 2 (5 problems) moves halfway to the pooled mean, bin 1 (10) a third of the way.
    assert half[1] == pytest.approx(0.5 * s1[1] / 5 + 0.5 * mean)
    assert half[0] == pytest.approx((2 * s1[0] / 10 + mean) / 3)
    for n0 in (0.0, 1.0, 7.5, 100.0):
        assert (np.diff(pooled_scores(s1, n, mean, n0), axis=1) >= 0).all()
    # A bin with no problems takes the pooled mean at any strength, even 0.
    empty = pooled_scores(np.zeros_like(s1), np.array([0.0, 0.0]), mean, 0.0)
    assert empty == pytest.approx(np.tile(mean, (2, 1)))


def test_dominated_means_beaten_with_a_margin_in_every_bin_by_no_dearer_options() -> None:
    # Two bins of 100 problems, four options (0/1 accuracies as sums): option 1 is worse than
    # option 0 everywhere; option 2 is worse overall but leads bin 1 (a specialist); option 3 is
    # worse than the cheaper option 0 in both bins, yet option 4 (not deployable) would beat all.
    acc = np.array([[0.60, 0.40, 0.20, 0.30, 1.0], [0.50, 0.30, 0.90, 0.20, 1.0]])
    n = np.array([100.0, 100.0])
    s1 = acc * n[:, None]
    s2 = s1.copy()
    cost = np.array([1.0, 2.0, 2.0, 4.0, 1.0])
    ok = np.array([True, True, True, True, False])
    out = dominated(s1, s2, n, cost, 2.0, ok)
    assert out.tolist() == [False, True, False, True, False]
    assert not dominated(s1, s2, n, cost, 20.0, ok).any()  # wide enough bounds drop nothing
    # Without a rival that costs no more, nothing is dominated.
    assert not dominated(s1, s2, n, np.arange(5.0), 2.0, ok)[0]


def _grid(n_prob: int, gain: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """acc [problems, 8 options] (0/1), bins (2) and costs: options 0-3 cost 1, 4-7 cost 4.
    Option 0 is 5 points better than the others everywhere; option 5 is `gain` better than 0.5 in
    bin 1 and as much worse in bin 0 (gain 0: no bin has an option of its own)."""
    rng = np.random.default_rng(seed)
    bins = np.arange(n_prob) % 2
    p = np.full((n_prob, 8), 0.5)
    p[:, 0] = 0.55
    p[bins == 1, 5] = 0.5 + gain
    p[bins == 0, 5] = 0.5 - gain
    acc = (rng.random(p.shape) < p).astype(float)
    return acc, bins, np.array([1.0] * 4 + [4.0] * 4)


def _fit(acc: np.ndarray, bins: np.ndarray, cost: np.ndarray, probe: float, spec=None):
    ids = [f"p{i:04d}" for i in range(len(bins))]
    outer = kfold_folds(ids, bins, 5, 2, 0)
    inner = nested_folds(ids, bins, outer, 4, 0)
    dep = nested_folds(ids, bins, np.zeros((1, len(ids)), np.int64), 4, 1)[0]
    return cross_fit_procedure(
        acc, bins, cost + probe, cost, outer, inner, dep, [1.0, 4.0, 8.0], None, spec
    )


def test_noise_alone_deploys_one_option_and_a_real_bin_effect_its_own() -> None:
    # No bin has an option of its own: on most seeds one option everywhere, and the cross-fitted
    # procedure is never far below the single option's (it is the guard's job to close the rest).
    per_bin, gaps = 0, []
    for seed in range(8):
        fit = _fit(*_grid(200, 0.0, seed), 0.0)
        per_bin += bool(fit.deploy_probe[2])
        gaps.append(np.nanmean(fit.proc[2]) - np.nanmean(fit.single[2]))
    assert per_bin <= 2 and min(gaps) > -0.02
    acc, bins, cost = _grid(400, 0.4, 2)
    fit = _fit(acc, bins, cost, 0.0)
    # A 40-point specialist in bin 1 at cost 4 (40 points worse in bin 0): chosen there only.
    assert fit.deploy[1].tolist() == [0, 5] and fit.deploy_probe[1]
    assert fit.candidate_share[1, 0] == 0.0  # every outer fold saw it too
    assert np.nanmean(fit.proc[1]) > np.nanmean(fit.single[1]) + 0.1
    # Paying 4 probe generations, the specialist fits only from budget 8; at 4 the procedure
    # runs one option for every prompt, without probes.
    fit = _fit(acc, bins, cost, 4.0)
    assert not fit.deploy_probe[1] and fit.deploy_probe[2]
    assert (fit.deploy[1] == fit.deploy_single[1]).all()
    assert fit.deploy[2].tolist() == [0, 5]


def test_the_rule_among_candidates_prefers_the_simplest() -> None:
    acc, bins, cost = _grid(200, 0.0, 3)
    strict = _fit(acc, bins, cost, 0.0, SelectionSpec(se_factor=3.0))
    assert (strict.candidate_share[:, 0] == 1.0).all()
    assert not strict.deploy_probe.any()
    with pytest.raises(ValueError):
        SelectionSpec(strengths=(-1.0,))
    with pytest.raises(ValueError):
        SelectionSpec(inner_folds=1)


def _profile(n_easy: int, n_hard: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Noisy per-problem accuracies of a pool (N = 1, 4, 16) and a beam search (cost 16) that is
    much better on hard problems only."""
    rng = np.random.default_rng(seed)
    rows, probs = [], []
    for i in range(n_easy + n_hard):
        pid, easy = f"q{i:04d}", i < n_easy
        probs.append({"problem_id": pid, "fold": i % 2, "oracle_bin": 1 if easy else 2})
        for k in (1, 4, 16):
            p = (0.8 if easy else 0.2) + 0.01 * k
            for sel in ("majority", "weighted"):
                cfg = {"select": sel, "agg": "last" if sel == "weighted" else "none"}
                cfg["verifier"] = "v" if sel == "weighted" else "none"
                rows.append((pid, "sample", canonical_config(cfg), k, float(rng.random() < p)))
        p = 0.75 if easy else 0.7
        cfg = canonical_config(
            {"n": 16, "m": 4, "select": "weighted", "agg": "last", "verifier": "v"}
        )
        rows.append((pid, "beam", cfg, 16, float(rng.random() < p)))
    prof = pd.DataFrame(rows, columns=["problem_id", "strategy", "config", "budget", "accuracy"])
    prof = prof.assign(accuracy_se=0.0, flops=prof["budget"] * 10.0, tokens=prof["budget"] * 3.0)
    prof = prof.assign(prompt_tokens=5.0, wall_s=np.nan)
    return prof, pd.DataFrame(probs)


def test_make_plan_pooled_guard_promise_floor_and_tables() -> None:
    profile, problems = _profile(30, 30, 0)
    plan = make_plan(profile, problems, PlanOptions(n_boot=200, expect_folds=5, expect_repeats=2))
    curves = plan.curves.pivot(index="budget", columns="method", values="accuracy")
    # The guard: compute-optimal, cross-fitted, never below the single option cross-fitted alike.
    assert (curves["compute_optimal"] >= curves["single_best"] - 1e-12).all()
    at16 = plan.choices[plan.choices["budget"] == 16].set_index("bin")
    assert set(at16.columns) >= {"probe", "candidate", "optimism", "expected_ci_lo"}
    entry = next(e for e in plan.summary["per_budget"] if e["budget"] == 16)
    assert entry["deployed"]["candidate"] == at16.loc[1, "candidate"]
    assert {"mean", "ci_lo", "ci_hi"} <= set(entry["gain_over_single"])
    assert plan.summary["selection"]["rule"] == "pooled"
    # Every promise interval is at least as wide as the Wilson interval of its bin's size.
    for _, r in plan.choices.iterrows():
        lo, hi = wilson_interval(r["expected_accuracy"], r["n_problems"], 0.95)
        assert r["expected_ci_lo"] <= lo + 1e-12 and r["expected_ci_hi"] >= hi - 1e-12
    # Same inputs and seed, rows in another order: the same plan.
    again = make_plan(
        profile.sample(frac=1.0, random_state=1),
        problems,
        PlanOptions(n_boot=200, expect_folds=5, expect_repeats=2),
    )
    pd.testing.assert_frame_equal(plan.curves, again.curves)
    pd.testing.assert_frame_equal(plan.choices, again.choices)


def test_a_handful_of_solved_problems_does_not_promise_certainty() -> None:
    profile, problems = _profile(4, 40, 1)
    easy = problems["problem_id"][:4]
    profile.loc[profile["problem_id"].isin(easy), "accuracy"] = 1.0
    plan = make_plan(profile, problems, PlanOptions(n_boot=200, expect_folds=4, expect_repeats=2))
    bin1 = plan.choices[plan.choices["bin"] == 1]
    assert (bin1["expected_accuracy"] == 1.0).all()
    assert (bin1["expected_ci_lo"] < 0.55).all()  # Wilson at n = 4: [0.51, 1]

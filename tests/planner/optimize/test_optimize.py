"""Compute-optimal selection: cross-fitting, baselines, efficiency multiple."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from planner.errors import PlannerError
from planner.optimize import PlanOptions, make_plan
from planner.optimize.crossfit import cross_fit, efficiency_multiple
from planner.optimize.expect import (
    bootstrap_corrected_estimate,
    deploy_choices,
    kfold_estimate,
    kfold_folds,
)
from planner.tables import CHOICES, PLAN_CURVES, SELECTION, canonical_config, validate


def test_cross_fit_selects_on_one_fold_and_evaluates_on_the_other():
    # One bin, 4 problems; option 0 wins on fold 0, option 1 wins on fold 1.
    acc = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    folds = np.array([0, 0, 1, 1])
    bins = np.zeros(4, dtype=np.int64)
    fit = cross_fit(acc, np.array([1.0, 1.0]), bins, folds, [1.0])
    assert fit.chosen[0, 0].tolist() == [0, 1]
    # Fold-0 problems get option 1 (chosen on fold 1) and vice versa: all wrong.
    assert fit.per_problem[0].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_cost_eligibility_and_cheaper_option_wins_ties():
    acc = np.array([[0.5, 0.5, 0.9], [0.5, 0.5, 0.9]])
    cost = np.array([1.0, 2.0, 4.0])
    fit = cross_fit(acc, cost, np.zeros(2, dtype=np.int64), np.array([0, 1]), [2.0, 4.0])
    assert fit.deploy[0, 0] == 0  # option 2 too expensive at 2; tie between 0 and 1 -> cheaper
    assert fit.deploy[1, 0] == 2


def test_efficiency_multiple_interpolates_on_log_budget():
    ref_cost = np.array([1.0, 4.0, 16.0])
    ref_acc = np.array([0.2, 0.4, 0.6])
    assert efficiency_multiple(4.0, 0.5, ref_cost, ref_acc) == pytest.approx(8.0 / 4.0)
    assert efficiency_multiple(4.0, 0.7, ref_cost, ref_acc) is None


def _profile(n_problems: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Easy problems: majority suffices; hard ones: a search strategy is much better."""
    rows, probs = [], []
    for i in range(n_problems):
        pid = f"p{i:02d}"
        easy = i < n_problems // 2
        probs.append(
            {
                "problem_id": pid,
                "fold": i % 2,
                "pass1": 0.9 if easy else 0.1,
                "oracle_bin": 1 if easy else 2,
                "predicted_bin": None,
                "level": None,
            }
        )
        for k in (1, 2, 4, 8):
            for select, verifier, acc in (
                ("majority", "none", 0.9 if easy else 0.1 + 0.01 * k),
                ("weighted", "prm", 0.85 if easy else 0.1 + 0.03 * k),
                ("coverage", "none", 1.0),
            ):
                rows.append(
                    {
                        "problem_id": pid,
                        "strategy": "sample",
                        "config": canonical_config(
                            {
                                "select": select,
                                "agg": "last" if verifier != "none" else "none",
                                "verifier": verifier,
                            }
                        ),
                        "budget": float(k),
                        "accuracy": acc,
                        "accuracy_se": 0.0,
                        "flops": 10.0 * k,
                        "tokens": 3.0 * k,
                        "prompt_tokens": 5.0 * k,
                        "wall_s": np.nan,
                    }
                )
        rows.append(
            {
                "problem_id": pid,
                "strategy": "beam",
                "config": canonical_config(
                    {"n": 4, "m": 2, "select": "weighted", "agg": "last", "verifier": "prm"}
                ),
                "budget": 4.0,
                "accuracy": 0.5 if easy else 0.6,
                "accuracy_se": 0.0,
                "flops": 45.0,
                "tokens": 12.0,
                "prompt_tokens": 20.0,
                "wall_s": np.nan,
            }
        )
    return pd.DataFrame(rows), pd.DataFrame(probs)


def test_make_plan_per_bin_choices_and_baselines():
    profile, problems = _profile()
    plan = make_plan(profile, problems, PlanOptions(n_boot=200, select_rule="best"))
    validate(plan.curves, PLAN_CURVES, "curves")
    validate(plan.selection, SELECTION, "selection")
    validate(plan.choices, CHOICES, "choices")
    at8 = plan.choices[plan.choices["budget"] == 8].set_index("bin")
    assert (
        json.loads(at8.loc[1, "config"])["select"] == "majority"
    )  # easy: cheapest best (budget 1)
    assert at8.loc[1, "option_budget"] == 1.0
    assert at8.loc[2, "strategy"] == "beam"
    co = plan.curves[
        (plan.curves["method"] == "compute_optimal") & (plan.curves["budget"] == 8)
    ].iloc[0]
    assert co["accuracy"] == pytest.approx((0.9 + 0.6) / 2)
    assert co["ci_lo"] <= co["accuracy"] <= co["ci_hi"]
    methods = set(plan.curves["method"])
    assert {"majority", "coverage", "best[prm]", "weighted[prm]"} - {"best[prm]"} <= methods
    # Compute-optimal at 4 beats weighted best-of-8 here, so the multiple at 4 is "> max".
    entry = next(e for e in plan.summary["per_budget"] if e["budget"] == 4.0)
    assert entry["efficiency_multiple"] == "> max"
    assert plan.summary["bins"] == [1, 2]


def test_plan_in_flops_and_errors():
    profile, problems = _profile()
    plan = make_plan(profile, problems, PlanOptions(unit="flops", n_boot=0))
    assert plan.summary["budgets"] == [10.0, 20.0, 40.0, 80.0]
    beam_used = plan.choices[(plan.choices["strategy"] == "beam")]
    assert (beam_used["budget"] >= 45.0).all()  # beam costs 45 FLOPs: only eligible from 80 on
    with pytest.raises(PlannerError, match="not in the problems table"):
        make_plan(profile, problems.iloc[1:], PlanOptions())
    with pytest.raises(PlannerError, match="verifier 'nope'"):
        make_plan(profile, problems, PlanOptions(verifier="nope"))
    with pytest.raises(ValueError):
        PlanOptions(unit="dollars")


def test_plan_is_deterministic():
    profile, problems = _profile()
    a = make_plan(profile, problems, PlanOptions(seed=5))
    b = make_plan(profile.sample(frac=1.0, random_state=0), problems, PlanOptions(seed=5))
    pd.testing.assert_frame_equal(a.curves, b.curves)
    pd.testing.assert_frame_equal(a.choices, b.choices)


# ------------------------------------------------------------------------------------------------
# The promise of a deployed choice: repeated K-fold cross-fitting


def test_kfold_folds_balanced_seeded_and_independent_of_row_order():
    ids = [f"q{i:03d}" for i in range(53)]
    bins = np.array([i % 3 for i in range(53)])
    f = kfold_folds(ids, bins, 5, 3, seed=4)
    assert f.shape == (3, 53) and f.min() == 0 and f.max() == 4
    for r in range(3):
        for b in range(3):
            counts = np.bincount(f[r, bins == b], minlength=5)
            assert counts.max() - counts.min() <= 1  # balanced within the bin
    assert not np.array_equal(f[0], f[1])  # each repeat is its own split
    perm = np.random.default_rng(0).permutation(53)
    g = kfold_folds([ids[i] for i in perm], bins[perm], 5, 3, seed=4)
    np.testing.assert_array_equal(g[:, np.argsort(perm)], f)
    assert np.array_equal(kfold_folds(ids, bins, 5, 3, seed=4), f)


def test_kfold_estimate_by_hand():
    # Option 1 is best on every subset: every fold picks it, the estimate is its mean.
    acc = np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    bins = np.zeros(4, dtype=np.int64)
    folds = np.array([[0, 1, 2, 3]])  # leave-one-out
    est = kfold_estimate(acc, np.ones(2), bins, folds, [1.0], deploy=np.array([[1]]))
    assert est.accuracy[0, 0] == pytest.approx(0.75)
    assert est.agreement[0, 0] == 1.0 and est.ci_method == "normal"
    # Leave-one-out on a near tie: leaving out problem 0 makes option 0 win the others (tie ->
    # first), so problem 0 scores option 0 (0.0); the others keep option 1.
    acc2 = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    est2 = kfold_estimate(
        acc2,
        np.ones(2),
        np.zeros(3, dtype=np.int64),
        np.array([[0, 1, 2]]),
        [1.0],
        deploy=np.array([[1]]),
    )
    # LOO picks: without p0 -> option 0 (2 vs 1), without p1 -> option 1, without p2 -> tie -> 0.
    assert est2.per_problem[0].tolist() == [0.0, 0.0, 1.0]
    # Nothing eligible at a budget below every cost: NaN, not a number.
    est3 = kfold_estimate(acc, np.array([2.0, 2.0]), bins, folds, [1.0])
    assert np.isnan(est3.accuracy[0, 0]) and np.isnan(est3.per_problem[0]).all()


def _truth_world(seed: int, n: int, n_opt: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """0/1 outcomes with known option means: one option at 0.62, the rest at 0.50, correlated
    across options through a shared problem effect (a Gaussian copula), so that the true accuracy
    of whichever option a procedure deploys is known exactly."""
    from scipy.stats import norm as _norm

    rng = np.random.default_rng(seed)
    mu = np.full(n_opt, 0.5)
    mu[n_opt // 2] = 0.62
    z = rng.standard_normal((n, 1))
    e = rng.standard_normal((n, n_opt))
    return (_norm.cdf(np.sqrt(0.5) * z + np.sqrt(0.5) * e) < mu).astype(float), mu


def test_kfold_promise_is_closer_to_the_deployed_truth_than_two_fold():
    """Over 40 synthetic bins where the truth is known: the K-fold promise of the deployed option
    (chosen on the whole bin) is nearly unbiased and inside its interval in most seeds, while the
    paper's two-fold figure is pessimistic (it selects on half the bin) and further off."""
    n = 120
    err_kf, err_cv2, err_in, cover = [], [], [], []
    for s in range(40):
        acc, mu = _truth_world(s, n)
        ids = [f"p{i:04d}" for i in range(n)]
        bins = np.zeros(n, dtype=np.int64)
        cost = np.ones(acc.shape[1])
        fit = cross_fit(acc, cost, bins, kfold_folds(ids, bins, 2, 1, s)[0], [1.0])
        truth = mu[fit.deploy[0, 0]]
        kf = kfold_estimate(
            acc,
            cost,
            bins,
            kfold_folds(ids, bins, 10, 5, s),
            [1.0],
            deploy=fit.deploy,
            n_boot=200,
            rng=np.random.default_rng(s),
        )
        assert kf.ci_method == "bootstrap-reselect"
        err_kf.append(kf.accuracy[0, 0] - truth)
        err_cv2.append(float(np.mean(fit.per_problem[0])) - truth)
        err_in.append(acc[:, fit.deploy[0, 0]].mean() - truth)
        cover.append(kf.ci_lo[0, 0] <= truth <= kf.ci_hi[0, 0])
    err_kf, err_cv2, err_in = map(np.asarray, (err_kf, err_cv2, err_in))
    assert np.mean(err_in) > 0 and np.mean(err_cv2) < -0.02  # winner's curse; half-bin selection
    assert abs(np.mean(err_kf)) < abs(np.mean(err_cv2)) / 2
    assert np.mean(np.abs(err_kf)) < np.mean(np.abs(err_cv2))
    assert np.mean(cover) >= 0.85


def test_make_plan_expected_accuracy_columns_and_settings():
    profile, problems = _profile()
    plan = make_plan(
        profile,
        problems,
        PlanOptions(n_boot=100, expect_folds=4, expect_repeats=2, select_rule="best"),
    )
    ch = plan.choices
    assert {"expected_accuracy", "expected_ci_lo", "expected_ci_hi", "selection_agreement"} <= set(
        ch.columns
    )
    assert (ch["expected_ci_lo"] <= ch["expected_accuracy"]).all()
    assert (ch["expected_accuracy"] <= ch["expected_ci_hi"]).all()
    assert ch["selection_agreement"].between(0, 1).all()
    # The profile is noiseless, so every fold picks the deployed option and the promise is exact.
    at8 = ch[ch["budget"] == 8].set_index("bin")
    assert at8.loc[1, "expected_accuracy"] == pytest.approx(0.9)
    assert at8.loc[2, "expected_accuracy"] == pytest.approx(0.6)
    assert plan.summary["expected_accuracy"] == {
        "method": "repeated-kfold",
        "folds": 4,
        "repeats": 2,
        "ci_method": "bootstrap-reselect+wilson",
    }
    # The paper's two-fold figures keep their meaning and their bootstrap draws.
    ref = make_plan(profile, problems, PlanOptions(n_boot=100, select_rule="best"))
    pd.testing.assert_frame_equal(plan.curves, ref.curves)
    pd.testing.assert_series_equal(plan.choices["accuracy"], ref.choices["accuracy"])
    pd.testing.assert_series_equal(plan.choices["ci_lo"], ref.choices["ci_lo"])
    with pytest.raises(ValueError):
        PlanOptions(expect_folds=1)
    with pytest.raises(ValueError):
        PlanOptions(expect_repeats=0)


def test_one_se_rule_takes_the_cheaper_near_tie_not_a_worse_option():
    rng = np.random.default_rng(3)
    n = 200
    base = (rng.random(n) < 0.6).astype(float)
    # Option 0 (cost 1): base; option 1 (cost 2): a small gain, noisy both ways; option 2 (cost 1):
    # base with many flips to wrong (clearly worse).
    opt1 = base.copy()
    opt1[np.flatnonzero(base == 0)[:6]] = 1.0  # six gains
    opt1[np.flatnonzero(base == 1)[:4]] = 0.0  # four losses: net +1 point, paired SE 1.6 points
    acc = np.column_stack([base, opt1, np.where(rng.random(n) < 0.3, 0.0, base)])
    d = opt1 - base
    assert 0 < d.mean() < d.std(ddof=1) / np.sqrt(n)  # the premise: best by less than one paired SE
    cost = np.array([1.0, 2.0, 1.0])
    bins = np.zeros(n, dtype=np.int64)
    best = deploy_choices(acc, cost, bins, [2.0], rule="best")
    one_se = deploy_choices(acc, cost, bins, [2.0], rule="one-se")
    assert best[0, 0] == 1 and one_se[0, 0] == 0
    # A large, consistent gain is more than one standard error: the rule keeps the better option.
    acc_big = np.column_stack([base, np.maximum(base, (rng.random(n) < 0.5).astype(float)), base])
    assert deploy_choices(acc_big, cost, bins, [2.0], rule="one-se")[0, 0] == 1
    # "best" is cross_fit's whole-bin choice.
    noisy = rng.random((60, 7))
    b3 = np.arange(60) % 3
    c7 = np.array([1.0, 1, 2, 2, 3, 3, 4])
    np.testing.assert_array_equal(
        deploy_choices(noisy, c7, b3, [2.0, 4.0]),
        cross_fit(noisy, c7, b3, np.arange(60) % 2, [2.0, 4.0]).deploy,
    )
    with pytest.raises(ValueError):
        deploy_choices(acc, cost, bins, [2.0], rule="worst")
    # The K-fold estimate applies the same rule in every fold: mostly option 0 (a fold that holds
    # out some of option 1's losses sees a clear gain and takes option 1), never the worse option 2.
    ids = [f"p{i:03d}" for i in range(n)]
    est = kfold_estimate(
        acc,
        cost,
        bins,
        kfold_folds(ids, bins, 5, 2, 0),
        [2.0],
        deploy=one_se,
        n_boot=50,
        rule="one-se",
    )
    assert est.ci_method == "bootstrap-fixed" and 0.6 <= est.agreement[0, 0] < 1.0
    assert abs(est.accuracy[0, 0] - base.mean()) < 0.01


def test_make_plan_with_the_one_se_rule():
    profile, problems = _profile()
    plan = make_plan(
        profile, problems, PlanOptions(n_boot=50, select_rule="one-se", expect_folds=4)
    )
    assert plan.summary["select_rule"] == "one-se"
    whole = plan.selection[plan.selection["fold"] == -1].set_index(["budget", "bin"])
    for _, c in plan.choices.iterrows():
        assert (
            whole.loc[(c["budget"], c["bin"]), "config"] == c["config"]
        )  # fold -1 = the deployed option
    at8 = plan.choices[plan.choices["budget"] == 8].set_index("bin")
    assert at8.loc[2, "strategy"] == "beam"  # a clear gain is kept
    assert at8.loc[2, "expected_accuracy"] == pytest.approx(0.6)
    with pytest.raises(ValueError):
        PlanOptions(select_rule="worst")


def test_bootstrap_corrected_estimate_removes_part_of_the_winners_curse():
    """All 40 options tie at 0.5: the in-sample accuracy of the winner is inflated by the maximum;
    the bootstrap correction removes much of that (it under-corrects a little on exact ties)."""
    n = 120
    err_in, err_bc = [], []
    for s in range(20):
        acc = _truth_world(s, n)[0][:, [i for i in range(40) if i != 20]]  # drop the good option
        bins = np.zeros(n, dtype=np.int64)
        cost = np.ones(acc.shape[1])
        dep = deploy_choices(acc, cost, bins, [1.0])
        bc = bootstrap_corrected_estimate(
            acc, cost, bins, [1.0], dep, n_boot=200, rng=np.random.default_rng(s)
        )
        assert bc.ci_lo[0, 0] <= bc.accuracy[0, 0] <= bc.ci_hi[0, 0]
        assert bc.ci_method == "bootstrap-corrected" and 0 < bc.agreement[0, 0] <= 1
        err_in.append(acc[:, dep[0, 0]].mean() - 0.5)
        err_bc.append(bc.accuracy[0, 0] - 0.5)
    assert np.mean(err_in) > 0.04
    assert abs(np.mean(err_bc)) < np.mean(err_in) / 2
    profile, problems = _profile()
    plan = make_plan(
        profile, problems, PlanOptions(n_boot=50, expect_method="bootstrap", select_rule="best")
    )
    assert plan.summary["expected_accuracy"]["method"] == "bootstrap-corrected"
    at8 = plan.choices[plan.choices["budget"] == 8].set_index("bin")
    assert at8.loc[2, "expected_accuracy"] == pytest.approx(0.6)  # noiseless: no optimism
    with pytest.raises(ValueError):
        PlanOptions(expect_method="bootstrap", select_rule="one-se")
    with pytest.raises(ValueError):
        PlanOptions(expect_method="magic")

"""DifficultyPredictor (planner.estimate.difficulty) and probe features (planner.features)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from policy_data import make_samples
from scipy.stats import spearmanr
from sklearn.utils.estimator_checks import parametrize_with_checks

from planner.errors import PlannerError
from planner.estimate.difficulty import (
    DifficultyPredictor,
    add_predicted_bins,
    build_problems,
    cross_fit_predicted_bins,
    predictor_folds,
)
from planner.estimate.probes import probe_cost, probe_features
from planner.features import (
    FEATURES,
    agreement,
    feature_columns,
    features_from_probes,
    linear_proba,
)

# The ordinal model assumes the classes lie in order along one direction; scikit-learn's generic
# training check uses three unordered blobs, which no single-index model can separate.
_EXPECTED_FAILS = {
    "check_classifiers_train": "ordinal model: classes must be ordered along one latent direction"
}


@parametrize_with_checks(
    [DifficultyPredictor(model="ordinal"), DifficultyPredictor(model="multinomial")],
    expected_failed_checks=lambda est: _EXPECTED_FAILS if est.model == "ordinal" else {},
)
def test_sklearn_conformance(estimator, check) -> None:
    check(estimator)


@pytest.fixture(scope="module")
def synth() -> tuple[pd.DataFrame, pd.DataFrame]:
    samples = make_samples(300, seed=5, beam=False)
    return samples, build_problems(samples, seed=0)


def test_agreement_counts_the_most_common_answer() -> None:
    a = np.array(
        [["a", "a", "b", None], [None, None, None, None], ["1", "1", "1", "1"]], dtype=object
    )
    assert agreement(a).tolist() == [0.5, 0.25, 1.0]


def test_features_from_probes_values_and_errors() -> None:
    s = np.array([[0.2, 0.4, 0.6, 0.8]])
    x = features_from_probes(
        s, np.array([["x", "x", "y", "x"]], dtype=object), np.array([[10, 20, 30, 40]])
    )
    assert x.shape == (1, len(FEATURES))
    np.testing.assert_allclose(x[0], [0.5, 0.8, 0.2, np.std([0.2, 0.4, 0.6, 0.8]), 0.75, 25.0])
    assert features_from_probes(s, names=("score_mean",)).tolist() == [[0.5]]
    with pytest.raises(PlannerError, match="answers"):
        features_from_probes(s)
    with pytest.raises(PlannerError, match="NaN"):
        features_from_probes(np.array([[0.1, np.nan]]), names=("score_mean",))
    with pytest.raises(PlannerError, match="unknown feature"):
        features_from_probes(s, names=("nope",))


def test_probe_features_use_the_first_k_of_run_0(synth) -> None:
    samples, _ = synth
    feats = probe_features(samples, k=4)
    assert list(feats.columns) == ["problem_id", *feature_columns()]
    pid = feats["problem_id"].iloc[7]
    first = samples[(samples.problem_id == pid) & (samples.position < 4)]
    assert feats["feat_score_mean"].iloc[7] == pytest.approx(first["score"].mean())
    assert feats["feat_gen_tokens"].iloc[7] == pytest.approx(first["gen_tokens"].mean())
    cost = probe_cost(samples, 4).set_index("problem_id")
    assert cost.loc[pid, "probe_flops"] == pytest.approx(
        (first["gen_flops"] + first["verifier_flops"]).sum()
    )
    with pytest.raises(PlannerError, match="needs 17"):
        probe_features(samples, k=17)
    with pytest.raises(PlannerError, match="not in the samples"):
        probe_features(samples, k=2, verifier="other")


def test_predictor_ranks_difficulty(synth) -> None:
    samples, problems = synth
    pb = add_predicted_bins(problems, samples, 4)
    exact = (pb["predicted_bin"].astype(int) == pb["oracle_bin"]).mean()
    near = ((pb["predicted_bin"].astype(int) - pb["oracle_bin"]).abs() <= 1).mean()
    assert exact > 0.5 and near > 0.95
    x = pb[feature_columns()].to_numpy()
    est = DifficultyPredictor().fit(x, pb["oracle_bin"].to_numpy())
    rho = spearmanr(est.latent(x), pb["pass1"]).statistic
    assert rho < -0.85  # harder (higher latent) means lower pass@1


def test_cross_fit_never_uses_a_problems_own_label(synth) -> None:
    samples, problems = synth
    x = probe_features(samples, 4)[feature_columns()]
    bins = problems["oracle_bin"].to_numpy()
    folds = predictor_folds(problems["problem_id"].tolist(), bins, 5, seed=0)
    base = cross_fit_predicted_bins(x, bins, folds)
    # Scrambling the labels of fold 0 cannot change fold 0's predictions, only the others'.
    scrambled = bins.copy()
    scrambled[folds == 0] = np.random.default_rng(0).permutation(scrambled[folds == 0])[::-1]
    again = cross_fit_predicted_bins(x, scrambled, folds)
    np.testing.assert_array_equal(base[folds == 0], again[folds == 0])
    assert (base[folds != 0] != again[folds != 0]).any()


def test_predictor_folds_are_balanced_and_seeded() -> None:
    ids = [f"q{i}" for i in range(53)]
    bins = np.repeat([1, 2, 3, 4, 5], [11, 11, 11, 10, 10])
    f = predictor_folds(ids, bins, 10, seed=3)
    assert np.bincount(f).max() - np.bincount(f).min() <= 1
    np.testing.assert_array_equal(f, predictor_folds(ids, bins, 10, seed=3))
    assert not np.array_equal(f, predictor_folds(ids, bins, 10, seed=4))


@pytest.mark.parametrize("model", ["ordinal", "multinomial"])
def test_export_matches_predict_proba(synth, model: str) -> None:
    samples, problems = synth
    x = probe_features(samples, 4)[feature_columns()].to_numpy()
    est = DifficultyPredictor(model=model, random_state=0).fit(x, problems["oracle_bin"].to_numpy())
    d = est.to_dict(FEATURES)
    z = (x - np.array(d["mean"])) / np.array(d["scale"])
    p = linear_proba(d["model"], z, np.array(d["coef"]), np.array(d["intercept"]))
    np.testing.assert_allclose(p, est.predict_proba(x), atol=1e-12)
    assert d["classes"] == [1, 2, 3, 4, 5]
    again = (
        DifficultyPredictor(model=model, random_state=0)
        .fit(x, problems["oracle_bin"].to_numpy())
        .to_dict(FEATURES)
    )
    assert again == d
    with pytest.raises(PlannerError, match="feature names"):
        est.to_dict(FEATURES[:2])


def test_constant_feature_and_single_class() -> None:
    x = np.column_stack([np.linspace(0, 1, 20), np.zeros(20)])
    y = np.where(x[:, 0] > 0.5, 2, 1)
    est = DifficultyPredictor().fit(x, y)
    assert est.scale_[1] == 1.0 and (est.predict(x) == y).mean() > 0.9
    one = DifficultyPredictor().fit(x, np.full(20, 3))
    assert set(one.predict(x)) == {3}
    with pytest.raises(ValueError, match="model"):
        DifficultyPredictor(model="forest").fit(x, y)

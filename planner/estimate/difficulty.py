"""Difficulty: oracle bins from each problem's own pool, or from a given label such as MATH level.

The paper's oracle difficulty is the model's pass@1 on the problem, estimated from its pool and cut
into quantile bins. Bin 1 is the easiest (highest pass@1).

At serving time pass@1 is unknown, so `DifficultyPredictor` predicts the oracle bin from probe
features (`planner.estimate.probes`); `cross_fit_predicted_bins` gives every problem a bin
predicted by a model fitted without it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from planner.errors import PlannerError
from planner.estimate.probes import probe_features
from planner.features import FEATURES, PREDICTOR_MODELS, linear_proba, sigmoid
from planner.strategies import POOL, strategy_kind


def _pass1_from_samples(samples: pd.DataFrame) -> pd.Series:
    """Pass@1 per problem: the fraction of correct candidates in its independent pools.

    Only pool strategies count (search and revision outputs are not independent draws). A pool
    scored by several verifiers has one row per candidate and verifier, so candidates are
    de-duplicated on (strategy, config, run, position) first.
    """
    kinds = samples["strategy"].map(strategy_kind)
    pool = samples[kinds == POOL]
    if pool.empty:
        raise PlannerError("no independent-sample pool (strategy 'sample') to estimate pass@1 from")
    cand = pool.drop_duplicates(["problem_id", "strategy", "config", "run", "position"])
    return cand.groupby("problem_id", sort=True)["correct"].mean().astype(float)


def quantile_bins(pass1: pd.Series, n_bins: int = 5) -> pd.Series:
    """Cut pass@1 into `n_bins` quantile bins, 1 = easiest.

    Ties are kept together and never split by an arbitrary order: a group of equal pass@1 gets the
    bin where the group starts (its best rank, highest pass@1 first), so equal pass@1 always gives
    the same bin and the result does not depend on problem ids or row order. With heavy ties (a
    small pool) a bin may come out larger, smaller or empty, which says honestly that the pool
    cannot separate those problems.
    """
    if n_bins < 1:
        raise PlannerError(f"--bins must be >= 1, got {n_bins}")
    if pass1.isna().any():
        bad = pass1.index[pass1.isna()][0]
        raise PlannerError(f"pass@1 is missing for problem {bad!r}")
    n = len(pass1)
    if n == 0:
        return pd.Series([], dtype=np.int64, index=pass1.index)
    rank = (-pass1).rank(method="min").to_numpy()  # 1..n, easy first
    bins = np.floor((rank - 1) / n * n_bins).astype(np.int64) + 1
    return pd.Series(np.clip(bins, 1, n_bins), index=pass1.index, name="oracle_bin")


def _level_key(label: str) -> tuple[int, float, str]:
    m = re.search(r"-?\d+(\.\d+)?", label)
    return (0, float(m.group()), label) if m else (1, 0.0, label)


def label_bins(labels: pd.Series) -> pd.Series:
    """Bins from a given label column (e.g. MATH 'Level 1'..'Level 5'): sorted by the number in the
    label, then by text; bin 1 is the first (lowest level)."""
    if labels.isna().any():
        bad = labels.index[labels.isna()][0]
        raise PlannerError(f"difficulty label is missing for problem {bad!r}")
    order = sorted({str(v) for v in labels}, key=_level_key)
    mapping = {lab: i + 1 for i, lab in enumerate(order)}
    return labels.astype(str).map(mapping).astype(np.int64)


def assign_folds(problem_ids: Sequence[str], bins: Sequence[int], seed: int = 0) -> np.ndarray:
    """Two folds, balanced within each bin, from a seeded permutation of the sorted ids.

    The paper selects on one half of each bin and evaluates on the other; balancing within the
    bin keeps both halves the same size even for small bins.
    """
    ids = np.asarray(problem_ids, dtype=object)
    b = np.asarray(bins)
    folds = np.zeros(len(ids), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for value in sorted(set(b.tolist())):
        idx = np.flatnonzero(b == value)
        idx = idx[np.argsort(ids[idx], kind="stable")]
        perm = idx[rng.permutation(len(idx))]
        folds[perm] = np.arange(len(perm)) % 2
    return folds


def build_problems(
    samples: pd.DataFrame,
    *,
    n_bins: int = 5,
    seed: int = 0,
    levels: pd.Series | None = None,
    bin_by: str = "pass1",
) -> pd.DataFrame:
    """The problems table: pass@1, oracle bin and seeded folds for every problem in `samples`.

    `bin_by="pass1"` (the paper) cuts pass@1 into quantile bins; `bin_by="level"` uses `levels`.
    """
    ids = sorted(samples["problem_id"].unique())
    pass1 = _pass1_from_samples(samples).reindex(ids)
    level = None if levels is None else levels.reindex(ids)
    if bin_by == "pass1":
        bins = quantile_bins(pass1, n_bins) if not pass1.isna().any() else None
        if bins is None:
            missing = pass1.index[pass1.isna()][0]
            raise PlannerError(f"problem {missing!r} has no independent-sample pool for pass@1")
    elif bin_by == "level":
        if level is None:
            raise PlannerError("--bin-by level needs a level column (import with --level-field)")
        bins = label_bins(level)
    else:
        raise PlannerError(f"unknown binning {bin_by!r}: use pass1 or level")
    folds = assign_folds(ids, bins.to_numpy(), seed)
    return pd.DataFrame(
        {
            "problem_id": ids,
            "fold": folds,
            "pass1": pass1.to_numpy(dtype=float),
            "oracle_bin": bins.to_numpy(dtype=np.int64),
            "predicted_bin": pd.array([None] * len(ids), dtype="Int64"),
            "level": None if level is None else level.to_numpy(dtype=object),
        }
    )


# ------------------------------------------------------------------------------------------------
# The fitted predictor


def _ordinal_nll(
    params: np.ndarray, z: np.ndarray, y: np.ndarray, n_classes: int, alpha: float
) -> tuple[float, np.ndarray]:
    """Negative log-likelihood (+ L2 on the weights) of the cumulative-logit model and its gradient.

    params = [w (d), t0, u_1..u_{K-2}]: thresholds theta = cumsum([t0, exp(u)...]) stay increasing
    without constraints.
    """
    d = z.shape[1]
    w, t0, u = params[:d], params[d], params[d + 1 :]
    steps = np.exp(u)
    theta = np.cumsum(np.concatenate([[t0], steps]))
    eta = z @ w
    big = 1e6
    th_ext = np.concatenate([[-big], theta, [big]])
    a_hi = th_ext[y + 1] - eta
    a_lo = th_ext[y] - eta
    f_hi, f_lo = sigmoid(a_hi), sigmoid(a_lo)
    p = np.maximum(f_hi - f_lo, 1e-300)
    d_hi, d_lo = f_hi * (1 - f_hi), f_lo * (1 - f_lo)
    nll = -np.log(p).sum() + 0.5 * alpha * (w @ w)
    g_eta = (d_hi - d_lo) / p  # d(-log p)/d eta
    grad_w = z.T @ g_eta + alpha * w
    # d(-log p)/d theta_j: -d_hi/p where j == y, +d_lo/p where j == y - 1.
    g_theta = np.zeros(n_classes - 1)
    hi_ok = y < n_classes - 1
    np.add.at(g_theta, y[hi_ok], -d_hi[hi_ok] / p[hi_ok])
    lo_ok = y > 0
    np.add.at(g_theta, y[lo_ok] - 1, d_lo[lo_ok] / p[lo_ok])
    grad_t0 = g_theta.sum()
    # theta_j depends on u_m (m = 1..K-2) for j >= m.
    grad_u = np.array([g_theta[m:].sum() * steps[m - 1] for m in range(1, n_classes - 1)])
    return float(nll), np.concatenate([grad_w, [grad_t0], grad_u])


class DifficultyPredictor(ClassifierMixin, BaseEstimator):
    """Predict a problem's difficulty bin from probe features (scikit-learn estimator).

    Features are standardised (mean/scale learned in `fit`), then
    - `model="ordinal"` (default): a cumulative-logit (proportional-odds) model, one latent
      difficulty `z·coef` and K-1 increasing thresholds. It uses the order of the bins, has
      d + K - 1 parameters (few enough for bins of 20 problems) and gives calibrated bin
      probabilities;
    - `model="multinomial"`: softmax logistic regression (scikit-learn's), K·(d+1) parameters.
    Both are penalised by L2 with strength 1/C and export to plain numbers (`to_dict`).

    Classes are the sorted labels (difficulty bins, 1 = easiest); with one class every
    prediction is that class.
    """

    def __init__(
        self,
        model: str = "ordinal",
        C: float = 1.0,
        max_iter: int = 500,
        random_state: int | None = None,
    ) -> None:
        self.model = model
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> DifficultyPredictor:
        if self.model not in PREDICTOR_MODELS:
            raise ValueError(f"model must be one of {PREDICTOR_MODELS}, got {self.model!r}")
        if not (isinstance(self.C, int | float) and self.C > 0):
            raise ValueError(f"C must be > 0, got {self.C!r}")
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        rng = check_random_state(self.random_state)
        self.classes_, yi = np.unique(y, return_inverse=True)
        k = len(self.classes_)
        self.mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        # A constant feature (e.g. tokens never recorded) carries no information: scale 1, not 0.
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        z = (X - self.mean_) / self.scale_
        d = X.shape[1]
        if k == 1:
            self.coef_ = np.zeros(d) if self.model == "ordinal" else np.zeros((1, d))
            self.intercept_ = np.zeros(0) if self.model == "ordinal" else np.zeros(1)
            self.n_iter_ = 0
            return self
        if self.model == "ordinal":
            prior = np.cumsum(np.bincount(yi, minlength=k))[:-1] / len(yi)
            prior = np.clip(prior, 1e-3, 1 - 1e-3)
            theta0 = np.log(prior / (1 - prior))
            steps0 = np.maximum(np.diff(theta0), 1e-3)
            x0 = np.concatenate([np.zeros(d), [theta0[0]], np.log(steps0)])
            res = minimize(
                _ordinal_nll,
                x0,
                args=(z, yi, k, 1.0 / self.C),
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": self.max_iter},
            )
            w = res.x[:d]
            theta = np.cumsum(np.concatenate([[res.x[d]], np.exp(res.x[d + 1 :])]))
            self.coef_, self.intercept_, self.n_iter_ = w, theta, int(res.nit)
        else:
            lr = LogisticRegression(
                C=self.C, max_iter=self.max_iter, random_state=rng.randint(np.iinfo(np.int32).max)
            )
            lr.fit(z, yi)
            coef, intercept = lr.coef_, lr.intercept_
            if k == 2:  # scikit-learn stores one row for two classes; the softmax form needs two.
                coef = np.vstack([np.zeros_like(coef[0]), coef[0]])
                intercept = np.array([0.0, intercept[0]])
            self.coef_, self.intercept_, self.n_iter_ = coef, intercept, int(np.max(lr.n_iter_))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        if len(self.classes_) == 1:
            return np.ones((X.shape[0], 1))
        return linear_proba(self.model, (X - self.mean_) / self.scale_, self.coef_, self.intercept_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def latent(self, X: np.ndarray) -> np.ndarray:
        """A continuous difficulty score (higher = harder): the expected class index."""
        p = self.predict_proba(X)
        return p @ np.arange(p.shape[1], dtype=float)

    def to_dict(self, feature_names: Sequence[str]) -> dict:
        """The fitted parameters as plain JSON numbers (the policy file's `predictor`)."""
        check_is_fitted(self)
        if len(feature_names) != self.n_features_in_:
            raise PlannerError(
                f"{len(feature_names)} feature names for {self.n_features_in_} features"
            )
        return {
            "model": self.model,
            "C": float(self.C),
            "features": [str(f) for f in feature_names],
            "classes": [int(c) for c in self.classes_],
            "mean": [float(v) for v in self.mean_],
            "scale": [float(v) for v in self.scale_],
            "coef": np.asarray(self.coef_, float).tolist(),
            "intercept": [float(v) for v in self.intercept_],
        }


def fit_predictor(
    features: pd.DataFrame, bins: np.ndarray, model: str = "ordinal", C: float = 1.0, seed: int = 0
) -> DifficultyPredictor:
    return DifficultyPredictor(model=model, C=C, random_state=seed).fit(
        features.to_numpy(float), np.asarray(bins)
    )


def predictor_folds(
    problem_ids: Sequence[str], bins: Sequence[int], n_folds: int, seed: int = 0
) -> np.ndarray:
    """`n_folds` folds balanced within each bin (as `assign_folds`, which is the two-fold case)."""
    if n_folds < 2:
        raise PlannerError(f"cross-fitting needs >= 2 folds, got {n_folds}")
    ids = np.asarray(problem_ids, dtype=object)
    b = np.asarray(bins)
    folds = np.zeros(len(ids), dtype=np.int64)
    rng = np.random.default_rng([seed, n_folds])
    offset = 0
    for value in sorted(set(b.tolist())):
        idx = np.flatnonzero(b == value)
        idx = idx[np.argsort(ids[idx], kind="stable")]
        perm = idx[rng.permutation(len(idx))]
        # Continue the round-robin across bins so small bins do not all land in fold 0.
        folds[perm] = (np.arange(len(perm)) + offset) % n_folds
        offset += len(perm)
    return folds


def cross_fit_predicted_bins(
    features: pd.DataFrame,
    bins: np.ndarray,
    folds: np.ndarray,
    model: str = "ordinal",
    C: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Bins predicted for each fold by a predictor fitted on the other folds (never on itself)."""
    x = features.to_numpy(float)
    b = np.asarray(bins)
    f = np.asarray(folds)
    out = np.zeros(len(b), dtype=np.int64)
    for fold in sorted(set(f.tolist())):
        test, train = f == fold, f != fold
        if not test.any():
            continue
        if not train.any():
            raise PlannerError("cross-fitted prediction needs problems in both folds")
        out[test] = (
            DifficultyPredictor(model=model, C=C, random_state=seed)
            .fit(x[train], b[train])
            .predict(x[test])
        )
    return out


PREDICTOR_FOLDS = 10


def add_predicted_bins(
    problems: pd.DataFrame,
    samples: pd.DataFrame,
    k: int,
    verifier: str | None = None,
    model: str = "ordinal",
    C: float = 1.0,
    seed: int = 0,
    n_folds: int = PREDICTOR_FOLDS,
    features: Sequence[str] | None = None,
) -> pd.DataFrame:
    """problems with the `feat_*` probe columns and a cross-fitted `predicted_bin`.

    The bins are cross-fitted over `n_folds` folds (stratified by oracle bin, seeded), not the
    plan's two: each predictor then sees 90% of the problems, close to the final predictor that
    the policy file carries (fitted on all), so the plan's per-bin figures describe bins drawn
    the way the deployed predictor draws them.

    `features` (default: all of `planner.features.FEATURES`) are the probe features to use; a
    feature that is constant over the problems (e.g. generated tokens of a dump that recorded
    none) carries no information and is dropped, so the policy does not ask a router for it.
    """
    names = list(features or FEATURES)
    feats = probe_features(samples, k, verifier, names)
    const = [c for c in feats.columns[1:] if feats[c].nunique() <= 1]
    if len(const) < len(names):
        feats = feats.drop(columns=const)
    prob = problems.drop(columns=[c for c in problems.columns if str(c).startswith("feat_")])
    merged = prob.merge(feats, on="problem_id", how="left", validate="one_to_one")
    cols = [c for c in feats.columns if c != "problem_id"]
    if merged[cols].isna().any().any():
        missing = merged.loc[merged[cols].isna().any(axis=1), "problem_id"].iloc[0]
        raise PlannerError(f"problem {missing!r} has no probe samples")
    if merged["oracle_bin"].isna().any():
        raise PlannerError("predicted bins need every problem's oracle bin")
    merged["predicted_bin"] = pd.array(
        cross_fit_predicted_bins(
            merged[cols],
            merged["oracle_bin"].to_numpy(np.int64),
            predictor_folds(
                merged["problem_id"].tolist(), merged["oracle_bin"].to_numpy(), n_folds, seed
            ),
            model,
            C,
            seed,
        ),
        dtype="Int64",
    )
    return merged

"""Probe features: what a router can see about a prompt's difficulty after k cheap samples.

At serving time the true pass@1 is unknown. The paper bins prompts by the averaged verifier score
of a few samples; we keep that and add what the same k probes give for free. For each problem the
probes are the first k candidates (positions 0..k-1 of run 0) of its independent-sample pool
(strategy `sample`), scored by one verifier:

- `feat_score_mean`, `feat_score_max`, `feat_score_min`, `feat_score_std` (spread: population
  standard deviation) of the verifier's final scores;
- `feat_agreement`: the share of probes that give the most common answer (no answer counts as a
  distinct answer of its own, so k empty probes agree 1/k);
- `feat_gen_tokens`: mean generated tokens of the probes (0 when the dump did not record them).

`features_from_probes` is the single implementation: the planner computes the features of a
samples table with it (`planner.estimate.probes`), and `planner.policy.runtime` computes the
features of a live request with the same arithmetic, so training and serving cannot drift apart.
This module needs numpy only, so that a router loading a policy never imports pandas.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from planner.errors import PlannerError

FEATURES: tuple[str, ...] = (
    "score_mean",
    "score_max",
    "score_min",
    "score_std",
    "agreement",
    "gen_tokens",
)
FEATURE_PREFIX = "feat_"


def feature_columns(names: Sequence[str] = FEATURES) -> list[str]:
    return [FEATURE_PREFIX + n for n in names]


def agreement(answers: np.ndarray) -> np.ndarray:
    """Share of each row's probes that give the row's most common answer.

    answers: [n, k] array of hashable answers; None (no answer) never agrees with anything.
    """
    a = np.asarray(answers, dtype=object)
    if a.ndim != 2:
        raise PlannerError(f"probe answers must be a 2-D array [requests, k], got shape {a.shape}")
    n, k = a.shape
    if k == 0:
        raise PlannerError("probe answers: k must be >= 1")
    if n <= 256:
        # A few requests (the single-call path): plain counting beats any vectorised set-up.
        out = np.empty(n)
        for i in range(n):
            counts: dict[str, int] = {}
            for v in a[i]:
                if v is None or (isinstance(v, float) and v != v):
                    continue
                key = str(v)
                counts[key] = counts.get(key, 0) + 1
            out[i] = (max(counts.values()) if counts else 1) / k
        return out
    # Many requests: answer codes, then pairwise equality among the k probes (k is small).
    ids: dict[str, int] = {}

    def code(v: object) -> int:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return -1
        return ids.setdefault(str(v), len(ids))

    codes = np.fromiter(map(code, a.ravel()), dtype=np.int64, count=n * k).reshape(n, k)
    valid = codes >= 0
    # Count of each probe's answer in its row.
    same = (codes[:, :, None] == codes[:, None, :]) & valid[:, :, None]
    top = same.sum(axis=2).max(axis=1)
    return np.maximum(top, 1) / k


def features_from_probes(
    scores: np.ndarray,
    answers: np.ndarray | None = None,
    gen_tokens: np.ndarray | None = None,
    names: Sequence[str] = FEATURES,
) -> np.ndarray:
    """Feature matrix [n, len(names)] from probe arrays [n, k].

    Only the inputs that `names` needs are required: a scores-only feature set needs no answers
    and no token counts.
    """
    s = np.asarray(scores, dtype=float)
    if s.ndim == 1:
        s = s[None, :]
    if s.ndim != 2 or s.shape[1] == 0:
        raise PlannerError(
            f"probe scores must be an array [requests, k] with k >= 1, got shape {s.shape}"
        )
    if not np.isfinite(s).all():
        raise PlannerError("probe scores contain NaN or infinite values")
    cols = []
    for name in names:
        if name == "score_mean":
            cols.append(s.mean(axis=1))
        elif name == "score_max":
            cols.append(s.max(axis=1))
        elif name == "score_min":
            cols.append(s.min(axis=1))
        elif name == "score_std":
            cols.append(s.std(axis=1))
        elif name == "agreement":
            if answers is None:
                raise PlannerError("feature 'agreement' needs the probes' answers")
            a = np.asarray(answers, dtype=object)
            if a.ndim == 1:
                a = a[None, :]
            if a.shape != s.shape:
                raise PlannerError(f"probe answers have shape {a.shape}, scores {s.shape}")
            cols.append(agreement(a))
        elif name == "gen_tokens":
            if gen_tokens is None:
                raise PlannerError("feature 'gen_tokens' needs the probes' generated token counts")
            t = np.asarray(gen_tokens, dtype=float)
            if t.ndim == 1:
                t = t[None, :]
            if t.shape != s.shape:
                raise PlannerError(f"probe token counts have shape {t.shape}, scores {s.shape}")
            if not np.isfinite(t).all() or (t < 0).any():
                raise PlannerError("probe token counts must be finite and >= 0")
            cols.append(t.mean(axis=1))
        else:
            raise PlannerError(f"unknown feature {name!r} (known: {', '.join(FEATURES)})")
    return np.column_stack(cols) if cols else np.empty((s.shape[0], 0))


# ------------------------------------------------------------------------------------------------
# The predictor's arithmetic, shared by DifficultyPredictor (planner.estimate.difficulty) and the
# numpy-only runtime (planner.policy.runtime), so a loaded policy decides exactly as the fitted
# estimator predicts.

PREDICTOR_MODELS = ("ordinal", "multinomial")


def sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x, dtype=float)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def linear_proba(model: str, z: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Class probabilities [n, K] from standardised features z [n, d].

    ordinal (cumulative logit): coef [d] gives the latent difficulty eta = z·coef, intercept [K-1]
    the increasing thresholds; P(class <= j) = sigmoid(theta_j - eta).
    multinomial (softmax): coef [K, d], intercept [K].
    """
    if model == "ordinal":
        eta = z @ coef
        n, k1 = z.shape[0], intercept.shape[0]
        cum = np.empty((n, k1 + 2))
        cum[:, 0] = 0.0
        cum[:, -1] = 1.0
        if k1:
            cum[:, 1:-1] = sigmoid(intercept[None, :] - eta[:, None])
        return np.maximum(np.diff(cum, axis=1), 0.0)
    if model == "multinomial":
        logits = z @ coef.T + intercept[None, :]
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)
    raise PlannerError(f"unknown predictor model {model!r} (known: {', '.join(PREDICTOR_MODELS)})")

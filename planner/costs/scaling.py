"""Exchange formulas: pretraining and inference FLOPs, the budget multiplier X, the scaling law.

The pure arithmetic of the pretraining vs inference exchange (Snell et al. 2024, section 7):
numbers in, numbers out, no profile. `planner.costs.exchange` applies it per difficulty bin of
a profile and `planner.costs.whatif` along deployment loads; it is kept apart from that
comparison so both share one statement of each formula (with its units and reference) and so the
formulas, and the small model's size they need (`small_model_size`), read and test without tables.

FLOPs: pretraining 6·N·D_pretrain, inference 2·N·D_inference (Kaplan et al. 2020). A model M
times larger trained on the same data costs M times both. With R = D_inference / D_pretrain, the
small model may spend

    X = M + 3·(M − 1) / R

times its own inference FLOPs for the same total (6·N·D_p + 2·N·X·D_i = 6·M·N·D_p + 2·M·N·D_i).

Loss → accuracy model (extrapolation): each problem's pass@1 p is moved on the logit scale by a
slope s times the drop in the scaling-law loss:

    logit p_large = logit p_small + s · (L(N, D) − L(M·N, D)),   L(N, D) = E + A/N^α + B/D^β.

s = 7.4 per nat is fitted to one pair, Llama-3.1-8B → 70B on MATH (0-shot CoT, 51.9 → 68.0%,
Llama 3.1 model card) under the Chinchilla constants and 15T tokens; it then predicts 73.6% for
405B (reported 73.8%). Weaknesses: one slope for every bin and task; a problem the small model
never solves (p ≈ 0) stays near 0, so the hardest bin's gain is understated, while models sharing
training data (the paper's setting) make the logit shift an upper bound on easy bins. Treat
extrapolated winners near the confidence bounds as undecided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from planner.costs.modelspec import ModelSpec
from planner.errors import PlannerError


@dataclass(frozen=True)
class ScalingLaw:
    """L(N, D) = E + A / N^α + B / D^β (nats per token)."""

    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    source: str

    def loss(self, n_params: float, tokens: float) -> float:
        check_positive("parameter count", n_params)
        check_positive("pretraining tokens", tokens)
        return self.E + self.A / n_params**self.alpha + self.B / tokens**self.beta


SCALING_LAWS: dict[str, ScalingLaw] = {
    "chinchilla": ScalingLaw(
        "chinchilla", 1.69, 406.4, 410.7, 0.34, 0.28, "Hoffmann et al. 2022, approach 3"
    ),
    "besiroglu": ScalingLaw(
        "besiroglu",
        1.8172,
        482.01,
        2085.43,
        0.3478,
        0.3658,
        "Besiroglu et al. 2024, Chinchilla scaling: a replication attempt",
    ),
}
LOGIT_SLOPE_PER_NAT = 7.4
_PROB_CLIP = 1e-3
# Model sizes the Chinchilla fits were made on (Hoffmann et al. 2022: about 70M to 16B parameters).
_FITTED_PARAMS = (7e7, 1.6e10)
# Metadata keys that may hold a profile's model parameter count.
_PARAM_KEYS = ("model_params", "n_params", "param_count", "parameter_count", "num_parameters")


def check_positive(what: str, value: float) -> float:
    if (
        value is None
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise PlannerError(f"{what} must be a positive number, got {value!r}")
    return float(value)


def pretrain_flops(n_params: float, tokens: float) -> float:
    """Pretraining FLOPs = 6·N·D (forward + backward; Kaplan et al. 2020). FLOPs."""
    return (
        6.0
        * check_positive("parameter count", n_params)
        * check_positive("pretraining tokens", tokens)
    )


def inference_flops(n_params: float, tokens: float) -> float:
    """Inference FLOPs = 2·N·D_inference (forward only; Kaplan et al. 2020). FLOPs."""
    if tokens < 0:
        raise PlannerError(f"inference tokens must be >= 0, got {tokens!r}")
    return 2.0 * check_positive("parameter count", n_params) * tokens


def budget_multiplier(model_multiplier: float, ratio: float) -> float:
    """X = M + 3(M − 1)/R: how many times its inference FLOPs the small model may spend to match
    the total FLOPs of a model M times larger (Snell et al. 2024, section 7). Dimensionless.
    M=14: R=0.16 → 257.75, R=0.79 → 63.4, R=22 → 15.8."""
    m = check_positive("model multiplier M", model_multiplier)
    r = check_positive("R = D_inference / D_pretrain", ratio)
    if m < 1:
        raise PlannerError(f"model multiplier M must be >= 1 (the larger model), got {m:g}")
    return m + 3.0 * (m - 1.0) / r


def ratio_for(
    queries_per_day: float, days: float, tokens_per_query: float, pretrain_tokens: float
) -> float:
    """R = D_inference / D_pretrain with D_inference = queries/day · days · tokens/query."""
    check_positive("queries per day", queries_per_day)
    check_positive("deployment days", days)
    check_positive("tokens per query", tokens_per_query)
    return (
        queries_per_day
        * days
        * tokens_per_query
        / check_positive("pretraining tokens", pretrain_tokens)
    )


def extrapolate_pass1(
    p_small: np.ndarray,
    n_params: float,
    pretrain_tokens: float,
    multiplier: float,
    law: str = "chinchilla",
    slope: float = LOGIT_SLOPE_PER_NAT,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-problem pass@1 of a model `multiplier` times larger (same data), by the logit shift
    described in the module docstring. Returns the array and the losses used."""
    if law not in SCALING_LAWS:
        raise PlannerError(f"unknown scaling law {law!r}; choose one of {', '.join(SCALING_LAWS)}")
    sl = SCALING_LAWS[law]
    m = check_positive("model multiplier M", multiplier)
    l_small = sl.loss(n_params, pretrain_tokens)
    l_large = sl.loss(n_params * m, pretrain_tokens)
    p = np.clip(np.asarray(p_small, dtype=float), _PROB_CLIP, 1 - _PROB_CLIP)
    logit = np.log(p / (1 - p)) + slope * (l_small - l_large)
    info: dict[str, Any] = {
        "law": sl.name,
        "law_source": sl.source,
        "loss_small": l_small,
        "loss_large": l_large,
        "logit_slope_per_nat": slope,
    }
    lo, hi = _FITTED_PARAMS
    if n_params < lo / 10 or n_params * m > hi * 100:
        info["warning"] = (
            f"model sizes {n_params:.3g} -> {n_params * m:.3g} lie far outside the range the "
            f"law was fitted on ({lo:.0e}-{hi:.0e} parameters): treat the "
            "extrapolation as unreliable"
        )
    return 1.0 / (1.0 + np.exp(-logit)), info


def small_model_size(
    spec: ModelSpec | None,
    n_params: float | None,
    pretrain_tokens: float | None,
    metadata: dict[str, Any] | None = None,
) -> tuple[float | None, float | None]:
    """The small model's N and D_pretrain: the given values, else the model spec's, else (N only)
    a parameter count in the profile's metadata; None when unknown."""
    n = n_params or (spec.n_params if spec else None)
    if n is None and metadata:
        for k in _PARAM_KEYS:
            v = metadata.get(k)
            if isinstance(v, int | float) and v > 0:
                n = float(v)
                break
    d = pretrain_tokens or (spec.pretrain_tokens if spec and spec.pretrain_tokens else None)
    return n, d

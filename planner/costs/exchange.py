"""Pretraining vs inference exchange (Snell et al. 2024, section 7).

FLOPs: pretraining 6·N·D_pretrain, inference 2·N·D_inference (Kaplan et al. 2020). A model M
times larger trained on the same data costs M times both. With R = D_inference / D_pretrain, the
small model may spend

    X = M + 3·(M − 1) / R

times its own inference FLOPs for the same total (6·N·D_p + 2·N·X·D_i = 6·M·N·D_p + 2·M·N·D_i).
Per difficulty bin, the small model's best deployable test-time option within X times the FLOPs
of one generation is compared with the larger model's pass@1: by how many points, with a normal
confidence interval over problems (paired when both sides answered the same problems).

The larger model comes either from its own profile (pass@1 = the `sample` strategy's
`select=majority` rows at budget 1) or, labelled *extrapolated*, from a scaling law:

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
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from planner.costs.modelspec import ModelSpec
from planner.errors import PlannerError
from planner.optimize import BinnedProfile, require_bins
from planner.stats import normal_ci
from planner.tables import parse_config, read_profile


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
_FORMULA = "X = M + 3(M-1)/R"


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
            f"law was fitted on ({lo:.0e}-{hi:.0e} parameters): treat the extrapolation as unreliable"
        )
    return 1.0 / (1.0 + np.exp(-logit)), info


# ----------------------------------------------------------------------------------------------
# Per-problem pass@1 and per-bin comparison


def _is_base_row(strategy: str, config: str, budget: float) -> bool:
    """The row that stands for one plain generation: sample, select=majority, budget 1."""
    if strategy != "sample" or not math.isclose(float(budget), 1.0):
        return False
    try:
        return str(parse_config(config).get("select")) == "majority"
    except (ValueError, PlannerError):
        return False


def pass1_per_problem(profile: pd.DataFrame, source: str) -> pd.DataFrame:
    """problem_id, accuracy, flops, tokens, prompt_tokens of the budget-1 majority sample rows
    (averaged over verifiers/configs that tie at budget 1)."""
    mask = [
        _is_base_row(s, c, b)
        for s, c, b in zip(profile["strategy"], profile["config"], profile["budget"], strict=True)
    ]
    base = profile[np.array(mask, dtype=bool)]
    if base.empty:
        raise PlannerError(
            f"{source}: no pass@1 rows (strategy 'sample', select 'majority', budget 1) in the profile"
        )
    return (
        base.groupby("problem_id", sort=True)[["accuracy", "flops", "tokens", "prompt_tokens"]]
        .mean()
        .reset_index()
    )


def _winner(lo: float, hi: float) -> str:
    if lo > 0:
        return "test-time"
    if hi < 0:
        return "pretraining"
    return "tie"


def _best_test_time(
    bp: BinnedProfile, bin_id: int, allowed_flops: float | None, allowed_budget: float | None
) -> tuple[pd.Series, dict[str, Any], str] | None:
    """Per-problem accuracy of the small model's compute-optimal option in one bin within the
    allowance, cross-fitted over folds (choose on one fold, score on the other) when the bin has
    two folds, else chosen in-sample. Returns (acc per problem, chosen option, selection mode)."""
    opts = bp.options[bp.options["bin"] == bin_id]
    if allowed_flops is not None:
        opts = opts[opts["flops"] <= allowed_flops * (1 + 1e-9)]
    if allowed_budget is not None:
        opts = opts[opts["budget"] <= allowed_budget * (1 + 1e-9)]
    if opts.empty:
        return None
    rows = bp.rows[bp.rows["bin"] == bin_id]
    keys = set(zip(opts["strategy"], opts["config"], opts["budget"], strict=True))
    rows = rows[
        [k in keys for k in zip(rows["strategy"], rows["config"], rows["budget"], strict=True)]
    ]
    table = rows.pivot_table(
        index="problem_id",
        columns=["strategy", "config", "budget"],
        values="accuracy",
        aggfunc="mean",
        sort=True,
    )
    table = table.dropna(axis=1)  # an option must cover every problem of the bin
    if table.shape[1] == 0:
        return None
    # Deterministic ties: the cheaper option (by bin-mean FLOPs), then the key.
    flops = opts.set_index(["strategy", "config", "budget"])["flops"]
    cols = sorted(table.columns, key=lambda k: (float(flops.get(k, np.inf)), k))
    table = table[cols]
    full = table.mean(axis=0).to_numpy()
    chosen = cols[int(np.argmax(full))]
    folds = pd.Series(table.index.map(bp.folds), index=table.index)
    if folds.nunique() >= 2:
        acc = pd.Series(np.nan, index=table.index)
        for f in sorted(folds.unique()):
            train = table[folds != f]
            j = int(np.argmax(train.mean(axis=0).to_numpy()))
            acc[folds == f] = table.loc[folds == f].iloc[:, j]
        mode = "cross-fitted"
    else:
        acc = table[chosen]
        mode = "in-sample"
    option = {
        "strategy": chosen[0],
        "config": parse_config(chosen[1]),
        "budget": float(chosen[2]),
        "flops": float(flops.get(chosen, np.nan)),
    }
    return acc, option, mode


def compare_bins(
    bp: BinnedProfile, large: pd.Series, multiplier_x: float, base_flops: dict[int, float] | None
) -> dict[str, Any]:
    """Per bin and overall: the small model's best option within X·(FLOPs of one generation in the
    bin) against the larger model's per-problem pass@1 (`large`, indexed by problem_id)."""
    per_bin = []
    diffs_all: list[np.ndarray] = []
    for b in bp.bins:
        allowed_flops = multiplier_x * base_flops[b] if base_flops else None
        allowed_budget = None if base_flops else multiplier_x
        res = _best_test_time(bp, b, allowed_flops, allowed_budget)
        if res is None:
            per_bin.append(
                {
                    "bin": b,
                    "share": bp.weights[b],
                    "winner": "pretraining",
                    "note": "no test-time option fits the budget",
                }
            )
            continue
        acc, option, mode = res
        common = acc.index.intersection(large.index)
        if len(common) == 0:
            raise PlannerError(f"the larger model's profile has no problem of {bp.bin_column} {b}")
        d = acc.loc[common].to_numpy(float) - large.loc[common].to_numpy(float)
        diffs_all.append(d)
        mean, lo, hi = normal_ci(d)
        per_bin.append(
            {
                "bin": b,
                "share": bp.weights[b],
                "n": len(common),
                "test_time_accuracy": float(acc.loc[common].mean()),
                "larger_model_accuracy": float(large.loc[common].mean()),
                "difference_points": 100 * mean,
                "ci95_points": [100 * lo, 100 * hi],
                "winner": _winner(lo, hi),
                "option": option,
                "selection": mode,
                "allowed_flops_per_query": allowed_flops,
                "allowed_generations": allowed_budget,
            }
        )
    overall: dict[str, Any] = {"winner": "pretraining", "note": "no bin had a test-time option"}
    if diffs_all:
        d = np.concatenate(diffs_all)
        mean, lo, hi = normal_ci(d)
        overall = {
            "difference_points": 100 * mean,
            "ci95_points": [100 * lo, 100 * hi],
            "winner": _winner(lo, hi),
            "n": len(d),
        }
    return {"per_bin": per_bin, "overall": overall}


@dataclass(frozen=True)
class LargerModel:
    """The larger model's per-problem pass@1 and how it was obtained."""

    pass1: pd.Series
    extrapolated: bool
    info: dict[str, Any]
    flops_per_query: float | None = None


def larger_from_profile(profile: pd.DataFrame, source: str, bp: BinnedProfile) -> LargerModel:
    base = pass1_per_problem(profile, source)
    s = base.set_index("problem_id")["accuracy"]
    binned = bp.rows.drop_duplicates("problem_id").set_index("problem_id")["bin"]
    have = sorted({int(binned[p]) for p in s.index if p in binned.index})
    missing = [b for b in bp.bins if b not in have]
    if missing:
        raise PlannerError(
            f"{source}: larger-model profile has no pass@1 rows for {bp.bin_column} "
            f"{', '.join(map(str, missing))} of the small model's problems"
        )
    return LargerModel(s, False, {"source": source}, float(base["flops"].mean()))


def larger_extrapolated(
    bp: BinnedProfile,
    n_params: float,
    pretrain_tokens: float,
    multiplier: float,
    law: str,
    slope: float = LOGIT_SLOPE_PER_NAT,
) -> LargerModel:
    base = pass1_per_problem(bp.rows, bp.source)
    p, info = extrapolate_pass1(
        base["accuracy"].to_numpy(), n_params, pretrain_tokens, multiplier, law, slope
    )
    info = {**info, "n_params_small": n_params, "pretrain_tokens": pretrain_tokens}
    return LargerModel(
        pd.Series(p, index=base["problem_id"].to_numpy()),
        True,
        info,
        float(base["flops"].mean()) * multiplier,
    )


def base_flops_per_bin(bp: BinnedProfile) -> dict[int, float] | None:
    """Mean FLOPs of one generation per bin (the unit X multiplies), or None without such rows."""
    mask = [
        _is_base_row(s, c, b)
        for s, c, b in zip(
            bp.options["strategy"], bp.options["config"], bp.options["budget"], strict=True
        )
    ]
    base = bp.options[np.array(mask, dtype=bool)]
    if base.empty or (base["flops"] <= 0).any():
        return None
    out = base.groupby("bin")["flops"].mean().to_dict()
    return {int(k): float(v) for k, v in out.items()} if set(out) >= set(bp.bins) else None


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


def larger_model(
    bp: BinnedProfile,
    larger_profile: str | os.PathLike[str] | None,
    n_params: float | None,
    pretrain_tokens: float | None,
    multiplier: float,
    law: str = "chinchilla",
    slope: float = LOGIT_SLOPE_PER_NAT,
) -> LargerModel:
    """The larger model from its own profile when given, else extrapolated from the small model
    (which needs its N and D)."""
    if larger_profile:
        df, _ = read_profile(larger_profile)
        return larger_from_profile(df, str(larger_profile), bp)
    if n_params is None or pretrain_tokens is None:
        raise PlannerError(
            "no --larger-profile: extrapolating the larger model needs the small model's size and "
            "data (--params and --pretrain-tokens, or --model NAME)"
        )
    return larger_extrapolated(bp, n_params, pretrain_tokens, multiplier, law, slope)


def _one_ratio(out: dict[str, Any], ratios: list[float]) -> dict[str, Any]:
    """With a single R, its ratio and multiplier also at the top level."""
    if len(ratios) == 1:
        out["ratio"] = ratios[0]
        out["budget_multiplier"] = out["results"][0]["budget_multiplier"]
    return out


def exchange_formula(model_multiplier: float, ratios: list[float]) -> dict[str, Any]:
    """The budget multiplier X for each R, without a profile."""
    results = [
        {"ratio": r, "budget_multiplier": budget_multiplier(model_multiplier, r)} for r in ratios
    ]
    return _one_ratio(
        {"model_multiplier": model_multiplier, "formula": _FORMULA, "results": results}, ratios
    )


def exchange_report(
    bp: BinnedProfile,
    larger: LargerModel,
    model_multiplier: float,
    ratios: list[float],
    needed_bins: list[int] | None = None,
) -> dict[str, Any]:
    """For each R: the budget multiplier and the per-bin / overall winner."""
    require_bins(bp, needed_bins or [])
    base = base_flops_per_bin(bp)
    results = []
    for r in ratios:
        x = budget_multiplier(model_multiplier, r)
        cmp = compare_bins(bp, larger.pass1, x, base)
        results.append({"ratio": r, "budget_multiplier": x, **cmp})
    return _one_ratio(
        {
            "model_multiplier": model_multiplier,
            "formula": _FORMULA,
            "budget_unit": "FLOPs of one generation per bin" if base else "generations",
            "larger_model": {"extrapolated": larger.extrapolated, **larger.info},
            "bins": bp.bin_column,
            "results": results,
        },
        ratios,
    )

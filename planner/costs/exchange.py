"""Pretraining vs inference exchange (Snell et al. 2024, section 7): the per-bin comparison.

A model M times larger trained on the same data costs M times the pretraining and inference
FLOPs; with R = D_inference / D_pretrain the small model may spend X = M + 3·(M − 1)/R times its
own inference FLOPs for the same total (the formulas: `planner.costs.scaling`). Per difficulty
bin, the small model's best deployable test-time option within X times the FLOPs of one
generation is compared with the larger model's pass@1: by how many points, with a normal
confidence interval over problems (paired when both sides answered the same problems).

The larger model comes either from its own profile (pass@1 = the `sample` strategy's
`select=majority` rows at budget 1) or, labelled *extrapolated*, from a scaling law (the logit
shift of `planner.costs.scaling.extrapolate_pass1`). Treat extrapolated winners near the
confidence bounds as undecided.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from planner.costs.scaling import LOGIT_SLOPE_PER_NAT, budget_multiplier, extrapolate_pass1
from planner.errors import PlannerError
from planner.optimize import BinnedProfile, require_bins
from planner.stats import normal_ci
from planner.tables import parse_config, read_profile

_FORMULA = "X = M + 3(M-1)/R"


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
            f"{source}: no pass@1 rows (strategy 'sample', select 'majority', "
            "budget 1) in the profile"
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

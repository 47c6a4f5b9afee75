"""Serving cost of test-time options: the roofline simulator applied to a profile's options.

`cost_rows` prices every option of a binned profile (per bin, or as the problem-weighted mean
over bins), `workload_cost_row` one strategy at a given token count, `cost_report` is what
`ttc cost` prints, and `option_serving_costs` gives the allocation its $ per query and SLO
columns. Each row is the option, its workload shape (`width`, `depth`) and the simulator's
`CostResult` fields.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from planner.costs.hardware import HardwareSpec
from planner.costs.modelspec import ModelSpec
from planner.costs.simulator import meets_slo, simulate, workload_from_profile
from planner.optimize import BinnedProfile
from planner.tables import parse_config


def cost_rows(
    bp: BinnedProfile,
    spec: ModelSpec,
    hw: HardwareSpec,
    verifier: ModelSpec | None = None,
    batch: int | None = None,
    slo_s: float | None = None,
    shared_prefix: bool = True,
    per_bin: bool = False,
) -> list[dict[str, Any]]:
    """Cost of every option of a binned profile: one row per bin and option (`per_bin`), else
    one per option with tokens and accuracy averaged over bins by their share of problems."""
    opts = bp.options
    if not per_bin:
        w = opts["bin"].map(bp.weights)
        opts = opts.assign(_w=w)
        cols = ["flops", "tokens", "prompt_tokens", "acc"]
        agg = (
            opts.groupby(["strategy", "config", "budget"], sort=True)
            .apply(
                lambda g: g[cols].multiply(g["_w"], axis=0).sum() / g["_w"].sum(),
                include_groups=False,
            )
            .reset_index()
        )
        opts = agg.assign(bin=0)
    rows = []
    for _, r in opts.iterrows():
        cfg = parse_config(r["config"])
        w = workload_from_profile(
            r["strategy"],
            cfg,
            float(r["budget"]),
            float(r["tokens"]),
            float(r["prompt_tokens"]),
            shared_prefix=shared_prefix,
        )
        res = simulate(w, spec, hw, verifier=verifier, batch=batch)
        row = {
            "strategy": r["strategy"],
            "config": cfg,
            "budget": float(r["budget"]),
            "accuracy": float(r["acc"]),
            "tokens": float(r["tokens"]),
            "prompt_tokens": float(r["prompt_tokens"]),
            "width": w.width,
            "depth": w.depth,
            **res.as_dict(),
            "meets_slo": meets_slo(res, slo_s),
        }
        if per_bin:
            row["bin"] = int(r["bin"])
        rows.append(row)
    return rows


def workload_cost_row(
    strategy: str,
    config: dict[str, Any],
    budget: float,
    prompt_tokens: float,
    gen_tokens: float,
    spec: ModelSpec,
    hw: HardwareSpec,
    verifier: ModelSpec | None = None,
    batch: int | None = None,
    slo_s: float | None = None,
    shared_prefix: bool = True,
) -> dict[str, Any]:
    """Cost of one strategy at `budget` generations of `prompt_tokens` + `gen_tokens` each."""
    w = workload_from_profile(
        strategy,
        config,
        budget,
        gen_tokens * budget,
        prompt_tokens * budget,
        shared_prefix=shared_prefix,
    )
    res = simulate(w, spec, hw, verifier=verifier, batch=batch)
    return {
        "strategy": strategy,
        "config": config,
        "budget": budget,
        "tokens": w.gen_tokens,
        "prompt_tokens": prompt_tokens * budget,
        "width": w.width,
        "depth": w.depth,
        **res.as_dict(),
        "meets_slo": meets_slo(res, slo_s),
    }


def cost_report(
    spec: ModelSpec,
    hw: HardwareSpec,
    rows: list[dict[str, Any]],
    slo_s: float | None = None,
    only_slo: bool = False,
) -> dict[str, Any]:
    """The hardware, the model and the cost rows (only those meeting the SLO with `only_slo`)."""
    if only_slo:
        rows = [r for r in rows if r["meets_slo"]]
    return {
        "hardware": hw.to_json(),
        "model": spec.name,
        "n_params": spec.n_params,
        "slo_s": slo_s,
        "rows": rows,
    }


def option_serving_costs(
    bp: BinnedProfile, spec: ModelSpec, hw: HardwareSpec, slo_s: float | None = None
) -> tuple[pd.Series, pd.Series]:
    """Per row of `bp.options` (bin x option): $ per query, and whether it meets the SLO."""
    rows = cost_rows(bp, spec, hw, None, None, slo_s, True, True)
    usd = pd.Series([r["usd_per_1k_queries"] / 1000.0 for r in rows])
    return usd, pd.Series([r["meets_slo"] for r in rows])

"""Inference-load what-if: the exchange answer, FLOPs, GPU-hours and dollars at each load.

A deployment serves q queries a day for a number of days, each a plain answer of T tokens
(prompt + generated), so D_inference = q · days · T and R = D_inference / D_pretrain; the small
model may then spend X = M + 3(M − 1)/R times its inference FLOPs (`planner.costs.scaling`).
Per load this module gives:

- FLOPs of both options (`deployment_flops`): pretraining 6·N·D, inference 2·N·D_inference, the
  larger model M times both; the small model's test-time inference spends, per query, the
  chosen option's FLOPs in units of one generation of its bin;
- GPU-hours and dollars (`serving_gpu_hours`: the roofline simulator over the whole deployment;
  `pretrain_gpu_hours`: FLOPs / (peak · MFU · 3600));
- where the answer flips along a range of loads (`find_flips`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from planner.costs.exchange import (
    base_flops_per_bin,
    compare_bins,
    larger_model,
    pass1_per_problem,
)
from planner.costs.hardware import HardwareSpec
from planner.costs.modelspec import ModelSpec
from planner.costs.scaling import (
    LOGIT_SLOPE_PER_NAT,
    budget_multiplier,
    check_positive,
    pretrain_flops,
    ratio_for,
)
from planner.costs.simulator import Workload, simulate, workload_from_profile
from planner.errors import PlannerError
from planner.optimize import BinnedProfile
from planner.tables import canonical_config


def parse_load(text: str, points_per_decade: int = 4) -> list[float]:
    """Queries per day: '2e6' -> [2e6]; '1e3..1e9' -> a log grid with `points_per_decade`
    points per decade; 'a,b,c' -> the list."""
    t = text.strip()
    try:
        if ".." in t:
            lo_s, hi_s = t.split("..", 1)
            lo, hi = float(lo_s), float(hi_s)
            if not (lo > 0 and hi >= lo and math.isfinite(hi)):
                raise PlannerError(
                    f"--queries-per-day range must be positive and increasing, got {text!r}"
                )
            n = max(1, round(math.log10(hi / lo) * points_per_decade))
            return [lo * (hi / lo) ** (i / n) for i in range(n + 1)]
        vals = [float(x) for x in t.split(",") if x.strip()]
    except ValueError:
        raise PlannerError(
            f"--queries-per-day must be a number, a list or a range like 1e3..1e9, got {text!r}"
        ) from None
    if not vals or any(not (math.isfinite(v) and v > 0) for v in vals):
        raise PlannerError(f"queries per day must be positive numbers, got {text!r}")
    return vals


def deployment_flops(
    n_params: float,
    pretrain_tokens: float,
    multiplier: float,
    inference_tokens: float,
    budget_x: float,
) -> dict[str, float]:
    """FLOPs of the larger model (pretraining 6·M·N·D, inference 2·M·N·D_inference) and of the
    small model (pretraining 6·N·D, and the inference X·2·N·D_inference it may spend for the same
    total). FLOPs."""
    n, d, m, d_inf = n_params, pretrain_tokens, multiplier, inference_tokens
    return {
        "larger_model_pretrain": pretrain_flops(m * n, d),
        "larger_model_inference": 2.0 * m * n * d_inf,
        "larger_model_total": pretrain_flops(m * n, d) + 2.0 * m * n * d_inf,
        "small_model_pretrain": pretrain_flops(n, d),
        "small_model_inference_allowed": 2.0 * n * d_inf * budget_x,
    }


def pretrain_gpu_hours(flops: float, hw: HardwareSpec, mfu: float) -> float:
    """GPU-hours of a pretraining run: FLOPs / (peak FLOP/s · MFU · 3600 s/h)."""
    return flops / (hw.peak_flops_per_s * mfu * 3600.0)


def _generations_per_query(
    per_bin: list[dict[str, Any]], base_flops: dict[int, float] | None
) -> float:
    """Mean test-time spend per query in generations: per bin, the chosen option's FLOPs over one
    generation's (its budget without FLOPs; 1 where nothing fits), weighted by the bin's share."""
    rel = 0.0
    for b in per_bin:
        opt = b.get("option")
        unit = (base_flops or {}).get(b["bin"])
        rel += b["share"] * (
            (opt["flops"] / unit) if (opt and unit) else (opt["budget"] if opt else 1.0)
        )
    return rel


def serving_gpu_hours(
    bp: BinnedProfile,
    per_bin: list[dict[str, Any]],
    spec: ModelSpec,
    hw: HardwareSpec,
    multiplier: float,
    queries: float,
    slo_s: float | None = None,
) -> dict[str, Any]:
    """Inference GPU-hours and dollars of both options over `queries` queries: each bin's chosen
    test-time option on the small model, and one plain answer on a model `multiplier` times
    larger (the roofline simulator, `planner.costs.simulator.simulate`)."""
    small_gpu_s, worst_latency = 0.0, 0.0
    opts = bp.options
    for b in per_bin:
        opt = b.get("option")
        if opt is None:
            continue
        row = opts[
            (opts["bin"] == b["bin"])
            & (opts["strategy"] == opt["strategy"])
            & (opts["config"] == canonical_config(opt["config"]))
            & (opts["budget"] == opt["budget"])
        ]
        if row.empty:
            continue
        r = row.iloc[0]
        w = workload_from_profile(
            r["strategy"], opt["config"], r["budget"], r["tokens"], r["prompt_tokens"]
        )
        res = simulate(w, spec, hw)
        small_gpu_s += b["share"] * res.gpu_s_per_query
        worst_latency = max(worst_latency, res.latency_s)
    base = pass1_per_problem(bp.rows, bp.source)
    big = spec.scaled(multiplier)
    res_big = simulate(
        Workload(float(base["prompt_tokens"].mean()), float(base["tokens"].mean())), big, hw
    )
    out = {
        "hardware": hw.name,
        "test_time_gpu_hours": small_gpu_s * queries / 3600.0,
        "larger_model_gpu_hours": res_big.gpu_s_per_query * queries / 3600.0,
        "test_time_worst_bin_latency_s": worst_latency,
        "larger_model_latency_s": res_big.latency_s,
        "larger_model_gpus_per_replica": res_big.n_gpus,
    }
    out["test_time_usd"] = out["test_time_gpu_hours"] * hw.usd_per_hour
    out["larger_model_usd"] = out["larger_model_gpu_hours"] * hw.usd_per_hour
    if slo_s is not None:
        out["test_time_meets_slo"] = worst_latency <= slo_s
        out["larger_model_meets_slo"] = res_big.latency_s <= slo_s
    return out


def find_flips(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where the winner changes between neighbouring loads, overall and per bin."""
    flips = []
    for a, b in itertools.pairwise(points):
        between = {
            "between_queries_per_day": [a["queries_per_day"], b["queries_per_day"]],
            "between_ratio": [a["ratio"], b["ratio"]],
        }
        if "overall" in a and a["overall"]["winner"] != b["overall"]["winner"]:
            flips.append(
                {
                    "scope": "overall",
                    **between,
                    "from": a["overall"]["winner"],
                    "to": b["overall"]["winner"],
                }
            )
        for ba, bb in zip(a.get("per_bin", []), b.get("per_bin", []), strict=False):
            if ba["winner"] != bb["winner"]:
                flips.append(
                    {
                        "scope": f"bin {ba['bin']}",
                        **between,
                        "from": ba["winner"],
                        "to": bb["winner"],
                    }
                )
    return flips


def tokens_by_strategy(bp: BinnedProfile) -> dict[str, dict[str, float]]:
    """Prompt + generated tokens per query of each strategy at its smallest and largest budget
    (problem-weighted means over bins; every parallel stream's prompt counted, as the profile
    counts it, so a pool of k pays its prompt k times)."""
    opts = bp.options.assign(
        total=bp.options["tokens"] + bp.options["prompt_tokens"],
        w=bp.options["bin"].map(bp.weights),
    )
    out: dict[str, dict[str, float]] = {}
    for strat, g in opts.groupby("strategy", sort=True):
        per_budget = {}
        for b in (g["budget"].min(), g["budget"].max()):
            gb = g[g["budget"] == b]
            per_budget[f"{b:g}"] = float((gb["total"] * gb["w"]).sum() / gb["w"].sum())
        out[str(strat)] = per_budget
    return out


@dataclass(frozen=True)
class Deployment:
    """What a what-if prices: `queries_per_day` (one point each) for `days`, against a model
    `model_multiplier` times larger than the small one (N = `n_params`, D = `pretrain_tokens`).

    tokens_per_query: prompt + generated tokens of one plain answer (None: the profile's
    budget-1 sample rows); train_mfu: model FLOPs utilisation of pretraining (GPU-hours);
    slo_s: a latency SLO reported per option.
    """

    queries_per_day: tuple[float, ...]
    days: float
    model_multiplier: float
    n_params: float
    pretrain_tokens: float
    tokens_per_query: float | None = None
    train_mfu: float = 0.4
    slo_s: float | None = None

    def __post_init__(self) -> None:
        if not self.queries_per_day or any(
            not (math.isfinite(q) and q > 0) for q in self.queries_per_day
        ):
            raise ValueError("queries_per_day must be positive numbers")
        for f in ("days", "model_multiplier", "n_params", "pretrain_tokens"):
            v = getattr(self, f)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{f} must be a positive number, got {v!r}")
        if not (math.isfinite(self.train_mfu) and 0 < self.train_mfu <= 1):
            raise ValueError(f"train_mfu must be in (0, 1], got {self.train_mfu!r}")


def _point(
    dep: Deployment,
    qpd: float,
    tokens_per_query: float,
    bp: BinnedProfile | None,
    larger_pass1: Any,
    base_flops: dict[int, float] | None,
    hw: HardwareSpec | None,
    spec: ModelSpec | None,
) -> dict[str, Any]:
    """The what-if at one load."""
    n, d, m = dep.n_params, dep.pretrain_tokens, dep.model_multiplier
    r = ratio_for(qpd, dep.days, tokens_per_query, d)
    x = budget_multiplier(m, r)
    queries = qpd * dep.days
    d_inf = queries * tokens_per_query
    p: dict[str, Any] = {
        "queries_per_day": qpd,
        "inference_tokens": d_inf,
        "ratio": r,
        "budget_multiplier": x,
    }
    flops = deployment_flops(n, d, m, d_inf, x)
    if bp is not None and larger_pass1 is not None:
        cmp = compare_bins(bp, larger_pass1, x, base_flops)
        p.update(cmp)
        flops["small_model_inference"] = (
            2.0 * n * d_inf * _generations_per_query(cmp["per_bin"], base_flops)
        )
        flops["small_model_total"] = flops["small_model_pretrain"] + flops["small_model_inference"]
        if hw is not None and spec is not None:
            p["cost"] = serving_gpu_hours(bp, cmp["per_bin"], spec, hw, m, queries, dep.slo_s)
    if hw is not None:
        p.setdefault("cost", {}).update(
            {
                "small_model_pretrain_gpu_hours": pretrain_gpu_hours(
                    flops["small_model_pretrain"], hw, dep.train_mfu
                ),
                "larger_model_pretrain_gpu_hours": pretrain_gpu_hours(
                    flops["larger_model_pretrain"], hw, dep.train_mfu
                ),
            }
        )
    p["flops"] = flops
    return p


def whatif_report(
    dep: Deployment,
    bp: BinnedProfile | None = None,
    larger_profile: str | None = None,
    law: str = "chinchilla",
    slope: float = LOGIT_SLOPE_PER_NAT,
    hw: HardwareSpec | None = None,
    spec: ModelSpec | None = None,
) -> dict[str, Any]:
    """The what-if at every load of `dep`: R, X, FLOPs of both options and, with a profile `bp`,
    the exchange answer per bin (the larger model from `larger_profile` or extrapolated by `law`),
    with `hw` the GPU-hours of pretraining and, with `spec` too, of serving; and the flips."""
    tokens_per_query = dep.tokens_per_query
    larger = base_flops = None
    if bp is not None:
        base = pass1_per_problem(bp.rows, bp.source)
        if tokens_per_query is None:
            tokens_per_query = float((base["tokens"] + base["prompt_tokens"]).mean())
        larger = larger_model(
            bp, larger_profile, dep.n_params, dep.pretrain_tokens, dep.model_multiplier, law, slope
        )
        base_flops = base_flops_per_bin(bp)
    if tokens_per_query is None:
        raise PlannerError("without a profile, give --tokens-per-query")
    check_positive("tokens per query", tokens_per_query)
    pass1 = None if larger is None else larger.pass1
    points = [
        _point(dep, q, tokens_per_query, bp, pass1, base_flops, hw, spec)
        for q in dep.queries_per_day
    ]
    out: dict[str, Any] = {
        "model_multiplier": dep.model_multiplier,
        "params": dep.n_params,
        "pretrain_tokens": dep.pretrain_tokens,
        "days": dep.days,
        "tokens_per_query": tokens_per_query,
        "points": points,
        "flips": find_flips(points),
    }
    if larger is not None:
        out["larger_model"] = {"extrapolated": larger.extrapolated, **larger.info}
    if bp is not None:
        out["tokens_per_query_by_strategy"] = tokens_by_strategy(bp)
    return out

"""`ttc exchange`, `ttc whatif`, `ttc cost`, `ttc calibrate`, `ttc allocate`: the what-if engine.

Only click and light planner modules are imported here at import time; torch is imported by
`ttc calibrate` alone, inside the command.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import click

from planner.commands.common import (
    dumps_json,
    echo_json,
    handle_errors,
    json_option,
    parse_float_list,
)
from planner.errors import PlannerError

_LAWS = ["chinchilla", "besiroglu"]
_PARAM_KEYS = ("model_params", "n_params", "param_count", "parameter_count", "num_parameters")


# ----------------------------------------------------------------------------------------------
# Shared option parsing


def _ratios(text: str) -> list[float]:
    vals = parse_float_list(text, "--ratio")
    if not vals:
        raise click.BadParameter("--ratio needs at least one number")
    for r in vals:
        if not (math.isfinite(r) and r > 0):
            raise PlannerError(f"R = D_inference / D_pretrain must be a positive number, got {r:g}")
    return vals


def parse_load(text: str, points_per_decade: int = 4) -> list[float]:
    """'2e6' → [2e6]; '1e3..1e9' → a log grid with `points_per_decade` points per decade;
    'a,b,c' → the list."""
    t = text.strip()
    try:
        if ".." in t:
            lo_s, hi_s = t.split("..", 1)
            lo, hi = float(lo_s), float(hi_s)
            if not (lo > 0 and hi >= lo and math.isfinite(hi)):
                raise PlannerError(f"--queries-per-day range must be positive and increasing, got {text!r}")
            n = max(1, round(math.log10(hi / lo) * points_per_decade))
            return [lo * (hi / lo) ** (i / n) for i in range(n + 1)] if n else [lo]
        vals = [float(x) for x in t.split(",") if x.strip()]
    except ValueError:
        raise PlannerError(f"--queries-per-day must be a number, a list or a range like 1e3..1e9, got {text!r}") from None
    if not vals or any(not (math.isfinite(v) and v > 0) for v in vals):
        raise PlannerError(f"queries per day must be positive numbers, got {text!r}")
    return vals


def _positive(name: str, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise PlannerError(f"{name} must be a positive number, got {value:g}")
    return value


def _size(model: str | None, params: float | None, pretrain_tokens: float | None,
          meta: dict[str, Any] | None) -> tuple[float | None, float | None, Any]:
    """(N, D_pretrain, ModelSpec or None) from --model, --params, --pretrain-tokens or metadata."""
    spec = None
    if model:
        from planner.modelspec import load_model

        spec = load_model(model)
    n = _positive("--params", params) or (spec.n_params if spec else None)
    if n is None and meta:
        for k in _PARAM_KEYS:
            v = meta.get(k)
            if isinstance(v, int | float) and v > 0:
                n = float(v)
                break
    d = _positive("--pretrain-tokens", pretrain_tokens) or (spec.pretrain_tokens if spec and spec.pretrain_tokens else None)
    return n, d, spec


def _hardware(name: str | None, usd_per_hour: float | None) -> Any:
    if not name:
        return None
    from planner.hardware import load_hardware

    hw = load_hardware(name)
    return hw.with_overrides(usd_per_hour=usd_per_hour) if usd_per_hour is not None else hw


def _binned(profile_dir: str, bins: str) -> Any:
    from planner.allocate import load_binned_profile

    return load_binned_profile(profile_dir, bins)


def _larger(bp: Any, larger_profile: str | None, n: float | None, d: float | None, multiplier: float,
            law: str, slope: float) -> Any:
    from planner.exchange import larger_extrapolated, larger_from_profile
    from planner.schema import read_profile

    if larger_profile:
        df, _ = read_profile(larger_profile)
        return larger_from_profile(df, larger_profile, bp)
    if n is None or d is None:
        raise PlannerError(
            "no --larger-profile: extrapolating the larger model needs the small model's size and "
            "data (--params and --pretrain-tokens, or --model NAME)"
        )
    return larger_extrapolated(bp, n, d, multiplier, law, slope)


_bins_option = click.option("--bins", type=click.Choice(["oracle", "predicted", "level"]), default="oracle",
                            show_default=True, help="Difficulty bins of the problems table.")
_law_option = click.option("--law", type=click.Choice(_LAWS), default="chinchilla", show_default=True,
                           help="Scaling law for an extrapolated larger model.")
_slope_option = click.option("--logit-slope", type=float, default=7.4, show_default=True,
                             help="Logit of pass@1 gained per nat of loss (extrapolation).")


# ----------------------------------------------------------------------------------------------
# ttc exchange


def _fmt_bin_line(b: dict[str, Any]) -> str:
    if "difference_points" not in b:
        return f"  bin {b['bin']}: {b['winner']} ({b.get('note', '')})"
    lo, hi = b["ci95_points"]
    opt = b["option"]
    return (f"  bin {b['bin']}: {b['winner']:<11} test-time {100 * b['test_time_accuracy']:5.1f}% vs larger "
            f"{100 * b['larger_model_accuracy']:5.1f}%  diff {b['difference_points']:+5.1f} pts "
            f"[{lo:+.1f}, {hi:+.1f}]  via {opt['strategy']} {json.dumps(opt['config'], sort_keys=True)} "
            f"budget {opt['budget']:g}")


@click.command("exchange")
@click.argument("profile_dir", required=False, type=click.Path())
@click.option("--multiplier", "-M", type=float, required=True, help="M: the larger model's size / the small model's.")
@click.option("--ratio", "-R", "ratio_text", default="0.16,0.79,22", show_default=True,
              help="R = D_inference / D_pretrain; comma-separated for several.")
@click.option("--larger-profile", type=click.Path(), default=None,
              help="Profile directory of the larger model (its pass@1 per bin).")
@click.option("--model", default=None, help="Small model spec (name in data/models or config.json) for N and D.")
@click.option("--params", type=float, default=None, help="Small model parameter count N.")
@click.option("--pretrain-tokens", type=float, default=None, help="Small model pretraining tokens D.")
@_law_option
@_slope_option
@_bins_option
@click.option("--require-bins", default=None, help="Comma-separated bins the profile must have (e.g. 1,2,3,4,5).")
@json_option
@handle_errors
def exchange_cmd(profile_dir: str | None, multiplier: float, ratio_text: str, larger_profile: str | None,
                 model: str | None, params: float | None, pretrain_tokens: float | None, law: str,
                 logit_slope: float, bins: str, require_bins: str | None, as_json: bool) -> None:
    """Bigger model or more test-time compute? The FLOPs exchange of Snell et al. 2024.

    A model M times larger costs M times the pretraining and inference FLOPs; with R = D_inference /
    D_pretrain the small model may spend X = M + 3(M-1)/R times its inference FLOPs. With a
    PROFILE, each difficulty bin's best test-time option within X is compared with the larger
    model's pass@1 (from --larger-profile, or extrapolated by a scaling law and labelled so).

    \b
    Example:
      ttc exchange --multiplier 14 --ratio 0.16 --json
      ttc exchange runs/small-profile --multiplier 14 --ratio 0.16,0.79,22 --larger-profile runs/big-profile
      ttc exchange runs/small-profile -M 14 --model qwen2.5-1.5b --law besiroglu
    """
    from planner.exchange import budget_multiplier, check_positive

    check_positive("model multiplier M", multiplier)
    ratios = _ratios(ratio_text)
    if profile_dir is None:
        results = [{"ratio": r, "budget_multiplier": budget_multiplier(multiplier, r)} for r in ratios]
        out: dict[str, Any] = {"model_multiplier": multiplier, "formula": "X = M + 3(M-1)/R", "results": results}
    else:
        bp = _binned(profile_dir, bins)
        n, d, _ = _size(model, params, pretrain_tokens, bp.metadata)
        larger = _larger(bp, larger_profile, n, d, multiplier, law, logit_slope)
        from planner.exchange import exchange_report

        needed = [int(v) for v in parse_float_list(require_bins, "--require-bins")] if require_bins else None
        out = exchange_report(bp, larger, multiplier, ratios, needed)
    if len(ratios) == 1:
        out["ratio"] = ratios[0]
        out["budget_multiplier"] = out["results"][0]["budget_multiplier"]
    if as_json:
        echo_json(out)
        return
    if "budget_unit" in out:
        click.echo(f"X counts: {out['budget_unit']}; selection per bin: cross-fitted over folds when possible")
    if out.get("larger_model", {}).get("warning"):
        click.echo(f"warning: {out['larger_model']['warning']}")
    for r in out["results"]:
        click.echo(f"M = {multiplier:g}, R = {r['ratio']:g}: budget multiplier X = {r['budget_multiplier']:.2f}")
        if "per_bin" in r:
            tag = " (larger model EXTRAPOLATED)" if out["larger_model"]["extrapolated"] else ""
            o = r["overall"]
            ci = o.get("ci95_points")
            click.echo(f"  overall: {o['winner']}" + (f" by {o['difference_points']:+.1f} pts [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else "") + tag)
            for b in r["per_bin"]:
                click.echo(_fmt_bin_line(b))


# ----------------------------------------------------------------------------------------------
# ttc whatif


def _gpu_hours(bp: Any, point_bins: list[dict[str, Any]], spec: Any, hw: Any, multiplier: float,
               queries: float, slo_s: float | None) -> dict[str, Any]:
    """Inference GPU-hours and dollars of both options over the deployment."""
    from planner.cost import simulate, workload_from_profile
    from planner.exchange import pass1_per_problem

    small_gpu_s, worst_latency = 0.0, 0.0
    for b in point_bins:
        opt = b.get("option")
        if opt is None:
            continue
        row = bp.options[(bp.options["bin"] == b["bin"]) & (bp.options["strategy"] == opt["strategy"])
                         & (bp.options["config"] == json.dumps(opt["config"], sort_keys=True, separators=(",", ":")))
                         & (bp.options["budget"] == opt["budget"])]
        if row.empty:
            continue
        r = row.iloc[0]
        w = workload_from_profile(r["strategy"], opt["config"], r["budget"], r["tokens"], r["prompt_tokens"])
        res = simulate(w, spec, hw)
        small_gpu_s += b["share"] * res.gpu_s_per_query
        worst_latency = max(worst_latency, res.latency_s)
    base = pass1_per_problem(bp.rows, bp.source)
    from planner.cost import Workload

    big = spec.scaled(multiplier)
    res_big = simulate(Workload(float(base["prompt_tokens"].mean()), float(base["tokens"].mean())), big, hw)
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


def _flips(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    flips = []
    for a, b in itertools.pairwise(points):
        if "overall" in a and a["overall"]["winner"] != b["overall"]["winner"]:
            flips.append({"scope": "overall", "between_queries_per_day": [a["queries_per_day"], b["queries_per_day"]],
                          "between_ratio": [a["ratio"], b["ratio"]],
                          "from": a["overall"]["winner"], "to": b["overall"]["winner"]})
        for ba, bb in zip(a.get("per_bin", []), b.get("per_bin", []), strict=False):
            if ba["winner"] != bb["winner"]:
                flips.append({"scope": f"bin {ba['bin']}", "between_queries_per_day": [a["queries_per_day"], b["queries_per_day"]],
                              "between_ratio": [a["ratio"], b["ratio"]], "from": ba["winner"], "to": bb["winner"]})
    return flips


def _tokens_by_strategy(bp: Any) -> dict[str, Any]:
    """Prompt + generated tokens per query of each strategy at its smallest and largest budget
    (problem-weighted means over bins)."""
    opts = bp.options.assign(total=bp.options["tokens"] + bp.options["prompt_tokens"],
                             w=bp.options["bin"].map(bp.weights))
    out: dict[str, Any] = {}
    for strat, g in opts.groupby("strategy", sort=True):
        per_budget = {}
        for b in (g["budget"].min(), g["budget"].max()):
            gb = g[g["budget"] == b]
            per_budget[f"{b:g}"] = float((gb["total"] * gb["w"]).sum() / gb["w"].sum())
        out[str(strat)] = per_budget
    return out


@click.command("whatif")
@click.argument("profile_dir", required=False, type=click.Path())
@click.option("--queries-per-day", "load_text", required=True,
              help="Load: a number, a comma list, or a log range like 1e3..1e9.")
@click.option("--points-per-decade", default=4, show_default=True, help="Grid density of a range.")
@click.option("--days", type=float, default=365.0, show_default=True, help="Deployment days.")
@click.option("--multiplier", "-M", type=float, required=True, help="M: the larger model's size / the small model's.")
@click.option("--model", default=None, help="Small model spec (data/models name or config.json): N, D and shapes.")
@click.option("--params", type=float, default=None, help="Small model parameter count N (overrides --model).")
@click.option("--pretrain-tokens", type=float, default=None, help="Small model pretraining tokens D.")
@click.option("--tokens-per-query", type=float, default=None,
              help="Prompt + generated tokens of one plain answer (default: from the profile).")
@click.option("--larger-profile", type=click.Path(), default=None, help="Profile directory of the larger model.")
@click.option("--hardware", default=None, help="Hardware profile name or JSON for GPU-hours and dollars.")
@click.option("--usd-per-hour", type=float, default=None, help="Override the hardware's price.")
@click.option("--train-mfu", type=float, default=0.4, show_default=True, help="Model FLOPs utilisation of pretraining.")
@click.option("--slo-s", type=float, default=None, help="Latency SLO in seconds (reported per option).")
@_law_option
@_slope_option
@_bins_option
@json_option
@handle_errors
def whatif_cmd(profile_dir: str | None, load_text: str, points_per_decade: int, days: float, multiplier: float,
               model: str | None, params: float | None, pretrain_tokens: float | None,
               tokens_per_query: float | None, larger_profile: str | None, hardware: str | None,
               usd_per_hour: float | None, train_mfu: float, slo_s: float | None, law: str,
               logit_slope: float, bins: str, as_json: bool) -> None:
    """Inference-load what-if: from the load, R and the exchange answer per bin, with total FLOPs
    (and GPU-hours and dollars with --hardware and --model) of both options.

    D_inference = queries/day x days x tokens per plain answer (prompt + generated, from the
    profile's budget-1 sample rows); R = D_inference / D_pretrain. A range of loads shows where
    the answer flips (the `flips` field).

    \b
    Example:
      ttc whatif --queries-per-day 2e6 --days 365 -M 14 --model llama-3.1-8b --tokens-per-query 600
      ttc whatif runs/profile --queries-per-day 1e3..1e9 -M 14 --params 1.5e9 --pretrain-tokens 18e12
      ttc whatif runs/profile --queries-per-day 2e6 -M 9 --model llama-3.1-8b --hardware h100-sxm --json
    """
    from planner.exchange import budget_multiplier, check_positive, pretrain_flops, ratio_for

    check_positive("model multiplier M", multiplier)
    check_positive("deployment days", days)
    if points_per_decade < 1:
        raise PlannerError("--points-per-decade must be >= 1")
    loads = parse_load(load_text, points_per_decade)
    hw = _hardware(hardware, usd_per_hour)
    bp = _binned(profile_dir, bins) if profile_dir else None
    n, d, spec = _size(model, params, pretrain_tokens, bp.metadata if bp else None)
    if n is None or d is None:
        raise PlannerError("need the small model's size and data: --params and --pretrain-tokens, or --model NAME")
    larger = None
    base_rel = None
    if bp is not None:
        from planner.exchange import base_flops_per_bin, pass1_per_problem

        base = pass1_per_problem(bp.rows, bp.source)
        if tokens_per_query is None:
            tokens_per_query = float((base["tokens"] + base["prompt_tokens"]).mean())
        larger = _larger(bp, larger_profile, n, d, multiplier, law, logit_slope)
        base_rel = base_flops_per_bin(bp)
    if tokens_per_query is None:
        raise PlannerError("without a profile, give --tokens-per-query")
    check_positive("tokens per query", tokens_per_query)

    points = []
    for qpd in loads:
        r = ratio_for(qpd, days, tokens_per_query, d)
        x = budget_multiplier(multiplier, r)
        queries = qpd * days
        d_inf = queries * tokens_per_query
        p: dict[str, Any] = {"queries_per_day": qpd, "inference_tokens": d_inf, "ratio": r, "budget_multiplier": x}
        large_total = pretrain_flops(multiplier * n, d) + 2.0 * multiplier * n * d_inf
        flops = {"larger_model_pretrain": pretrain_flops(multiplier * n, d),
                 "larger_model_inference": 2.0 * multiplier * n * d_inf, "larger_model_total": large_total,
                 "small_model_pretrain": pretrain_flops(n, d),
                 "small_model_inference_allowed": 2.0 * n * d_inf * x}
        if bp is not None and larger is not None:
            from planner.exchange import compare_bins

            cmp = compare_bins(bp, larger.pass1, x, base_rel)
            p.update(cmp)
            # FLOPs relative to one generation in each bin, applied to the user's model size.
            rel = 0.0
            for b in cmp["per_bin"]:
                opt = b.get("option")
                unit = (base_rel or {}).get(b["bin"])
                rel += b["share"] * ((opt["flops"] / unit) if (opt and unit) else (opt["budget"] if opt else 1.0))
            flops["small_model_inference"] = 2.0 * n * d_inf * rel
            flops["small_model_total"] = flops["small_model_pretrain"] + flops["small_model_inference"]
            if hw is not None and spec is not None:
                p["cost"] = _gpu_hours(bp, cmp["per_bin"], spec, hw, multiplier, queries, slo_s)
        if hw is not None:
            denom = hw.peak_flops_per_s * train_mfu * 3600.0
            flops_h = {"small_model_pretrain_gpu_hours": flops["small_model_pretrain"] / denom,
                       "larger_model_pretrain_gpu_hours": flops["larger_model_pretrain"] / denom}
            p.setdefault("cost", {}).update(flops_h)
        p["flops"] = flops
        points.append(p)
    out: dict[str, Any] = {
        "model_multiplier": multiplier, "params": n, "pretrain_tokens": d, "days": days,
        "tokens_per_query": tokens_per_query, "points": points, "flips": _flips(points),
    }
    if larger is not None:
        out["larger_model"] = {"extrapolated": larger.extrapolated, **larger.info}
    if bp is not None:
        out["tokens_per_query_by_strategy"] = _tokens_by_strategy(bp)
    if as_json:
        echo_json(out)
        return
    tag = " (larger model EXTRAPOLATED)" if larger is not None and larger.extrapolated else ""
    if larger is not None and larger.info.get("warning"):
        click.echo(f"warning: {larger.info['warning']}")
    click.echo(f"M = {multiplier:g}, N = {n:.3g}, D_pretrain = {d:.3g}, {tokens_per_query:.0f} tokens/query, {days:g} days{tag}")
    click.echo(f"{'queries/day':>12} {'R':>10} {'X':>9}  {'overall':<12} per bin (1 = easiest)")
    for p in points:
        ov = p.get("overall", {}).get("winner", "-")
        bins_s = " ".join(f"{b['bin']}:{b['winner'][:4]}" for b in p.get("per_bin", []))
        click.echo(f"{p['queries_per_day']:12.3g} {p['ratio']:10.4g} {p['budget_multiplier']:9.2f}  {ov:<12} {bins_s}")
    for f in out["flips"]:
        click.echo(f"flip ({f['scope']}): {f['from']} -> {f['to']} between {f['between_queries_per_day'][0]:.3g} "
                   f"and {f['between_queries_per_day'][1]:.3g} queries/day")


# ----------------------------------------------------------------------------------------------
# ttc cost


def cost_rows(bp_or_profile: Any, spec: Any, hw: Any, verifier: Any, batch: int | None, slo_s: float | None,
              shared_prefix: bool, per_bin: bool) -> list[dict[str, Any]]:
    """Cost of every option of a binned profile (overall means, or per bin)."""
    from planner.cost import meets_slo, simulate, workload_from_profile
    from planner.schema import parse_config

    opts = bp_or_profile.options
    if not per_bin:
        w = opts["bin"].map(bp_or_profile.weights)
        opts = opts.assign(_w=w)
        cols = ["flops", "tokens", "prompt_tokens", "acc"]
        agg = opts.groupby(["strategy", "config", "budget"], sort=True).apply(
            lambda g: g[cols].multiply(g["_w"], axis=0).sum() / g["_w"].sum(), include_groups=False
        ).reset_index()
        opts = agg.assign(bin=0)
    rows = []
    for _, r in opts.iterrows():
        cfg = parse_config(r["config"])
        w = workload_from_profile(r["strategy"], cfg, float(r["budget"]), float(r["tokens"]),
                                  float(r["prompt_tokens"]), shared_prefix=shared_prefix)
        res = simulate(w, spec, hw, verifier=verifier, batch=batch)
        row = {"strategy": r["strategy"], "config": cfg, "budget": float(r["budget"]),
               "accuracy": float(r["acc"]), "tokens": float(r["tokens"]), "prompt_tokens": float(r["prompt_tokens"]),
               "width": w.width, "depth": w.depth, **res.as_dict(), "meets_slo": meets_slo(res, slo_s)}
        if per_bin:
            row["bin"] = int(r["bin"])
        rows.append(row)
    return rows


@click.command("cost")
@click.argument("profile_dir", required=False, type=click.Path())
@click.option("--hardware", default="h100-sxm", show_default=True,
              help="Hardware profile: a name in data/hardware or a JSON path (ttc calibrate writes one).")
@click.option("--model", default=None, help="Served model: a data/models name or a Hugging Face config.json/folder.")
@click.option("--verifier-model", default=None, help="Verifier model spec (default: the served model).")
@click.option("--batch", type=int, default=None, help="Sequences in flight (default: the largest the KV memory allows, up to 256).")
@click.option("--slo-s", type=float, default=None, help="Latency SLO in seconds; options above it are flagged (and hidden with --only-slo).")
@click.option("--only-slo", is_flag=True, help="List only the options that meet the SLO.")
@click.option("--usd-per-hour", type=float, default=None, help="Override the hardware's price.")
@click.option("--no-shared-prefix", is_flag=True, help="Prefill the prompt once per sample, not once per query.")
@click.option("--per-bin", is_flag=True, help="One row per difficulty bin and option.")
@_bins_option
@click.option("--strategy", default="sample", show_default=True, help="Without a profile: the strategy.")
@click.option("--config", "config_text", default='{"select":"majority"}', show_default=True,
              help="Without a profile: the strategy's config JSON.")
@click.option("--budget", type=float, default=1.0, show_default=True, help="Without a profile: budget in generations.")
@click.option("--prompt-tokens", type=float, default=None, help="Without a profile: prompt tokens per sample.")
@click.option("--gen-tokens", type=float, default=None, help="Without a profile: generated tokens per sample.")
@click.option("--list-hardware", is_flag=True, help="List the shipped hardware profiles and exit.")
@json_option
@handle_errors
def cost_cmd(profile_dir: str | None, hardware: str, model: str | None, verifier_model: str | None,
             batch: int | None, slo_s: float | None, only_slo: bool, usd_per_hour: float | None,
             no_shared_prefix: bool, per_bin: bool, bins: str, strategy: str, config_text: str, budget: float,
             prompt_tokens: float | None, gen_tokens: float | None, list_hardware: bool, as_json: bool) -> None:
    """Serving cost per strategy, config and budget: a roofline simulator (prefill compute-bound,
    decode bandwidth-bound) giving latency per query, GPU-seconds, $ per 1k queries and queries/s
    per GPU, with an optional latency SLO filter.

    \b
    Example:
      ttc cost --list-hardware
      ttc cost --model llama-3.1-8b --hardware h100-sxm --budget 16 --prompt-tokens 300 --gen-tokens 400
      ttc cost runs/profile --model llama-3.1-8b --hardware a100-80gb --slo-s 10 --json
    """
    from planner.cost import meets_slo, simulate, workload_from_profile
    from planner.hardware import known_hardware, load_hardware
    from planner.modelspec import load_model
    from planner.schema import parse_config

    if list_hardware:
        names = known_hardware()
        if as_json:
            echo_json({"hardware": [load_hardware(n).to_json() for n in names]})
        else:
            for n in names:
                h = load_hardware(n)
                click.echo(f"{n:<12} {h.peak_flops_per_s / 1e12:7.1f} TFLOP/s  {h.hbm_bytes_per_s / 1e12:5.2f} TB/s  "
                           f"{h.hbm_bytes / 1e9:5.0f} GB  {h.usd_per_hour:5.2f} $/h")
        return
    if model is None:
        raise PlannerError("--model is required (a data/models name or a Hugging Face config.json)")
    if batch is not None and batch < 1:
        raise PlannerError(f"--batch must be >= 1, got {batch}")
    _positive("--slo-s", slo_s)
    hw = _hardware(hardware, usd_per_hour)
    spec = load_model(model)
    verifier = load_model(verifier_model) if verifier_model else None
    if profile_dir:
        rows = cost_rows(_binned(profile_dir, bins), spec, hw, verifier, batch, slo_s, not no_shared_prefix, per_bin)
    else:
        if prompt_tokens is None or gen_tokens is None:
            raise PlannerError("without a profile, give --prompt-tokens and --gen-tokens (per sample)")
        if prompt_tokens < 0 or gen_tokens <= 0 or budget <= 0:
            raise PlannerError("--prompt-tokens must be >= 0, --gen-tokens and --budget > 0")
        try:
            cfg = parse_config(config_text)
        except json.JSONDecodeError:
            raise PlannerError(f"--config is not valid JSON: {config_text!r}") from None
        w = workload_from_profile(strategy, cfg, budget, gen_tokens * budget, prompt_tokens * budget,
                                  shared_prefix=not no_shared_prefix)
        res = simulate(w, spec, hw, verifier=verifier, batch=batch)
        rows = [{"strategy": strategy, "config": cfg, "budget": budget, "tokens": w.gen_tokens,
                 "prompt_tokens": prompt_tokens * budget, "width": w.width, "depth": w.depth, **res.as_dict(),
                 "meets_slo": meets_slo(res, slo_s)}]
    if only_slo:
        rows = [r for r in rows if r["meets_slo"]]
    out = {"hardware": hw.to_json(), "model": spec.name, "n_params": spec.n_params, "slo_s": slo_s, "rows": rows}
    if as_json:
        echo_json(out)
        return
    click.echo(f"{spec.name} on {hw.name} ({hw.usd_per_hour:g} $/h per GPU)")
    click.echo(f"{'strategy':<10} {'budget':>6} {'latency s':>10} {'GPU-s/q':>10} {'$/1k q':>9} {'q/s/GPU':>9} {'batch':>5} {'gpus':>4}  slo  config")
    for r in rows:
        click.echo(f"{r['strategy']:<10} {r['budget']:6g} {r['latency_s']:10.3g} {r['gpu_s_per_query']:10.3g} "
                   f"{r['usd_per_1k_queries']:9.3g} {r['queries_per_s_per_gpu']:9.3g} {r['batch']:5d} {r['n_gpus']:4d}  "
                   f"{'yes' if r['meets_slo'] else 'NO ':<4} {json.dumps(r['config'], sort_keys=True)}")


# ----------------------------------------------------------------------------------------------
# ttc calibrate


@click.command("calibrate")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the hardware profile JSON.")
@click.option("--name", default="this-machine", show_default=True, help="Profile name.")
@click.option("--size", default=1024, show_default=True, help="Square matmul size for the FLOP/s measurement.")
@click.option("--mbytes", default=256, show_default=True, help="Buffer size (MiB) for the bandwidth measurement.")
@click.option("--repeats", default=5, show_default=True, help="Timed repeats; the best is kept.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True,
              help="Matmul dtype (the testbed runs float32 on CPU).")
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
@click.option("--usd-per-hour", type=float, default=0.0, show_default=True, help="Price to record.")
@click.option("--model-dir", type=click.Path(file_okay=False), default=None,
              help="Measure context and prefill overheads on a random-weight model of this config's shape.")
@click.option("--rows", type=click.IntRange(min=2), default=32, show_default=True,
              help="Decode batch the per-row and attention overheads are measured at (the serving batch).")
@json_option
@handle_errors
def calibrate_cmd(out_path: str, name: str, size: int, mbytes: int, repeats: int, dtype: str, threads: int | None,
                  usd_per_hour: float, model_dir: str | None, rows: int, as_json: bool) -> None:
    """Measure this machine's matmul FLOP/s, memory bandwidth and per-forward overhead with torch,
    and write a hardware profile the cost simulator reads (efficiencies 1.0: the values are
    measured achievable rates).

    \b
    Example:
      ttc calibrate --out runs/this-cpu.json
      ttc calibrate --out runs/this-cpu.json --model-dir runs/testbed/policy --rows 64 --threads 1
      ttc cost --hardware runs/this-cpu.json --model models/testbed/lm --budget 4 --prompt-tokens 40 --gen-tokens 60
    """
    if size < 16 or mbytes < 1 or repeats < 1:
        raise PlannerError("--size must be >= 16, --mbytes >= 1, --repeats >= 1")
    if usd_per_hour < 0:
        raise PlannerError("--usd-per-hour must be >= 0")
    try:
        from profiling.calibrate import calibrate
    except ImportError as exc:
        raise PlannerError(f"ttc calibrate needs torch (pip install '.[profile]'): {exc}") from None
    from planner.fsutil import atomic_write_text
    from planner.hardware import hardware_from_json

    if model_dir is not None and not (Path(model_dir) / "config.json").is_file():
        raise PlannerError(f"--model-dir {model_dir}: no config.json (expected a Hugging Face model directory)")
    doc = calibrate(name=name, size=size, mbytes=mbytes, repeats=repeats, dtype=dtype, threads=threads,
                    usd_per_hour=usd_per_hour, model_dir=model_dir, rows=rows)
    hardware_from_json(doc, out_path)  # validate before writing
    atomic_write_text(out_path, dumps_json(doc) + "\n")
    if as_json:
        echo_json(doc)
        return
    click.echo(f"wrote {out_path}: {doc['peak_flops_per_s']['value'] / 1e9:.1f} GFLOP/s, "
               f"{doc['hbm_bytes_per_s']['value'] / 1e9:.2f} GB/s, "
               f"{doc['step_overhead_s']['value'] * 1e3:.3f} ms per forward call")


# ----------------------------------------------------------------------------------------------
# ttc allocate


@click.command("allocate")
@click.argument("profile_dir", type=click.Path())
@click.option("--budget", type=float, default=None, help="Mean budget per query in the metric's unit (omit: frontier only).")
@click.option("--metric", type=click.Choice(["flops", "generations", "usd"]), default="flops", show_default=True,
              help="What the mean budget counts (usd needs --hardware and --model).")
@click.option("--hardware", default=None, help="Hardware profile for usd and the SLO.")
@click.option("--model", default=None, help="Served model spec for usd and the SLO.")
@click.option("--slo-s", type=float, default=None, help="Drop options whose latency exceeds this (needs --hardware, --model).")
@click.option("--usd-per-hour", type=float, default=None, help="Override the hardware's price.")
@_bins_option
@json_option
@handle_errors
def allocate_cmd(profile_dir: str, budget: float | None, metric: str, hardware: str | None, model: str | None,
                 slo_s: float | None, usd_per_hour: float | None, bins: str, as_json: bool) -> None:
    """Choose strategy, config and budget per difficulty bin to maximise expected accuracy under a
    mean budget: an exact multiple-choice knapsack (scipy.optimize.milp), its Pareto frontier, and
    the gain over the paper's fixed budget per prompt at equal mean cost.

    \b
    Example:
      ttc allocate runs/profile --metric generations --budget 16
      ttc allocate runs/profile --metric usd --hardware h100-sxm --model llama-3.1-8b --slo-s 10 --json
    """
    import pandas as pd

    from planner.allocate import (
        build_menu,
        compare_with_fixed,
        cross_fitted_accuracy,
        describe,
        frontier_table,
        solve_mckp,
    )

    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise PlannerError(f"--budget must be a positive number, got {budget:g}")
    _positive("--slo-s", slo_s)
    bp = _binned(profile_dir, bins)
    cost_col, keep = None, None
    if metric == "usd" or slo_s is not None:
        if not (hardware and model):
            raise PlannerError("--metric usd and --slo-s need --hardware and --model")
        from planner.modelspec import load_model

        rows = cost_rows(bp, load_model(model), _hardware(hardware, usd_per_hour), None, None, slo_s, True, True)
        if metric == "usd":
            cost_col = pd.Series([r["usd_per_1k_queries"] / 1000.0 for r in rows])
        if slo_s is not None:
            keep = pd.Series([r["meets_slo"] for r in rows])
    menu = build_menu(bp, metric, cost_col, keep)
    out: dict[str, Any] = {"bins": bp.bin_column, "metric": metric,
                           "unit": {"flops": "FLOPs per query", "generations": "generations per query",
                                    "usd": "$ per query"}[metric],
                           "weights": {str(b): w for b, w in zip(menu.bins, menu.weights, strict=True)},
                           "slo_s": slo_s}
    if budget is not None:
        a = solve_mckp(menu.values(), menu.costs(), menu.weights, budget, metric)
        out["allocation"] = {"budget": budget, **describe(menu, a)}
        if metric in ("flops", "generations") and keep is None:
            out["allocation"]["cross_fitted_accuracy"] = cross_fitted_accuracy(bp, metric, budget)
    out["vs_fixed_budget"] = compare_with_fixed(menu)
    out["frontier"] = frontier_table(menu)
    if as_json:
        echo_json(out)
        return
    if budget is not None:
        al = out["allocation"]
        click.echo(f"allocation at mean {metric} {budget:.4g}: accuracy {100 * al['accuracy']:.1f}% "
                   f"(mean cost {al['mean_cost']:.4g})")
        for b in al["per_bin"]:
            click.echo(f"  bin {b['bin']} ({100 * b['share']:.0f}%): {b['strategy']} "
                       f"{json.dumps(b['config'], sort_keys=True)} budget {b['budget']:g} -> {100 * b['accuracy']:.1f}%")
        if al.get("cross_fitted_accuracy") is not None:
            click.echo(f"  cross-fitted (choose on one fold, score the other): {100 * al['cross_fitted_accuracy']:.1f}%")
    click.echo("vs the paper's fixed budget per prompt, at equal mean cost:")
    for r in out["vs_fixed_budget"]:
        click.echo(f"  fixed {r['fixed_budget']:g}: {100 * r['fixed_accuracy']:.1f}% -> allocated "
                   f"{100 * r['allocated_accuracy']:.1f}% ({r['gain_points']:+.1f} pts) at mean cost {r['mean_cost']:.4g}")
    click.echo(f"Pareto frontier: {len(out['frontier'])} points (--json lists them)")


COMMANDS = [exchange_cmd, whatif_cmd, cost_cmd, calibrate_cmd, allocate_cmd]

"""`ttc exchange` and `ttc whatif`: bigger model or more test-time compute, per load.

Only click and light planner modules are imported here at import time; the library
(`planner.costs`, `planner.optimize`) is imported inside the commands.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import click

from planner.commands.common import (
    bins_option,
    echo_json,
    handle_errors,
    hardware_option,
    json_option,
    parse_float_list,
    positive,
)
from planner.errors import PlannerError

if TYPE_CHECKING:  # the library loads inside the commands, so that `ttc --help` stays fast
    from planner.costs import ModelSpec

_LAWS = ["chinchilla", "besiroglu"]


def _ratios(text: str) -> list[float]:
    vals = parse_float_list(text, "--ratio")
    if not vals:
        raise click.BadParameter("--ratio needs at least one number")
    for r in vals:
        if not (math.isfinite(r) and r > 0):
            raise PlannerError(f"R = D_inference / D_pretrain must be a positive number, got {r:g}")
    return vals


def _small_model(
    model: str | None,
    params: float | None,
    pretrain_tokens: float | None,
    meta: dict[str, Any] | None,
) -> tuple[float | None, float | None, ModelSpec | None]:
    """(N, D_pretrain, ModelSpec or None) from --model, --params, --pretrain-tokens or metadata."""
    from planner.costs import load_model, small_model_size

    spec = load_model(model) if model else None
    n, d = small_model_size(
        spec, positive("--params", params), positive("--pretrain-tokens", pretrain_tokens), meta
    )
    return n, d, spec


_law_option = click.option(
    "--law",
    type=click.Choice(_LAWS),
    default="chinchilla",
    show_default=True,
    help="Scaling law for an extrapolated larger model.",
)
_slope_option = click.option(
    "--logit-slope",
    type=float,
    default=7.4,
    show_default=True,
    help="Logit of pass@1 gained per nat of loss (extrapolation).",
)


# ----------------------------------------------------------------------------------------------
# ttc exchange


def _fmt_bin_line(b: dict[str, Any]) -> str:
    if "difference_points" not in b:
        return f"  bin {b['bin']}: {b['winner']} ({b.get('note', '')})"
    lo, hi = b["ci95_points"]
    opt = b["option"]
    return (
        f"  bin {b['bin']}: {b['winner']:<11} test-time {100 * b['test_time_accuracy']:5.1f}% vs "
        f"larger {100 * b['larger_model_accuracy']:5.1f}%  diff {b['difference_points']:+5.1f} pts "
        f"[{lo:+.1f}, {hi:+.1f}]  via {opt['strategy']} "
        f"{json.dumps(opt['config'], sort_keys=True)} budget {opt['budget']:g}"
    )


@click.command("exchange")
@click.argument("profile_dir", required=False, type=click.Path())
@click.option(
    "--multiplier",
    "-M",
    type=float,
    required=True,
    help="M: the larger model's size / the small model's.",
)
@click.option(
    "--ratio",
    "-R",
    "ratio_text",
    default="0.16,0.79,22",
    show_default=True,
    help="R = D_inference / D_pretrain; comma-separated for several.",
)
@click.option(
    "--larger-profile",
    type=click.Path(),
    default=None,
    help="Profile directory of the larger model (its pass@1 per bin).",
)
@click.option(
    "--model",
    default=None,
    help="Small model spec (name in data/models or config.json) for N and D.",
)
@click.option("--params", type=float, default=None, help="Small model parameter count N.")
@click.option(
    "--pretrain-tokens", type=float, default=None, help="Small model pretraining tokens D."
)
@_law_option
@_slope_option
@bins_option
@click.option(
    "--require-bins",
    default=None,
    help="Comma-separated bins the profile must have (e.g. 1,2,3,4,5).",
)
@json_option
@handle_errors
def exchange_cmd(
    profile_dir: str | None,
    multiplier: float,
    ratio_text: str,
    larger_profile: str | None,
    model: str | None,
    params: float | None,
    pretrain_tokens: float | None,
    law: str,
    logit_slope: float,
    bins: str,
    require_bins: str | None,
    as_json: bool,
) -> None:
    """Bigger model or more test-time compute? The FLOPs exchange of Snell et al. 2024.

    A model M times larger costs M times the pretraining and inference FLOPs; with R = D_inference /
    D_pretrain the small model may spend X = M + 3(M-1)/R times its inference FLOPs. With a
    PROFILE, each difficulty bin's best test-time option within X is compared with the larger
    model's pass@1 (from --larger-profile, or extrapolated by a scaling law and labelled so).

    \b
    Example:
      ttc exchange --multiplier 14 --ratio 0.16 --json
      ttc exchange runs/tb-profile --multiplier 14 --ratio 0.16,0.79,22 \\
          --larger-profile runs/tb-large-profile
      ttc exchange runs/tb-profile -M 14 --model qwen2.5-1.5b --law besiroglu
    """
    from planner.costs import check_positive, exchange_formula, exchange_report, larger_model
    from planner.optimize import load_binned_profile

    check_positive("model multiplier M", multiplier)
    ratios = _ratios(ratio_text)
    if profile_dir is None:
        out = exchange_formula(multiplier, ratios)
    else:
        bp = load_binned_profile(profile_dir, bins)
        n, d, _ = _small_model(model, params, pretrain_tokens, bp.metadata)
        larger = larger_model(bp, larger_profile, n, d, multiplier, law, logit_slope)
        needed = (
            [int(v) for v in parse_float_list(require_bins, "--require-bins")]
            if require_bins
            else None
        )
        out = exchange_report(bp, larger, multiplier, ratios, needed)
    if as_json:
        echo_json(out)
        return
    if "budget_unit" in out:
        click.echo(
            f"X counts: {out['budget_unit']}; selection per bin: cross-fitted "
            "over folds when possible"
        )
    if out.get("larger_model", {}).get("warning"):
        click.echo(f"warning: {out['larger_model']['warning']}")
    for r in out["results"]:
        click.echo(
            f"M = {multiplier:g}, R = {r['ratio']:g}: budget multiplier X = "
            f"{r['budget_multiplier']:.2f}"
        )
        if "per_bin" in r:
            tag = " (larger model EXTRAPOLATED)" if out["larger_model"]["extrapolated"] else ""
            o = r["overall"]
            ci = o.get("ci95_points")
            click.echo(
                f"  overall: {o['winner']}"
                + (
                    f" by {o['difference_points']:+.1f} pts [{ci[0]:+.1f}, {ci[1]:+.1f}]"
                    if ci
                    else ""
                )
                + tag
            )
            for b in r["per_bin"]:
                click.echo(_fmt_bin_line(b))


# ----------------------------------------------------------------------------------------------
# ttc whatif


@click.command("whatif")
@click.argument("profile_dir", required=False, type=click.Path())
@click.option(
    "--queries-per-day",
    "load_text",
    required=True,
    help="Load: a number, a comma list, or a log range like 1e3..1e9.",
)
@click.option("--points-per-decade", default=4, show_default=True, help="Grid density of a range.")
@click.option("--days", type=float, default=365.0, show_default=True, help="Deployment days.")
@click.option(
    "--multiplier",
    "-M",
    type=float,
    required=True,
    help="M: the larger model's size / the small model's.",
)
@click.option(
    "--model",
    default=None,
    help="Small model spec (data/models name or config.json): N, D and shapes.",
)
@click.option(
    "--params", type=float, default=None, help="Small model parameter count N (overrides --model)."
)
@click.option(
    "--pretrain-tokens", type=float, default=None, help="Small model pretraining tokens D."
)
@click.option(
    "--tokens-per-query",
    type=float,
    default=None,
    help="Prompt + generated tokens of one plain answer (default: from the profile).",
)
@click.option(
    "--larger-profile",
    type=click.Path(),
    default=None,
    help="Profile directory of the larger model.",
)
@click.option(
    "--hardware", default=None, help="Hardware profile name or JSON for GPU-hours and dollars."
)
@click.option("--usd-per-hour", type=float, default=None, help="Override the hardware's price.")
@click.option(
    "--train-mfu",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.4,
    show_default=True,
    help="Model FLOPs utilisation of pretraining.",
)
@click.option(
    "--slo-s", type=float, default=None, help="Latency SLO in seconds (reported per option)."
)
@_law_option
@_slope_option
@bins_option
@json_option
@handle_errors
def whatif_cmd(
    profile_dir: str | None,
    load_text: str,
    points_per_decade: int,
    days: float,
    multiplier: float,
    model: str | None,
    params: float | None,
    pretrain_tokens: float | None,
    tokens_per_query: float | None,
    larger_profile: str | None,
    hardware: str | None,
    usd_per_hour: float | None,
    train_mfu: float,
    slo_s: float | None,
    law: str,
    logit_slope: float,
    bins: str,
    as_json: bool,
) -> None:
    """Inference-load what-if: from the load, R and the exchange answer per bin, with total FLOPs
    (and GPU-hours and dollars with --hardware and --model) of both options.

    D_inference = queries/day x days x tokens per plain answer (prompt + generated, from the
    profile's budget-1 sample rows); R = D_inference / D_pretrain. A range of loads shows where
    the answer flips (the `flips` field).

    \b
    Example:
      ttc whatif --queries-per-day 2e6 --days 365 -M 14 --model llama-3.1-8b --tokens-per-query 600
      ttc whatif runs/tb-profile --queries-per-day 1e3..1e9 -M 14 --params 1.5e9 \\
          --pretrain-tokens 18e12
      ttc whatif runs/tb-profile --queries-per-day 2e6 -M 9 --model llama-3.1-8b \\
          --hardware h100-sxm --json
    """
    from planner.costs import Deployment, check_positive, parse_load, whatif_report
    from planner.optimize import load_binned_profile

    check_positive("model multiplier M", multiplier)
    check_positive("deployment days", days)
    if points_per_decade < 1:
        raise PlannerError("--points-per-decade must be >= 1")
    loads = parse_load(load_text, points_per_decade)
    hw = hardware_option(hardware, usd_per_hour)
    bp = load_binned_profile(profile_dir, bins) if profile_dir else None
    n, d, spec = _small_model(model, params, pretrain_tokens, bp.metadata if bp else None)
    if n is None or d is None:
        raise PlannerError(
            "need the small model's size and data: --params and --pretrain-tokens, or --model NAME"
        )
    dep = Deployment(tuple(loads), days, multiplier, n, d, tokens_per_query, train_mfu, slo_s)
    out = whatif_report(dep, bp, larger_profile, law, logit_slope, hw, spec)
    if as_json:
        echo_json(out)
        return
    larger = out.get("larger_model", {})
    tag = " (larger model EXTRAPOLATED)" if larger.get("extrapolated") else ""
    if larger.get("warning"):
        click.echo(f"warning: {larger['warning']}")
    click.echo(
        f"M = {multiplier:g}, N = {n:.3g}, D_pretrain = {d:.3g}, {out['tokens_per_query']:.0f} "
        f"tokens/query, {days:g} days{tag}"
    )
    click.echo(f"{'queries/day':>12} {'R':>10} {'X':>9}  {'overall':<12} per bin (1 = easiest)")
    for p in out["points"]:
        ov = p.get("overall", {}).get("winner", "-")
        bins_s = " ".join(f"{b['bin']}:{b['winner'][:4]}" for b in p.get("per_bin", []))
        click.echo(
            f"{p['queries_per_day']:12.3g} {p['ratio']:10.4g} "
            f"{p['budget_multiplier']:9.2f}  {ov:<12} {bins_s}"
        )
    for f in out["flips"]:
        click.echo(
            f"flip ({f['scope']}): {f['from']} -> {f['to']} between "
            f"{f['between_queries_per_day'][0]:.3g} and "
            f"{f['between_queries_per_day'][1]:.3g} queries/day"
        )


COMMANDS = [exchange_cmd, whatif_cmd]

"""`ttc allocate`: a mean budget split across difficulty bins (exact multiple-choice knapsack)."""

from __future__ import annotations

import json
import math

import click

from planner.commands.common import (
    bins_option,
    echo_json,
    handle_errors,
    hardware_option,
    json_option,
    positive,
)
from planner.errors import PlannerError


@click.command("allocate")
@click.argument("profile_dir", type=click.Path())
@click.option(
    "--budget",
    type=float,
    default=None,
    help="Mean budget per query in the metric's unit (omit: frontier only).",
)
@click.option(
    "--metric",
    type=click.Choice(["flops", "generations", "usd"]),
    default="flops",
    show_default=True,
    help="What the mean budget counts (usd needs --hardware and --model).",
)
@click.option("--hardware", default=None, help="Hardware profile for usd and the SLO.")
@click.option("--model", default=None, help="Served model spec for usd and the SLO.")
@click.option(
    "--slo-s",
    type=float,
    default=None,
    help="Drop options whose latency exceeds this (needs --hardware, --model).",
)
@click.option("--usd-per-hour", type=float, default=None, help="Override the hardware's price.")
@bins_option
@json_option
@handle_errors
def allocate_cmd(
    profile_dir: str,
    budget: float | None,
    metric: str,
    hardware: str | None,
    model: str | None,
    slo_s: float | None,
    usd_per_hour: float | None,
    bins: str,
    as_json: bool,
) -> None:
    """Choose strategy, config and budget per difficulty bin to maximise expected accuracy under a
    mean budget: an exact multiple-choice knapsack (scipy.optimize.milp), its Pareto frontier, and
    the gain over the paper's fixed budget per prompt at equal mean cost.

    \b
    Example:
      ttc allocate runs/tb-profile --metric generations --budget 16
      ttc allocate runs/tb-profile --metric usd --hardware h100-sxm --model llama-3.1-8b \\
          --slo-s 10 --json
    """
    from planner.costs import load_model, option_serving_costs
    from planner.optimize import allocation_report, load_binned_profile

    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise PlannerError(f"--budget must be a positive number, got {budget:g}")
    positive("--slo-s", slo_s)
    bp = load_binned_profile(profile_dir, bins)
    cost_col, keep = None, None
    if metric == "usd" or slo_s is not None:
        if not (hardware and model):
            raise PlannerError("--metric usd and --slo-s need --hardware and --model")
        spec = load_model(model)
        usd, meets = option_serving_costs(bp, spec, hardware_option(hardware, usd_per_hour), slo_s)
        cost_col = usd if metric == "usd" else None
        keep = meets if slo_s is not None else None
    out = allocation_report(bp, metric, budget, cost_col, keep, slo_s)
    if as_json:
        echo_json(out)
        return
    if budget is not None:
        al = out["allocation"]
        click.echo(
            f"allocation at mean {metric} {budget:.4g}: accuracy {100 * al['accuracy']:.1f}% "
            f"(mean cost {al['mean_cost']:.4g})"
        )
        for b in al["per_bin"]:
            click.echo(
                f"  bin {b['bin']} ({100 * b['share']:.0f}%): {b['strategy']} "
                f"{json.dumps(b['config'], sort_keys=True)} budget {b['budget']:g} -> "
                f"{100 * b['accuracy']:.1f}%"
            )
        if al.get("cross_fitted_accuracy") is not None:
            click.echo(
                "  cross-fitted (choose on one fold, score the other): "
                f"{100 * al['cross_fitted_accuracy']:.1f}%"
            )
    click.echo("vs the paper's fixed budget per prompt, at equal mean cost:")
    for r in out["vs_fixed_budget"]:
        click.echo(
            f"  fixed {r['fixed_budget']:g}: {100 * r['fixed_accuracy']:.1f}% -> allocated "
            f"{100 * r['allocated_accuracy']:.1f}% ({r['gain_points']:+.1f} pts) at mean cost "
            f"{r['mean_cost']:.4g}"
        )
    click.echo(f"Pareto frontier: {len(out['frontier'])} points (--json lists them)")


COMMANDS = [allocate_cmd]

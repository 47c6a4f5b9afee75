"""`ttc plan`: profile -> compute-optimal plan per difficulty bin and budget."""

from __future__ import annotations

import math

import click

from planner.commands.common import (
    dumps_json,
    echo_json,
    handle_errors,
    json_option,
    parse_float_list,
)


def _fmt_pct(x: float) -> str:
    return "   -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:5.1f}%"


def render_summary(summary: dict) -> str:
    """A readable table: accuracy per budget for compute-optimal and the baselines."""
    methods = []
    for entry in summary["per_budget"]:
        for m in entry["methods"]:
            if m not in methods:
                methods.append(m)
    unit = "gens" if summary["unit"] == "generations" else "FLOPs"
    head = (
        f"{'budget (' + unit + ')':>16}  "
        + "  ".join(f"{m[:18]:>18}" for m in methods)
        + "  efficiency"
    )
    lines = [head, "-" * len(head)]
    for entry in summary["per_budget"]:
        b = entry["budget"]
        bs = f"{b:g}" if summary["unit"] == "generations" else f"{b:.3g}"
        cells = []
        for m in methods:
            r = entry["methods"].get(m)
            cells.append(
                f"{'-':>18}"
                if r is None
                else (
                    f"{_fmt_pct(r['accuracy'])} [{100 * r['ci_lo']:4.1f},{100 * r['ci_hi']:5.1f}]"
                ).rjust(18)
            )
        e = entry["efficiency_multiple"]
        es = e if isinstance(e, str) or e is None else f"{e:.2f}x"
        lines.append(f"{bs:>16}  " + "  ".join(cells) + f"  {es}")
    gains = [
        (e["budget"], e["gain_over_single"])
        for e in summary["per_budget"]
        if "gain_over_single" in e
    ]
    if gains:
        lines.append("")
        lines.append(
            "compute-optimal minus the best single option (both cross-fitted), points [CI]:"
        )
        for b, g in gains:
            bs = f"{b:g}" if summary["unit"] == "generations" else f"{b:.3g}"
            lines.append(
                f"  {bs:>10}: {100 * g['mean']:+5.1f} [{100 * g['ci_lo']:+5.1f}, "
                f"{100 * g['ci_hi']:+5.1f}]"
            )
    dropped = summary.get("dropped_by_strategy") or {}
    if dropped:
        lines.append("")
        lines.append(
            f"left out: {summary['dropped_incomplete_options']} options measured on fewer than "
            f"the plan's {summary['problems']} problems (options are compared on the same "
            "problems only; an adaptive profile stops those that cannot win): "
            + ", ".join(
                f"{s} ({d['options']}, on at most {d['problems']})" for s, d in dropped.items()
            )
        )
    lines.append("")
    lines.append("compute-optimal choice per bin (bin 1 = easiest) at the largest budget:")
    method = (summary.get("expected_accuracy") or {}).get("method", "K-fold")
    if summary["per_budget"]:
        for c in summary["per_budget"][-1]["choices"]:
            exp = c.get("expected_accuracy")
            lines.append(
                f"  bin {c['bin']}: {c['strategy']} {c['config']} (budget {c['option_budget']:g}"
                + ("" if c.get("probe", True) else ", no probes")
                + ") "
                f"-> {_fmt_pct(c['accuracy'])} cross-validated (two-fold)"
                + ("" if exp is None else f", {_fmt_pct(exp)} expected ({method})")
            )
    return "\n".join(lines)


@click.command("plan")
@click.argument("profile_dir", type=click.Path())
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory."
)
@click.option(
    "--unit",
    type=click.Choice(["generations", "flops"]),
    default="generations",
    show_default=True,
    help="What a budget counts.",
)
@click.option(
    "--budgets", default=None, help="Comma-separated budgets in the chosen unit (default: all)."
)
@click.option(
    "--bins", "n_bins", default=None, type=int, help="Re-bin pass@1 into this many quantile bins."
)
@click.option(
    "--bin-by",
    type=click.Choice(["oracle", "level", "predicted"]),
    default="oracle",
    show_default=True,
    help="Difficulty bins: oracle pass@1 quantiles, a given level, or predicted bins.",
)
@click.option(
    "--verifier", default=None, help="Verifier of the best-of-N baselines (default: each one)."
)
@click.option(
    "--n-boot",
    default=1000,
    show_default=True,
    help="Bootstrap resamples (0 = normal approximation).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    help="Seed of the folds (with --bins) and the bootstrap.",
)
@click.option(
    "--probe-k",
    default=None,
    type=click.IntRange(min=0),
    help="Charge k probe samples to every prompt (default: the profile's probes with --bin-by "
    "predicted, else 0).",
)
@click.option(
    "--expect-folds",
    default=10,
    show_default=True,
    type=click.IntRange(min=2),
    help="K of the repeated K-fold estimate of each deployed choice's accuracy "
    "(choices' expected_*).",
)
@click.option(
    "--expect-repeats",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Seeded K-fold splits averaged in that estimate.",
)
@click.option(
    "--expect-method",
    type=click.Choice(["kfold", "bootstrap"]),
    default="kfold",
    show_default=True,
    help="Estimator of each deployed choice's accuracy: repeated K-fold cross-fitting, or the "
    "in-sample accuracy minus a bootstrap estimate of the winner's curse "
    "(--select-rule best only).",
)
@click.option(
    "--select-rule",
    type=click.Choice(["pooled", "best", "one-se"]),
    default="pooled",
    show_default=True,
    help="How the deployed options are chosen. pooled: one option for every prompt without "
    "probes, or per-bin options shrunk toward each option's accuracy over all bins (from a "
    "shortlist), whichever nested cross-validation supports; its cross-fit is the "
    "compute-optimal curve, and it never promises less than the best single option. best: per "
    "bin the most accurate (the paper, two-fold curve); one-se: per bin the cheapest within one "
    "paired standard error of it.",
)
@click.option(
    "--pool-strengths",
    default="4,1,0.25,0",
    show_default=True,
    help="pooled: the per-bin candidates' prior strengths, in problems per bin (0 = each bin "
    "alone; large = nearly one option for all bins).",
)
@click.option(
    "--shortlist-z",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="pooled: drop an option before any bin chooses when one that costs no more is more "
    "accurate over all problems by this many standard errors of each (0 = no shortlist).",
)
@click.option(
    "--inner-folds",
    default=5,
    show_default=True,
    type=click.IntRange(min=2),
    help="pooled: K of the inner cross-validation that picks the pooling strength.",
)
@click.option(
    "--se-factor",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="pooled: take the simplest candidate within this many paired standard errors of the "
    "best in the inner cross-validation (0 = the best).",
)
@json_option
@handle_errors
def plan_cmd(
    profile_dir: str,
    out_dir: str,
    unit: str,
    budgets: str | None,
    n_bins: int | None,
    bin_by: str,
    verifier: str | None,
    n_boot: int,
    seed: int,
    probe_k: int | None,
    expect_folds: int,
    expect_repeats: int,
    expect_method: str,
    select_rule: str,
    pool_strengths: str,
    shortlist_z: float,
    inner_folds: int,
    se_factor: float,
    as_json: bool,
) -> None:
    """Choose the compute-optimal strategy per difficulty bin and budget.

    With the default --select-rule pooled, a bin gets its own option only where nested
    cross-validation supports it, and at budgets where probing does not repay its cost the plan
    runs one option for every prompt without probes. Writes OUT/curves.parquet (accuracy per
    budget and method with CIs: compute_optimal, cross-fitted; single_best, the best single
    option cross-fitted alike; the baselines), OUT/selection.parquet (the option chosen on each
    fold of the paper's two-fold split, and the deployed one), OUT/choices.parquet (the
    deployment choice per bin and budget: whether it probes, the paper's two-fold accuracy and,
    in expected_accuracy/expected_ci_lo/expected_ci_hi, the cross-fitted promise that `ttc
    policy export` writes, with the selection's optimism), OUT/problems.parquet and
    OUT/summary.json.

    \b
    Example:
      ttc plan runs/qwen-profile --out runs/qwen-plan --bin-by level
      ttc plan runs/tb-profile --out runs/tb-plan-flops --unit flops --json
    """
    from planner.optimize import PlanOptions, plan_tables, read_plan_inputs
    from planner.tables import (
        CHOICES,
        CHOICES_FILE,
        PLAN_CURVES,
        PLAN_CURVES_FILE,
        PROBLEMS,
        PROBLEMS_FILE,
        SELECTION,
        SELECTION_FILE,
        SUMMARY_FILE,
        atomic_dir,
        write_table,
    )

    inputs = read_plan_inputs(profile_dir, bin_by, n_bins, seed, probe_k)
    try:
        opts = PlanOptions(
            unit=unit,
            budgets=None if budgets is None else tuple(parse_float_list(budgets, "--budgets")),
            bin_column=inputs.bin_column,
            verifier=verifier,
            n_boot=n_boot,
            seed=seed,
            probe_k=inputs.probe_k,
            probe_verifier=inputs.probe_verifier,
            expect_folds=expect_folds,
            expect_repeats=expect_repeats,
            expect_method=expect_method,
            select_rule=select_rule,
            pool_strengths=tuple(parse_float_list(pool_strengths, "--pool-strengths")),
            shortlist_z=shortlist_z or None,
            inner_folds=inner_folds,
            se_factor=se_factor,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    res = plan_tables(inputs, opts)
    plan, meta, summary = res.plan, res.metadata, res.summary
    with atomic_dir(out_dir) as stage:
        write_table(plan.curves, stage / PLAN_CURVES_FILE, PLAN_CURVES, meta)
        write_table(plan.selection, stage / SELECTION_FILE, SELECTION, meta)
        write_table(plan.choices, stage / CHOICES_FILE, CHOICES, meta)
        write_table(res.problems, stage / PROBLEMS_FILE, PROBLEMS, meta)
        (stage / SUMMARY_FILE).write_text(dumps_json(summary) + "\n", encoding="utf-8")
    if as_json:
        echo_json(summary)
    else:
        click.echo(render_summary(summary))
        click.echo(f"\nwrote plan tables and summary.json to {out_dir}")


COMMANDS = [plan_cmd]

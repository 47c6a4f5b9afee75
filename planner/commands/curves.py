"""`ttc curves`: samples -> profile (expected accuracy and cost at every budget)."""

from __future__ import annotations

import click

from planner.commands.common import echo_json, handle_errors, json_option, parse_float_list


@click.command("curves")
@click.argument("samples_dir", type=click.Path(exists=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--budgets", default=None, help="Comma-separated budgets in generations (default: powers of two up to n).")
@click.option("--aggs", default="last,min,prod,mean", show_default=True,
              help="Step-score aggregations to report for verifier-based selection.")
@click.option("--mc-samples", default=1000, show_default=True,
              help="Random subsets per budget for majority votes when exact enumeration is too large.")
@click.option("--seed", default=0, show_default=True, help="Seed of the Monte Carlo subsets.")
@json_option
@handle_errors
def curves_cmd(samples_dir: str, out_dir: str, budgets: str | None, aggs: str, mc_samples: int, seed: int,
               as_json: bool) -> None:
    """Estimate accuracy-vs-budget curves from SAMPLES_DIR and write OUT/profile.parquet.

    Every budget k <= n is read from one pool per problem (exact pass@k and best-of-k, majority
    and weighted majority exact or Monte Carlo); revision chains are subsampled whole; search
    strategies give one point per run budget.

    \b
    Example:
      ttc curves runs/qwen --out runs/qwen-profile --budgets 1,2,4,8
    """
    from planner.curves import CurveOptions, profile_from_samples
    from planner.difficulty import build_problems
    from planner.fsutil import atomic_dir
    from planner.schema import (
        PROBLEMS,
        PROBLEMS_FILE,
        PROFILE,
        PROFILE_FILE,
        read_problems,
        read_samples,
        write_table,
    )

    try:
        opts = CurveOptions(
            budgets=None if budgets is None else tuple(int(b) for b in parse_float_list(budgets, "--budgets")),
            aggs=tuple(a.strip() for a in aggs.split(",") if a.strip()),
            mc_samples=mc_samples, seed=seed,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    samples, meta = read_samples(samples_dir)
    prob = read_problems(samples_dir)
    problems = prob[0] if prob is not None else build_problems(samples, seed=seed)
    profile = profile_from_samples(samples, opts)
    meta = {**meta, "curves": {"mc_samples": mc_samples, "seed": seed, "aggs": list(opts.aggs),
                               "budgets": None if opts.budgets is None else list(opts.budgets)}}
    with atomic_dir(out_dir) as stage:
        write_table(profile, stage / PROFILE_FILE, PROFILE, meta)
        write_table(problems, stage / PROBLEMS_FILE, PROBLEMS, meta)
    summary = {
        "out": out_dir,
        "rows": len(profile),
        "problems": int(profile["problem_id"].nunique()),
        "options": int(profile.groupby(["strategy", "config"]).ngroups),
        "budgets": sorted(float(b) for b in profile["budget"].unique()),
    }
    if as_json:
        echo_json(summary)
    else:
        click.echo(f"wrote {summary['rows']} profile rows ({summary['problems']} problems, "
                   f"{summary['options']} strategy configs, budgets {summary['budgets']}) to {out_dir}")


COMMANDS = [curves_cmd]

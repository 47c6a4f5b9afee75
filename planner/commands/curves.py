"""`ttc curves`: samples -> profile (expected accuracy and cost at every budget)."""

from __future__ import annotations

import click

from planner.commands.common import echo_json, handle_errors, json_option, parse_float_list


@click.command("curves")
@click.argument("samples_dir", type=click.Path(exists=False))
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory."
)
@click.option(
    "--budgets",
    default=None,
    help="Comma-separated budgets in generations (default: powers of two up to n).",
)
@click.option(
    "--aggs",
    default="last,min,prod,mean",
    show_default=True,
    help="Step-score aggregations to report for verifier-based selection.",
)
@click.option(
    "--mc-samples",
    default=256,
    show_default=True,
    help="Random subsets per budget for majority votes when exact enumeration is too large.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the Monte Carlo subsets.")
@click.option(
    "--probe-k",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Probe samples per problem for predicted difficulty (0 = none): adds feat_* columns, "
    "probe costs and a cross-fitted predicted_bin to problems.parquet.",
)
@click.option(
    "--probe-verifier", default=None, help="Verifier that scores the probes (default: the first)."
)
@click.option(
    "--predictor",
    type=click.Choice(["ordinal", "multinomial"]),
    default="ordinal",
    show_default=True,
    help="Model of the difficulty predictor (with --probe-k).",
)
@click.option(
    "--probe-features",
    default=None,
    help="Comma-separated probe features (default: score_mean,score_max,score_min,score_std,"
    "agreement,gen_tokens; e.g. score_mean alone is the paper's predictor).",
)
@json_option
@handle_errors
def curves_cmd(
    samples_dir: str,
    out_dir: str,
    budgets: str | None,
    aggs: str,
    mc_samples: int,
    seed: int,
    probe_k: int,
    probe_verifier: str | None,
    predictor: str,
    probe_features: str | None,
    as_json: bool,
) -> None:
    """Estimate accuracy-vs-budget curves from SAMPLES_DIR and write OUT/profile.parquet.

    Every budget k <= n is read from one pool per problem (exact pass@k and best-of-k, majority
    and weighted majority exact or Monte Carlo); revision chains are subsampled whole; search
    strategies give one point per run budget.

    \b
    Example:
      ttc curves runs/qwen --out runs/qwen-profile --budgets 1,2,4,8
      ttc curves runs/tb --out runs/tb-profile --probe-k 4
    """
    from planner.estimate import CurveOptions, ProbeOptions, profile_samples
    from planner.tables import (
        PROBLEMS,
        PROBLEMS_FILE,
        PROFILE,
        PROFILE_FILE,
        atomic_dir,
        write_table,
    )

    try:
        opts = CurveOptions(
            budgets=None
            if budgets is None
            else tuple(int(b) for b in parse_float_list(budgets, "--budgets")),
            aggs=tuple(a.strip() for a in aggs.split(",") if a.strip()),
            mc_samples=mc_samples,
            seed=seed,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    names = (
        None
        if probe_features is None
        else tuple(f.strip() for f in probe_features.split(",") if f.strip())
    )
    probe = ProbeOptions(probe_k, probe_verifier, predictor, names) if probe_k else None
    res = profile_samples(samples_dir, opts, probe)
    with atomic_dir(out_dir) as stage:
        write_table(res.profile, stage / PROFILE_FILE, PROFILE, res.metadata)
        write_table(res.problems, stage / PROBLEMS_FILE, PROBLEMS, res.metadata)
    summary = {"out": out_dir, **res.summary()}
    if as_json:
        echo_json(summary)
    else:
        click.echo(
            f"wrote {summary['rows']} profile rows ({summary['problems']} problems, "
            f"{summary['options']} strategy configs, budgets {summary['budgets']}) to {out_dir}"
        )


COMMANDS = [curves_cmd]

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
@click.option("--mc-samples", default=256, show_default=True,
              help="Random subsets per budget for majority votes when exact enumeration is too large.")
@click.option("--seed", default=0, show_default=True, help="Seed of the Monte Carlo subsets.")
@click.option("--probe-k", default=0, show_default=True, type=click.IntRange(min=0),
              help="Probe samples per problem for predicted difficulty (0 = none): adds feat_* columns, "
                   "probe costs and a cross-fitted predicted_bin to problems.parquet.")
@click.option("--probe-verifier", default=None, help="Verifier that scores the probes (default: the first).")
@click.option("--predictor", type=click.Choice(["ordinal", "multinomial"]), default="ordinal", show_default=True,
              help="Model of the difficulty predictor (with --probe-k).")
@click.option("--probe-features", default=None,
              help="Comma-separated probe features (default: score_mean,score_max,score_min,score_std,"
                   "agreement,gen_tokens; e.g. score_mean alone is the paper's predictor).")
@json_option
@handle_errors
def curves_cmd(samples_dir: str, out_dir: str, budgets: str | None, aggs: str, mc_samples: int, seed: int,
               probe_k: int, probe_verifier: str | None, predictor: str, probe_features: str | None,
               as_json: bool) -> None:
    """Estimate accuracy-vs-budget curves from SAMPLES_DIR and write OUT/profile.parquet.

    Every budget k <= n is read from one pool per problem (exact pass@k and best-of-k, majority
    and weighted majority exact or Monte Carlo); revision chains are subsampled whole; search
    strategies give one point per run budget.

    \b
    Example:
      ttc curves runs/qwen --out runs/qwen-profile --budgets 1,2,4,8
      ttc curves runs/testbed --out runs/testbed-profile --probe-k 4
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
    if probe_k:
        from planner.difficulty import add_predicted_bins
        from planner.features import probe_cost, probe_verifiers

        verifier = probe_verifier or (probe_verifiers(samples) or [None])[0]
        names = None if probe_features is None else [f.strip() for f in probe_features.split(",") if f.strip()]
        problems = add_predicted_bins(problems, samples, probe_k, verifier, model=predictor, seed=seed,
                                      features=names)
        problems = problems.drop(columns=[c for c in ("probe_flops", "probe_tokens") if c in problems])
        problems = problems.merge(probe_cost(samples, probe_k, verifier), on="problem_id", how="left")
        meta = {**meta, "probe": {"k": probe_k, "verifier": verifier, "predictor": predictor, "seed": seed}}
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

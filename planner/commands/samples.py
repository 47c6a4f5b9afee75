"""`ttc samples import`: bring sample dumps produced elsewhere into the samples table."""

from __future__ import annotations

import click

from planner.commands.common import echo_json, handle_errors, json_option


@click.group("samples")
def samples_group() -> None:
    """Work with samples tables (one row per candidate answer)."""


@samples_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory."
)
@click.option("--id-field", default="idx", show_default=True, help="Field holding the problem id.")
@click.option(
    "--answers-field", default="pred", show_default=True, help="Field with the extracted answers."
)
@click.option(
    "--correct-field", default="score", show_default=True, help="Field with correctness (booleans)."
)
@click.option(
    "--scores-field",
    default="pred_score",
    show_default=True,
    help="Field with verifier scores (numbers or one-element lists); '' for none.",
)
@click.option(
    "--level-field", default=None, help="Optional field with a difficulty label (e.g. MATH level)."
)
@click.option(
    "--flatten", is_flag=True, help="The file has one row per sample (scalars, not lists)."
)
@click.option(
    "--verifier-id", default="imported", show_default=True, help="Id recorded for the scorer."
)
@click.option(
    "--score-transform",
    type=click.Choice(["none", "sigmoid"]),
    default="none",
    show_default=True,
    help="Map raw scores (e.g. reward-model logits) to probabilities for weighted voting.",
)
@click.option("--bins", default=5, show_default=True, help="Number of oracle difficulty bins.")
@click.option("--seed", default=0, show_default=True, help="Seed for the cross-validation folds.")
@json_option
@handle_errors
def import_cmd(
    file: str,
    out_dir: str,
    id_field: str,
    answers_field: str,
    correct_field: str,
    scores_field: str,
    level_field: str | None,
    flatten: bool,
    verifier_id: str,
    score_transform: str,
    bins: int,
    seed: int,
    as_json: bool,
) -> None:
    """Import a JSONL dump of sampled answers into OUT (samples.parquet + problems.parquet).

    \b
    Example (Qwen2.5-Math reward-model dump, 100 problems x 8 samples):
      ttc samples import ../shared/data/samples/qwen25math_rm8/math_cot_100.jsonl \\
          --out runs/qwen --id-field idx --answers-field pred --correct-field score \\
          --scores-field pred_score --level-field level --score-transform sigmoid
    """
    from planner.estimate import import_samples
    from planner.tables import (
        PROBLEMS,
        PROBLEMS_FILE,
        SAMPLES,
        SAMPLES_FILE,
        ImportOptions,
        atomic_dir,
        write_table,
    )

    try:
        opts = ImportOptions(
            id_field=id_field,
            answers_field=answers_field,
            correct_field=correct_field,
            scores_field=scores_field or None,
            level_field=level_field,
            flatten=flatten,
            verifier=verifier_id,
            score_transform=score_transform,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    res = import_samples(file, opts, n_bins=bins, seed=seed)
    with atomic_dir(out_dir) as stage:
        write_table(res.samples, stage / SAMPLES_FILE, SAMPLES, res.metadata)
        write_table(res.problems, stage / PROBLEMS_FILE, PROBLEMS, res.metadata)
    summary = {"out": out_dir, **res.summary()}
    if as_json:
        echo_json(summary)
    else:
        click.echo(
            f"imported {summary['samples']} samples of {summary['problems']} problems "
            f"(pool sizes {summary['pool_sizes']}, mean pass@1 "
            f"{summary['mean_pass1']:.3f}) into {out_dir}"
        )


COMMANDS = [samples_group]

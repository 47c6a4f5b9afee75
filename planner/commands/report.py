"""`ttc report`: a run directory -> self-contained HTML, PNG/SVG figures, markdown and JSON
summaries; with `--check`, the CI gate (exit 3 on a regression)."""

from __future__ import annotations

import os

import click

from planner.commands.common import handle_errors

REGRESSION_EXIT = 3


@click.command("report")
@click.argument("run_dir", type=click.Path())
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Report directory (new, empty, or an earlier report, which is replaced).",
)
@click.option(
    "--check",
    "baseline",
    default=None,
    type=click.Path(dir_okay=False),
    help="Blessed baseline: an earlier report's summary.json, or a policy file. Exit 3 when an "
    "accuracy regressed.",
)
@click.option(
    "--tolerance",
    default=0.01,
    show_default=True,
    type=float,
    help="With --check: how far (accuracy, 0.01 = 1 point) below the baseline fails.",
)
@click.option(
    "--history",
    default=None,
    type=click.Path(dir_okay=False),
    help="Append one JSON line (figures and input hashes) to this file.",
)
@click.option("--no-images", is_flag=True, help="Skip the PNG and SVG files (faster).")
@handle_errors
def report_cmd(
    run_dir: str,
    out_dir: str,
    baseline: str | None,
    tolerance: float,
    history: str | None,
    no_images: bool,
) -> None:
    """Write the report of RUN_DIR: OUT/index.html (self-contained, opens offline), OUT/figures/
    (PNG, SVG and Vega-Lite spec of each figure), OUT/summary.md and OUT/summary.json.

    RUN_DIR is any directory the project writes: a `ttc demo` run, a samples, profile or plan
    directory, or a folder holding samples/, profile/ and plan/. What the run cannot draw is left
    out, with a line saying why. When $GITHUB_STEP_SUMMARY is set, summary.md (and check.md) is
    appended to it.

    With --check BASELINE the compute-optimal accuracy per budget and the promised accuracy per
    bin and budget are compared with the baseline's; the diff is printed and written to
    OUT/check.md and OUT/check.json. Exit codes: 0 ok, 1 bad or vacuous input (nothing written),
    3 regression.

    \b
    Examples:
      ttc report runs/qwen-plan --out runs/qwen-report
      ttc report runs/qwen-plan --out runs/qwen-report-ci --check runs/qwen-report/summary.json \\
          --tolerance 0.02 --history runs/report-history.jsonl
    """
    from reports.build import build_report

    rep = build_report(
        run_dir,
        out_dir,
        baseline=baseline,
        tolerance=tolerance,
        history=history,
        step_summary=os.environ.get("GITHUB_STEP_SUMMARY") or None,
        images=not no_images,
    )
    drawn = sum(1 for f in rep.summary["figures"] if f.get("drawn"))
    left = len(rep.summary["figures"]) - drawn
    click.echo(
        f"wrote {out_dir}/index.html, summary.md, summary.json and {drawn} figure"
        f"{'' if drawn == 1 else 's'} "
        f"({left} left out, each with the reason)"
    )
    if rep.check is not None:
        click.echo(rep.check.markdown())
        if rep.check.regressed:
            click.get_current_context().exit(REGRESSION_EXIT)


COMMANDS = [report_cmd]

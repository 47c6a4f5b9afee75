"""`ttc demo`: the README's main job, end to end on the CPU testbed.

Every stage is in `profiling.demo.run_demo`; this command parses, runs it, builds the report
(`reports.build.build_report`) and prints the plan, the paper's findings and the report's path.
"""

from __future__ import annotations

import click

from planner.commands.common import echo_json, handle_errors, json_option
from planner.commands.plan import render_summary
from planner.errors import PlannerError
from planner.progress import progress as progress_of
from planner.timings import TESTBED, about, first_demo_s

QUICK_LEVELS = (1, 2, 3)
QUICK_MAX_NEW_TOKENS = 96


_QUICK_TRAINS = about(TESTBED["quick"].call_s)
_PAPER_TRAINS = about(TESTBED["paper"].call_s)

_HELP = f"""Run the main job: testbed -> profile -> curves -> plan -> policy -> exchange -> report.

    Profiles every strategy at several budgets (and the larger LM's own pools, on the second
    core), fits the plan and the policy on half the problems and evaluates the policy on the
    other half, then writes OUT/report/index.html. Reruns reuse everything already computed.

    The first run trains the testbed into the cache ($TTC_CACHE or ~/.cache/ttc-planner) and says
    so; from an empty cache on 2 CPU cores `ttc demo` took {about(first_demo_s("default"))},
    --quick {about(first_demo_s("quick"))} and --scale paper {about(first_demo_s("paper"))}.

    \b
    Examples:
      ttc demo
      ttc demo --quick --problems 32 --out runs/demo
      ttc demo --problems 400            # more problems: tighter intervals, longer run
      ttc demo --scale paper             # the ~13x larger LM (trains once, {_PAPER_TRAINS})
    """


@click.command("demo", help=_HELP)
@click.option(
    "--out",
    "out_dir",
    default="ttc-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Run directory: samples/, large/, profile/, plan/, policy.json, report/ go inside.",
)
@click.option(
    "--quick",
    is_flag=True,
    help=f"Use the quick testbed (trains once, {_QUICK_TRAINS}; models are weak).",
)
@click.option(
    "--problems",
    "n_problems",
    type=int,
    default=None,
    help="Testbed problems to profile [default: the config's 120, or 32 with --quick].",
)
@click.option(
    "--scale",
    type=click.Choice(["default", "paper"]),
    default="default",
    show_default=True,
    help="Testbed scale: paper trains the ~13x larger LM (the paper's M).",
)
@click.option(
    "--testbed",
    "testbed_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Use this trained testbed directory instead of the cached one.",
)
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="The policy's run config [default: data/configs/demo.toml].",
)
@click.option(
    "--calibrate/--no-calibrate",
    default=True,
    show_default=True,
    help="Measure this CPU (ttc calibrate) for the cost figure.",
)
@click.option("--seed", type=int, default=None, help="Run seed (default: the config's).")
@click.option(
    "--progress/--no-progress",
    default=True,
    show_default=True,
    help="Progress on stderr: bars on a terminal, else a line at most every 30 s.",
)
@json_option
@handle_errors
def demo_cmd(
    out_dir: str,
    quick: bool,
    n_problems: int | None,
    scale: str,
    testbed_dir: str | None,
    config_path: str | None,
    seed: int | None,
    calibrate: bool,
    progress: bool,
    as_json: bool,
) -> None:
    import time

    t0 = time.monotonic()

    def log(msg: str) -> None:
        if not as_json:
            click.echo(f"{time.monotonic() - t0:6.1f}s {msg}", err=True)

    testbed = testbed_dir or ("quick" if quick else scale)
    # First, before the imports that take seconds (many on a busy machine): what runs, where.
    log(f"ttc demo: testbed {testbed}, run directory {out_dir}")
    # Off a terminal, a line at most every 30 s between the stages' own progress lines.
    with progress_of("ttc demo", enabled=progress):
        from profiling.demo import DemoSettings, run_demo

        try:
            settings = DemoSettings(
                testbed=testbed,
                n_problems=n_problems or (32 if quick else None),
                # the quick testbed learns levels 1-3 only: short solutions, a short cap
                levels=QUICK_LEVELS if quick and not testbed_dir else None,
                max_new_tokens=QUICK_MAX_NEW_TOKENS if quick else None,
                seed=seed,
                config=config_path,
                calibrate=calibrate,
            )
        except ValueError as exc:
            raise PlannerError(str(exc)) from None
        res = run_demo(settings, out_dir, log, progress=progress)
        log(f"writing the report -> {res.out / 'report'}")
        from reports.build import build_report

        report = build_report(res.out, res.out / "report")
    log("done")
    index = res.out / "report" / "index.html"
    if as_json:
        echo_json(
            {
                "out": str(res.out),
                "report": str(index),
                "per_budget": res.plan_summary["per_budget"],
                "findings": report.summary["findings"],
                "evaluation": [
                    {"budget": b["budget"], **b["goal"]} for b in res.evaluation["budgets"]
                ],
            }
        )
        return
    click.echo(render_summary(res.plan_summary))
    click.echo("")
    click.echo(render_findings(report.summary["findings"]))
    click.echo(render_heldout(res.evaluation, res.heldout_problems))
    click.echo(f"\nreport: {index}")


def render_heldout(evaluation: dict, n: int) -> str:
    """The policy's promise against the held-out half, at its largest budget."""
    b = evaluation["budgets"][-1]
    o = b["overall"]
    return (
        f"\nthe policy on {n} held-out problems at budget {b['budget']:g}: promised "
        f"{100 * o['predicted_accuracy']:.1f}%, realised {100 * o['realised_accuracy']:.1f}% "
        f"[{100 * o['realised_ci_lo']:.1f}, {100 * o['realised_ci_hi']:.1f}], FLOPs "
        f"{o['flops_ratio']:.2f}x the promise"
    )


def render_findings(found: list[dict]) -> str:
    """One line per finding: its key, mark and evidence ((a)-(e) the paper's, (f) the plan's)."""
    lines = ["the paper's findings (a)-(e) and the plan's (f) on this run:"]
    for f in found:
        lines.append(f"  ({f['key']}) {f['mark']}: {f['claim']}")
        lines.append(f"      {f['evidence']}")
    return "\n".join(lines)


COMMANDS = [demo_cmd]

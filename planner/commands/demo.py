"""`ttc demo`: the README's main job, end to end on the CPU testbed.

Train (or reuse from the cache) the testbed, profile every strategy on a few hundred testbed
problems at small budgets, estimate the curves and print the compute-optimal plan.
"""

from __future__ import annotations

from pathlib import Path

import click

from planner.commands.common import handle_errors, json_option

DEFAULT_CONFIG = "testbed.toml"


@click.command("demo")
@click.option(
    "--out",
    "out_dir",
    default="ttc-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Output directory: samples/, profile/ and plan/ go inside.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Use the quick testbed (trains in about a minute; models are weak).",
)
@click.option(
    "--problems",
    "n_problems",
    type=int,
    default=None,
    help="Testbed problems to profile [default: the config's 120, or 48 with --quick].",
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
    help="Run config [default: data/configs/testbed.toml].",
)
@click.option("--seed", type=int, default=None, help="Run seed (default: the config's).")
@click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Progress bars on stderr."
)
@json_option
@handle_errors
def demo_cmd(
    out_dir: str,
    quick: bool,
    n_problems: int | None,
    testbed_dir: str | None,
    config_path: str | None,
    seed: int | None,
    progress: bool,
    as_json: bool,
) -> None:
    """Run the main job on the embedded default: testbed -> profile -> curves -> plan.

    Reruns reuse everything already computed (the testbed cache, the sweep's checkpoints).

    \b
    Examples:
      ttc demo
      ttc demo --quick --problems 32 --out runs/demo
      ttc demo --problems 400            # more problems: tighter intervals, longer run
      ttc demo --testbed runs/testbed-paper
    """
    import sys
    from dataclasses import replace

    from planner.commands.curves import curves_cmd
    from planner.commands.plan import plan_cmd
    from planner.data import shipped_dir
    from planner.errors import PlannerError
    from profiling.sweep.config import load_config
    from profiling.sweep.runner import run_sweep

    if n_problems is not None and n_problems < 8:
        raise PlannerError(
            f"--problems must be >= 8 (the plan needs problems in every bin), got {n_problems}"
        )
    cfg_file = Path(config_path) if config_path else shipped_dir("configs") / DEFAULT_CONFIG
    cfg = load_config(cfg_file)
    testbed = testbed_dir or ("quick" if quick else cfg.testbed)
    n = n_problems or (48 if quick else cfg.data.n)
    cfg = replace(
        cfg,
        testbed=testbed,
        data=replace(cfg.data, n=n, limit=None, offset=0),
        seed=cfg.seed if seed is None else seed,
    )
    out = Path(out_dir)
    log = (lambda msg: click.echo(msg, err=True)) if not as_json else (lambda msg: None)
    log(
        f"[1/3] profiling {len(cfg.strategies)} strategy configs on {n} testbed problems "
        f"(testbed: {testbed}; trained once, then cached) -> {out / 'samples'}"
    )
    show = progress and sys.stderr.isatty()
    try:
        result = run_sweep(cfg, out / "samples", resume=True, progress=show)
    except PlannerError as exc:
        if "of another config" not in str(exc):
            raise
        # The demo owns OUT/samples: after a testbed or config change, start it afresh.
        import shutil

        log(f"      {out / 'samples'} holds an older demo run; profiling afresh")
        shutil.rmtree(out / "samples")
        result = run_sweep(cfg, out / "samples", resume=True, progress=show)
    log(
        f"      {result.samples} samples ({result.units_run} shards run, "
        f"{result.units_resumed} reused)"
    )
    ctx = click.get_current_context()
    log(f"[2/3] estimating accuracy-vs-budget curves -> {out / 'profile'}")
    # click fills in every option not named here with its default.
    _invoke(
        ctx,
        curves_cmd,
        quiet=as_json,
        samples_dir=str(out / "samples"),
        out_dir=str(out / "profile"),
        mc_samples=200,
        seed=cfg.seed,
        as_json=as_json,
    )
    log(f"[3/3] compute-optimal plan per difficulty bin -> {out / 'plan'}")
    _invoke(
        ctx,
        plan_cmd,
        quiet=False,
        profile_dir=str(out / "profile"),
        out_dir=str(out / "plan"),
        n_boot=200,
        seed=cfg.seed,
        as_json=as_json,
    )


def _invoke(ctx: click.Context, cmd: click.Command, quiet: bool, **kwargs: object) -> None:
    """Run a sub-command; `quiet` keeps its output off stdout (with --json only the plan prints)."""
    import contextlib
    import io

    if not quiet:
        ctx.invoke(cmd, **kwargs)
        return
    with contextlib.redirect_stdout(io.StringIO()):
        ctx.invoke(cmd, **kwargs)


COMMANDS = [demo_cmd]

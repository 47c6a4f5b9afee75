"""`ttc profile`: run strategies x configs over a problem set and write samples + problems tables.

Every run-config key has a flag, generated from its declaration (the field metadata of
`profiling.sweep.config`): one place says what a key means, as a flag and as a TOML key. The
options are added when the command is first parsed or shown, so importing the planner (and
`ttc --help`) never loads profiling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from planner.commands.common import echo_json, handle_errors, json_option

# The hand-written options (--config, --out, --resume) come before the generated ones.
_GENERATED_AT = 3


def _option(flag: Any) -> click.Option:
    """A click option from a `profiling.sweep.flags.RunFlag`; its help names the TOML key."""
    if flag.multiple:
        where = f"[[{flag.key}]]"
    else:
        where = f"[{flag.section}] {flag.key}" if flag.section else flag.key
    text = f"{flag.help} (TOML: {where})"
    if flag.multiple:
        return click.Option([flag.flag, flag.dest], multiple=True, help=text)
    if flag.value_type is bool:
        name = flag.flag.removeprefix("--")
        return click.Option([f"--{name}/--no-{name}", flag.dest], default=None, help=text)
    if flag.choices:
        kind: Any = click.Choice(list(flag.choices))
    else:
        kind = str if flag.is_list else flag.value_type
    return click.Option([flag.flag, flag.dest], type=kind, default=None, help=text)


class _RunConfigCommand(click.Command):
    """A command whose run-config options are generated on first use."""

    _generated = False

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not self._generated:
            from profiling.sweep.flags import run_config_flags

            self.params[_GENERATED_AT:_GENERATED_AT] = [_option(f) for f in run_config_flags()]
            self._generated = True
        return super().get_params(ctx)


@click.command("profile", cls=_RunConfigCommand)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Run config (TOML); flags below override its values.",
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory."
)
@click.option(
    "--resume", is_flag=True, help="Continue an interrupted run in OUT (reuses finished shards)."
)
@click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr."
)
@json_option
@handle_errors
def profile_cmd(
    config_path: str | None, out_dir: str, resume: bool, progress: bool, as_json: bool, **flags: Any
) -> None:
    """Profile strategies on a problem set: OUT/samples.parquet, problems.parquet and run.json.

    Runs every strategy config (a list value in the config sweeps it) on every problem, one
    problem at a time with a seed derived from (seed, problem, strategy, config), checkpointing
    each shard of problems, so --resume after a crash or kill -9 gives the same tables, and the
    Ray executor gives the same tables as the local one. Each flag below --resume sets the
    run-config key its help names.

    \b
    Examples:
      ttc profile --config data/configs/testbed.toml --testbed quick --n 32 --out runs/tb
      ttc profile --config data/configs/testbed.toml --testbed quick --n 32 --out runs/tb --resume
      ttc profile --model models/qwen --data math500 --limit 50 --device cuda \\
          --strategy sample:n=16 --verifier prm:path=models/prm --out runs/math500
      ttc profile --config run.toml --out runs/big --executor ray --workers 8 --address auto
    """
    from planner.errors import PlannerError
    from profiling.sweep.config import config_from_dict, read_toml
    from profiling.sweep.flags import apply_flags
    from profiling.sweep.runner import run_sweep

    where = "flags" if config_path is None else str(Path(config_path))
    raw = apply_flags(read_toml(config_path) if config_path is not None else {}, flags, where)
    if "model" not in raw:
        raise PlannerError("no policy model: pass --model DIR or --config with a [model] section")
    cfg = config_from_dict(raw, where)
    result = run_sweep(cfg, out_dir, resume=resume, progress=progress)
    summary = {
        "out": str(result.out_dir),
        "samples": result.samples,
        "problems": result.problems,
        "units_run": result.units_run,
        "units_resumed": result.units_resumed,
        "model_id": result.metadata.get("model_id"),
        "verifiers": result.metadata.get("verifier_ids"),
        "dataset_id": result.metadata.get("dataset_id"),
    }
    if as_json:
        echo_json(summary)
    else:
        click.echo(
            f"wrote {summary['samples']} samples of {summary['problems']} problems "
            f"({summary['units_run']} shards run, {summary['units_resumed']} resumed) "
            f"to {out_dir}"
        )
    # a served model whose local folder matched only in its tokenizer (see run.json)
    for name, check in (result.metadata.get("model_checks") or {}).items():
        if not check.get("verified", True):
            click.echo(
                f"warning: {name}: model_config was not compared with the served model beyond "
                f"its tokenizer (config {check['config']}; log-probs {check['likelihood']})",
                err=True,
            )


COMMANDS = [profile_cmd]

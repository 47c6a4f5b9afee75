"""`ttc profile`: run strategies x configs over a problem set and write samples + problems tables."""

from __future__ import annotations

from typing import Any

import click

from planner.commands.common import echo_json, handle_errors, json_option


def build_raw_config(config_path: str | None, overrides: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The run config as a TOML-shaped dict: the file (if any) with the flags applied on top."""
    from pathlib import Path

    from planner.errors import PlannerError
    from profiling.sweep.config import read_toml

    raw: dict[str, Any] = {}
    where = "flags"
    if config_path is not None:
        raw = read_toml(config_path)
        where = str(Path(config_path))
    for section, values in overrides.items():
        if isinstance(values, dict):
            if values:
                raw.setdefault(section, {})
                if not isinstance(raw[section], dict):
                    raise PlannerError(f"{where}: [{section}] must be a table")
                raw[section].update(values)
        elif values is not None:
            raw[section] = values
    return raw, where


@click.command("profile")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Run config (TOML); flags below override its values.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in OUT (reuses finished shards).")
@click.option("--model", default=None, help="Policy model directory (or testbed:policy).")
@click.option("--reviser", default=None, help="Reviser model directory (for the revisions strategy).")
@click.option("--testbed", default=None, help="quick | default | paper | DIR: resolves testbed:<name> paths.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1, mps.")
@click.option("--dtype", default=None, type=click.Choice(["float32", "float16", "bfloat16"]))
@click.option("--batch-size", type=int, default=None, help="Rows per forward batch of the policy.")
@click.option("--data", "source", default=None,
              type=click.Choice(["testbed", "math500", "math", "gsm8k", "jsonl"]), help="Problem set.")
@click.option("--data-path", default=None, help="JSONL file (default for math500/math/gsm8k: ../shared/data).")
@click.option("--n", "n_problems", type=int, default=None, help="Testbed: number of problems to generate.")
@click.option("--limit", type=int, default=None, help="Keep at most this many problems.")
@click.option("--offset", type=int, default=None, help="Skip this many problems first.")
@click.option("--shuffle/--no-shuffle", default=None, help="Seeded shuffle before offset/limit.")
@click.option("--shuffle-seed", type=int, default=None, help="Seed of the shuffle.")
@click.option("--id-field", default=None, help="jsonl: field with the problem id (default: line index).")
@click.option("--prompt-field", default=None, help="jsonl: field with the question.")
@click.option("--answer-field", default=None, help="jsonl: field with the gold answer.")
@click.option("--level-field", default=None, help="jsonl: field with a difficulty label.")
@click.option("--answer-format", default=None, type=click.Choice(["raw", "boxed", "gsm8k"]),
              help="jsonl: read the gold answer as is, from the last \\boxed{}, or after ####.")
@click.option("--strategy", "strategies", multiple=True,
              help="NAME[:k=v,...]; v1|v2 sweeps a key. Repeatable; replaces the config's strategies.")
@click.option("--verifier", "verifiers", multiple=True,
              help="KIND[:k=v,...] with KIND prm|likelihood|self (e.g. prm:path=DIR). Repeatable.")
@click.option("--seed", type=int, default=None, help="Run seed (per-problem seeds derive from it).")
@click.option("--shard-size", type=int, default=None, help="Problems per checkpoint shard.")
@click.option("--timing/--no-timing", default=None, help="Record wall seconds (off: byte-identical tables).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default=None, help="Where units run.")
@click.option("--workers", type=int, default=None, help="Ray workers (each loads the models once).")
@click.option("--address", default=None, help="Ray cluster address (default: start a local cluster).")
@click.option("--threads", type=int, default=None, help="torch CPU threads per worker (default 1).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@json_option
@handle_errors
def profile_cmd(config_path: str | None, out_dir: str, resume: bool, model: str | None,
                reviser: str | None, testbed: str | None, device: str | None, dtype: str | None,
                batch_size: int | None, source: str | None, data_path: str | None,
                n_problems: int | None, limit: int | None, offset: int | None, shuffle: bool | None,
                shuffle_seed: int | None, id_field: str | None, prompt_field: str | None,
                answer_field: str | None, level_field: str | None, answer_format: str | None,
                strategies: tuple[str, ...], verifiers: tuple[str, ...], seed: int | None,
                shard_size: int | None, timing: bool | None, executor: str | None,
                workers: int | None, address: str | None, threads: int | None, progress: bool, as_json: bool) -> None:
    """Profile strategies on a problem set: OUT/samples.parquet, problems.parquet and run.json.

    Runs every strategy config (a list value in the config sweeps it) on every problem, one
    problem at a time with a seed derived from (seed, problem, strategy, config), checkpointing
    each shard of problems, so --resume after a crash or kill -9 gives the same tables, and the
    Ray executor gives the same tables as the local one.

    \b
    Examples:
      ttc profile --config data/configs/testbed.toml --out runs/testbed
      ttc profile --config data/configs/testbed.toml --out runs/testbed --resume
      ttc profile --model models/qwen --data math500 --limit 50 --device cuda \\
          --strategy sample:n=16 --verifier prm:path=models/prm --out runs/math500
      ttc profile --config run.toml --out runs/big --executor ray --workers 8 --address auto
    """
    from planner.errors import PlannerError
    from profiling.sweep.config import config_from_dict, parse_kv_list, parse_strategy_flag
    from profiling.sweep.runner import run_sweep

    model_o = {k: v for k, v in {"path": model, "device": device, "dtype": dtype,
                                  "batch_size": batch_size}.items() if v is not None}
    data_o = {k: v for k, v in {
        "source": source, "path": data_path, "n": n_problems, "limit": limit, "offset": offset,
        "shuffle": shuffle, "shuffle_seed": shuffle_seed, "id_field": id_field,
        "prompt_field": prompt_field, "answer_field": answer_field, "level_field": level_field,
        "answer_format": answer_format}.items() if v is not None}
    top: dict[str, Any] = {"seed": seed, "shard_size": shard_size, "timing": timing,
                           "testbed": testbed, "executor": executor, "workers": workers,
                           "address": address, "threads": threads}
    raw, where = build_raw_config(config_path, {"model": model_o, "data": data_o, **top})
    if reviser is not None:
        raw.setdefault("reviser", {})["path"] = reviser
    if device and "reviser" in raw:
        raw["reviser"]["device"] = device  # one --device moves every model
    if strategies:
        raw["strategies"] = []
        for s in strategies:
            name, params = parse_strategy_flag(s)
            raw["strategies"].append({"name": name, **params})
    if verifiers:
        raw["verifiers"] = []
        for v in verifiers:
            kind, _, rest = v.partition(":")
            params = parse_kv_list([x for x in rest.split(",") if x.strip()], f"--verifier {v!r}")
            raw["verifiers"].append({"kind": kind.strip(), **params})
    if "model" not in raw:
        raise PlannerError("no policy model: pass --model DIR or --config with a [model] section")
    cfg = config_from_dict(raw, where)
    result = run_sweep(cfg, out_dir, resume=resume, progress=progress)
    summary = {
        "out": str(result.out_dir), "samples": result.samples, "problems": result.problems,
        "units_run": result.units_run, "units_resumed": result.units_resumed,
        "model_id": result.metadata.get("model_id"), "verifiers": result.metadata.get("verifier_ids"),
        "dataset_id": result.metadata.get("dataset_id"),
    }
    if as_json:
        echo_json(summary)
    else:
        click.echo(f"wrote {summary['samples']} samples of {summary['problems']} problems "
                   f"({summary['units_run']} shards run, {summary['units_resumed']} resumed) to {out_dir}")


COMMANDS = [profile_cmd]

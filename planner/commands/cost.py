"""`ttc cost` and `ttc calibrate`: serving cost per option on a hardware profile, and measuring one.

Only click and light planner modules are imported here at import time; torch is imported by
`ttc calibrate` alone, inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from planner.commands.common import (
    bins_option,
    dumps_json,
    echo_json,
    handle_errors,
    hardware_option,
    json_option,
    positive,
)
from planner.errors import PlannerError


@click.command("cost")
@click.argument("profile_dir", required=False, type=click.Path())
@click.option(
    "--hardware",
    default="h100-sxm",
    show_default=True,
    help="Hardware profile: a name in data/hardware or a JSON path (ttc calibrate writes one).",
)
@click.option(
    "--model",
    default=None,
    help="Served model: a data/models name or a Hugging Face config.json/folder.",
)
@click.option(
    "--verifier-model", default=None, help="Verifier model spec (default: the served model)."
)
@click.option(
    "--batch",
    type=int,
    default=None,
    help="Sequences in flight (default: the largest the KV memory allows, up to 256).",
)
@click.option(
    "--slo-s",
    type=float,
    default=None,
    help="Latency SLO in seconds; options above it are flagged (and hidden with --only-slo).",
)
@click.option("--only-slo", is_flag=True, help="List only the options that meet the SLO.")
@click.option("--usd-per-hour", type=float, default=None, help="Override the hardware's price.")
@click.option(
    "--no-shared-prefix",
    is_flag=True,
    help="Prefill the prompt once per sample, not once per query.",
)
@click.option("--per-bin", is_flag=True, help="One row per difficulty bin and option.")
@bins_option
@click.option(
    "--strategy", default="sample", show_default=True, help="Without a profile: the strategy."
)
@click.option(
    "--config",
    "config_text",
    default='{"select":"majority"}',
    show_default=True,
    help="Without a profile: the strategy's config JSON.",
)
@click.option(
    "--budget",
    type=float,
    default=1.0,
    show_default=True,
    help="Without a profile: budget in generations.",
)
@click.option(
    "--prompt-tokens", type=float, default=None, help="Without a profile: prompt tokens per sample."
)
@click.option(
    "--gen-tokens", type=float, default=None, help="Without a profile: generated tokens per sample."
)
@click.option("--list-hardware", is_flag=True, help="List the shipped hardware profiles and exit.")
@json_option
@handle_errors
def cost_cmd(
    profile_dir: str | None,
    hardware: str,
    model: str | None,
    verifier_model: str | None,
    batch: int | None,
    slo_s: float | None,
    only_slo: bool,
    usd_per_hour: float | None,
    no_shared_prefix: bool,
    per_bin: bool,
    bins: str,
    strategy: str,
    config_text: str,
    budget: float,
    prompt_tokens: float | None,
    gen_tokens: float | None,
    list_hardware: bool,
    as_json: bool,
) -> None:
    """Serving cost per strategy, config and budget: a roofline simulator (prefill compute-bound,
    decode bandwidth-bound) giving latency per query, GPU-seconds, $ per 1k queries and queries/s
    per GPU, with an optional latency SLO filter.

    \b
    Example:
      ttc cost --list-hardware
      ttc cost --model llama-3.1-8b --hardware h100-sxm --budget 16 --prompt-tokens 300 \\
          --gen-tokens 400
      ttc cost runs/tb-profile --model llama-3.1-8b --hardware a100-80gb --slo-s 10 --json
    """
    from planner.costs import (
        cost_report,
        cost_rows,
        known_hardware,
        load_hardware,
        load_model,
        workload_cost_row,
    )
    from planner.optimize import load_binned_profile
    from planner.tables import parse_config

    if list_hardware:
        names = known_hardware()
        if as_json:
            echo_json({"hardware": [load_hardware(n).to_json() for n in names]})
        else:
            for n in names:
                h = load_hardware(n)
                click.echo(
                    f"{n:<12} {h.peak_flops_per_s / 1e12:7.1f} TFLOP/s  "
                    f"{h.hbm_bytes_per_s / 1e12:5.2f} TB/s  {h.hbm_bytes / 1e9:5.0f} GB  "
                    + (f"{h.usd_per_hour:5.2f} $/h" if h.usd_per_hour > 0 else "no price per hour")
                )
        return
    if model is None:
        raise PlannerError("--model is required (a data/models name or a Hugging Face config.json)")
    if batch is not None and batch < 1:
        raise PlannerError(f"--batch must be >= 1, got {batch}")
    positive("--slo-s", slo_s)
    hw = hardware_option(hardware, usd_per_hour)
    spec = load_model(model)
    verifier = load_model(verifier_model) if verifier_model else None
    if profile_dir:
        rows = cost_rows(
            load_binned_profile(profile_dir, bins),
            spec,
            hw,
            verifier,
            batch,
            slo_s,
            not no_shared_prefix,
            per_bin,
        )
    else:
        if prompt_tokens is None or gen_tokens is None:
            raise PlannerError(
                "without a profile, give --prompt-tokens and --gen-tokens (per sample)"
            )
        if prompt_tokens < 0 or gen_tokens <= 0 or budget <= 0:
            raise PlannerError("--prompt-tokens must be >= 0, --gen-tokens and --budget > 0")
        try:
            cfg = parse_config(config_text)
        except json.JSONDecodeError:
            raise PlannerError(f"--config is not valid JSON: {config_text!r}") from None
        rows = [
            workload_cost_row(
                strategy,
                cfg,
                budget,
                prompt_tokens,
                gen_tokens,
                spec,
                hw,
                verifier,
                batch,
                slo_s,
                not no_shared_prefix,
            )
        ]
    out = cost_report(spec, hw, rows, slo_s, only_slo)
    if as_json:
        echo_json(out)
        return
    # A measured CPU profile has no price: say so rather than print $0 figures.
    priced = hw.usd_per_hour > 0
    price = f"{hw.usd_per_hour:g} $/h per GPU" if priced else "no price per hour: --usd-per-hour"
    click.echo(f"{spec.name} on {hw.name} ({price})")
    click.echo(
        f"{'strategy':<10} {'budget':>6} {'latency s':>10} {'GPU-s/q':>10} {'$/1k q':>9} "
        f"{'q/s/GPU':>9} {'batch':>5} {'gpus':>4}  slo  config"
    )
    for r in out["rows"]:
        click.echo(
            f"{r['strategy']:<10} {r['budget']:6g} {r['latency_s']:10.3g} "
            f"{r['gpu_s_per_query']:10.3g} "
            + (f"{r['usd_per_1k_queries']:9.3g} " if priced else f"{'-':>9} ")
            + f"{r['queries_per_s_per_gpu']:9.3g} {r['batch']:5d} {r['n_gpus']:4d}  "
            f"{'yes' if r['meets_slo'] else 'NO ':<4} {json.dumps(r['config'], sort_keys=True)}"
        )


# ----------------------------------------------------------------------------------------------
# ttc calibrate


@click.command("calibrate")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the hardware profile JSON.",
)
@click.option("--name", default="this-machine", show_default=True, help="Profile name.")
@click.option(
    "--size", default=1024, show_default=True, help="Square matmul size for the FLOP/s measurement."
)
@click.option(
    "--mbytes",
    default=256,
    show_default=True,
    help="Buffer size (MiB) for the bandwidth measurement.",
)
@click.option("--repeats", default=5, show_default=True, help="Timed repeats; the best is kept.")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16"]),
    default="float32",
    show_default=True,
    help="Matmul dtype (the testbed runs float32 on CPU).",
)
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
@click.option("--usd-per-hour", type=float, default=0.0, show_default=True, help="Price to record.")
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Measure context and prefill overheads on a random-weight model of this config's shape.",
)
@click.option(
    "--rows",
    type=click.IntRange(min=2),
    default=32,
    show_default=True,
    help="Decode batch the per-row and attention overheads are measured at (the serving batch).",
)
@json_option
@handle_errors
def calibrate_cmd(
    out_path: str,
    name: str,
    size: int,
    mbytes: int,
    repeats: int,
    dtype: str,
    threads: int | None,
    usd_per_hour: float,
    model_dir: str | None,
    rows: int,
    as_json: bool,
) -> None:
    """Measure this machine's matmul FLOP/s, memory bandwidth and per-forward overhead with torch,
    and write a hardware profile the cost simulator reads (efficiencies 1.0: the values are
    measured achievable rates).

    \b
    Example:
      ttc calibrate --out my-cpu.json
      ttc calibrate --out my-cpu.json --model-dir runs/testbed/policy --rows 64 --threads 1
      ttc cost --hardware my-cpu.json --model runs/testbed/policy --budget 4 \\
          --prompt-tokens 40 --gen-tokens 60
    """
    if size < 16 or mbytes < 1 or repeats < 1:
        raise PlannerError("--size must be >= 16, --mbytes >= 1, --repeats >= 1")
    if usd_per_hour < 0:
        raise PlannerError("--usd-per-hour must be >= 0")
    try:
        from profiling.calibrate import calibrate
    except ImportError as exc:
        raise PlannerError(f"ttc calibrate needs torch (pip install '.[profile]'): {exc}") from None
    from planner.costs import hardware_from_json
    from planner.tables import atomic_write_text

    if model_dir is not None and not (Path(model_dir) / "config.json").is_file():
        raise PlannerError(
            f"--model-dir {model_dir}: no config.json (expected a Hugging Face model directory)"
        )
    doc = calibrate(
        name=name,
        size=size,
        mbytes=mbytes,
        repeats=repeats,
        dtype=dtype,
        threads=threads,
        usd_per_hour=usd_per_hour,
        model_dir=model_dir,
        rows=rows,
    )
    hardware_from_json(doc, out_path)  # validate before writing
    atomic_write_text(out_path, dumps_json(doc) + "\n")
    if as_json:
        echo_json(doc)
        return
    click.echo(
        f"wrote {out_path}: {doc['peak_flops_per_s']['value'] / 1e9:.1f} GFLOP/s, "
        f"{doc['hbm_bytes_per_s']['value'] / 1e9:.2f} GB/s, "
        f"{doc['step_overhead_s']['value'] * 1e3:.3f} ms per forward call"
    )


COMMANDS = [cost_cmd, calibrate_cmd]

"""The sweep runner: problems x strategies x configs, checkpointed per shard, resumable, in order.

Work is cut into *units* (`profiling.sweep.units`): one strategy config on one shard of
`shard_size` consecutive problems, run by the executor the config names (`local`, or `ray`:
`profiling.sweep.ray_exec`). Each finished unit is written at once as a checkpoint
(`OUT/checkpoints/<unit>.parquet`, an atomic rename, so a unit is either wholly on disk or absent),
and `--resume` runs only the missing units. A unit's rows do not depend on which process ran it or
when: every problem gets its own seed, derived from (run seed, problem_id, strategy, config) by
`unit_seed`, and is run alone, so the final tables are the same for any shard size, executor
(local or Ray) or interruption.

At the end the checkpoints are concatenated in a fixed order into OUT/samples.parquet and
OUT/problems.parquet (through planner.tables.write_table, with the run's metadata) plus
OUT/run.json, and the checkpoints are removed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from planner import __version__
from planner.errors import PlannerError
from planner.estimate.difficulty import build_problems
from planner.progress import progress as report
from planner.tables import (
    PROBLEMS,
    PROBLEMS_FILE,
    SAMPLES,
    SAMPLES_FILE,
    atomic_dir,
    atomic_write_text,
    read_metadata,
    read_table,
    write_table,
)
from profiling.sweep.adaptive import adaptive_metadata, run_rounds
from profiling.sweep.config import RunConfig
from profiling.sweep.datasets import ProblemSet, load_problems
from profiling.sweep.pool_exec import PoolExecutor
from profiling.sweep.ray_exec import RayExecutor
from profiling.sweep.resolve import resolve
from profiling.sweep.units import LocalExecutor, SaveUnit, Unit, make_units

CHECKPOINT_DIR = "checkpoints"
RUN_FILE = "run.json"
SORT_KEY = ["strategy", "config", "verifier", "problem_id", "run", "position"]


class Executor(Protocol):
    """Runs units, calling `save` on this process as each finishes; returns the models' metadata.
    Made (models loaded, for the local one) before the run writes anything."""

    def run(self, units: list[Unit], save: SaveUnit, bar: Any) -> dict[str, Any]: ...


# By the name of `executor` in the run config (one of `profiling.sweep.config.EXECUTORS`): made
# with the resolved config and the data set's grader name.
EXECUTOR_TYPES: dict[str, Callable[[RunConfig, str], Executor]] = {
    "local": LocalExecutor,
    "pool": PoolExecutor,
    "ray": RayExecutor,
}


# ----------------------------------------------------------------------------------------------
# Checkpoints


def _fingerprint(cfg: RunConfig, ps: ProblemSet) -> dict[str, Any]:
    return {
        "config": json.loads(json.dumps(cfg.fingerprint(), default=str)),
        "problems_sha256": ps.problems_sha256,
        "shard_size": cfg.shard_size,
        "package_version": __version__,
    }


def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _diff(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}")
    return out


def _write_checkpoint(path: Path, rows: list[dict], meta: dict[str, Any]) -> None:
    df = (
        pd.DataFrame(rows, columns=list(SAMPLES.names))
        if rows
        else pd.DataFrame(columns=list(SAMPLES.names))
    )
    write_table(df, path, SAMPLES, meta)


def _read_checkpoint(path: Path) -> pd.DataFrame:
    df, _ = read_table(path, SAMPLES)
    return df


# ----------------------------------------------------------------------------------------------
# The run


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    samples: int
    problems: int
    units_run: int
    units_resumed: int
    metadata: dict[str, Any]


def _is_run_dir(out: Path) -> bool:
    return any((out / n).exists() for n in (CHECKPOINT_DIR, SAMPLES_FILE, RUN_FILE))


def _check_out(out: Path, resume: bool) -> None:
    """Fail before any work when OUT cannot be written, without creating anything."""
    if out.exists() and not out.is_dir():
        raise PlannerError(f"output path {out} exists and is not a directory")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise PlannerError(f"output directory {out} is not writable ({probe} is read-only)")
    if out.exists() and _is_run_dir(out) and not resume:
        raise PlannerError(
            f"{out} already holds a sweep (samples or checkpoints); pass --resume "
            "to continue or reuse it, or choose another --out"
        )


def run_sweep(
    cfg: RunConfig, out_dir: str | os.PathLike[str], *, resume: bool = False, progress: bool = True
) -> RunResult:
    """Run (or resume) a sweep into `out_dir`; returns a summary. See the module docstring."""
    out = Path(out_dir)
    _check_out(out, resume)
    ps = load_problems(cfg.data)
    cfg = resolve(cfg)
    fp = _fingerprint(cfg, ps)
    units = make_units(cfg, ps.problems)
    ck = out / CHECKPOINT_DIR

    finished = (out / RUN_FILE).is_file() and (out / SAMPLES_FILE).is_file()
    if resume and finished and not ck.exists():
        done = json.loads((out / RUN_FILE).read_text())
        if done.get("fingerprint") == fp:
            df, meta = read_table(out / SAMPLES_FILE, SAMPLES)
            kept = {k: v for k, v in meta.items() if k not in ("table", "schema_version")}
            return RunResult(out, len(df), int(df["problem_id"].nunique()), 0, len(units), kept)
        raise PlannerError(
            f"{out} holds a finished sweep of another config (differs in: "
            f"{', '.join(_diff(done.get('fingerprint', {}), fp)) or 'unknown'}); "
            "choose another --out"
        )
    if ck.exists():
        marker = ck / RUN_FILE
        old = json.loads(marker.read_text()) if marker.is_file() else {}
        if old.get("fingerprint") != fp:
            differs = ", ".join(_diff(old.get("fingerprint", {}), fp)) or "unknown"
            raise PlannerError(
                f"{ck} holds checkpoints of another config (differs in: {differs}); "
                "resume with the same config and data, or choose another --out"
            )
    pending = [u for u in units if not (ck / f"{u.name}.parquet").is_file()]
    resumed = len(units) - len(pending)

    base_meta = {
        "seed": cfg.seed,
        **ps.metadata(),
        "strategies": [s.key for s in cfg.strategies],
        "run_config": fp["config"],
        "timing": cfg.timing,
        **_versions(),
    }

    # Models load before anything is written, so a model that fails to load leaves no trace.
    executor: Executor | None = (
        EXECUTOR_TYPES[cfg.executor](cfg, ps.grader_name) if pending else None
    )
    total = sum(len(u.problems) for u in units)
    done_problems = total - sum(len(u.problems) for u in pending)
    model_meta: dict[str, Any] | None = None
    created = [p for p in (out, ck) if not p.exists()]

    def save(unit: Unit, rows: list[dict], meta: dict[str, Any]) -> None:
        _write_checkpoint(
            ck / f"{unit.name}.parquet", rows, {**base_meta, **meta, "unit": unit.name}
        )

    # Rate and ETA count problem x strategy-config pairs (a shard updates as each problem ends).
    # A bar on a terminal; off one, a line at most every 30 s.
    bar = report(
        "ttc profile",
        total,
        initial=done_problems,
        unit="problem-configs",
        enabled=progress,
        smoothing=0.1,
    )
    try:
        ck.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            ck / RUN_FILE, json.dumps({"fingerprint": fp}, sort_keys=True, indent=2) + "\n"
        )
        if cfg.adaptive.on:
            # Rounds of problems; configs that can no longer win stop (profiling.sweep.adaptive).
            metas: list[dict[str, Any]] = []

            def run_units(todo: list[Unit]) -> None:
                if todo and executor is not None:
                    metas.append(executor.run(todo, save, bar))

            rounds = run_rounds(
                units,
                cfg.adaptive,
                cfg.shard_size,
                cfg.seed,
                lambda u: (ck / f"{u.name}.parquet").is_file(),
                run_units,
                lambda u: _read_checkpoint(ck / f"{u.name}.parquet"),
            )
            model_meta = metas[0] if metas else None
            units = rounds.units
            kept = {u.name for u in units}
            pending = [u for u in pending if u.name in kept]
            base_meta["adaptive"] = adaptive_metadata(cfg.adaptive, rounds.ends, rounds.stopped)
        elif executor is not None:
            model_meta = executor.run(pending, save, bar)
    except BaseException:
        # Finished shards stay for --resume; a run that finished none leaves nothing behind.
        if not any(ck.glob("*.parquet")):
            for p in reversed(created):
                shutil.rmtree(p, ignore_errors=True)
        raise
    finally:
        bar.close()
    return _finish(cfg, ps, units, out, fp, base_meta, model_meta, len(pending), resumed)


def _finish(
    cfg: RunConfig,
    ps: ProblemSet,
    units: list[Unit],
    out: Path,
    fp: dict[str, Any],
    base_meta: dict[str, Any],
    model_meta: dict[str, Any] | None,
    ran: int,
    resumed: int,
) -> RunResult:
    ck = out / CHECKPOINT_DIR
    frames = []
    for u in units:
        path = ck / f"{u.name}.parquet"
        if not path.is_file():
            raise PlannerError(f"checkpoint {path} is missing: resume the run with --resume")
        frames.append(_read_checkpoint(path))
        if model_meta is None:
            m = read_metadata(path)
            model_meta = {
                k: m[k]
                for k in (
                    "model_id",
                    "model_params",
                    "device",
                    "dtype",
                    "model_path",
                    "verifier_ids",
                    "verifier_params",
                    "reviser_id",
                    "reviser_params",
                    "backend",
                    "base_url",
                    "served_model",
                    "max_model_len",
                    "model_check",
                    "model_checks",
                )
                if k in m
            }
    nonempty = [f for f in frames if len(f)]
    if not nonempty:
        raise PlannerError("the sweep produced no samples")
    samples = pd.concat(nonempty, ignore_index=True)
    samples = samples.sort_values(SORT_KEY, kind="stable").reset_index(drop=True)
    meta = {**base_meta, **(model_meta or {}), **_prefix_cache(ck, units)}
    meta = {k: v for k, v in meta.items() if not k.startswith("unit_")}
    problems = _problems_table(samples, ps, cfg.seed)
    with atomic_dir(out) as stage:
        write_table(samples, stage / SAMPLES_FILE, SAMPLES, meta)
        write_table(problems, stage / PROBLEMS_FILE, PROBLEMS, meta)
        (stage / RUN_FILE).write_text(
            json.dumps({"fingerprint": fp, "metadata": meta}, sort_keys=True, indent=2, default=str)
            + "\n"
        )
    shutil.rmtree(ck, ignore_errors=True)
    return RunResult(out, len(samples), int(samples["problem_id"].nunique()), ran, resumed, meta)


def _prefix_cache(ck: Path, units: list[Unit]) -> dict[str, float]:
    """A served policy's prefix-cache tokens summed over every unit's checkpoint: the hit rate
    of the whole run, however many times it was resumed."""
    metas = [read_metadata(ck / f"{u.name}.parquet") for u in units]
    windows = [m for m in metas if "unit_prefix_cache_query_tokens" in m]
    if not windows:
        return {}
    hits = float(sum(m["unit_prefix_cache_hit_tokens"] for m in windows))
    queries = float(sum(m["unit_prefix_cache_query_tokens"] for m in windows))
    return {
        "prefix_cache_hit_tokens": hits,
        "prefix_cache_query_tokens": queries,
        "prefix_cache_hit_rate": hits / queries if queries > 0 else 0.0,
    }


def _problems_table(samples: pd.DataFrame, ps: ProblemSet, seed: int) -> pd.DataFrame:
    levels = pd.Series({p.problem_id: p.level for p in ps.problems}, dtype=object)
    has_levels = levels.notna().any()
    try:
        return build_problems(samples, seed=seed, levels=levels if has_levels else None)
    except PlannerError:
        # No independent pool (no `sample` strategy): bins by the data set's levels, or none.
        if has_levels:
            return build_problems(samples, seed=seed, levels=levels, bin_by="level").assign(
                pass1=float("nan")
            )
        ids = sorted(samples["problem_id"].unique())
        return pd.DataFrame(
            {
                "problem_id": ids,
                "fold": [i % 2 for i in range(len(ids))],
                "pass1": [float("nan")] * len(ids),
                "oracle_bin": pd.array([None] * len(ids), dtype="Int64"),
                "predicted_bin": pd.array([None] * len(ids), dtype="Int64"),
                "level": [None] * len(ids),
            }
        )


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {
        "torch_version": torch.__version__.split("+")[0],
        "transformers_version": transformers.__version__,
    }

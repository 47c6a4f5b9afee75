"""The sweep runner: problems x strategies x configs, checkpointed per shard, resumable, in order.

Work is cut into *units*: one strategy config on one shard of `shard_size` consecutive problems.
Each finished unit is written at once as a checkpoint (`OUT/checkpoints/<unit>.parquet`, an atomic
rename, so a unit is either wholly on disk or absent), and `--resume` runs only the missing units.
A unit's rows do not depend on which process ran it or when: every problem gets its own seed,
derived from (run seed, problem_id, strategy, config) by `unit_seed`, and is run alone, so the
final tables are the same for any shard size, executor (local or Ray) or interruption.

At the end the checkpoints are concatenated in a fixed order into OUT/samples.parquet and
OUT/problems.parquet (through planner.schema.write_table, with the run's metadata) plus
OUT/run.json, and the checkpoints are removed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from planner import __version__
from planner.errors import PlannerError
from planner.fsutil import atomic_dir, atomic_write_text
from planner.schema import (
    PROBLEMS,
    PROBLEMS_FILE,
    SAMPLES,
    SAMPLES_FILE,
    read_table,
    write_table,
)
from profiling.problems import Problem
from profiling.sweep import _compat
from profiling.sweep.config import ModelSpec, RunConfig, StrategySpec, VerifierSpec
from profiling.sweep.datasets import ProblemSet, load_problems

CHECKPOINT_DIR = "checkpoints"
RUN_FILE = "run.json"
SORT_KEY = ["strategy", "config", "verifier", "problem_id", "run", "position"]


def unit_seed(seed: int, problem_id: str, strategy: StrategySpec) -> int:
    """The seed of one problem under one strategy config: independent of shards and executors."""
    text = f"{seed}\x00{problem_id}\x00{strategy.key}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % (2**31 - 1)


@dataclass(frozen=True)
class Unit:
    """One strategy config on one shard of problems (the checkpoint granularity)."""

    strategy: StrategySpec
    shard: int
    problems: tuple[Problem, ...]

    @property
    def name(self) -> str:
        digest = hashlib.sha256(self.strategy.key.encode()).hexdigest()[:12]
        return f"{self.strategy.name}-{digest}-shard{self.shard:05d}"


def make_units(cfg: RunConfig, problems: Sequence[Problem]) -> list[Unit]:
    shards = [tuple(problems[i:i + cfg.shard_size]) for i in range(0, len(problems), cfg.shard_size)]
    return [Unit(s, k, shard) for s in cfg.strategies for k, shard in enumerate(shards)]


# ----------------------------------------------------------------------------------------------
# Resolving and checking inputs before anything is written


def _testbed_dir(cfg: RunConfig) -> Path | None:
    if cfg.testbed is None:
        return None
    if cfg.testbed in ("quick", "default", "paper"):
        from models.testbed import ensure_testbed

        quick = cfg.testbed == "quick"
        return ensure_testbed(quick=quick, scale="default" if quick else cfg.testbed, seed=0,
                              progress=sys.stderr.isatty())
    p = Path(cfg.testbed).expanduser()
    if not (p / "manifest.json").is_file():
        raise PlannerError(f"testbed {p}: no manifest.json (train one with: ttc testbed train --out {p})")
    return p


def _resolve(path: str, testbed: Path | None, what: str) -> str:
    if path.startswith("testbed:"):
        if testbed is None:
            raise PlannerError(f"{what} = {path!r} needs testbed = \"quick\", \"default\" or a directory")
        return str(testbed / path.removeprefix("testbed:"))
    return str(Path(path).expanduser().resolve())


def _check_model_dir(path: str, what: str) -> None:
    p = Path(path)
    if not p.is_dir():
        raise PlannerError(f"{what}: model directory {p} not found")
    if not (p / "config.json").is_file():
        raise PlannerError(f"{what}: {p} has no config.json (expected a Hugging Face model directory)")


def _check_step_tag(spec: VerifierSpec, names: tuple[str, ...] = ("step_tag", "good_token", "bad_token")) -> None:
    """A tag PRM needs its step tag and label tokens to be single tokens of its tokenizer."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(spec.path)
    except Exception as exc:  # transformers raises many types for a broken tokenizer
        raise PlannerError(f"verifier {spec.path}: cannot load its tokenizer "
                           f"({' '.join(str(exc).split())})") from None
    for field_name in names:
        text = getattr(spec, field_name)
        ids = tok.encode(text, add_special_tokens=False)
        if len(ids) != 1 or ids[0] == tok.unk_token_id:
            raise PlannerError(
                f"verifier {spec.path}: the tokenizer has no single token for the PRM {field_name} "
                f"{text!r} (it encodes to {len(ids)} tokens {ids[:8]}); set {field_name} in "
                "[[verifiers]] to the tag the PRM was trained with")


def resolve(cfg: RunConfig) -> RunConfig:
    """Absolute model paths, testbed paths filled in, PRM tag defaults; checks every model dir."""
    testbed = _testbed_dir(cfg)
    manifest = json.loads((testbed / "manifest.json").read_text()) if testbed else {}
    model = replace(cfg.model, path=_resolve(cfg.model.path, testbed, "model.path"))
    _check_model_dir(model.path, "model.path")
    reviser = None
    if cfg.reviser is not None:
        reviser = replace(cfg.reviser, path=_resolve(cfg.reviser.path, testbed, "reviser.path"))
        _check_model_dir(reviser.path, "reviser.path")
    verifiers = []
    for i, v in enumerate(cfg.verifiers):
        if v.path is not None:
            from_testbed = v.path.startswith("testbed:")
            v = replace(v, path=_resolve(v.path, testbed, f"verifiers #{i + 1} path"))
            _check_model_dir(v.path, f"verifiers #{i + 1} path")
            if v.kind == "prm":
                v = _prm_defaults(v, manifest.get("prm", {}) if from_testbed else {})
        verifiers.append(v)
    for s in cfg.strategies:
        try:
            _compat.check_strategy_config(s.name, {**s.config, "seed": 0}, len(cfg.verifiers))
        except (TypeError, ValueError) as exc:
            raise PlannerError(f"strategy {s.key}: {exc}") from None
    return replace(cfg, model=model, reviser=reviser, verifiers=tuple(verifiers),
                   testbed=None if testbed is None else str(testbed))


def _prm_defaults(v: VerifierSpec, manifest_prm: dict[str, Any]) -> VerifierSpec:
    path = Path(v.path or "")
    meta: dict[str, Any] = {}
    if (path / "verifier.json").is_file():
        meta = json.loads((path / "verifier.json").read_text())
    cfg = json.loads((path / "config.json").read_text())
    fmt = v.format or meta.get("format")
    if fmt == "token_class" or (fmt is None and any(
            a.endswith("ForTokenClassification") for a in cfg.get("architectures") or [])):
        return v
    if fmt == "rlhflow":
        # Chat turns, the assistant answering good/bad: no step tag to check.
        v = replace(v, good_token=v.good_token or meta.get("good_token", "+"),
                    bad_token=v.bad_token or meta.get("bad_token", "-"))
        _check_step_tag(v, ("good_token", "bad_token"))
        return v
    fill = {}
    for k in ("step_tag", "good_token", "bad_token"):
        if getattr(v, k) is None:
            fill[k] = meta.get(k, manifest_prm.get(k))
    v = replace(v, **{k: x for k, x in fill.items() if x is not None})
    missing = [k for k in ("step_tag", "good_token", "bad_token") if getattr(v, k) is None]
    if missing:
        raise PlannerError(f"verifier {path}: a step-tag PRM needs {', '.join(missing)} "
                           "(set them in [[verifiers]] or ship a verifier.json beside the model)")
    _check_step_tag(v)
    return v


# ----------------------------------------------------------------------------------------------
# Models (loaded once per process: the local executor, or each Ray worker)


class SweepModels:
    """The policy backend, the optional reviser backend and the verifiers of one run."""

    def __init__(self, cfg: RunConfig) -> None:
        from transformers.utils import logging as hf_logging

        from profiling.backend import PromptTemplate, TransformersBackend

        # One sweep progress bar, not one "Loading weights" bar per model and worker.
        hf_logging.disable_progress_bar()

        def backend(spec: ModelSpec) -> Any:
            return TransformersBackend.load(
                spec.path, device=spec.device, dtype=spec.dtype, batch_size=spec.batch_size,
                step_delimiter=spec.step_delimiter, trust_remote_code=spec.trust_remote_code,
                template=PromptTemplate(template=spec.template))

        try:
            self.backend = backend(cfg.model)
            self.reviser = backend(cfg.reviser) if cfg.reviser is not None else None
            self.verifiers = [self._verifier(v, cfg.model) for v in cfg.verifiers]
        except (OSError, ValueError) as exc:
            # transformers' messages span lines; the CLI promises one.
            raise PlannerError(f"loading models: {' '.join(str(exc).split())}") from None
        ids = [v.verifier_id for v in self.verifiers]
        if len(set(ids)) != len(ids):
            raise PlannerError(f"two verifiers have the same id {ids}: give them distinct names")

    @staticmethod
    def _verifier(v: VerifierSpec, model: ModelSpec) -> Any:
        from profiling import verifiers as V

        common: dict[str, Any] = {"agg": v.agg, "mode": v.mode}
        if v.kind == "self":
            return V.SelfLikelihood(stat=v.stat, delimiter=model.step_delimiter, **common)
        common.update(delimiter=model.step_delimiter, batch_size=v.batch_size,
                      template=v.template or model.template)
        if v.name:
            common["name"] = v.name
        if v.kind == "likelihood":
            return V.LikelihoodVerifier.load(v.path, stat=v.stat, **common)
        extra = {k: getattr(v, k) for k in ("format", "step_tag", "good_token", "bad_token", "separator")
                 if getattr(v, k) is not None}
        if v.format == "rlhflow":
            extra = {k: x for k, x in extra.items() if k in ("format", "good_token", "bad_token")}
        cfg = json.loads((Path(v.path) / "config.json").read_text())
        if v.format == "token_class" or any(a.endswith("ForTokenClassification") for a in cfg.get("architectures") or []):
            extra = {k: x for k, x in extra.items() if k in ("format", "separator")}
        return V.load_prm(v.path, **extra, **common)

    def metadata(self) -> dict[str, Any]:
        b = self.backend
        meta: dict[str, Any] = {
            "model_id": b.model_id, "model_params": b.n_params, "model_path": str(b.config.model_dir),
            "device": b.config.device, "dtype": b.config.dtype,
            "verifier_ids": [v.verifier_id for v in self.verifiers] or ["none"],
            "verifier_params": {v.verifier_id: _params(v) for v in self.verifiers},
        }
        if self.reviser is not None:
            meta.update(reviser_id=self.reviser.model_id, reviser_params=self.reviser.n_params)
        return meta


def _params(v: Any) -> int:
    s = getattr(v, "s", None)
    model = getattr(s, "model", None)
    return 0 if model is None else int(sum(p.numel() for p in model.parameters()))


class UnitRunner:
    """Runs units with models loaded once; used in-process and inside each Ray worker."""

    def __init__(self, cfg: RunConfig, grader: str, threads: int | None = None) -> None:
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        self.cfg = cfg
        self.grader = grader
        _register_grader(grader)
        self.models = SweepModels(cfg)

    def metadata(self) -> dict[str, Any]:
        return self.models.metadata()

    def run(self, unit: Unit, on_problem: Callable[[], None] | None = None) -> list[dict]:
        rows: list[dict] = []
        # The revisions strategy samples from the reviser model; every other one from the policy.
        backend = self.models.reviser if unit.strategy.name == "revisions" else self.models.backend
        for problem in unit.problems:
            config = {**unit.strategy.config, "grader": self.grader,
                      "seed": unit_seed(self.cfg.seed, problem.problem_id, unit.strategy)}
            try:
                out = _compat.run_strategy(unit.strategy.name, [problem], backend,
                                           self.models.verifiers, config)
            except ValueError as exc:
                raise PlannerError(f"{unit.strategy.key} on {problem.problem_id}: {exc}") from None
            if not self.cfg.timing:
                for r in out:
                    r["wall_s"] = math.nan
            rows += out
            if on_problem is not None:
                on_problem()
        return rows


# ----------------------------------------------------------------------------------------------
# Checkpoints


def _fingerprint(cfg: RunConfig, ps: ProblemSet) -> dict[str, Any]:
    return {"config": json.loads(json.dumps(cfg.fingerprint(), default=str)),
            "problems_sha256": ps.problems_sha256, "shard_size": cfg.shard_size,
            "package_version": __version__}


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
    df = pd.DataFrame(rows, columns=list(SAMPLES.names)) if rows else pd.DataFrame(columns=list(SAMPLES.names))
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
        raise PlannerError(f"{out} already holds a sweep (samples or checkpoints); pass --resume to "
                           "continue or reuse it, or choose another --out")


def run_sweep(cfg: RunConfig, out_dir: str | os.PathLike[str], *, resume: bool = False,
              progress: bool = True) -> RunResult:
    """Run (or resume) a sweep into `out_dir`; returns a summary. See the module docstring."""
    out = Path(out_dir)
    _check_out(out, resume)
    ps = load_problems(cfg.data)
    cfg = resolve(cfg)
    _register_grader(ps.grader_name)
    fp = _fingerprint(cfg, ps)
    units = make_units(cfg, ps.problems)
    ck = out / CHECKPOINT_DIR

    if resume and (out / RUN_FILE).is_file() and (out / SAMPLES_FILE).is_file() and not ck.exists():
        done = json.loads((out / RUN_FILE).read_text())
        if done.get("fingerprint") == fp:
            df, meta = read_table(out / SAMPLES_FILE, SAMPLES)
            return RunResult(out, len(df), int(df["problem_id"].nunique()), 0, len(units),
                             {k: v for k, v in meta.items() if k not in ("table", "schema_version")})
        raise PlannerError(f"{out} holds a finished sweep of another config (differs in: "
                           f"{', '.join(_diff(done.get('fingerprint', {}), fp)) or 'unknown'}); "
                           "choose another --out")
    if ck.exists():
        marker = ck / RUN_FILE
        old = json.loads(marker.read_text()) if marker.is_file() else {}
        if old.get("fingerprint") != fp:
            raise PlannerError(f"{ck} holds checkpoints of another config (differs in: "
                               f"{', '.join(_diff(old.get('fingerprint', {}), fp)) or 'unknown'}); "
                               "resume with the same config and data, or choose another --out")
    pending = [u for u in units if not (ck / f"{u.name}.parquet").is_file()]
    resumed = len(units) - len(pending)

    base_meta = {"seed": cfg.seed, **ps.metadata(), "strategies": [s.key for s in cfg.strategies],
                 "run_config": fp["config"], "timing": cfg.timing, **_versions()}

    from tqdm.auto import tqdm

    # Models load before anything is written, so a model that fails to load leaves no trace.
    runner = UnitRunner(cfg, ps.grader_name, threads=cfg.threads) if pending and cfg.executor == "local" else None
    total = sum(len(u.problems) for u in units)
    done_problems = total - sum(len(u.problems) for u in pending)
    model_meta: dict[str, Any] | None = None
    created = [p for p in (out, ck) if not p.exists()]

    def save(unit: Unit, rows: list[dict], meta: dict[str, Any]) -> None:
        _write_checkpoint(ck / f"{unit.name}.parquet", rows, {**base_meta, **meta, "unit": unit.name})

    # Rate and ETA count problem x strategy-config pairs (a shard updates as each problem ends).
    bar = tqdm(total=total, initial=done_problems, unit="problem-config", desc="ttc profile",
               disable=not progress, file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
    try:
        ck.mkdir(parents=True, exist_ok=True)
        atomic_write_text(ck / RUN_FILE, json.dumps({"fingerprint": fp}, sort_keys=True, indent=2) + "\n")
        if pending and runner is not None:
            model_meta = runner.metadata()
            for u in pending:
                rows = runner.run(u, on_problem=lambda: bar.update(1))
                save(u, rows, model_meta)
        elif pending:
            from profiling.sweep.ray_exec import run_units_ray

            model_meta = run_units_ray(cfg, ps.grader_name, pending, save, bar)
    except BaseException:
        # Finished shards stay for --resume; a run that finished none leaves nothing behind.
        if not any(ck.glob("*.parquet")):
            for p in reversed(created):
                shutil.rmtree(p, ignore_errors=True)
        raise
    finally:
        bar.close()
    return _finish(cfg, ps, units, out, fp, base_meta, model_meta, len(pending), resumed)


def _finish(cfg: RunConfig, ps: ProblemSet, units: list[Unit], out: Path, fp: dict[str, Any],
            base_meta: dict[str, Any], model_meta: dict[str, Any] | None, ran: int,
            resumed: int) -> RunResult:
    ck = out / CHECKPOINT_DIR
    frames = []
    for u in units:
        path = ck / f"{u.name}.parquet"
        if not path.is_file():
            raise PlannerError(f"checkpoint {path} is missing: resume the run with --resume")
        frames.append(_read_checkpoint(path))
        if model_meta is None:
            from planner.schema import read_metadata

            m = read_metadata(path)
            model_meta = {k: m[k] for k in ("model_id", "model_params", "device", "dtype",
                                            "model_path", "verifier_ids", "verifier_params", "reviser_id",
                                            "reviser_params") if k in m}
    samples = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else None
    if samples is None:
        raise PlannerError("the sweep produced no samples")
    samples = samples.sort_values(SORT_KEY, kind="stable").reset_index(drop=True)
    meta = {**base_meta, **(model_meta or {})}
    problems = _problems_table(samples, ps, cfg.seed)
    with atomic_dir(out) as stage:
        write_table(samples, stage / SAMPLES_FILE, SAMPLES, meta)
        write_table(problems, stage / PROBLEMS_FILE, PROBLEMS, meta)
        (stage / RUN_FILE).write_text(json.dumps({"fingerprint": fp, "metadata": meta}, sort_keys=True,
                                                 indent=2, default=str) + "\n")
    shutil.rmtree(ck, ignore_errors=True)
    return RunResult(out, len(samples), int(samples["problem_id"].nunique()), ran, resumed, meta)


def _problems_table(samples: pd.DataFrame, ps: ProblemSet, seed: int) -> pd.DataFrame:
    from planner.difficulty import build_problems

    levels = pd.Series({p.problem_id: p.level for p in ps.problems}, dtype=object)
    has_levels = levels.notna().any()
    try:
        return build_problems(samples, seed=seed, levels=levels if has_levels else None)
    except PlannerError:
        # No independent pool (no `sample` strategy): bins by the data set's levels, or none.
        if has_levels:
            return build_problems(samples, seed=seed, levels=levels, bin_by="level").assign(
                pass1=float("nan"))
        ids = sorted(samples["problem_id"].unique())
        return pd.DataFrame({"problem_id": ids, "fold": [i % 2 for i in range(len(ids))],
                             "pass1": [float("nan")] * len(ids),
                             "oracle_bin": pd.array([None] * len(ids), dtype="Int64"),
                             "predicted_bin": pd.array([None] * len(ids), dtype="Int64"),
                             "level": [None] * len(ids)})


def _register_grader(name: str) -> None:
    """Make the data set's grader known to the strategies (they look graders up by name)."""
    from profiling import problems as P
    from profiling.sweep.grading import GRADERS

    if name in GRADERS and name not in P.GRADERS:
        P.GRADERS[name] = GRADERS[name]


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {"torch_version": torch.__version__.split("+")[0], "transformers_version": transformers.__version__}


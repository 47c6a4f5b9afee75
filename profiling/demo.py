"""The README's main job (`ttc demo`) as a library call: every stage from the testbed to the run
directory that `reports.build.build_report` reads.

`run_demo(settings, out, log)` writes, under `out` (layout of `reports/run.py`):

- `samples/`: the policy's sweep (`data/configs/demo.toml`) on fresh testbed problems, on a pool
  of two processes (`executor = "pool"`);
- `large/samples/`, `large/profile/`: the larger LM's own pools (`demo-large.toml`) on the same
  problems, in a third process beside them (each process has one torch thread; the three
  share the two cores, so neither core idles while the other finishes);
- `fit/samples/`, `heldout/samples/`: the problems split in two halves (seeded, within levels);
- `profile/`: the fit half's curves with k = 4 probes and the cross-fitted difficulty predictor;
- `plan/`: the compute-optimal plan on predicted bins (probe cost charged, two-fold CV);
- `policy.json` and `evaluation.json`: the exported policy and its check on the held-out half;
- `hardware/this-machine.json`, `model.json`, `report.json`: what the report needs beside the
  tables (`profiling.demo_context`);
- `demo.json`: the hashes of the two sample tables and the settings the later stages used (a
  change rebuilds every stage after the sweeps).

Every stage is reused when its output exists, so a rerun only builds what is missing.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from planner.data import shipped_dir

from planner.errors import PlannerError
from planner.tables import (
    PROBLEMS,
    PROBLEMS_FILE,
    PROFILE,
    PROFILE_FILE,
    SAMPLES,
    SAMPLES_FILE,
    atomic_dir,
    atomic_write_text,
    read_samples,
    read_table,
    write_table,
)
from planner.timings import about, profiling_s
from profiling.demo_context import dumps as _dumps
from profiling.demo_context import write_report_context
from profiling.sweep.config import RunConfig, StrategySpec, load_config

POLICY_CONFIG = "demo.toml"
LARGE_CONFIG = "demo-large.toml"
PROBE_K = 4
SCALES = ("default", "paper")


@dataclass(frozen=True)
class DemoSettings:
    """What a demo runs on. `testbed`: quick | default | paper | a trained testbed directory;
    `n_problems`: None = the config's; `levels`: testbed levels (None = the config's);
    `select_rule`: the plan's rule (`pooled`: a bin gets its own option only where nested
    cross-validation supports it, and no probes where they do not repay their cost);
    `max_new_tokens`: caps every strategy's generation length (None = the configs')."""

    testbed: str = "default"
    n_problems: int | None = None
    levels: tuple[int, ...] | None = None
    seed: int | None = None
    config: str | None = None
    large_config: str | None = None
    select_rule: str = "pooled"
    mc_samples: int = 200
    n_boot: int = 200
    calibrate: bool = True
    max_new_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.n_problems is not None and self.n_problems < 8:
            raise ValueError(
                f"--problems must be >= 8 (the plan needs problems in every bin), "
                f"got {self.n_problems}"
            )
        if self.select_rule not in ("pooled", "best", "one-se"):
            raise ValueError(
                f"select_rule must be pooled, best or one-se, got {self.select_rule!r}"
            )


@dataclass(frozen=True)
class DemoResult:
    """Where the run directory is, and the numbers the terminal summary prints."""

    out: Path
    problems: int
    fit_problems: int
    heldout_problems: int
    samples: int
    large_samples: int
    model_multiplier: float
    plan_summary: dict[str, Any]
    evaluation: dict[str, Any]


def _configs(s: DemoSettings) -> tuple[RunConfig, RunConfig]:
    cfg_dir = shipped_dir("configs")
    cfg = load_config(Path(s.config) if s.config else cfg_dir / POLICY_CONFIG)
    large = load_config(Path(s.large_config) if s.large_config else cfg_dir / LARGE_CONFIG)
    n = s.n_problems or cfg.data.n
    data = replace(cfg.data, n=n, limit=None, offset=0, levels=s.levels or cfg.data.levels)
    seed = cfg.seed if s.seed is None else s.seed
    # The policy's units share both cores with the larger LM's process (one torch thread each).
    cfg = replace(
        cfg, testbed=s.testbed, data=data, seed=seed, threads=1, executor="pool", workers=2
    )
    # The larger LM answers the same problems: same data, same seed.
    large = replace(large, testbed=s.testbed, data=data, seed=seed, threads=1, executor="local")
    if s.max_new_tokens is not None:
        cfg = replace(cfg, strategies=_capped(cfg.strategies, s.max_new_tokens))
        large = replace(large, strategies=_capped(large.strategies, s.max_new_tokens))
    return cfg, large


def _capped(specs: tuple[StrategySpec, ...], cap: int) -> tuple[StrategySpec, ...]:
    out = []
    for spec in specs:
        params = dict(spec.params)
        params["max_new_tokens"] = min(int(params.get("max_new_tokens", cap)), cap)
        out.append(StrategySpec(spec.name, tuple(sorted(params.items()))))
    return tuple(out)


def _sweep(cfg: RunConfig, out: Path, progress: bool) -> int:
    """Run (or reuse) a sweep; a directory of another config is started afresh (the demo owns
    it). Returns the number of sample rows."""
    from profiling.sweep.runner import run_sweep

    try:
        return run_sweep(cfg, out, resume=True, progress=progress).samples
    except PlannerError as exc:
        if "of another config" not in str(exc):
            raise
    shutil.rmtree(out)
    return run_sweep(cfg, out, resume=True, progress=progress).samples


def _large_job(cfg: RunConfig, samples_dir: str) -> int:
    """The second process: the larger LM's pools on one torch thread."""
    import torch

    torch.set_num_threads(1)
    return _sweep(cfg, Path(samples_dir), progress=False)


def split_problems(problems: Any, seed: int) -> tuple[list[str], list[str]]:
    """Fit and held-out halves: within each level, a seeded shuffle, alternating halves."""
    fit: list[str] = []
    held: list[str] = []
    rng = np.random.default_rng([seed, 14])
    levels = problems["level"].astype(str) if "level" in problems.columns else None
    groups = (
        [problems] if levels is None else [problems[levels == lv] for lv in sorted(set(levels))]
    )
    turn = 0
    for g in groups:
        ids = sorted(str(p) for p in g["problem_id"])
        for pid in [ids[i] for i in rng.permutation(len(ids))]:
            (fit if turn % 2 == 0 else held).append(pid)
            turn += 1
    return sorted(fit), sorted(held)


def _write_half(src: Path, dst: Path, ids: list[str]) -> None:
    if (dst / SAMPLES_FILE).is_file():
        return
    samples, meta = read_samples(src)
    problems, pmeta = read_table(src / PROBLEMS_FILE, PROBLEMS)
    keep = set(ids)
    with atomic_dir(dst) as stage:
        write_table(
            samples[samples["problem_id"].isin(keep)].reset_index(drop=True),
            stage / SAMPLES_FILE,
            SAMPLES,
            {k: v for k, v in meta.items() if k not in ("table", "schema_version")},
        )
        write_table(
            problems[problems["problem_id"].isin(keep)].reset_index(drop=True),
            stage / PROBLEMS_FILE,
            PROBLEMS,
            {k: v for k, v in pmeta.items() if k not in ("table", "schema_version")},
        )


def _curves(samples_dir: Path, out: Path, s: DemoSettings, seed: int, probe_k: int) -> None:
    from planner.estimate import CurveOptions, ProbeOptions, profile_samples

    if (out / PROFILE_FILE).is_file():
        return
    opts = CurveOptions(mc_samples=s.mc_samples, seed=seed)
    res = profile_samples(samples_dir, opts, ProbeOptions(probe_k) if probe_k else None)
    with atomic_dir(out) as stage:
        write_table(res.profile, stage / PROFILE_FILE, PROFILE, res.metadata)
        write_table(res.problems, stage / PROBLEMS_FILE, PROBLEMS, res.metadata)


def _plan(profile_dir: Path, out: Path, s: DemoSettings, seed: int) -> dict[str, Any]:
    from planner.optimize import PlanOptions, plan_tables, read_plan_inputs
    from planner.tables import (
        CHOICES,
        CHOICES_FILE,
        PLAN_CURVES,
        PLAN_CURVES_FILE,
        SELECTION,
        SELECTION_FILE,
        SUMMARY_FILE,
    )

    if (out / SUMMARY_FILE).is_file():
        return json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))
    inputs = read_plan_inputs(profile_dir, "predicted", None, seed, None)
    opts = PlanOptions(
        unit="generations",
        bin_column=inputs.bin_column,
        n_boot=s.n_boot,
        seed=seed,
        probe_k=inputs.probe_k,
        probe_verifier=inputs.probe_verifier,
        select_rule=s.select_rule,
    )
    res = plan_tables(inputs, opts)
    plan, meta = res.plan, res.metadata
    with atomic_dir(out) as stage:
        write_table(plan.curves, stage / PLAN_CURVES_FILE, PLAN_CURVES, meta)
        write_table(plan.selection, stage / SELECTION_FILE, SELECTION, meta)
        write_table(plan.choices, stage / CHOICES_FILE, CHOICES, meta)
        write_table(res.problems, stage / PROBLEMS_FILE, PROBLEMS, meta)
        (stage / SUMMARY_FILE).write_text(_dumps(res.summary), encoding="utf-8")
    return res.summary


def _policy(out: Path, heldout: Path, s: DemoSettings, seed: int) -> dict[str, Any]:
    from planner.policy import Policy, dumps_policy
    from planner.policy.build import build_policy
    from planner.policy.evaluate import evaluate_policy

    policy_file, eval_file = out / "policy.json", out / "evaluation.json"
    if not policy_file.is_file():
        atomic_write_text(policy_file, dumps_policy(build_policy(out / "plan")))
    if eval_file.is_file():
        return json.loads(eval_file.read_text(encoding="utf-8"))
    samples, _ = read_samples(heldout)
    res = evaluate_policy(Policy.load(policy_file), samples, n_boot=s.n_boot, seed=seed)
    atomic_write_text(eval_file, _dumps(res))
    return res


def run_demo(
    settings: DemoSettings, out_dir: str | Path, log: Callable[[str], None], progress: bool = True
) -> DemoResult:
    """Run every stage of the demo into `out_dir` (see the module docstring); reruns reuse."""
    from profiling.sweep.resolve import resolve

    out = Path(out_dir)
    cfg, large_cfg = _configs(settings)
    seed = cfg.seed
    n = cfg.data.n
    scale = _testbed_scale(settings.testbed, progress)
    # The testbed trains once (cached), before the second process starts; resolve finds it.
    resolved = resolve(cfg)
    expect = ""
    if scale is not None:
        seconds, basis = profiling_s(scale, n)
        expect = f"; expected {about(seconds)} on 2 CPU cores ({basis})"
    log(
        f"[1/6] profiling {len(cfg.strategies)} strategy configs on {n} testbed problems "
        f"(testbed: {settings.testbed}) -> {out / 'samples'}; the larger LM's pools on the "
        f"second core -> {out / 'large' / 'samples'}{expect}"
    )
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        large_job = pool.submit(_large_job, large_cfg, str(out / "large" / "samples"))
        n_samples = _sweep(cfg, out / "samples", progress)
        n_large = large_job.result()
    log(f"      {n_samples} policy samples, {n_large} larger-LM samples")

    _drop_stale(out, settings)
    problems, _ = read_table(out / "samples" / PROBLEMS_FILE, PROBLEMS)
    fit, held = split_problems(problems, seed)
    log(f"[2/6] splitting {n} problems: {len(fit)} to fit, {len(held)} held out")
    _write_half(out / "samples", out / "fit" / "samples", fit)
    _write_half(out / "samples", out / "heldout" / "samples", held)

    log(f"[3/6] curves of the fit half with k={PROBE_K} probes and the difficulty predictor")
    _curves(out / "fit" / "samples", out / "profile", settings, seed, PROBE_K)
    _curves(out / "large" / "samples", out / "large" / "profile", settings, seed, 0)

    log(f"[4/6] compute-optimal plan on predicted bins (probes charged) -> {out / 'plan'}")
    summary = _plan(out / "profile", out / "plan", settings, seed)

    log("[5/6] exporting the policy and evaluating it on the held-out half")
    evaluation = _policy(out, out / "heldout" / "samples", settings, seed)

    if settings.calibrate:
        log("[6/6] calibrating this machine's CPU (ttc calibrate) for the cost figure")
    m = write_report_context(out, Path(resolved.model.path), settings.calibrate)
    return DemoResult(
        out=out,
        problems=n,
        fit_problems=len(fit),
        heldout_problems=len(held),
        samples=n_samples,
        large_samples=n_large,
        model_multiplier=m,
        plan_summary=summary,
        evaluation=evaluation,
    )


# What the stages after the sweeps derive from the samples; rebuilt when the samples change.
_DERIVED = ("fit", "heldout", "profile", "plan", "large/profile")
_DERIVED_FILES = ("policy.json", "evaluation.json", "model.json", "report.json")
STAMP_FILE = "demo.json"


def _drop_stale(out: Path, s: DemoSettings) -> None:
    """Remove the derived stages when the samples or the settings they used have changed."""
    from planner.tables import file_sha256

    stamp = {
        "samples": file_sha256(out / "samples" / SAMPLES_FILE),
        "large_samples": file_sha256(out / "large" / "samples" / SAMPLES_FILE),
        "select_rule": s.select_rule,
        "mc_samples": s.mc_samples,
        "n_boot": s.n_boot,
        "probe_k": PROBE_K,
    }
    path = out / STAMP_FILE
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if old == stamp:
        return
    for d in _DERIVED:
        shutil.rmtree(out / d, ignore_errors=True)
    for f in _DERIVED_FILES:
        (out / f).unlink(missing_ok=True)
    atomic_write_text(path, _dumps(stamp))


def _testbed_scale(testbed: str, progress: bool) -> str | None:
    """The scale of a named testbed, trained here first if the cache lacks it (its first-run
    line says so, and for how long); a testbed directory's scale from its manifest."""
    if testbed in SCALES or testbed == "quick":
        from models.testbed import ensure_testbed

        quick = testbed == "quick"
        scale = "default" if quick else testbed
        ensure_testbed(quick=quick, scale=scale, seed=0, progress=progress)
        return testbed
    try:
        manifest = json.loads((Path(testbed) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # resolve names the problem
    scale = "quick" if manifest.get("quick") else manifest.get("scale")
    return scale if scale in SCALES or scale == "quick" else None

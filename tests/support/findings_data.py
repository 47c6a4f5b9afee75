"""Runs with known answers to the paper's findings, built through the real chain (samples ->
`profile_samples` -> `make_plan`), for the findings tests.

`findings_samples` draws a small model's samples (an independent pool scored by a PRM, and
optionally beam search and revision chains whose behaviour per difficulty is set by the caller);
the same problems with a logit shift and `flops_mult` are a larger model's samples. `build_run`
turns them into a `RunTables` as `load_run` would return it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from planner.estimate import CurveOptions, profile_samples
from planner.optimize import PlanOptions, make_plan
from planner.tables import SAMPLES, SAMPLES_FILE, canonical_config, write_table
from reports.run import RunTables

GEN_FLOPS_PER_TOKEN = 2.0e6
VER_FLOPS_PER_TOKEN = 1.0e6
# Beam offsets per budget: the per-run chance that beam search ends right is p + offset.
BEAM_HOLDS = {2: 0.3, 16: -0.1}
BEAM_FAILS = {2: -0.3, 16: 0.3}


def sticky_hard(p: float) -> float:
    """Hard problems' chains repeat themselves (revisions add nothing; parallel chains help)."""
    return 1.0 - p


def sticky_easy(p: float) -> float:
    return p


def findings_samples(
    n_problems: int = 120,
    seed: int = 0,
    pool: int = 16,
    logit_shift: float = 0.0,
    hard_shift: float = 0.0,
    flops_mult: float = 1.0,
    signal: float = 1.6,
    beam: dict[int, float] | None = None,
    beam_runs: int = 4,
    revisions: Callable[[float], float] | None = None,
    chains: int = 4,
) -> pd.DataFrame:
    """Samples of `n_problems` problems whose pass rates come from `seed` alone (so two calls with
    one seed describe the same problems; a logit shift of logit_shift + hard_shift·(1 − p)²
    makes a stronger model of them, most so on hard problems). `signal`: how strongly the PRM's
    score separates right from wrong answers.

    beam: budget -> offset; each of `beam_runs` runs ends with 4 candidates of one answer, right
    with probability p + offset. revisions: `chains` chains of `chains` steps; at each step a
    chain repeats its last answer with probability revisions(p), else draws afresh with
    probability p + 0.3·p of being right (revising helps where the model is competent).
    """
    p_rng = np.random.default_rng(seed)
    base_p = np.clip(p_rng.beta(0.8, 0.8, size=n_problems), 1e-3, 1 - 1e-3)
    shift = logit_shift + hard_shift * (1 - base_p) ** 2
    ps = 1 / (1 + np.exp(-(np.log(base_p / (1 - base_p)) + shift)))
    # Seed entries must be non-negative: shifts down to -10 are offset by 1000.
    shifts = [round(logit_shift * 100) + 1000, round(hard_shift * 100) + 1000]
    rng = np.random.default_rng([seed, 7, *shifts])
    rows: list[dict] = []
    for i, p in enumerate(ps):
        w = _Writer(rows, rng, f"p{i:05d}", float(p), flops_mult, signal)
        _problem(w, pool, beam or {}, beam_runs)
        if revisions is not None:
            _chains(w, revisions, chains)
    return pd.DataFrame(rows)


class _Writer:
    """Appends one problem's rows: correctness drawn at a pass rate, PRM scores that favour
    right answers, tokens that grow with difficulty."""

    def __init__(
        self,
        rows: list[dict],
        rng: np.random.Generator,
        pid: str,
        p: float,
        flops_mult: float,
        signal: float,
    ) -> None:
        self.rows, self.rng, self.pid, self.p = rows, rng, pid, p
        self.flops_mult, self.signal = flops_mult, signal
        self.prompt = int(rng.integers(20, 60))
        self.wrong = [f"w{j}" for j in range(int(rng.integers(2, 5)))]

    def draw(self, p_ok: float) -> tuple[bool, str]:
        ok = bool(self.rng.random() < p_ok)
        return ok, "A" if ok else str(self.rng.choice(self.wrong))

    def add(self, strategy: str, config: str, run: int, pos: int, ok: bool, answer: str) -> None:
        p, rng = self.p, self.rng
        tokens = int(40 + 120 * (1 - p) + rng.integers(0, 30))
        score = 1 / (
            1 + np.exp(-(self.signal * (1 if ok else -1) + 1.2 * (p - 0.5) + rng.normal()))
        )
        self.rows.append(
            {
                "problem_id": self.pid,
                "strategy": strategy,
                "config": config,
                "run": run,
                "position": pos,
                "answer": answer,
                "correct": bool(ok),
                "verifier": "prm",
                "score": float(score),
                "step_scores": [],
                "prompt_tokens": self.prompt,
                "gen_tokens": tokens,
                "gen_flops": self.flops_mult * tokens * GEN_FLOPS_PER_TOKEN,
                "verifier_flops": (tokens + self.prompt) * VER_FLOPS_PER_TOKEN,
                "wall_s": float("nan"),
            }
        )


def _problem(w: _Writer, pool: int, beam: dict[int, float], beam_runs: int) -> None:
    p = w.p
    pool_cfg = canonical_config({"temperature": 0.8})
    for pos in range(pool):
        w.add("sample", pool_cfg, 0, pos, *w.draw(p))
    for n, offset in sorted(beam.items()):
        cfg = canonical_config({"n": n, "width": 2})
        for run in range(beam_runs):
            ok, answer = w.draw(float(np.clip(p + offset, 0, 1)))
            for pos in range(4):
                w.add("beam", cfg, run, pos, ok, answer)


def _chains(w: _Writer, sticky: Callable[[float], float], chains: int) -> None:
    p = w.p
    cfg = canonical_config({"context": 4})
    for run in range(chains):
        ok = bool(w.rng.random() < 0.4 * p)
        for pos in range(chains):
            if pos and w.rng.random() >= sticky(p):
                ok = bool(w.rng.random() < min(1.0, p * (0.4 + 0.3 * pos)))
            # A reviser converges on one plausible mistake, so wrong answers share one class.
            w.add("revisions", cfg, run, pos, ok, "A" if ok else "w0")


def _profile(samples: pd.DataFrame, root: Path, meta: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    root.mkdir(parents=True, exist_ok=True)
    write_table(samples, root / SAMPLES_FILE, SAMPLES, meta)
    tables = profile_samples(root, CurveOptions(aggs=("last",), mc_samples=64, seed=0))
    return tables.profile, tables.problems


def build_run(
    samples: pd.DataFrame,
    large: pd.DataFrame | None = None,
    context: dict | None = None,
    n_boot: int = 200,
) -> RunTables:
    """The tables a `ttc profile` + `ttc curves` + `ttc plan` chain (and, with `large`, the larger
    model's profile) write for these samples, as a `RunTables`."""
    meta = {"model_id": "synthetic-lm", "verifier_id": "prm", "dataset_id": "synthetic"}
    large_profile, large_meta = None, {}
    # The tables are read back into memory, so the files go when the profiles are made.
    with tempfile.TemporaryDirectory(prefix="ttc-findings-test-") as tmp:
        root = Path(tmp)
        profile, problems = _profile(samples, root / "small", {**meta, "model_params": 1e8})
        if large is not None:
            large_meta = {**meta, "model_params": 1.4e9}
            large_profile, _ = _profile(large, root / "large", large_meta)
    plan = make_plan(profile, problems, PlanOptions(n_boot=n_boot, expect_repeats=1))
    return RunTables(
        root=root,
        problems=problems,
        profile=profile,
        profile_meta={"model_params": 1e8},
        plan_curves=plan.curves,
        selection=plan.selection,
        choices=plan.choices,
        plan_summary=plan.summary,
        large_profile=large_profile,
        large_profile_meta=large_meta,
        context=dict(context or {}),
    )

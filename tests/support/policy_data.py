"""Samples tables with known difficulty (`make_samples`) and policies built from them through the
real chain (`built_policy_dirs`, `policy_doc`), shared by the policy and predictor tests."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from planner.tables import SAMPLES, SAMPLES_FILE, canonical_config, write_table

GEN_FLOPS_PER_TOKEN = 2.0e6
VER_FLOPS_PER_TOKEN = 1.0e6


def make_samples(
    n_problems: int = 200,
    pool: int = 16,
    seed: int = 0,
    beam: bool = True,
    prefix: str = "p",
    crossover: bool = False,
) -> pd.DataFrame:
    """Samples of a pool of `pool` and beam searches (n = 4, 8) on problems of known difficulty.

    crossover: beam is much better than sampling on hard problems and worse on easy ones, so
    that choosing per difficulty bin (and paying the probes) repays itself."""
    rng = np.random.default_rng(seed)
    rows = []
    pool_cfg = canonical_config({"temperature": 0.8})
    for i in range(n_problems):
        pid = f"{prefix}{i:05d}"
        p = float(rng.beta(0.8, 0.8))
        prompt = int(rng.integers(20, 60))
        wrong = [f"w{j}" for j in range(int(rng.integers(1, 5)))]

        def draw(
            m: int,
            p_ok: float,
            strategy: str,
            config: str,
            run: int = 0,
            flops_mult: float = 1.0,
            p: float = p,
            prompt: int = prompt,
            wrong: list = wrong,
            pid: str = pid,
        ) -> None:
            ok = rng.random(m) < p_ok
            for pos in range(m):
                tokens = int(40 + 120 * (1 - p) + rng.integers(0, 30))
                score = 1 / (
                    1
                    + np.exp(-(1.6 * (1 if ok[pos] else -1) + 1.2 * (p - 0.5) + rng.normal(0, 1.0)))
                )
                rows.append(
                    {
                        "problem_id": pid,
                        "strategy": strategy,
                        "config": config,
                        "run": run,
                        "position": pos,
                        "answer": "A" if ok[pos] else str(rng.choice(wrong)),
                        "correct": bool(ok[pos]),
                        "verifier": "prm",
                        "score": float(score),
                        "step_scores": [],
                        "prompt_tokens": prompt,
                        "gen_tokens": tokens,
                        "gen_flops": flops_mult * tokens * GEN_FLOPS_PER_TOKEN,
                        "verifier_flops": (tokens + prompt) * VER_FLOPS_PER_TOKEN,
                        "wall_s": float("nan"),
                    }
                )

        draw(pool, p, "sample", pool_cfg)
        if beam:
            for n in (4, 8):
                draw(
                    4,
                    0.9 * (1 - p) if crossover else min(1.0, 0.15 + 1.1 * p),
                    "beam",
                    canonical_config({"n": n, "width": 2}),
                    flops_mult=n / 4 * 1.1,
                )
    return pd.DataFrame(rows)


def write_samples(path: Path, **kwargs: object) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    write_table(
        make_samples(**kwargs),
        path / SAMPLES_FILE,
        SAMPLES,
        {"model_id": "synthetic-lm", "verifier_id": "prm", "dataset_id": "synthetic"},
    )
    return path


@functools.cache
def built_policy_dirs() -> dict[str, Path]:
    """samples -> profile (k=4 probes) -> plan on predicted bins -> policy.json, built once per
    session."""
    from click.testing import CliRunner

    from planner.cli import main

    root = Path(tempfile.mkdtemp(prefix="ttc-policy-test-"))
    write_samples(root / "train", n_problems=240, seed=1, crossover=True)
    write_samples(root / "held", n_problems=300, seed=2, prefix="h", crossover=True)
    runner = CliRunner()
    for args in (
        [
            "curves",
            str(root / "train"),
            "--out",
            str(root / "prof"),
            "--probe-k",
            "4",
            "--mc-samples",
            "200",
        ],
        [
            "plan",
            str(root / "prof"),
            "--out",
            str(root / "plan"),
            "--bin-by",
            "predicted",
            "--n-boot",
            "200",
        ],
        ["policy", "export", str(root / "plan"), "--out", str(root / "policy.json")],
    ):
        res = runner.invoke(main, args)
        assert res.exit_code == 0, (args, res.output)
    return {
        "root": root,
        "train": root / "train",
        "held": root / "held",
        "profile": root / "prof",
        "plan": root / "plan",
        "policy": root / "policy.json",
    }


def policy_doc() -> dict:
    return json.loads(built_policy_dirs()["policy"].read_text(encoding="utf-8"))

"""Run directories for the report tests, made with the real library and commands.

- `synthetic_run_dir()`: a full run laid out as `ttc demo` lays it out: samples/ (best-of-N
  pool, beam search and revision chains with known difficulty, from `make_samples` and
  `make_revision_samples`), profile/ (`ttc curves --probe-k 4`), plan/ (`ttc plan --bin-by
  predicted`), policy.json (`ttc policy export`), evaluation.json (`evaluate_policy` on held-out
  problems, as `ttc policy evaluate --json`), large/profile/ (a larger model's profile of the same
  problems, `make_larger_samples`) and report.json (the context: M, the user's R, model,
  hardware, SLO).
- `qwen_run_dir()`: the real Qwen2.5-Math RM@8 dump, imported and taken through curves and plan
  (None when the shared data is absent).
- `run_tables(root)`: the tables of such a directory as a `reports.run.RunTables`, read by
  `reports.run.load_run`.

Each directory is built once per session (functools.cache) in a fresh temporary directory.
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner
from policy_data import GEN_FLOPS_PER_TOKEN, VER_FLOPS_PER_TOKEN, make_samples

from planner.cli import main
from planner.policy import Policy
from planner.policy.evaluate import evaluate_policy
from planner.tables import (
    SAMPLES,
    SAMPLES_FILE,
    canonical_config,
    read_samples,
    write_table,
)
from reports.run import RunTables, load_run

ROOT = Path(__file__).resolve().parents[2]
QWEN = ROOT.parent / "shared" / "data" / "samples" / "qwen25math_rm8" / "math_cot_100.jsonl"

# The context `ttc demo` writes to report.json (see reports.figures for the keys).
CONTEXT = {
    "model_multiplier": 8.0,
    "ratios": [0.16, 0.79, 22.0],
    "user_ratio": 2.0,
    "model": "qwen2.5-1.5b",
    "hardware": ["h100-sxm", "l4"],
    "slo_s": 5.0,
}


def _pass1(samples: pd.DataFrame) -> pd.Series:
    pool = samples[samples["strategy"] == "sample"]
    return pool.groupby("problem_id", sort=True)["correct"].mean()


def _row(pid: str, strategy: str, config: str, run: int, pos: int, ok: bool, **kw: object) -> dict:
    tokens = int(kw["tokens"])
    prompt = int(kw["prompt"])
    return {
        "problem_id": pid,
        "strategy": strategy,
        "config": config,
        "run": run,
        "position": pos,
        "answer": "A" if ok else str(kw["wrong"]),
        "correct": bool(ok),
        "verifier": "prm",
        "score": float(kw["score"]),
        "step_scores": [],
        "prompt_tokens": prompt,
        "gen_tokens": tokens,
        "gen_flops": float(kw.get("flops_mult", 1.0)) * tokens * GEN_FLOPS_PER_TOKEN,
        "verifier_flops": (tokens + prompt) * VER_FLOPS_PER_TOKEN,
        "wall_s": float("nan"),
    }


def make_revision_samples(
    samples: pd.DataFrame, chains: int = 4, length: int = 4, seed: int = 0
) -> pd.DataFrame:
    """Revision chains (strategy `revisions`) for every problem of `samples`, whose difficulty
    is the pass@1 of its `sample` pool p: a chain starts right with probability p; a revision
    fixes a wrong answer with probability 0.8·p and breaks a right one with probability 0.1, and a
    chain repeats its own wrong answer. Easy problems gain from revising, hard ones from more
    chains (the paper's finding (c))."""
    rng = np.random.default_rng(seed)
    cfg = canonical_config({"chains": chains, "length": length, "temperature": 0.8})
    rows = []
    for pid, p in _pass1(samples).items():
        for c in range(chains):
            ok = bool(rng.random() < p)
            for pos in range(length):
                if pos:
                    ok = bool(rng.random() < 0.9) if ok else bool(rng.random() < 0.8 * p)
                z = 1.6 * (1 if ok else -1) + 1.2 * (p - 0.5) + rng.normal(0, 1.0)
                rows.append(
                    _row(
                        str(pid),
                        "revisions",
                        cfg,
                        c,
                        pos,
                        ok,
                        tokens=int(40 + 120 * (1 - p) + rng.integers(0, 30)),
                        prompt=40 + 60 * min(pos, 4),
                        score=1 / (1 + np.exp(-z)),
                        wrong=f"w{c}",
                    )
                )
    return pd.DataFrame(rows)


def make_larger_samples(
    samples: pd.DataFrame, shift: float = 1.5, pool: int = 8, seed: int = 0
) -> pd.DataFrame:
    """A larger model's `sample` pool for the problems of `samples`: its accuracy is the small
    model's pass@1 shifted by `shift` in logit, and each token costs 8x the FLOPs."""
    rng = np.random.default_rng(seed)
    cfg = canonical_config({"temperature": 0.8})
    rows = []
    for pid, p in _pass1(samples).items():
        q = float(np.clip(p, 0.02, 0.98))
        q = 1 / (1 + np.exp(-(np.log(q / (1 - q)) + shift)))
        for pos in range(pool):
            ok = bool(rng.random() < q)
            rows.append(
                _row(
                    str(pid),
                    "sample",
                    cfg,
                    0,
                    pos,
                    ok,
                    tokens=int(40 + 100 * (1 - q)),
                    prompt=40,
                    score=0.9 if ok else 0.2,
                    wrong="w0",
                    flops_mult=8.0,
                )
            )
    return pd.DataFrame(rows)


def _write_samples(path: Path, samples: pd.DataFrame, model: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    meta = {"model_id": model, "verifier_id": "prm", "dataset_id": "synthetic"}
    write_table(samples, path / SAMPLES_FILE, SAMPLES, meta)
    return path


def _ttc(*args: str) -> str:
    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == 0, (args, res.output)
    return res.output


@functools.cache
def synthetic_run_dir() -> Path:
    """A full run directory (see the module docstring); about 5 s to build."""
    root = Path(tempfile.mkdtemp(prefix="ttc-report-test-"))
    train = make_samples(n_problems=200, seed=1)
    train = pd.concat([train, make_revision_samples(train, seed=1)], ignore_index=True)
    held = make_samples(n_problems=160, seed=2, prefix="h")
    held = pd.concat([held, make_revision_samples(held, seed=2)], ignore_index=True)
    _write_samples(root / "samples", train, "synthetic-lm")
    _write_samples(root / "held", held, "synthetic-lm")
    _write_samples(root / "large" / "samples", make_larger_samples(train), "synthetic-lm-8x")
    r = str(root)
    _ttc("curves", f"{r}/samples", "--out", f"{r}/profile", "--probe-k", "4", "--mc-samples", "100")
    _ttc("curves", f"{r}/large/samples", "--out", f"{r}/large/profile", "--mc-samples", "100")
    _ttc("plan", f"{r}/profile", "--out", f"{r}/plan", "--bin-by", "predicted", "--n-boot", "200")
    _ttc("policy", "export", f"{r}/plan", "--out", f"{r}/policy.json")
    policy = Policy.load(root / "policy.json")
    held_samples, _ = read_samples(root / "held")
    evaluation = evaluate_policy(policy, held_samples, n_boot=200, seed=0, mc_samples=100)
    (root / "evaluation.json").write_text(json.dumps(evaluation, sort_keys=True), "utf-8")
    (root / "report.json").write_text(json.dumps(CONTEXT, sort_keys=True), "utf-8")
    return root


@functools.cache
def qwen_run_dir() -> Path | None:
    """The Qwen2.5-Math RM@8 dump: `ttc samples import` (levels, sigmoid scores), `ttc curves
    --probe-k 4` and `ttc plan` on oracle bins; None when the shared data is absent."""
    if not QWEN.exists():
        return None
    root = Path(tempfile.mkdtemp(prefix="ttc-report-qwen-"))
    _ttc(
        "samples",
        "import",
        str(QWEN),
        "--out",
        str(root / "samples"),
        "--level-field",
        "level",
        "--score-transform",
        "sigmoid",
    )
    _ttc("curves", str(root / "samples"), "--out", str(root / "profile"), "--probe-k", "4")
    _ttc("plan", str(root / "profile"), "--out", str(root / "plan"), "--n-boot", "200")
    return root


def run_tables(root: Path) -> RunTables:
    """The tables of the run directory `root`, read by the report's own reader."""
    return load_run(root)

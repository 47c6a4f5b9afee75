"""Profiles written as real parquet tables for the cost, exchange, what-if and allocation tests:
a small model's per-bin profile with known accuracies (`write_profile`) and a larger model's
(`write_larger`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from planner.tables import PROBLEMS, PROFILE, canonical_config, write_table

MAJ = canonical_config({"select": "majority", "agg": "last", "verifier": "none"})
COV = canonical_config({"select": "coverage", "agg": "last", "verifier": "none"})
WEIGHTED = canonical_config({"select": "weighted", "agg": "last", "verifier": "prm"})
BEAM4 = canonical_config({"select": "weighted", "agg": "last", "verifier": "prm", "n": 4, "m": 4})

# Accuracy at budget 1 per bin (1 = easiest) and the gain from more samples.
BIN_P1 = {1: 0.8, 2: 0.5, 3: 0.2, 4: 0.02}
BIN_GAIN = {1: 0.15, 2: 0.3, 3: 0.2, 4: 0.0}


def write_profile(
    path: Path,
    n_per_bin: int = 10,
    budgets: tuple[int, ...] = (1, 2, 4, 8, 16),
    p1: dict[int, float] | None = None,
    gain: dict[int, float] | None = None,
    base_flops: float = 1e9,
    jitter: float = 0.05,
    seed: int = 0,
    bins: tuple[int, ...] = (1, 2, 3, 4),
) -> Path:
    """A small, valid profile directory (profile.parquet + problems.parquet) with a known shape:
    accuracy per bin rises with the budget as p1 + gain·(1 − 1/budget)."""
    p1 = p1 or BIN_P1
    gain = gain or BIN_GAIN
    rng = np.random.default_rng(seed)
    rows, probs = [], []
    for b in bins:
        for i in range(n_per_bin):
            pid = f"b{b}-p{i:02d}"
            base = float(np.clip(p1[b] + rng.uniform(-jitter, jitter), 0, 1))
            probs.append(
                {
                    "problem_id": pid,
                    "fold": i % 2,
                    "pass1": base,
                    "oracle_bin": b,
                    "predicted_bin": b,
                    "level": f"Level {b}",
                }
            )
            fl = base_flops * (1 + 0.5 * b)  # harder problems write longer answers
            for k in budgets:
                acc = float(np.clip(base + gain[b] * (1 - 1 / k), 0, 1))
                common = {
                    "problem_id": pid,
                    "strategy": "sample",
                    "budget": float(k),
                    "accuracy_se": 0.0,
                    "flops": k * fl,
                    "tokens": k * 100.0 * (1 + 0.5 * b),
                    "prompt_tokens": k * 50.0,
                    "wall_s": k * 0.01,
                }
                rows.append({**common, "config": MAJ, "accuracy": acc})
                rows.append(
                    {**common, "config": COV, "accuracy": float(min(1.0, base + 0.5 * (1 - 1 / k)))}
                )
                rows.append(
                    {
                        **common,
                        "config": WEIGHTED,
                        "accuracy": float(np.clip(acc + 0.02, 0, 1)),
                        "flops": k * fl * 2,
                    }
                )
            rows.append(
                {
                    "problem_id": pid,
                    "strategy": "beam",
                    "config": BEAM4,
                    "budget": 4.0,
                    "accuracy": float(np.clip(base + gain[b] * 0.9, 0, 1)),
                    "accuracy_se": 0.0,
                    "flops": 4 * fl * 2,
                    "tokens": 400.0,
                    "prompt_tokens": 200.0,
                    "wall_s": 0.05,
                }
            )
    path.mkdir(parents=True, exist_ok=True)
    meta = {"model_params": 1.5e9}
    write_table(pd.DataFrame(rows), path / "profile.parquet", PROFILE, meta)
    write_table(pd.DataFrame(probs), path / "problems.parquet", PROBLEMS, meta)
    return path


def write_larger(
    path: Path, p1: dict[int, float], n_per_bin: int = 10, bins: tuple[int, ...] = (1, 2, 3, 4)
) -> Path:
    """A larger model's profile: only its pass@1 rows (sample, majority, budget 1)."""
    rows, probs = [], []
    for b in bins:
        for i in range(n_per_bin):
            pid = f"b{b}-p{i:02d}"
            rows.append(
                {
                    "problem_id": pid,
                    "strategy": "sample",
                    "config": MAJ,
                    "budget": 1.0,
                    "accuracy": p1[b],
                    "accuracy_se": 0.0,
                    "flops": 14e9,
                    "tokens": 150.0,
                    "prompt_tokens": 50.0,
                    "wall_s": 0.1,
                }
            )
            probs.append(
                {
                    "problem_id": pid,
                    "fold": i % 2,
                    "pass1": p1[b],
                    "oracle_bin": b,
                    "predicted_bin": b,
                    "level": None,
                }
            )
    path.mkdir(parents=True, exist_ok=True)
    write_table(pd.DataFrame(rows), path / "profile.parquet", PROFILE)
    write_table(pd.DataFrame(probs), path / "problems.parquet", PROBLEMS)
    return path


# ----------------------------------------------------------------------------------------------

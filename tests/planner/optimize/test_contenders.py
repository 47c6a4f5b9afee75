"""Which options can still win (the test between adaptive profiling's rounds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from planner.errors import PlannerError
from planner.optimize.contenders import contenders
from planner.tables import canonical_config


def _profile(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    maj = canonical_config({"select": "majority", "agg": "none", "verifier": "none"})
    cov = canonical_config({"select": "coverage", "agg": "none", "verifier": "none"})
    beam = canonical_config({"n": 8, "select": "weighted", "agg": "last", "verifier": "v"})
    bad = canonical_config({"n": 8, "m": 2, "select": "weighted", "agg": "last", "verifier": "v"})
    rows, probs = [], []
    for i in range(n):
        pid, hard = f"p{i:03d}", i % 2 == 1
        probs.append({"problem_id": pid, "oracle_bin": 2 if hard else 1})
        p = {
            ("sample", maj, 1): 0.3 if hard else 0.8,
            ("sample", maj, 8): 0.35 if hard else 0.95,
            ("sample", cov, 8): 1.0,
            # Beam: better on hard problems only; the other search: worse everywhere.
            ("beam", beam, 8): 0.7 if hard else 0.85,
            ("lookahead", bad, 8): 0.05,
        }
        for (s, c, b), q in p.items():
            rows.append((pid, s, c, float(b), float(np.clip(q + rng.normal(0, 0.05), 0, 1))))
    prof = pd.DataFrame(rows, columns=["problem_id", "strategy", "config", "budget", "accuracy"])
    return prof, pd.DataFrame(probs)


def test_a_dominated_option_stops_and_a_bin_specialist_does_not() -> None:
    prof, probs = _profile(40, 0)
    out = contenders(prof, probs, z=2.0).set_index("strategy")
    assert "sample" in out.index and len(out) == 4  # coverage is not deployable
    assert not out.loc["lookahead", "can_win"]
    assert out.loc["beam", "can_win"] and out.loc["beam", "where"] in ("all", "bin 2")
    maj = out.loc["sample"].set_index("budget")
    assert maj.loc[1.0, "can_win"] and maj.loc[1.0, "where"] == "all"  # the cheapest
    # Wide enough bounds stop nothing.
    assert contenders(prof, probs, z=50.0)["can_win"].all()
    # Where every option fails (or every one succeeds) the cheapest is the one to keep.
    flat = prof.assign(accuracy=0.0)
    out = contenders(flat, probs, z=2.0)
    assert out.loc[out["can_win"], "budget"].tolist() == [1.0]
    with pytest.raises(PlannerError):
        contenders(prof, probs, z=-1.0)

"""Adaptive profiling on the quick testbed: a config that cannot win stops after a round, the run
records it, an interrupted run resumes to the same tables, and the plan leaves it out and says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import profiling.sweep.adaptive as adaptive
from planner.cli import main
from planner.errors import PlannerError
from planner.tables import read_samples
from profiling.sweep.adaptive import AdaptiveSpec, round_ends
from profiling.sweep.config import config_from_dict
from profiling.sweep.runner import run_sweep

GOOD = {"name": "sample", "n": 6, "temperature": 0.8, "max_new_tokens": 96}
# Sampling at temperature 4 writes noise: it never answers, so it can win nowhere.
NOISE = {"name": "sample", "n": 6, "temperature": 4.0, "max_new_tokens": 96}


def _raw(testbed: Path) -> dict:
    return {
        "seed": 0,
        "shard_size": 4,
        "timing": False,
        "testbed": str(testbed),
        "data": {"source": "testbed", "n": 20, "levels": [1]},
        "model": {"path": "testbed:policy"},
        "verifiers": [{"kind": "likelihood", "path": "testbed:large", "name": "large"}],
        "strategies": [GOOD, NOISE],
        "adaptive": {"first": 8, "z": 1.5},
    }


def test_round_ends_and_settings() -> None:
    assert round_ends(20, AdaptiveSpec(first=8), 4) == [8, 16, 20]
    assert round_ends(100, AdaptiveSpec(first=10, growth=3.0), 8) == [16, 48, 100]
    assert round_ends(20, AdaptiveSpec(), 4) == [20]  # off
    with pytest.raises(ValueError):
        AdaptiveSpec(growth=1.0)
    with pytest.raises(PlannerError, match=r"unknown key 'firs' in \[adaptive\]"):
        config_from_dict({**_raw(Path("x")), "adaptive": {"firs": 8}}, "run.toml")
    # Off, the fingerprint is what it was before adaptive profiling existed: old runs resume.
    raw = _raw(Path("x"))
    assert "adaptive" in config_from_dict(raw).fingerprint()
    assert "adaptive" not in config_from_dict({**raw, "adaptive": {}}).fingerprint()


@pytest.mark.slow
def test_a_config_that_cannot_win_stops_and_the_run_resumes(
    quick_testbed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config_from_dict(_raw(quick_testbed))
    run_sweep(cfg, tmp_path / "full", progress=False)
    samples, meta = read_samples(tmp_path / "full")
    per = samples.groupby("config")["problem_id"].nunique()
    good = next(c for c in per.index if '"temperature":0.8' in c)
    noise = next(c for c in per.index if '"temperature":4.0' in c)
    assert per[good] == 20 and per[noise] in (8, 16)
    info = meta["adaptive"]
    assert info["rounds"] == [8, 16, 20] and list(info["stopped"]) == [
        s.key for s in cfg.strategies if s.config.get("temperature") == 4.0
    ]
    assert info["stopped"][next(iter(info["stopped"]))]["after_problems"] == per[noise]

    # Interrupted between rounds, then resumed: the same decisions and the same tables.
    real = adaptive.still_in_race

    def stop_once(*args: object, **kwargs: object) -> dict[str, str]:
        monkeypatch.setattr(adaptive, "still_in_race", real)
        raise KeyboardInterrupt

    monkeypatch.setattr(adaptive, "still_in_race", stop_once)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, tmp_path / "resumed", progress=False)
    assert any((tmp_path / "resumed" / "checkpoints").glob("*.parquet"))
    run_sweep(cfg, tmp_path / "resumed", resume=True, progress=False)
    again, meta2 = read_samples(tmp_path / "resumed")
    pd.testing.assert_frame_equal(samples, again)
    assert meta2["adaptive"] == info

    # The plan compares options on the same problems only: the stopped config's options are
    # left out, and the plan says so.
    runner = CliRunner()
    res = runner.invoke(main, ["curves", str(tmp_path / "full"), "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        main, ["plan", str(tmp_path / "p"), "--out", str(tmp_path / "plan"), "--bins", "2"]
    )
    assert res.exit_code == 0, res.output
    assert "left out:" in res.output and f"on at most {per[noise]})" in res.output
    summary = json.loads((tmp_path / "plan" / "summary.json").read_text())
    assert summary["dropped_by_strategy"]["sample"]["problems"] == per[noise]

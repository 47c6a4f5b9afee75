"""The README's first command (`ttc demo`) end to end on the quick testbed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.tables import PROFILE, SAMPLES, read_table


@pytest.mark.slow
def test_demo_runs_the_main_job_on_the_quick_testbed(quick_testbed: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--quick", "--problems", "16", "--out", str(out), "--no-progress", "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)
    assert plan["per_budget"] and plan["per_budget"][-1]["choices"]  # a strategy per bin
    samples, meta = read_table(out / "samples" / "samples.parquet", SAMPLES)
    assert set(samples["strategy"]) == {"sample", "beam", "lookahead", "dvts", "revisions"}
    assert samples["problem_id"].nunique() == 16
    assert meta["model_params"] > 0 and meta["dataset_id"].startswith("testbed(")
    profile, _ = read_table(out / "profile" / "profile.parquet", PROFILE)
    assert {1.0, 16.0} <= set(profile["budget"])
    assert (out / "plan" / "summary.json").is_file()
    # a second call reuses the sweep (nothing re-run) and prints the same plan
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and json.loads(again.stdout)["per_budget"] == plan["per_budget"]


def test_demo_rejects_too_few_problems(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["demo", "--problems", "3", "--out", str(tmp_path / "d")])
    assert res.exit_code != 0 and "--problems must be >= 8" in res.output
    assert not (tmp_path / "d").exists()


def test_demo_help_has_an_example() -> None:
    res = CliRunner().invoke(main, ["demo", "--help"])
    assert res.exit_code == 0 and "ttc demo --quick" in res.output

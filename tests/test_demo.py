"""The README's first command (`ttc demo`) end to end on the quick testbed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.tables import PROFILE, SAMPLES, read_table
from planner.timings import about, profiling_s


@pytest.mark.slow
def test_demo_runs_the_main_job_on_the_quick_testbed(quick_testbed: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--quick", "--problems", "16", "--out", str(out), "--no-progress", "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["per_budget"] and doc["per_budget"][-1]["choices"]  # a strategy per bin
    assert [f["key"] for f in doc["findings"]] == ["a", "b", "c", "d", "e", "f"]
    # the quick testbed solves some problems, so every finding is tested on data (its mark may
    # well be inconclusive with 16 problems), and the compute-optimal curve is not all zero
    assert all(f["mark"] != "not testable" for f in doc["findings"]), doc["findings"]
    # finding (c) on the demo's own revisions: budget 16 holds one chain of 16, 4 x 4 and 16
    # first answers, and each bin gets the chain minus the parallel answers with its interval
    c = next(f for f in doc["findings"] if f["key"] == "c")["numbers"]
    assert c["budget"] == 16 and c["per_bin"]
    for b in c["per_bin"]:
        assert set(b["accuracy"]) == {"1x16", "4x4", "16x1"}
        lo, hi = b["sequential_minus_parallel_ci"]
        assert lo <= b["sequential_minus_parallel"] <= hi
    assert max(b["methods"]["compute_optimal"]["accuracy"] for b in doc["per_budget"]) > 0
    assert Path(doc["report"]) == out / "report" / "index.html" and Path(doc["report"]).is_file()
    samples, meta = read_table(out / "samples" / "samples.parquet", SAMPLES)
    assert set(samples["strategy"]) == {"sample", "beam", "lookahead", "dvts", "revisions"}
    assert {4, 16} <= set(samples.loc[samples["strategy"] == "beam", "config"].map(_n))
    assert set(samples.loc[samples["strategy"] == "sample", "config"].map(_n)) == {64}
    assert samples["problem_id"].nunique() == 16
    assert meta["model_params"] > 0 and meta["dataset_id"].startswith("testbed(")
    # the plan is fitted on one half, the policy evaluated on the other
    fit, _ = read_table(out / "fit" / "samples" / "samples.parquet", SAMPLES)
    held, _ = read_table(out / "heldout" / "samples" / "samples.parquet", SAMPLES)
    assert not set(fit["problem_id"]) & set(held["problem_id"])
    assert fit["problem_id"].nunique() + held["problem_id"].nunique() == 16
    profile, _ = read_table(out / "profile" / "profile.parquet", PROFILE)
    assert set(profile["problem_id"]) == set(fit["problem_id"]) and 16.0 in set(profile["budget"])
    assert json.loads((out / "plan" / "summary.json").read_text())["bin_column"] == "predicted_bin"
    assert json.loads((out / "policy.json").read_text())["probe"]["k"] == 4
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert [e["budget"] for e in doc["evaluation"]] == [b["budget"] for b in evaluation["budgets"]]
    large, large_meta = read_table(out / "large" / "profile" / "profile.parquet", PROFILE)
    assert large_meta["model_params"] > meta["model_params"] and not large.empty
    context = json.loads((out / "report.json").read_text())
    assert context["ratios"] == [0.16, 0.79, 22.0] and context["model_multiplier"] > 1
    assert (out / context["cpu_hardware"]).is_file()
    # the run directory holds no path of this machine: the model is a data row inside it
    assert context["model"] == "model.json" and (out / "model.json").is_file()
    assert str(tmp_path) not in (out / "report.json").read_text()
    assert (out / "report" / "summary.json").is_file()
    # this CPU is measured on every run: the report says so (two runs differ only there)
    page = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert f"{context['cpu_hardware']} was measured on the machine that made this run" in page
    # a second call reuses every stage and prints the same findings; off a terminal (as here),
    # each stage's line on stderr says what it does and, for the long one, how long it took here
    again = CliRunner().invoke(main, args[:-2])
    assert again.exit_code == 0, again.output
    for f in doc["findings"]:
        assert f"({f['key']}) {f['mark']}: {f['claim']}" in again.stdout
    assert f"report: {out / 'report' / 'index.html'}" in again.stdout
    log = again.stderr
    assert "ttc demo: testbed quick, run directory" in log.splitlines()[0]
    expected, basis = profiling_s("quick", 16)
    assert "on 16 testbed problems (testbed: quick)" in log
    assert f"expected {about(expected)} on 2 CPU cores ({basis})" in log
    stages = [re.search(r"\[(\d)/6\]", line) for line in log.splitlines()]
    assert [m.group(1) for m in stages if m] == ["1", "2", "3", "4", "5", "6"]
    assert re.search(r"^\[ttc demo\] done in \d", log, re.M), log


def _n(config: str) -> int:
    return int(json.loads(config)["n"])


def test_demo_rejects_too_few_problems(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["demo", "--problems", "3", "--out", str(tmp_path / "d")])
    assert res.exit_code != 0 and "--problems must be >= 8" in res.output
    assert not (tmp_path / "d").exists()


def test_demo_help_has_an_example() -> None:
    res = CliRunner().invoke(main, ["demo", "--help"])
    assert res.exit_code == 0 and "ttc demo --quick" in res.output

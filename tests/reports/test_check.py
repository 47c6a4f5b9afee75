"""`ttc report --check`: pass (0), regression (3), bad or vacuous input (1, nothing written)."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from report_runs import full_run, qwen_run

from planner.cli import main
from planner.policy import dumps_policy


@functools.cache
def _blessed() -> Path:
    """The full run's own report, as CI would bless it."""
    out = Path(tempfile.mkdtemp(prefix="ttc-report-blessed-")) / "report"
    res = CliRunner().invoke(main, ["report", str(full_run()), "--out", str(out), "--no-images"])
    assert res.exit_code == 0, res.output
    return out / "summary.json"


def _check(baseline: Path, out: Path, *extra: str, run: Path | None = None) -> Result:
    args = ["report", str(run or full_run()), "--out", str(out), "--no-images"]
    return CliRunner().invoke(main, [*args, "--check", str(baseline), *extra])


def _edited(doc: dict, tmp: Path, name: str = "baseline.json") -> Path:
    path = tmp / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_the_same_run_passes(tmp_path: Path) -> None:
    res = _check(_blessed(), tmp_path / "r")
    assert res.exit_code == 0, res.output
    assert "**OK**" in res.output and "| compute-optimal accuracy | 4 | all |" in res.output
    check = json.loads((tmp_path / "r" / "check.json").read_text(encoding="utf-8"))
    # One row per budget for the compute-optimal curve and one per (budget, bin) promise: the
    # plan's budgets include those below the probes' cost, served without probing.
    doc = json.loads(_blessed().read_text(encoding="utf-8"))
    assert check["regressed"] is False
    assert len(check["rows"]) == len(doc["compute_optimal"]) + len(doc["promise"]) > 4 + 20
    assert (tmp_path / "r" / "check.md").read_text(encoding="utf-8") in res.output


def test_a_better_baseline_is_a_regression_exit_3(tmp_path: Path) -> None:
    doc = json.loads(_blessed().read_text(encoding="utf-8"))
    co = next(r for r in doc["compute_optimal"] if r["budget"] == 8)
    co["accuracy"] += 0.05
    promise = next(r for r in doc["promise"] if r["budget"] == 16 and r["bin"] == 4)
    promise["accuracy"] = min(1.0, promise["accuracy"] + 0.04)
    base = _edited(doc, tmp_path)
    res = _check(base, tmp_path / "r")
    assert res.exit_code == 3, res.output
    md = (tmp_path / "r" / "check.md").read_text(encoding="utf-8")
    assert f"**REGRESSED**: 2 of {len(doc['compute_optimal']) + len(doc['promise'])}" in md
    regressed = [line for line in md.splitlines() if line.endswith("| REGRESSED |")]
    assert len(regressed) == 2
    assert regressed[0].startswith("| compute-optimal accuracy | 8 | all |")
    assert regressed[1].startswith("| promised accuracy | 16 | 4 |")
    assert (tmp_path / "r" / "index.html").is_file()  # the report is written all the same
    # Within a looser tolerance the same baseline passes.
    assert _check(base, tmp_path / "r2", "--tolerance", "0.06").exit_code == 0


def test_a_missing_budget_fails_the_gate(tmp_path: Path) -> None:
    doc = json.loads(_blessed().read_text(encoding="utf-8"))
    doc["compute_optimal"].append({**doc["compute_optimal"][-1], "budget": 64.0})
    res = _check(_edited(doc, tmp_path), tmp_path / "r")
    assert res.exit_code == 3
    assert (
        "| compute-optimal accuracy | 64 | all |" in res.output and "MISSING in run" in res.output
    )


def test_policy_baseline_compares_the_promise_per_bin(tmp_path: Path) -> None:
    policy = json.loads((full_run() / "policy.json").read_text(encoding="utf-8"))
    assert _check(full_run() / "policy.json", tmp_path / "ok").exit_code == 0
    dec = next(d for d in policy["decisions"] if d["budget"] == 4.0 and d["bin"] == 4)
    for key in ("accuracy", "ci_lo", "ci_hi"):
        dec[key] = min(1.0, dec[key] + 0.03)
    base = tmp_path / "policy.json"
    base.write_text(dumps_policy(policy), encoding="utf-8")
    res = _check(base, tmp_path / "r")
    assert res.exit_code == 3, res.output
    md = (tmp_path / "r" / "check.md").read_text(encoding="utf-8")
    assert "(policy," in md
    assert [line[:33] for line in md.splitlines() if line.endswith("REGRESSED |")] == [
        f"| promised accuracy | 4 | 4 | {100 * dec['accuracy']:.1f}"[:33]
    ]


def _bad(res: Result, out: Path, words: str) -> None:
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], res.output
    assert not out.exists()


def test_vacuous_run_exits_1(tmp_path: Path) -> None:
    # A samples table alone: nothing the gate could compare.
    res = _check(_blessed(), tmp_path / "r", run=qwen_run() / "samples")
    _bad(res, tmp_path / "r", "nothing to check")


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda d: d.update(schema_version=2), "schema_version 2"),
        (lambda d: d.update(unit="flops"), "counts budgets in flops"),
        (lambda d: d.update(compute_optimal=[], promise=[]), "no budgets"),
        (lambda d: d.pop("kind"), "not a report summary.json or a policy file"),
    ],
)
def test_bad_baselines_exit_1(tmp_path: Path, edit, words: str) -> None:
    doc = json.loads(_blessed().read_text(encoding="utf-8"))
    edit(doc)
    _bad(_check(_edited(doc, tmp_path), tmp_path / "r"), tmp_path / "r", words)


def test_other_baselines_exit_1(tmp_path: Path) -> None:
    policy = json.loads((full_run() / "policy.json").read_text(encoding="utf-8"))
    policy["schema_version"] = 9
    _bad(_check(_edited(policy, tmp_path), tmp_path / "r"), tmp_path / "r", "schema_version 9")
    plan_summary = full_run() / "plan" / "summary.json"
    _bad(_check(plan_summary, tmp_path / "r"), tmp_path / "r", "a plan's summary.json")
    _bad(_check(tmp_path / "nope.json", tmp_path / "r"), tmp_path / "r", "nope.json")
    res = _check(_blessed(), tmp_path / "r", "--tolerance", "-0.1")
    _bad(res, tmp_path / "r", "--tolerance")


def test_history_records_the_check(tmp_path: Path) -> None:
    hist = tmp_path / "h.jsonl"
    assert _check(_blessed(), tmp_path / "r", "--history", str(hist)).exit_code == 0
    entry = json.loads(hist.read_text(encoding="utf-8"))
    assert entry["check"]["regressed"] is False and entry["findings"] is not None
    assert {i["file"] for i in entry["inputs"]} >= {"plan/curves.parquet", "policy.json"}

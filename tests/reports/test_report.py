"""`ttc report` and `reports.build`: the files, their bytes, the run layouts, and bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import altair as alt
import pandas as pd
import pytest
from click.testing import CliRunner
from report_runs import full_run, qwen_run

from planner.cli import main
from planner.tables import PROFILE, PROFILE_FILE, read_profile, write_table
from reports.build import build_report
from reports.export import javascript_bundle
from reports.figures import FIGURES, Figure, Missing
from reports.run import RunTables, load_run
from reports.summary import render_markdown

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def _plan_chart(run: RunTables) -> alt.LayerChart:
    """A small real figure: the plan's curves with their intervals."""
    if run.plan_curves is None:
        raise Missing("needs plan/curves.parquet (ttc plan)")
    data = run.plan_curves[["budget", "method", "accuracy", "ci_lo", "ci_hi"]]
    base = alt.Chart(data).encode(
        x=alt.X("budget:Q", scale=alt.Scale(type="log", base=2), title="budget (generations)"),
        color=alt.Color("method:N", title="method"),
    )
    band = base.mark_area(opacity=0.2).encode(y="ci_lo:Q", y2="ci_hi:Q")
    line = base.mark_line(point=True).encode(y=alt.Y("accuracy:Q", title="accuracy"))
    return (band + line).properties(title="Test: accuracy per budget (95% bands)")


def _needs_large(run: RunTables) -> alt.Chart:
    if run.large_profile is None:
        raise Missing("needs large/profile/profile.parquet (the larger model's profile)")
    return alt.Chart(run.large_profile).mark_point().encode(x="budget:Q", y="accuracy:Q")


LOCAL = (
    Figure("test_plan", "Test: plan curves", _plan_chart),
    Figure("test_large", "Test: larger model", _needs_large),
)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_two_builds_give_identical_bytes_and_every_file(tmp_path: Path) -> None:
    a = build_report(full_run(), tmp_path / "a", figures=LOCAL + FIGURES)
    build_report(full_run(), tmp_path / "b", figures=LOCAL + FIGURES)
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert fa == fb
    assert {"index.html", "summary.md", "summary.json"} <= set(fa)
    for f in a.summary["figures"]:
        for ext in ("png", "svg", "vl.json"):
            assert (f"figures/{f['name']}.{ext}" in fa) == f["drawn"], (f, ext)
    assert fa["figures/test_plan.png"].startswith(b"\x89PNG\r\n\x1a\n")
    assert len(fa["figures/test_plan.png"]) > 5000
    assert fa["figures/test_plan.svg"].lstrip().startswith(b"<svg")
    # A rebuild into the same directory replaces the earlier report and leaves no staging dirs.
    build_report(full_run(), tmp_path / "a", figures=LOCAL + FIGURES)
    assert _files(tmp_path / "a") == fa
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_html_is_self_contained_and_ordered(tmp_path: Path) -> None:
    rep = build_report(full_run(), tmp_path / "r", figures=LOCAL, images=False)
    html = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert not EXTERNAL.search(html)
    assert html.count(javascript_bundle()[:2000]) == 1  # one inlined copy of the JavaScript
    # the verdict first, provenance last
    heads = ("<h2>Findings", "<h2>Figures", "<h2>Key tables", "<h2>Provenance")
    order = [html.index(h) for h in heads]
    assert order == sorted(order) and html.index("<th>SHA-256</th>") > order[-1]
    assert 'data-figure="test_plan"' in html and 'id="spec-test_plan"' in html
    assert "Test: larger model: needs large/profile/profile.parquet" in html
    for rel, digest in ((i["file"], i["sha256"]) for i in rep.summary["inputs"]):
        assert rel in html and digest in html
    assert "plan/curves.parquet" in {i["file"] for i in rep.summary["inputs"]}
    # Every accuracy in the key tables carries its interval.
    cells = re.findall(r"<td>(\d+\.\d%[^<]*)</td>", html)
    assert cells and all(re.fullmatch(r"\d+\.\d% \[\d+\.\d, \d+\.\d\]", c) for c in cells)


def test_the_calibrated_cpu_is_named_as_measured_where_the_run_has_one(tmp_path: Path) -> None:
    # `ttc demo` measures this CPU (ttc calibrate) for the cost figure: two runs of the same
    # inputs differ there, and the provenance says so; a run without one says nothing.
    run = tmp_path / "run"
    shutil.copytree(full_run(), run)
    plain = build_report(run, tmp_path / "plain", figures=LOCAL, images=False)
    assert plain.summary["measured"] == []
    (run / "report.json").write_text(
        json.dumps({"cpu_hardware": "hardware/this-machine.json"}), encoding="utf-8"
    )
    rep = build_report(run, tmp_path / "r", figures=LOCAL, images=False)
    (line,) = rep.summary["measured"]
    assert line.startswith("hardware/this-machine.json was measured on the machine that made")
    html = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert html.index(line.split(":")[0]) > html.index("<h2>Provenance")


def test_summary_json_holds_the_key_tables(tmp_path: Path) -> None:
    build_report(full_run(), tmp_path / "r", figures=LOCAL, images=False)
    doc = json.loads((tmp_path / "r" / "summary.json").read_text(encoding="utf-8"))
    assert doc["kind"] == "ttc-report-summary" and doc["schema_version"] == 1
    assert doc["unit"] == "generations"
    budgets = [r["budget"] for r in doc["compute_optimal"]]
    plan = json.loads((full_run() / "plan" / "summary.json").read_text(encoding="utf-8"))
    assert budgets == sorted(budgets) == [float(b) for b in plan["budgets"]]
    assert all(r["ci_lo"] <= r["accuracy"] <= r["ci_hi"] for r in doc["compute_optimal"])
    assert {r["source"] for r in doc["promise"]} == {"policy"}
    assert all("realised_accuracy" in r for r in doc["promise"])  # evaluation.json was read
    assert {(f["name"], f["drawn"]) for f in doc["figures"]} == {
        ("test_plan", True),
        ("test_large", False),
    }
    md = (tmp_path / "r" / "summary.md").read_text(encoding="utf-8")
    assert md.index("### Findings") < md.index("### Accuracy per budget")
    assert "figure Test: larger model: needs large/profile/profile.parquet" in md


def test_markdown_is_cut_to_fit_github(tmp_path: Path) -> None:
    doc = build_report(full_run(), tmp_path / "r", figures=(), images=False).summary
    big = {**doc, "choices": doc["choices"] * 200}
    text = render_markdown(big)
    assert len(text) <= 65_536
    assert "more choices rows left out to fit GitHub's 65,536-character limit" in text
    assert render_markdown(doc) == (tmp_path / "r" / "summary.md").read_text(encoding="utf-8")
    tiny = render_markdown(doc, limit=2000)
    assert len(tiny) <= 2000 and "summary.json has everything" in tiny


def test_qwen_dump_report_leaves_out_what_it_cannot_draw(tmp_path: Path) -> None:
    out = tmp_path / "report"
    res = CliRunner().invoke(main, ["report", str(qwen_run()), "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    md = (out / "summary.md").read_text(encoding="utf-8")
    html = (out / "index.html").read_text(encoding="utf-8")
    assert doc["metadata"] and {m["key"] for m in doc["metadata"]} >= {"dataset_id", "seed"}
    assert {r["source"] for r in doc["promise"]} == {"plan"}  # no policy: the plan's estimate
    assert "realised accuracy: no evaluation.json" in md
    assert [f["name"] for f in doc["figures"]] == [f.name for f in FIGURES]
    for f in doc["figures"]:
        if f["drawn"]:
            assert (out / "figures" / f"{f['name']}.png").is_file()
        else:  # left out, with the line that says why, in both documents
            assert f["missing"] and f"figure {f['title']}: {f['missing']}" in md
            assert f"{f['title']}: {f['missing']}" in html.replace("&#x27;", "'")
    # The dump has no larger model and no policy: those figures cannot be drawn from it.
    drawn = {f["name"]: f["drawn"] for f in doc["figures"]}
    for name in ("exchange", "promise_vs_realised"):
        assert drawn.get(name) is not True
    local = build_report(qwen_run(), tmp_path / "local", figures=LOCAL, images=False)
    assert [f["drawn"] for f in local.summary["figures"]] == [True, False]


def test_step_summary_and_history(tmp_path: Path) -> None:
    step, hist = tmp_path / "step.md", tmp_path / "history.jsonl"
    step.write_text("earlier step\n", encoding="utf-8")
    for _ in range(2):
        res = CliRunner(env={"GITHUB_STEP_SUMMARY": str(step)}).invoke(
            main,
            ["report", str(qwen_run()), "--out", str(tmp_path / "r"), "--history", str(hist)],
        )
        assert res.exit_code == 0, res.output
    md = (tmp_path / "r" / "summary.md").read_text(encoding="utf-8")
    assert step.read_text(encoding="utf-8") == "earlier step\n" + md + md
    lines = hist.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and lines[0] == lines[1]
    entry = json.loads(lines[0])
    assert list(entry) == sorted(entry)
    assert entry["compute_optimal"] and entry["inputs"] and entry["unit"] == "generations"


def _invoke_bad(run_dir: Path, out: Path) -> str:
    res = CliRunner().invoke(main, ["report", str(run_dir), "--out", str(out)])
    assert res.exit_code == 1, res.output
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    return lines[0]


def test_a_directory_without_tables_names_what_it_looked_for(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    msg = _invoke_bad(tmp_path / "run", tmp_path / "out")
    for name in ("samples.parquet", "profile.parquet", "curves.parquet", "policy.json"):
        assert name in msg
    assert "no such run directory" in _invoke_bad(tmp_path / "nope", tmp_path / "out")


def test_vacuous_and_broken_tables_fail_with_nothing_written(tmp_path: Path) -> None:
    profile, _ = read_profile(qwen_run() / "profile")
    empty = tmp_path / "empty" / "profile"
    empty.mkdir(parents=True)
    write_table(profile.iloc[:0], empty / PROFILE_FILE, PROFILE)
    assert "empty profile" in _invoke_bad(tmp_path / "empty", tmp_path / "out")

    no_budgets = tmp_path / "nobud"
    (no_budgets / "plan").mkdir(parents=True)
    curves = pd.read_parquet(qwen_run() / "plan" / "curves.parquet").iloc[:0]
    curves.to_parquet(no_budgets / "plan" / "curves.parquet")
    assert "a plan with no budgets" in _invoke_bad(no_budgets, tmp_path / "out")

    broken = tmp_path / "broken" / "profile"
    broken.mkdir(parents=True)
    profile.drop(columns=["accuracy"]).to_parquet(broken / PROFILE_FILE)
    msg = _invoke_bad(tmp_path / "broken", tmp_path / "out")
    assert "profile.parquet" in msg and "'accuracy'" in msg


def test_out_holding_other_files_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    res = CliRunner().invoke(main, ["report", str(qwen_run()), "--out", str(out)])
    assert res.exit_code == 1 and "holds other files" in res.output
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    # A plan directory has a summary.json too, but it is not an earlier report: never replaced.
    plan = qwen_run() / "plan"
    before = _files(plan)
    for target in (plan, qwen_run()):
        res = CliRunner().invoke(main, ["report", str(plan), "--out", str(target)])
        assert res.exit_code == 1 and "would replace the run directory" in res.output
    assert _files(plan) == before


def test_load_run_reads_a_stage_directory_itself() -> None:
    run = load_run(qwen_run() / "plan")
    assert run.found == {
        "choices": "choices.parquet",
        "plan_curves": "curves.parquet",
        "plan_summary": "summary.json",
        "problems": "problems.parquet",
        "selection": "selection.parquet",
    }
    full = load_run(full_run())
    assert full.found["policy"] == "policy.json" and full.evaluation is not None
    assert full.found["problems"] == "plan/problems.parquet"


@pytest.mark.parametrize("name", ["policy.json", "evaluation.json"])
def test_bad_json_beside_the_tables_is_named(tmp_path: Path, name: str) -> None:
    run = tmp_path / "run"
    (run / "plan").mkdir(parents=True)
    for f in (qwen_run() / "plan").iterdir():
        (run / "plan" / f.name).write_bytes(f.read_bytes())
    (run / name).write_text("{not json", encoding="utf-8")
    assert name in _invoke_bad(run, tmp_path / "out")

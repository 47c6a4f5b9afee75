"""What the report's provenance says about inputs measured per run, and that it holds.

`ttc demo` calibrates this CPU on every run (`ttc calibrate`) for the cost figure, so two runs of
the same problems and seed draw that figure from different measurements. The page says so under
its provenance, after the findings; the files the CI gate and the step summary read
(summary.json, summary.md) must not change with it.
"""

from __future__ import annotations

import re
from pathlib import Path

from report_runs import run_with_costs

from reports.build import build_report
from reports.figures import FIGURES

COST = tuple(f for f in FIGURES if f.name == "cost")


def _cost_spec_removed(html: str) -> str:
    # The cost figure's spec, with this CPU's latencies in its data, is the one part that differs.
    spec = r'<script type="application/json" id="spec-cost">.*?</script>'
    out, n = re.subn(spec, "", html, count=1)
    assert n == 1, "the page holds no cost figure"
    return out


def test_another_cpu_calibration_changes_the_page_and_never_the_summary(tmp_path: Path) -> None:
    reports = []
    for i, measured_flops in enumerate((4.0e11, 9.0e11)):
        run = run_with_costs(tmp_path / f"calibration{i}", cpu_flops_per_s=measured_flops)
        reports.append(build_report(run, tmp_path / f"report{i}", figures=COST, images=False))
    a, b = (r.out for r in reports)

    def read(root: Path, name: str) -> str:
        return (root / name).read_text(encoding="utf-8")

    # what the gate compares and the step summary shows: the same bytes
    for name in ("summary.json", "summary.md"):
        assert read(a, name) == read(b, name), name
    # the page and the cost figure's spec differ, and only in that figure
    assert read(a, "figures/cost.vl.json") != read(b, "figures/cost.vl.json")
    page_a, page_b = read(a, "index.html"), read(b, "index.html")
    assert page_a != page_b
    assert _cost_spec_removed(page_a) == _cost_spec_removed(page_b)
    # and the page says so, in its provenance, after the findings
    (line,) = reports[0].summary["measured"]
    assert "hardware/this-machine.json was measured on the machine that made this run" in line
    assert "summary.json and summary.md" in line and "do not depend on it" in line
    at = page_a.index(line.split(":")[0])
    assert page_a.index("<h2>Findings") < page_a.index("<h2>Provenance") < at

"""`build_report`: a run directory in, the whole report out, all or nothing.

Everything is written into a staging directory beside OUT and renamed onto OUT only when every
file is done, so a bad input never leaves a half-written report. OUT holds `index.html`,
`summary.md`, `summary.json`, `figures/NAME.{png,svg,vl.json}` for each drawn figure and, with a
baseline, `check.md` and `check.json`. The same inputs give the same bytes: nothing reads the
clock, every table is sorted, and metadata comes from the tables.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.errors import PlannerError
from planner.tables import file_sha256
from planner.tables.fsutil import ensure_writable_dir
from reports.check import (
    CheckResult,
    check_summary,
    check_tolerance,
    history_line,
    load_baseline,
)
from reports.export import chart_spec, spec_json, to_png, to_svg
from reports.figures import FIGURES, Figure, Missing
from reports.findings import findings
from reports.html import render_html
from reports.run import RunTables, load_run
from reports.summary import SUMMARY_KIND, render_markdown, summarize

REPORT_FILES = ("index.html", "summary.json", "summary.md")


@dataclass(frozen=True)
class Report:
    """What `build_report` wrote: OUT, the summary document and markdown, and the check."""

    out: Path
    summary: dict[str, Any]
    markdown: str
    check: CheckResult | None
    files: tuple[str, ...]


def render_figures(
    run: RunTables, figures: Sequence[Figure]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Each figure's status (drawn, with the note its chart carries, or the line saying why not)
    and the spec of each drawn one."""
    statuses, specs = [], {}
    for fig in figures:
        try:
            chart = fig.build(run)
        except Missing as exc:
            missing = {"name": fig.name, "title": fig.title, "drawn": False, "missing": str(exc)}
            statuses.append(missing)
            continue
        specs[fig.name] = chart_spec(chart)
        status: dict[str, Any] = {"name": fig.name, "title": fig.title, "drawn": True}
        # a line the chart asks to show under it (what it left out, and why)
        note = (specs[fig.name].get("usermeta") or {}).get("note")
        if note:
            status["note"] = str(note)
        statuses.append(status)
    return statuses, specs


def _earlier_report(out: Path) -> bool:
    try:
        doc = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("kind") == SUMMARY_KIND


def _check_out(out: Path, run_dir: Path) -> None:
    """OUT may be new, empty or an earlier report (which is replaced); nothing else, and never a
    folder that holds the run: a plan directory has a summary.json too."""
    if out.exists() and not out.is_dir():
        raise PlannerError(f"--out {out}: exists and is not a directory")
    here = out.resolve()
    if here == run_dir.resolve() or here in run_dir.resolve().parents:
        raise PlannerError(f"--out {out}: would replace the run directory {run_dir}")
    if out.is_dir() and any(out.iterdir()) and not _earlier_report(out):
        raise PlannerError(
            f"--out {out}: holds other files and no earlier report; choose a new or empty directory"
        )
    ensure_writable_dir(out.parent if str(out.parent) else Path("."))


def _publish(stage: Path, out: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(stage, 0o777 & ~mask)  # mkdtemp makes 0700
    if not out.exists():
        os.replace(stage, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rmdir(old)
    os.replace(out, old)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)


def _write(stage: Path, name: str, data: str | bytes) -> str:
    path = stage / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return name


def build_report(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    figures: Sequence[Figure] | None = None,
    baseline: str | os.PathLike[str] | None = None,
    tolerance: float = 0.01,
    history: str | os.PathLike[str] | None = None,
    step_summary: str | os.PathLike[str] | None = None,
    images: bool = True,
) -> Report:
    """Build the report of `run_dir` into `out_dir` (replacing an earlier report there).

    `figures` defaults to `reports.figures.FIGURES`. With `baseline` (a report's summary.json or
    a policy file) the check is run and written too; the caller decides what a regression means
    (`Report.check.regressed`). `history` gets one JSON line appended, `step_summary` (GitHub's
    `$GITHUB_STEP_SUMMARY`) the markdown. `images=False` skips PNG and SVG. Raises PlannerError on
    bad or vacuous input, with nothing written.
    """
    out = Path(out_dir)
    _check_out(out, Path(run_dir))
    if baseline is not None:  # a bad baseline or tolerance fails before any work
        check_tolerance(tolerance)
        load_baseline(baseline)
    run = load_run(run_dir)
    inputs = {rel: file_sha256(run.root / rel) for rel in run.found.values()}
    # The gate reads only the key tables: check them before drawing anything.
    check = None
    if baseline is not None:
        check = check_summary(summarize(run, inputs, [], []), baseline, tolerance)
    statuses, specs = render_figures(run, FIGURES if figures is None else figures)
    doc = summarize(run, inputs, findings(run), statuses)
    markdown = render_markdown(doc)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".stage", dir=out.parent))
    try:
        files = [
            _write(stage, "index.html", render_html(doc, specs, images)),
            _write(stage, "summary.md", markdown),
            _write(stage, "summary.json", spec_json_pretty(doc)),
        ]
        for name in sorted(specs):
            files.append(_write(stage, f"figures/{name}.vl.json", spec_json(specs[name]) + "\n"))
            if images:
                files.append(_write(stage, f"figures/{name}.png", to_png(specs[name])))
                files.append(_write(stage, f"figures/{name}.svg", to_svg(specs[name])))
        if check is not None:
            files.append(_write(stage, "check.md", check.markdown()))
            files.append(_write(stage, "check.json", spec_json_pretty(check.as_dict())))
        _publish(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if history is not None:
        with open(history, "a", encoding="utf-8") as fh:
            fh.write(history_line(doc, check) + "\n")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as fh:
            fh.write(markdown + ("" if check is None else "\n" + check.markdown()))
    return Report(out=out, summary=doc, markdown=markdown, check=check, files=tuple(files))


def spec_json_pretty(doc: dict[str, Any]) -> str:
    """A JSON document as the report writes it: sorted keys, two-space indent, final newline."""
    return json.dumps(doc, sort_keys=True, indent=2, allow_nan=False) + "\n"

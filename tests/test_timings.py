"""The times that the README and the help texts quote are those of `planner.timings`, the one
table of measured times (and every time the demo's and the testbed's help quote comes from it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.progress import EVERY_S, duration
from planner.timings import DEMO, SCALES, TESTBED, about, first_demo_s, profiling_s

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TIME = re.compile(r"\b\d[\d,]*(?:\.\d+)? ?(?:s|min|h)\b|\bminutes?\b|\bhours?\b")


def _quoted() -> set[str]:
    """Every figure of the table as the texts write it."""
    seconds = [EVERY_S]
    for scale in SCALES:
        seconds += [TESTBED[scale].train_s, TESTBED[scale].call_s, DEMO[scale].call_s]
        seconds += [first_demo_s(scale), DEMO[scale].profile_s or DEMO[scale].call_s]
    return {duration(s) for s in seconds}


@pytest.mark.parametrize("scale", SCALES)
def test_readme_testbed_table_is_the_measured_table(scale: str) -> None:
    t = TESTBED[scale]
    row = next(line for line in README.splitlines() if line.startswith(f"| {scale} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == duration(t.train_s), row
    assert cells[3].startswith(duration(t.call_s)), row


def test_readme_demo_times_are_the_measured_ones() -> None:
    text = " ".join(README.split())  # the README wraps its lines anywhere
    d, q = DEMO["default"], DEMO["quick"]
    assert (
        f"with the testbed cached, `ttc demo` takes {duration(d.call_s)} "
        f"({duration(d.profile_s or 0)} of them profiling) and "
        f"`ttc demo --quick --problems {q.problems}` {duration(q.call_s)}"
    ) in text
    assert f"weak models, {about(TESTBED['quick'].call_s)} to train" in text
    assert (
        f"trains once, {about(TESTBED['paper'].call_s)} ({about(first_demo_s('paper'))} in all)"
    ) in text
    assert f"levels 1-3 only (in {about(TESTBED['quick'].call_s)})" in text
    assert f"at most every {duration(EVERY_S)} a line" in text


@pytest.mark.parametrize("path", [("demo",), ("testbed", "train")], ids=" ".join)
def test_help_quotes_only_measured_times(path: tuple[str, ...]) -> None:
    text = CliRunner().invoke(main, [*path, "--help"], terminal_width=200).output
    found = TIME.findall(" ".join(text.split()))
    assert found, text
    assert set(found) <= _quoted(), f"times not in planner.timings: {set(found) - _quoted()}"


def test_demo_help_quotes_the_first_run_of_each_scale() -> None:
    text = " ".join(CliRunner().invoke(main, ["demo", "--help"], terminal_width=200).output.split())
    for scale in SCALES:
        assert about(first_demo_s(scale)) in text
    assert f"trains once, {about(TESTBED['quick'].call_s)}" in text


def test_profiling_time_scales_with_problems() -> None:
    base, why = profiling_s("default", DEMO["default"].problems)
    assert base == DEMO["default"].profile_s and "profiling took 7.0 min" in why
    assert profiling_s("default", 4 * DEMO["default"].problems)[0] == pytest.approx(4 * base)
    # where only the whole demo was measured, the whole demo bounds the stage
    assert profiling_s("quick", DEMO["quick"].problems)[0] == DEMO["quick"].call_s

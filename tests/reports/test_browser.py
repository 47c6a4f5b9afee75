"""`index.html` in a real browser: headless Chromium with networking off and a fresh profile.

Every chart must render (an `svg` with marks in each figure's container), the console must show
no error from the page, the findings come before the provenance, a 1,280-pixel window does not
scroll sideways (the page records how far it is wider than its window), and a screenshot is
saved. `.ci/run` installs Debian's `chromium`; where
it is missing this test is skipped, except in CI, where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from report_runs import run_with_costs

from reports.build import build_report
from reports.figures import FIGURES

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    # Networking off: every host name fails to resolve, so any fetch of the page would fail.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
    "--enable-logging=stderr",
    "--v=0",
    # Run the page's timers and promises to completion before dumping or shooting.
    "--virtual-time-budget=10000",
    "--hide-scrollbars",
]
# Chromium logs each console message of the page as ":CONSOLE(...)" or ":CONSOLE:" lines.
CONSOLE = re.compile(r":CONSOLE[:(]")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is missing: .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def _browse(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _chart_body(dom: str, name: str) -> str:
    m = re.search(rf'data-figure="{re.escape(name)}"[^>]*>(.*?)<figcaption', dom, re.S)
    assert m, f"no container for figure {name}"
    return m.group(1)


def _overflow(dom: str) -> int:
    """How many pixels the drawn page is wider than its window, as the page records it."""
    found = re.search(r'data-overflow-x="(-?\d+)"', dom)
    assert found, "the page did not record its width"
    return int(found.group(1))


def test_every_chart_renders_offline_in_chromium(tmp_path: Path) -> None:
    browser = _chromium()
    run = run_with_costs(tmp_path)
    rep = build_report(run, tmp_path / "report", figures=FIGURES, images=False)
    (cost,) = [f for f in rep.summary["figures"] if f["name"] == "cost"]
    assert cost["drawn"] and "this-machine" in cost["note"], cost
    drawn = [f["name"] for f in rep.summary["figures"] if f["drawn"]]
    assert drawn, "the full run draws some figures"
    url = (tmp_path / "report" / "index.html").resolve().as_uri()

    # A laptop's window: the widest figure (two panels and a legend, ~1,850 px) must scale down.
    res = _browse(browser, tmp_path / "profile-dom", "--window-size=1280,2000", "--dump-dom", url)
    assert res.returncode == 0, res.stderr[-3000:]
    dom = res.stdout
    assert f'data-rendered="{len(drawn)}"' in dom, "the page did not report every chart drawn"
    assert _overflow(dom) <= 0, f"at 1,280 px the page scrolls {_overflow(dom)} px sideways"
    # This run has fewer verifiers than a demo, so its key tables are narrower than a demo's
    # (whose widest was 2,093 px before the page let cells wrap): 900 px squeezes it as much.
    narrow = _browse(browser, tmp_path / "p-narrow", "--window-size=900,2000", "--dump-dom", url)
    assert narrow.returncode == 0, narrow.stderr[-3000:]
    assert _overflow(narrow.stdout) <= 0, f"at 900 px it scrolls {_overflow(narrow.stdout)} px"
    assert dom.index("<h2>Findings") < dom.index("<h2>Figures") < dom.index("<h2>Provenance")
    # the cost panel draws the priced hardware; the caption says which one it left out
    left_out = "Left out of the cost panel: this-machine"
    assert left_out in _chart_body(dom, "cost")  # drawn under the panels
    caption = re.search(r'id="figure-cost".*?<figcaption>(.*?)</figcaption>', dom, re.S)
    assert caption and left_out in caption.group(1)
    assert re.search(r'<pre id="report-errors" hidden=""></pre>', dom), "the page shows errors"
    for name in drawn:
        body = _chart_body(dom, name)
        svg = re.search(r'<svg[^>]*class="marks"[^>]*>(.*)</svg>', body, re.S)
        assert svg, f"figure {name}: no svg rendered"
        assert len(re.findall(r"<(?:path|text|line|rect)\b", svg.group(1))) > 10, name
    console = [line for line in res.stderr.splitlines() if CONSOLE.search(line)]
    errors = [line for line in console if re.search(r"Uncaught|Error|error|failed", line)]
    assert not errors, "\n".join(console)

    shot = tmp_path / "report.png"
    res = _browse(
        browser,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1280,3000",
        url,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert shot.stat().st_size > 50_000  # a page of charts and tables, not a blank window

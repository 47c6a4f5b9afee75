"""`index.html` in a real browser: headless Chromium with networking off and a fresh profile.

Every chart must render (an `svg` with marks in each figure's container), the console must show
no error from the page, and a screenshot is saved. `.ci/run` installs Debian's `chromium`; where
it is missing this test is skipped, except in CI, where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from report_runs import full_run

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


def test_every_chart_renders_offline_in_chromium(tmp_path: Path) -> None:
    browser = _chromium()
    rep = build_report(full_run(), tmp_path / "report", figures=FIGURES, images=False)
    drawn = [f["name"] for f in rep.summary["figures"] if f["drawn"]]
    assert drawn, "the full run draws some figures"
    url = (tmp_path / "report" / "index.html").resolve().as_uri()

    res = _browse(browser, tmp_path / "profile-dom", "--dump-dom", url)
    assert res.returncode == 0, res.stderr[-3000:]
    dom = res.stdout
    assert f'data-rendered="{len(drawn)}"' in dom, "the page did not report every chart drawn"
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
        "--window-size=1200,3000",
        url,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert shot.stat().st_size > 50_000  # a page of charts and tables, not a blank window

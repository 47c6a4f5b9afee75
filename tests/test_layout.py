"""The tree's shape: no import cycles (also none hidden in a function) and no long modules.

The check is the shared layout tool that sits beside the checkout (`../shared/tools`), the same
one CI has; it reads every module of planner/, profiling/, models/ and reports/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT.parent / "shared" / "tools" / "layout_check.py"


def test_no_import_cycles_and_no_long_files() -> None:
    if not TOOL.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{TOOL} is missing: CI must have ../shared beside the checkout")
        pytest.skip(f"{TOOL} is not beside this checkout")
    res = subprocess.run(
        [sys.executable, str(TOOL), str(ROOT), "450", "--full"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = re.search(
        r"(\d+) modules, (\d+) hidden or module-level import cycles?, "
        r"(\d+) files? over 450 lines",
        res.stdout,
    )
    assert summary, res.stdout + res.stderr
    modules, cycles, long_files = map(int, summary.groups())
    assert modules > 50  # it read the tree
    assert (cycles, long_files) == (0, 0), res.stdout

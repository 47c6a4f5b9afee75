"""Shared fixtures.

`quick_testbed`: the quick-trained CPU testbed (policy, larger LM, PRM, reviser and manifest.json),
trained at most once per test run: it lives in the disk cache (env TTC_CACHE, else
~/.cache/ttc-planner) and training holds a file lock, so pytest-xdist workers wait for one trainer
and then share its models (and later runs reuse them). The README's test command runs two
workers (`-n 2`); each starts its own vLLM servers for the tests that need them.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def quick_testbed() -> Path:
    """Directory of the quick testbed: policy/, large/, prm/, reviser/, manifest.json."""
    from models.testbed import ensure_testbed

    return ensure_testbed(quick=True, scale="default", seed=0, progress=False)

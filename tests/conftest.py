"""Shared fixtures.

`quick_testbed`: the quick-trained CPU testbed (policy, larger LM, PRM, reviser and manifest.json),
trained at most once per test run: it lives in the disk cache (env TTC_CACHE, else
~/.cache/ttc-planner) and training holds a file lock, so pytest-xdist workers wait for one trainer
and then share its models (and later runs reuse them).

The README's test command runs two pytest-xdist workers with `--dist loadgroup`: every test that
drives a real vLLM server is in one group (`vllm`), so those tests run on one worker, where each
server fixture starts once, while the other worker runs the rest. The in-process every-decision
test joins them: it serves the policies the upstream test serves, made once per worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

VLLM_TESTS = (
    "tests/profiling/openai/",
    "tests/profiling/gateway/test_gateway_upstream.py",
    "tests/profiling/gateway/test_gateway_every_decision.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        rel = Path(str(item.path)).relative_to(root).as_posix()
        if rel.startswith(VLLM_TESTS):
            item.add_marker(pytest.mark.xdist_group("vllm"))


@pytest.fixture(scope="session")
def quick_testbed() -> Path:
    """Directory of the quick testbed: policy/, large/, prm/, reviser/, manifest.json."""
    from models.testbed import ensure_testbed

    return ensure_testbed(quick=True, scale="default", seed=0, progress=False)

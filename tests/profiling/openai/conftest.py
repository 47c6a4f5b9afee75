"""Real vLLM servers (CPU) for the openai backend's tests, started once per test session.

vLLM lives in its own virtual environment, `.venv-vllm` at the repository root (`.ci/run` makes
it; env TTC_VLLM_PYTHON points elsewhere). Without it these tests skip with the reason, except in
CI (`CI=true`), where they fail. Both servers (the quick testbed's policy and PRM) start at once
and are stopped at the end of the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from vllm_servers import VLLM_PYTHON, Served, require_vllm

from profiling.openai.launch import VLLMServer


@pytest.fixture(scope="session")
def vllm_servers(
    quick_testbed: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Served]]:
    require_vllm()
    logs = tmp_path_factory.mktemp("vllm-logs")
    servers = {
        name: VLLMServer(VLLM_PYTHON, quick_testbed / name, name, log_path=logs / f"{name}.log")
        for name in ("policy", "prm")
    }
    try:
        for s in servers.values():
            s.launch()
        for s in servers.values():
            s.wait(timeout_s=900)
        yield {
            name: Served(s.url, name, quick_testbed / name, s.max_model_len)
            for name, s in servers.items()
        }
    finally:
        for s in servers.values():
            s.stop()


@pytest.fixture(scope="session")
def vllm_policy(vllm_servers: dict[str, Served]) -> Served:
    return vllm_servers["policy"]


@pytest.fixture(scope="session")
def vllm_prm(vllm_servers: dict[str, Served]) -> Served:
    return vllm_servers["prm"]

"""Real vLLM servers (CPU) for the openai backend's tests, started once per test session.

vLLM lives in its own virtual environment, `.venv-vllm` at the repository root (`.ci/run` makes
it; env TTC_VLLM_PYTHON points elsewhere). Without it these tests skip with the reason, except in
CI (`CI=true`), where they fail. Two servers start at once and stop at the end of the session:

- `policy`: the quick testbed's policy, a generator (sampling, search, log-prob verifiers; a
  step-tag PRM read through prompt log-probs runs on it too, with the testbed's tag tokens);
- `value`: a pooling server (`/pooling`, no `/v1/completions`) of a one-label token-classification
  PRM built from the testbed PRM (`save_value_head_prm`): the pooled PRM adapters, and the
  errors of a server that returns no log-probs. It serves a copy of the PRM's folder that is
  removed once it has started, as a server elsewhere would (its `root` is not readable here), so
  only its tokenizer can be compared with the local folder.

Both run with the launcher's flags (`profiling.openai.launch`, `--no-enable-chunked-prefill`
among them), as the README tells users to start vLLM.

Each server costs ~90 s of start-up on the CI machine's two cores, so the tests share these two
rather than starting one per case.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from vllm_servers import VLLM_PYTHON, Served, require_vllm, save_value_head_prm

from profiling.openai.launch import VLLMServer


@pytest.fixture(scope="session")
def vllm_servers(
    quick_testbed: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Served]]:
    require_vllm()
    logs = tmp_path_factory.mktemp("vllm-logs")
    value = save_value_head_prm(quick_testbed / "prm", tmp_path_factory.mktemp("value") / "value")
    gone = shutil.copytree(value, tmp_path_factory.mktemp("served") / "value")
    dirs = {"policy": quick_testbed / "policy", "value": value}
    serve = {**dirs, "value": gone}
    servers = {
        name: VLLMServer(VLLM_PYTHON, d, name, log_path=logs / f"{name}.log")
        for name, d in serve.items()
    }
    try:
        for s in servers.values():
            s.launch()
        for s in servers.values():
            s.wait(timeout_s=900)
        shutil.rmtree(gone)  # loaded: the server no longer needs it
        yield {n: Served(s.url, n, dirs[n], s.max_model_len) for n, s in servers.items()}
    finally:
        for s in servers.values():
            s.stop()


@pytest.fixture(scope="session")
def vllm_policy(vllm_servers: dict[str, Served]) -> Served:
    return vllm_servers["policy"]


@pytest.fixture(scope="session")
def vllm_value(vllm_servers: dict[str, Served]) -> Served:
    """The pooling server of the value-head PRM (see the module docstring)."""
    return vllm_servers["value"]

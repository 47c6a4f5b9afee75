"""Seeded requests with long prompts, many in flight at once: what kills a vLLM CPU server started
with chunked prefill on (`RuntimeError: CPU Generator does not use offset`, see
`profiling.openai.launch.SEEDED_SAMPLING_ARGS`). The launcher's server answers them all, the
same seeds give the same samples, a server without the flag dies with one clear line, and the
README's and docs/serving.md's commands start vLLM with the launcher's flags."""

from __future__ import annotations

import shlex
from pathlib import Path

import httpx
import pytest
from vllm_servers import ROOT, VLLM_PYTHON, Served, long_prompts, require_vllm

from planner.errors import PlannerError
from profiling.openai import OpenAIBackend, open_backend
from profiling.openai.launch import SEEDED_SAMPLING_ARGS, VLLMServer

pytestmark = pytest.mark.slow
# vLLM's token budget per engine step on CPU (max_num_batched_tokens of an API server): prompts
# waiting together beyond it are prefilled in parts when chunked prefill is on.
CPU_STEP_TOKENS = 2048


def _conditions(backend: OpenAIBackend, count: int = 16) -> list[list[int]]:
    prompts = long_prompts(backend, count, 900)
    assert sum(map(len, prompts)) > 4 * CPU_STEP_TOKENS
    assert max(map(len, prompts)) < backend.max_model_len - 32
    return prompts


def test_seeded_long_prompts_in_flight_together_are_answered_and_reproducible(
    vllm_policy: Served,
) -> None:
    backend = open_backend(vllm_policy.url, "policy", vllm_policy.model_dir, max_concurrency=16)
    prompts = _conditions(backend)
    body = backend.body(prompts[0], n=4, max_new_tokens=16, temperature=1.0, top_p=1.0, seed=7)
    assert "seed" in body  # every request of the harness carries its seed
    first = backend.sample(prompts, 4, max_new_tokens=16, temperature=1.0, seed=7)
    again = backend.sample(prompts, 4, max_new_tokens=16, temperature=1.0, seed=7)
    assert [len(pool) for pool in first] == [4] * len(prompts)
    assert all(len(g.token_ids) > 0 for pool in first for g in pool)
    ids = [[g.token_ids for g in pool] for pool in first]
    assert ids == [[g.token_ids for g in pool] for pool in again]
    other = backend.sample(prompts, 4, max_new_tokens=16, temperature=1.0, seed=8)
    assert ids != [[g.token_ids for g in pool] for pool in other]
    assert httpx.get(vllm_policy.url + "/health", timeout=10).status_code == 200


def test_a_server_with_chunked_prefill_dies_and_the_run_says_why(
    quick_testbed: Path, tmp_path: Path
) -> None:
    require_vllm()
    log = tmp_path / "chunked.log"
    with VLLMServer(
        VLLM_PYTHON, quick_testbed / "policy", "policy", log_path=log, chunked_prefill=True
    ) as server:
        assert "--no-enable-chunked-prefill" not in server.command()
        backend = open_backend(server.url, "policy", quick_testbed / "policy", retries=1)
        prompts = _conditions(backend)
        with pytest.raises(PlannerError) as err:
            backend.sample(prompts, 4, max_new_tokens=16, temperature=1.0, seed=7)
        message = str(err.value)
        assert "\n" not in message and "its engine died" in message
        assert "start it with --no-enable-chunked-prefill" in message and "--resume" in message
        assert "CPU Generator does not use offset" in log.read_text()


def _vllm_commands(path: Path) -> list[list[str]]:
    """The vLLM command lines of a markdown file's code blocks (continuations joined)."""
    code, inside = [], False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside:
            code.append(line)
    lines = "\n".join(code).replace("\\\n", " ").splitlines()
    found = [ln for ln in lines if "vllm serve" in ln or "vllm.entrypoints.openai" in ln]
    return [shlex.split(ln.split("&")[0]) for ln in found]


def test_readme_and_serving_docs_start_vllm_with_the_launchers_flags() -> None:
    launcher = VLLMServer(VLLM_PYTHON, "runs/testbed/policy", "policy", port=8000).command()
    flags = [a for a in launcher[3:] if a.startswith("--")]
    readme = _vllm_commands(ROOT / "README.md")
    docs = _vllm_commands(ROOT / "docs" / "serving.md")
    assert readme and docs
    for cmd in readme:  # the testbed's server, as the launcher starts it
        assert sorted(a for a in cmd if a.startswith("--")) == sorted(flags)
        for flag in ("--max-model-len", "--dtype", "--block-size", "--served-model-name"):
            assert cmd[cmd.index(flag) + 1] == launcher[launcher.index(flag) + 1]
    for cmd in docs:  # any model: the flags seeded sampling needs
        assert all(a in cmd for a in SEEDED_SAMPLING_ARGS), cmd

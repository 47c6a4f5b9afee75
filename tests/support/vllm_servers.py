"""Where the tests find vLLM, and what a started server fixture gives (`Served`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = Path(os.environ.get("TTC_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))


@dataclass(frozen=True)
class Served:
    """A running server and the local folder of the model it serves."""

    url: str
    name: str
    model_dir: Path
    max_model_len: int


def require_vllm() -> None:
    """Skip (locally) or fail (CI=true) when the vLLM venv is absent."""
    if VLLM_PYTHON.exists():
        return
    reason = f"no vLLM venv at {VLLM_PYTHON} (create it as .ci/run does)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)

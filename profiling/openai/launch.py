"""Start and stop a local vLLM OpenAI-compatible server (for tests, benchmarks and trying it out).

vLLM lives in a virtual environment of its own (it pins its own torch and transformers); pass
its Python. CPU settings that serve the testbed's small models: float32, a 1 GiB KV cache
(`VLLM_CPU_KVCACHE_SPACE`), `--block-size 32` so that prompts of ~100 tokens share prefix-cache
blocks (CPU attention needs a multiple of 32), `--max-model-len 1024`, and
`--no-enable-chunked-prefill` (`SEEDED_SAMPLING_ARGS`: why below).

    with VLLMServer(".venv-vllm/bin/python", "testbed/policy", "policy") as server:
        backend = open_backend(server.url, "policy", "testbed/policy")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from planner.errors import PlannerError

# vLLM 0.32's CPU engine dies on a seeded request whose prompt is prefilled in parts: the model
# runner rewinds that request's generator (`gen.set_offset` in `_bookkeeping_sync`, for the
# sampled token it discards) and a CPU `torch.Generator` has no offset ("RuntimeError: CPU
# Generator does not use offset"). Chunked prefill (on by default) splits a prompt whenever the
# prompts waiting together exceed the step's token budget (2,048 on CPU), e.g. 8 prompts of 900
# tokens in flight, and the harness seeds every request (its samples are reproducible only so).
# Without chunked prefill a prompt is always prefilled whole, so seeded requests are safe; every
# server the project starts, and the README's and docs/serving.md's command, pass this.
SEEDED_SAMPLING_ARGS = ("--no-enable-chunked-prefill",)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VLLMServer:
    """One `vllm.entrypoints.openai.api_server` process serving one model; `start()` waits for
    `/health`, `stop()` ends the process group it started (and only that)."""

    def __init__(
        self,
        python: str | Path,
        model_dir: str | Path,
        served_model: str,
        *,
        port: int | None = None,
        max_model_len: int = 1024,
        block_size: int = 32,
        kv_cache_gib: int = 1,
        extra_args: Sequence[str] = (),
        log_path: str | Path | None = None,
        chunked_prefill: bool = False,
    ) -> None:
        self.python = str(python)
        self.model_dir = str(model_dir)
        self.served_model = served_model
        self.port = port or free_port()
        self.max_model_len = max_model_len
        self.block_size = block_size
        self.kv_cache_gib = kv_cache_gib
        self.extra_args = list(extra_args)
        self.log_path = Path(log_path) if log_path else None
        # True keeps vLLM's default, on which a CPU server dies under seeded requests (a test
        # shows it); never what the harness should be run against
        self.chunked_prefill = chunked_prefill
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            self.python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            self.model_dir,
            "--served-model-name",
            self.served_model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--max-model-len",
            str(self.max_model_len),
            "--dtype",
            "float32",
            "--block-size",
            str(self.block_size),
            *(() if self.chunked_prefill else SEEDED_SAMPLING_ARGS),
            *self.extra_args,
        ]

    def launch(self) -> VLLMServer:
        """Start the process without waiting (see `wait`)."""
        if not Path(self.python).exists():
            raise PlannerError(f"no vLLM Python at {self.python} (create the vLLM venv first)")
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib)}
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait(self, timeout_s: float = 600.0) -> VLLMServer:
        """Block until `/health` answers 200; raise (and stop) if the process dies or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise PlannerError(
                    f"vLLM server for {self.model_dir} exited with {self.proc.returncode}"
                    + (f" (log: {self.log_path})" if self.log_path else "")
                )
            if self.healthy():
                return self
            time.sleep(1.0)
        self.stop()
        raise PlannerError(f"vLLM server for {self.model_dir} not ready after {timeout_s:.0f} s")

    def start(self, timeout_s: float = 600.0) -> VLLMServer:
        return self.launch().wait(timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the server's process group (its engine processes too), SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        pgid = os.getpgid(proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            proc.wait(timeout=timeout_s)

    def __enter__(self) -> VLLMServer:
        return self if self.proc is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

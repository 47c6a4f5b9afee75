"""Gateway test helpers: a policy through the real chain (profile, curves, plan, export) and a
real uvicorn server in a thread on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from planner.cli import main

VERIFIER = "likelihood:path=testbed:large,name=large,stat=mean,agg=min"


def make_policy(testbed: Path, work: Path, n: int = 24) -> Path:
    """profile -> curves -> plan -> policy export on n problems (levels 1-3) of the quick
    testbed."""
    runner = CliRunner()
    steps = [
        [
            "profile", "--testbed", str(testbed), "--model", "testbed:policy",
            "--verifier", VERIFIER, "--strategy", "sample:n=8,max_new_tokens=64",
            "--strategy", "beam:n=4,m=2,max_step_tokens=32,max_new_tokens=64",
            "--n", str(n), "--levels", "1,2,3", "--no-timing", "--no-progress",
            "--out", str(work / "tb"),
        ],
        ["curves", str(work / "tb"), "--out", str(work / "prof"), "--probe-k", "4"],
        [
            "plan", str(work / "prof"), "--out", str(work / "plan"), "--bin-by", "predicted",
            "--probe-k", "4", "--n-boot", "50", "--select-rule", "one-se",
        ],
        ["policy", "export", str(work / "plan"), "--out", str(work / "policy.json")],
    ]  # fmt: skip
    for args in steps:
        res = runner.invoke(main, args)
        assert res.exit_code == 0, (args[0], res.output)
    return work / "policy.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """`profiling.gateway.server.make_server` running in a thread until the block ends."""

    def __init__(self, gateway: Any, **kwargs: Any) -> None:
        from profiling.gateway.server import make_server

        self.gateway = gateway
        self.port = free_port()
        self.server = make_server(gateway, "127.0.0.1", self.port, **kwargs)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(120)

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Running the gateway under uvicorn: SIGHUP reloads the policy, SIGTERM/SIGINT drain and stop.

Shutdown: the first SIGTERM (or SIGINT) starts draining. The gateway keeps listening, /healthz
answers 503 (a load balancer takes it out of rotation) and new completion requests get 503
`shutting_down`, while the requests in flight finish (up to `graceful_s`); then uvicorn stops,
the app's lifespan stops the batcher, and the process exits 0 with one log line. A second
signal stops at once. SIGHUP is installed on the event loop when the server runs in the main
thread (tests that run it in a thread use POST /admin/reload, or `Server.drain`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from types import FrameType

import uvicorn

from planner.errors import PlannerError
from profiling.gateway import logs
from profiling.gateway.app import Gateway, create_app


def _on_hup(gw: Gateway) -> None:
    # a refused reload has logged why; the old policy keeps serving
    with contextlib.suppress(PlannerError):
        gw.reload("signal")


class Server(uvicorn.Server):
    """uvicorn's server, plus SIGHUP -> reload and a draining shutdown."""

    def __init__(self, config: uvicorn.Config, gw: Gateway, graceful_s: float) -> None:
        super().__init__(config)
        self.gw = gw
        self.graceful_s = graceful_s
        self._drain_deadline: float | None = None

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets)
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(
                signal.SIGHUP, lambda: loop.run_in_executor(None, _on_hup, self.gw)
            )
        if self.started:
            cur, url = self.gw.current, f"http://{self.config.host}:{self.config.port}/v1"
            msg = f"serving {cur.path} as '{self.gw.name}' on {url}"
            logs.event("start", msg, policy=cur.label, url=url)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn's own handler stops listening at once and re-raises the signal at exit (an
        # exit status of 128 + signal); the first signal drains instead, a second stops now.
        if self._drain_deadline is not None:
            self.should_exit = True
            self.force_exit = sig == signal.SIGINT
            return
        self.drain(signal.Signals(sig).name)

    def drain(self, why: str = "drain") -> None:
        """Start draining (see the module docstring); `on_tick` stops once nothing is in
        flight."""
        self.gw.draining = True
        self._drain_deadline = time.monotonic() + self.graceful_s
        logs.event("shutdown", f"{why}: draining {self.gw.in_flight} requests in flight",
                   signal=why, in_flight=self.gw.in_flight)  # fmt: skip

    async def on_tick(self, counter: int) -> bool:
        deadline = self._drain_deadline
        if deadline is not None and (self.gw.in_flight == 0 or time.monotonic() > deadline):
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list | None = None) -> None:
        left = self.gw.in_flight
        await super().shutdown(sockets)
        level = logging.WARNING if left else logging.INFO
        logs.event("shutdown", "stopped", level, in_flight_left=left)


def make_server(
    gw: Gateway,
    host: str = "127.0.0.1",
    port: int = 8000,
    graceful_s: float = 60.0,
    log_level: str = "warning",
) -> Server:
    config = uvicorn.Config(
        create_app(gw),
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # the gateway's handler (`logs.configure`) writes uvicorn's lines too
        access_log=False,  # the gateway writes its own access line, with the decision in it
        timeout_graceful_shutdown=int(graceful_s),
        lifespan="on",
    )
    return Server(config, gw, graceful_s)

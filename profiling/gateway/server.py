"""Running the gateway under uvicorn: SIGHUP reloads the policy, SIGTERM/SIGINT drain and stop.

uvicorn's own shutdown stops accepting connections and waits for the requests in flight (up to
`graceful_s`); the app's lifespan then stops the batcher. SIGHUP is installed on the event loop
when the server runs in the main thread (tests that run it in a thread use POST /admin/reload).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Callable

import uvicorn

from planner.errors import PlannerError
from profiling.gateway.app import Gateway, create_app


def _on_hup(gw: Gateway, log: Callable[[str], None]) -> None:
    try:
        new = gw.reload()
    except PlannerError as exc:
        log(f"ttc serve: reload refused, still serving {gw.current.label}: {exc}")
        return
    log(f"ttc serve: reloaded {new.path} as {new.label}")


class _Server(uvicorn.Server):
    """uvicorn's server, plus SIGHUP -> reload."""

    def __init__(self, config: uvicorn.Config, gw: Gateway, log: Callable[[str], None]) -> None:
        super().__init__(config)
        self.gw = gw
        self.log = log

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets)
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(
                signal.SIGHUP,
                lambda: loop.run_in_executor(None, _on_hup, self.gw, self.log),
            )


def make_server(
    gw: Gateway,
    host: str = "127.0.0.1",
    port: int = 8000,
    graceful_s: float = 60.0,
    log_level: str = "warning",
    log: Callable[[str], None] | None = None,
) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(gw),
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=int(graceful_s),
        lifespan="on",
    )
    return _Server(config, gw, log or (lambda m: print(m, file=sys.stderr, flush=True)))

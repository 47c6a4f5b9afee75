"""Micro-batching: requests that arrive together share the model's forward passes.

Each worker thread takes the first waiting request, keeps collecting for `window_s` (or until
`max_batch`), and runs the batch through `Engine.run` on the policy each request started with (a
reload between arrival and run does not change a request's policy). The in-process backend has
one worker (torch already uses the cores); an upstream backend has several, so many requests are
in flight at the server at once. Results go back to the event loop as futures: a `Reply`, or a
`Failure` for a request whose own work failed (the engine isolates failures within a batch; if
the engine itself raises, each request of the batch is run again alone).

The window is adaptive. Given the number of requests in flight (`in_flight`, counted by the
app from arrival to response), a worker stops collecting as soon as its batch holds as many
requests as were in flight when its last batch finished (the load) and every request in flight
is in its batch, queued or running: a lone client never waits, and under load the batch waits
(at most `window_s`) for the clients its last batch answered to send their next requests, so
that closed-loop clients fill whole batches instead of settling into two alternating half
batches. Without that count, a request that finds the server idle (the last batch held one
request and nothing else waits) runs at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from profiling.gateway.asks import Ask, Failure, Reply
from profiling.gateway.choose import Spend
from profiling.gateway.engine import Engine
from profiling.gateway.loading import LoadedPolicy

_LOG = logging.getLogger("ttc.serve")


@dataclass
class _Job:
    loaded: LoadedPolicy
    ask: Ask
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class Batcher:
    """Queue of requests served by `workers` threads in micro-batches."""

    def __init__(
        self,
        engine: Engine,
        window_s: float = 0.05,
        max_batch: int = 32,
        workers: int = 1,
        on_batch: Callable[[int], None] | None = None,
        in_flight: Callable[[], int] | None = None,
    ) -> None:
        self.engine = engine
        self.in_flight = in_flight
        self._running = 0  # requests in the batches the workers are running
        # Requests in flight when the last batch finished, beyond the other workers' batches:
        # the load the next batch should hold (closed-loop clients answered by that batch come
        # back within the window).
        self._target = 1
        self._lock = threading.Lock()
        self.window_s = window_s
        self.max_batch = max_batch
        self.on_batch = on_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"ttc-batcher-{i}", daemon=True)
            for i in range(workers)
        ]
        self._started = False
        self._last_size = 0

    def start(self) -> None:
        if not self._started:
            for t in self._threads:
                t.start()
            self._started = True

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish queued work, then end the workers."""
        if not self._started:
            return
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout_s)
        self._started = False

    async def submit(self, loaded: LoadedPolicy, ask: Ask) -> Reply | Failure:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._queue.put(_Job(loaded, ask, fut, loop))
        return await fut

    # -- worker --------------------------------------------------------------------------------
    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs = [first]
        idle = self._last_size <= 1 and self._queue.empty()
        wait = self.window_s if self.in_flight is not None or not idle else 0.0
        deadline = time.monotonic() + wait
        while len(jobs) < self.max_batch:
            if self.in_flight is not None and self._queue.empty() and len(jobs) >= self._target:
                with self._lock:
                    here = len(jobs) + self._running
                if self.in_flight() <= here:
                    break  # nothing else is on its way
            left = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=min(left, 0.002)) if left > 0 else (
                    self._queue.get_nowait())  # fmt: skip
            except queue.Empty:
                if left > 0:
                    continue
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            t0 = time.monotonic()
            target = self._target
            jobs, stop = self._collect(first)
            if _LOG.isEnabledFor(logging.DEBUG):  # how each batch was gathered, for tuning
                fields = {"size": len(jobs), "target": target,
                          "collect_ms": round(1000 * (time.monotonic() - t0), 1)}  # fmt: skip
                _LOG.debug("batch", extra={"event": "batch", "fields": fields})
            self._last_size = len(jobs)
            with self._lock:
                self._running += len(jobs)
            # One engine call per policy: requests keep the policy they started with.
            by_policy: dict[int, list[_Job]] = {}
            for j in jobs:
                by_policy.setdefault(id(j.loaded), []).append(j)
            for group in by_policy.values():
                self._run(group)
                with self._lock:
                    self._running -= len(group)
            if stop:
                return

    def _run(self, jobs: list[_Job]) -> None:
        if self.on_batch is not None:
            self.on_batch(len(jobs))
        policy = jobs[0].loaded.policy
        try:
            replies: list[Any] = self.engine.run(policy, [j.ask for j in jobs])
        except Exception as exc:  # the batch as a whole failed: its requests run apart
            if len(jobs) == 1:
                replies = [Failure(exc, "batch", Spend())]
            else:
                replies = [self._alone(policy, j.ask) for j in jobs]
        if self.in_flight is not None:
            with self._lock:
                others = self._running - len(jobs)
            self._target = max(1, min(self.max_batch, self.in_flight() - others))
        for j, r in zip(jobs, replies, strict=True):
            # a closed loop (the server stopped): nobody waits for the answer
            with contextlib.suppress(RuntimeError):
                j.loop.call_soon_threadsafe(_set_result, j.future, r)

    def _alone(self, policy: Any, ask: Ask) -> Reply | Failure:
        try:
            return self.engine.run(policy, [ask])[0]
        except Exception as exc:
            return Failure(exc, "batch", Spend())


def _set_result(fut: asyncio.Future, value: Any) -> None:
    if not fut.done():
        fut.set_result(value)

"""An HTTP client for OpenAI-compatible servers: async, bounded, with time-outs and retries.

Strategies are synchronous, so the client runs its own event loop on a daemon thread and its
methods block until their requests are answered. `post_many` sends a list of requests
concurrently (at most `max_concurrency` in flight, answers in request order): a search round's
candidates, a pool's prompts, a verifier's sequences all go out together and the server batches
them (continuous batching).

Connection errors, time-outs and 5xx answers are retried with exponential backoff; a 4xx answer
is the request's fault and raises at once with the server's own message, and so does a server
whose engine died (vLLM answers 500 "EngineCore encountered an issue" and then exits: no retry can
succeed). Every failure is a `PlannerError` naming the server.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from planner.errors import PlannerError

T = TypeVar("T")


@dataclass(frozen=True)
class ClientConfig:
    """Where the server is and how hard to try.

    max_concurrency: requests in flight at once; timeout_s: seconds for one answer (a long
    generation batch may take a while on a busy server); connect_timeout_s: to open a
    connection; retries: extra tries after a connection error, time-out or 5xx; backoff_s: the
    first wait between tries (doubling each time).
    """

    base_url: str
    max_concurrency: int = 32
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    retries: int = 4
    backoff_s: float = 0.5
    api_key: str | None = None

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("timeout_s and connect_timeout_s must be > 0")
        if self.retries < 0 or self.backoff_s < 0:
            raise ValueError("retries and backoff_s must be >= 0")


class _Retry(Exception):
    """A failure worth another try (connection, time-out, 5xx)."""


# What vLLM's API server answers (HTTP 500) once its engine process has died; it exits after.
ENGINE_DEAD = ("EngineCore encountered an issue", "EngineDeadError", "Engine loop has died")


def server_root(base_url: str) -> str:
    """The server's root URL: `http://h:p/v1` and `http://h:p/` both give `http://h:p`."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class OpenAIClient:
    """Blocking facade over an async httpx client on a private event-loop thread."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.root = server_root(config.base_url)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._http: httpx.AsyncClient | None = None
        self._sem: asyncio.Semaphore | None = None
        self._lock = threading.Lock()

    # -- loop plumbing ---------------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, daemon=True, name="ttc-http")
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._ensure_loop()
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    async def _client(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        if self._http is None or self._sem is None:
            cfg = self.config
            timeout = httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s)
            limits = httpx.Limits(
                max_connections=cfg.max_concurrency, max_keepalive_connections=cfg.max_concurrency
            )
            headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
            self._http = httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers)
            self._sem = asyncio.Semaphore(cfg.max_concurrency)
        return self._http, self._sem

    def close(self) -> None:
        """Close connections and stop the loop thread (the client can be used again after)."""
        with self._lock:
            loop, thread, http = self._loop, self._thread, self._http
            self._loop = self._thread = self._http = self._sem = None
        if loop is None:
            return
        if http is not None:
            asyncio.run_coroutine_threadsafe(http.aclose(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        loop.close()

    def __getstate__(self) -> dict[str, Any]:
        # A client crosses process boundaries (Ray, spawn) as its config only.
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]

    # -- one request -----------------------------------------------------------------------------
    async def _once(self, method: str, path: str, body: Any | None) -> httpx.Response:
        http, sem = await self._client()
        async with sem:
            try:
                if method == "GET":
                    resp = await http.get(self.root + path)
                else:
                    resp = await http.post(self.root + path, json=body)
            except httpx.TransportError as exc:
                raise _Retry(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        if resp.status_code >= 500:
            message = _message(resp)
            if any(m in message for m in ENGINE_DEAD):
                raise PlannerError(
                    # "did not answer": what callers (the gateway) read as an unreachable server
                    f"server {self.root} did not answer {method} {path}: its engine died (HTTP "
                    f"{resp.status_code}: {message}); see the server's log. A vLLM CPU server "
                    "dies so on seeded requests when chunked prefill is on (the log shows "
                    "'CPU Generator does not use offset'): start it with "
                    "--no-enable-chunked-prefill (docs/serving.md), then run again with --resume"
                )
            raise _Retry(f"HTTP {resp.status_code}: {message}")
        return resp

    async def _request(self, method: str, path: str, body: Any | None = None) -> httpx.Response:
        cfg = self.config
        last = ""
        for attempt in range(cfg.retries + 1):
            try:
                return await self._once(method, path, body)
            except _Retry as exc:
                last = str(exc)
                if attempt < cfg.retries:
                    await asyncio.sleep(cfg.backoff_s * 2**attempt)
        raise PlannerError(
            f"server {self.root} did not answer {method} {path} after "
            f"{cfg.retries + 1} tries (is it running?): {last}"
        )

    async def _json(self, method: str, path: str, body: Any | None = None) -> Any:
        resp = await self._request(method, path, body)
        if resp.status_code >= 400:
            raise PlannerError(
                f"server {self.root} refused {method} {path} (HTTP {resp.status_code}): "
                f"{_message(resp)}"
            )
        try:
            return resp.json()
        except json.JSONDecodeError:
            raise PlannerError(
                f"server {self.root}: {method} {path} answered with non-JSON text "
                f"{resp.text[:200]!r} (is it an OpenAI-compatible server?)"
            ) from None

    # -- public, blocking ------------------------------------------------------------------------
    def get_json(self, path: str) -> Any:
        return self._run(self._json("GET", path))

    def get_text(self, path: str) -> str:
        """A GET's body as text ('' for a 4xx, e.g. a server without that endpoint)."""

        async def go() -> str:
            resp = await self._request("GET", path)
            return "" if resp.status_code >= 400 else resp.text

        return self._run(go())

    def post_json(self, path: str, body: Any) -> Any:
        return self._run(self._json("POST", path, body))

    def post_status(self, path: str, body: Any) -> tuple[int, Any]:
        """A POST's status and answer (JSON, else text) without raising on a 4xx, for probes
        that tell a missing endpoint (404) from a refused request (400)."""

        async def go() -> tuple[int, Any]:
            resp = await self._request("POST", path, body)
            if resp.status_code >= 400:
                return resp.status_code, _message(resp)
            try:
                return resp.status_code, resp.json()
            except json.JSONDecodeError:
                return resp.status_code, resp.text

        return self._run(go())

    def post_many(self, path: str, bodies: Sequence[Any]) -> list[Any]:
        """POST every body concurrently (bounded); the answers in the order of `bodies`."""
        if not bodies:
            return []

        async def go() -> list[Any]:
            tasks = [asyncio.ensure_future(self._json("POST", path, b)) for b in bodies]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

        return self._run(go())


def _message(resp: httpx.Response) -> str:
    """The error text of an answer: OpenAI's {"error": {"message"}}, vLLM's {"message"}, or
    the body."""
    try:
        body = resp.json()
    except (json.JSONDecodeError, ValueError):
        return " ".join(resp.text.split())[:300]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if body.get("message"):
            return str(body["message"])
        if isinstance(err, str):
            return err
    return json.dumps(body)[:300]

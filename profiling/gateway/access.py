"""What every request goes through, as plain ASGI middlewares (the decorator form wraps each
response in a task and a stream, a cost paid by every request):

- `AccessLog`, the outermost: gives the request its id (`x-request-id` as sent, or a new one),
  echoes it on the response, and once the response is sent writes the access line, the error
  line with the traceback on a 5xx, and the request's count, latency and spend in the metrics.
  An exception that escapes the routes becomes a 500 naming the request id, never its text.
- `KeyGuard`: the bearer key on every route but /healthz.

A route tells them what it decided through `Outcome`, kept in the request's state.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from profiling.gateway import logs
from profiling.gateway.choose import Spend
from profiling.gateway.protocol import ApiError

ROUTES = frozenset(
    {"/v1/completions", "/v1/chat/completions", "/v1/models", "/healthz", "/metrics",
     "/admin/reload"}
)  # fmt: skip
# A client's id is echoed when it is short and printable; anything else gets one of ours.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


@dataclass
class Outcome:
    """What a route learnt about its request, for the access line and the metrics."""

    bin: str = "none"
    strategy: str = "none"
    budget: float | None = None
    spend: Spend | None = None
    error: BaseException | None = None
    stage: str = ""
    off_policy: bool = False


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for k, v in headers:
        if k.lower() == b"x-request-id":
            text = v.decode("latin-1").strip()
            if _CLIENT_ID.match(text):
                return text
    return uuid.uuid4().hex


def outcome(scope: dict[str, Any]) -> Outcome:
    return scope["state"]["outcome"]


class AccessLog:
    """See the module docstring."""

    def __init__(self, app: Any, gateway: Any) -> None:
        self.app = app
        self.gw = gateway

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        rid = request_id(scope.get("headers") or [])
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        out = state["outcome"] = Outcome()
        status = 0
        done = False
        header = (b"x-request-id", rid.encode())

        def finish() -> None:
            nonlocal done
            if not done:
                done = True
                self.finish(scope, rid, status or 500, time.perf_counter() - t0, out)

        async def wrapped(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", []), header]}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # counted and logged before the client can read the whole answer, so that a
                # client that reads /metrics or the log next finds its request there
                finish()
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        except Exception as exc:
            out.error, out.stage = exc, out.stage or "route"
            if status == 0:
                err = ApiError(500, f"internal error (request id {rid})", "server_error",
                               code="internal_error")  # fmt: skip
                status = 500
                await error_response(err)(scope, receive, wrapped)
        finally:
            finish()

    def finish(self, scope: Any, rid: str, status: int, latency: float, out: Outcome) -> None:
        path = scope.get("path", "")
        route = path if path in ROUTES else "other"
        self.gw.metrics.record(route, status, latency, out.bin, out.strategy, out.spend)
        spend = out.spend
        fields: dict[str, Any] = {
            "request_id": rid,
            "method": scope.get("method", ""),
            "route": path[:200],
            "status": status,
            "latency_ms": round(1000 * latency, 2),
            "bin": out.bin,
            "strategy": out.strategy,
            "budget": out.budget,
            "tokens": None if spend is None else spend.total_tokens,
            "flops": None if spend is None else spend.total_flops,
        }
        if out.off_policy:
            fields["off_policy"] = True
        # A 503 while draining is the shutdown at work, not a failure: the access line tells it.
        if status >= 500 and (out.error is not None or status != 503):
            logs.event(
                "error",
                f"{status} on {route}" + (f" while {out.stage}" if out.stage else ""),
                logging.ERROR,
                exc=out.error,
                request_id=rid,
                route=route,
                status=status,
                stage=out.stage or None,
            )
        logs.event("access", "access", **fields)


class KeyGuard:
    """Bearer-key check on every route but /healthz."""

    def __init__(self, app: Any, gateway: Any) -> None:
        self.app = app
        self.want = f"Bearer {gateway.api_key}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        got = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(got, self.want):
            await self.app(scope, receive, send)
            return
        err = ApiError(
            401,
            "missing or wrong API key (Authorization: Bearer KEY)",
            "authentication_error",
            code="invalid_api_key",
        )
        await error_response(err)(scope, receive, send)


def error_response(exc: ApiError) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse(exc.body(), status_code=exc.status)

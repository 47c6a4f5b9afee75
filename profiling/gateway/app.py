"""The gateway's HTTP surface (FastAPI): the OpenAI routes, models, health, metrics and reload.

`Gateway` holds what the routes share: the engine behind a micro-batcher, the current policy
(swapped whole on reload; a request keeps the one it started with), the limits and the key.
`create_app(gateway)` builds the app; `profiling.gateway.server` runs it under uvicorn.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from planner.errors import PlannerError
from profiling.gateway.batcher import Batcher
from profiling.gateway.engine import Ask, Engine
from profiling.gateway.loading import LoadedPolicy, load_policy
from profiling.gateway.metrics import Metrics
from profiling.gateway.protocol import (
    ApiError,
    headers,
    parse_body,
    parse_request,
    response,
    ttc_field,
)
from profiling.gateway.upstream import upstream_error


@dataclass(frozen=True)
class Limits:
    """Request size (bytes of body), the largest max_tokens accepted, and the batching window."""

    max_request_bytes: int = 1 << 20
    max_tokens: int = 4096
    window_s: float = 0.02
    max_batch: int = 32
    workers: int = 1

    def __post_init__(self) -> None:
        if self.max_request_bytes < 1 or self.max_tokens < 1 or self.max_batch < 1:
            raise ValueError("limits must be >= 1")
        if self.window_s < 0 or self.workers < 1:
            raise ValueError("window_s must be >= 0 and workers >= 1")


class Gateway:
    """The state the routes share (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        policy_path: str,
        name: str = "policy",
        api_key: str | None = None,
        limits: Limits | None = None,
        default_budget: float | None = None,
    ) -> None:
        self.engine = engine
        self.policy_path = policy_path
        self.name = name
        self.api_key = api_key or None
        self.limits = limits or Limits()
        self.metrics = Metrics()
        self.current: LoadedPolicy = load_policy(policy_path, 1, engine)
        self._default_budget = default_budget
        self._check_default(self.current)
        self.metrics.set_policy(self.current.policy_id, 1)
        self._reload_lock = threading.Lock()
        self.batcher = Batcher(
            engine,
            self.limits.window_s,
            self.limits.max_batch,
            self.limits.workers,
            on_batch=self.metrics.batch_size.observe,
        )

    def _check_default(self, loaded: LoadedPolicy) -> None:
        b = self._default_budget
        if b is not None and b > float(loaded.policy.budgets[-1]) * (1 + 1e-9):
            raise PlannerError(
                f"{loaded.path}: default budget {b:g} above the policy's largest "
                f"({_budgets(loaded)})"
            )

    def default_budget(self, loaded: LoadedPolicy) -> float:
        if self._default_budget is not None:
            return self._default_budget
        return float(loaded.policy.budgets[-1])

    def reload(self) -> LoadedPolicy:
        """Load the policy file again; an invalid file raises PlannerError and changes nothing."""
        with self._reload_lock:
            try:
                new = load_policy(self.policy_path, self.current.version + 1, self.engine)
                self._check_default(new)
            except PlannerError:
                self.metrics.reloads.labels("refused").inc()
                raise
            self.current = new
            self.metrics.reloads.labels("ok").inc()
            self.metrics.set_policy(new.policy_id, new.version)
            return new

    def budget_for(self, loaded: LoadedPolicy, model: str, asked: float | None) -> float:
        base, sep, suffix = model.partition("@")
        if base != self.name:
            raise ApiError(
                404,
                f"model '{model}' not found (serving '{self.name}' and '{self.name}@BUDGET')",
                param="model",
                code="model_not_found",
            )
        budget = asked
        if sep:
            try:
                from_name = float(suffix)
            except ValueError:
                raise ApiError(
                    404,
                    f"model '{model}' not found: '{suffix}' is not a budget",
                    param="model",
                    code="model_not_found",
                ) from None
            if asked is not None and abs(asked - from_name) > 1e-9 * max(1.0, abs(asked)):
                raise ApiError(
                    400,
                    f"ttc_budget {asked:g} contradicts the model's budget {from_name:g}",
                    param="ttc_budget",
                )
            budget = from_name
        if budget is None:
            return self.default_budget(loaded)
        top = float(loaded.policy.budgets[-1])
        if budget < 0 or budget > top * (1 + 1e-9):
            raise ApiError(
                400,
                f"budget {budget:g} outside the policy's range; allowed budgets: "
                f"{_budgets(loaded)} ({loaded.policy.unit}; a budget between two is served at "
                "the lower, below the smallest by the fallback)",
                param="ttc_budget",
                code="budget_out_of_range",
            )
        return budget


def _budgets(loaded: LoadedPolicy) -> str:
    return ", ".join(f"{b:g}" for b in loaded.policy.budgets)


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


def create_app(gw: Gateway) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gw.batcher.start()
        try:
            yield
        finally:
            # uvicorn has let every in-flight request finish before this runs.
            await asyncio.to_thread(gw.batcher.stop)

    app = FastAPI(title="ttc gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.gateway = gw

    if gw.api_key:
        app.add_middleware(_KeyGuard, gateway=gw)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc)

    async def answer(request: Request, chat: bool) -> Response:
        route = request.url.path
        t0 = time.perf_counter()
        gw.metrics.in_flight.inc()
        try:
            loaded = gw.current  # the policy this request keeps, whatever reloads come
            limit = gw.limits.max_request_bytes
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                # refused before the body is read into memory
                raise ApiError(
                    413, f"request body of {declared} bytes exceeds the limit of {limit}"
                )
            body = parse_body(await request.body(), limit)
            parsed = parse_request(body, chat, gw.limits.max_tokens)
            budget = gw.budget_for(loaded, parsed.model, parsed.budget)
            ask = Ask(parsed.prompt, budget, parsed.max_tokens, parsed.seed or 0)
            try:
                reply = await gw.batcher.submit(loaded, ask)
            except Exception as exc:
                raise upstream_error(exc) from exc
            ttc = ttc_field(reply, budget, loaded.label, loaded.policy_id, loaded.version)
            gw.metrics.served(route, reply.decision.bin, reply.decision.strategy, reply.spend)
            return JSONResponse(response(reply, parsed.model, chat, ttc), headers=headers(ttc))
        except ApiError as exc:
            gw.metrics.failed(route, exc.status)
            return _error(exc)
        finally:
            gw.metrics.in_flight.dec()
            gw.metrics.latency.labels(route).observe(time.perf_counter() - t0)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await answer(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await answer(request, chat=True)

    @app.get("/v1/models")
    async def models() -> dict:
        loaded = gw.current
        default = gw.default_budget(loaded)
        entries = [_model(gw.name, loaded, default, default=True)]
        entries += [_model(f"{gw.name}@{b:g}", loaded, float(b)) for b in loaded.policy.budgets]
        return {"object": "list", "data": entries}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "policy": gw.current.label}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(gw.metrics.text(), media_type="text/plain; version=0.0.4")

    @app.post("/admin/reload")
    async def reload() -> Response:
        try:
            new = await asyncio.to_thread(gw.reload)
        except PlannerError as exc:
            return _error(
                ApiError(
                    400,
                    f"reload refused, still serving {gw.current.label}: {exc}",
                    code="invalid_policy",
                )
            )
        return JSONResponse(
            {
                "policy": {
                    "id": new.policy_id,
                    "version": new.version,
                    "label": new.label,
                    "path": new.path,
                }
            }
        )

    return app


class _KeyGuard:
    """Bearer-key check on every route but /healthz, as a plain ASGI middleware (the decorator
    form wraps every response in a task and a stream, a cost paid by each request)."""

    def __init__(self, app: Any, gateway: Gateway) -> None:
        self.app = app
        self.gw = gateway
        self.want = f"Bearer {gateway.api_key}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        got = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(got, self.want):
            await self.app(scope, receive, send)
            return
        self.gw.metrics.failed(scope["path"], 401)
        err = ApiError(
            401,
            "missing or wrong API key (Authorization: Bearer KEY)",
            "authentication_error",
            code="invalid_api_key",
        )
        await _error(err)(scope, receive, send)


def _model(model_id: str, loaded: LoadedPolicy, budget: float, default: bool = False) -> dict:
    return {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": "ttc",
        "ttc": {
            "budget": budget,
            "unit": loaded.policy.unit,
            "default": default,
            "policy": loaded.label,
        },
    }

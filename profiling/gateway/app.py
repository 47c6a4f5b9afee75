"""The gateway's HTTP surface (FastAPI): the OpenAI routes, models, health, metrics and reload.

`Gateway` holds what the routes share: the engine behind a micro-batcher, the current policy
(swapped whole on reload; a request keeps the one it started with), the limits, the key and
the draining flag. `create_app(gateway)` builds the app; `profiling.gateway.server` runs it under
uvicorn. A completion request is refused before any model work when it is malformed, names an
unknown model or a budget that is not a finite number in the policy's range, or sends a prompt
longer than the model's context leaves room for (400 `context_length_exceeded`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from planner.errors import PlannerError
from profiling.gateway import logs
from profiling.gateway.access import AccessLog, KeyGuard, error_response, outcome
from profiling.gateway.asks import Ask, Failure
from profiling.gateway.batcher import Batcher
from profiling.gateway.engine import Engine
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

# Prompts longer than this (characters) are tokenised off the event loop.
_INLINE_CHARS = 4096


@dataclass(frozen=True)
class Limits:
    """Request size (bytes of body), the largest max_tokens accepted, and the batching window."""

    max_request_bytes: int = 1 << 20
    max_tokens: int = 4096
    window_s: float = 0.05
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
        # Completion requests being answered, and whether a shutdown is waiting for them.
        self.in_flight = 0
        self.draining = False
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
            in_flight=lambda: self.in_flight,
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

    def reload(self, source: str = "http") -> LoadedPolicy:
        """Load the policy file again; an invalid file raises PlannerError and changes nothing.
        Either way one log line says so (`source`: http or signal)."""
        with self._reload_lock:
            old = self.current.label
            try:
                new = load_policy(self.policy_path, self.current.version + 1, self.engine)
                self._check_default(new)
            except PlannerError as exc:
                self.metrics.reloads.labels("refused").inc()
                msg = f"reload refused, still serving {old}: {exc}"
                logs.event(
                    "reload", msg, logging.WARNING, source=source, result="refused", policy=old
                )
                raise
            self.current = new
            self.metrics.reloads.labels("ok").inc()
            self.metrics.set_policy(new.policy_id, new.version)
            logs.event("reload", f"reloaded {new.path} as {new.label}", source=source,
                       result="ok", policy=new.label, previous=old)  # fmt: skip
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
            if not math.isfinite(from_name):
                raise ApiError(
                    400,
                    f"model '{model}': the budget must be a finite number, got '{suffix}'",
                    param="model",
                    code="invalid_budget",
                )
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
        app.add_middleware(KeyGuard, gateway=gw)
    app.add_middleware(AccessLog, gateway=gw)  # the outermost: it sees every request

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # unknown routes and methods, in the OpenAI shape
        what = "Invalid URL" if exc.status_code == 404 else str(exc.detail)
        return error_response(
            ApiError(exc.status_code, f"{what} ({request.method} {request.url.path[:200]})")
        )

    async def answer(request: Request, chat: bool) -> Response:
        out = outcome(request.scope)
        rid = request.scope["state"]["request_id"]
        gw.metrics.in_flight.inc()
        gw.in_flight += 1
        try:
            if gw.draining:
                raise ApiError(503, "the server is shutting down; send the request again "
                               "elsewhere", "server_error", code="shutting_down")  # fmt: skip
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
            out.budget = budget
            ids = await _prompt_ids(gw, loaded, parsed.prompt, budget, chat)
            ask = Ask(parsed.prompt, budget, parsed.max_tokens, parsed.seed, tuple(ids))
            got = await gw.batcher.submit(loaded, ask)
            out.spend = got.spend
            if isinstance(got, Failure):
                if got.decision is not None:
                    out.bin, out.strategy = _bin(got.decision.bin), got.decision.strategy
                out.error, out.stage = got.error, got.stage
                raise upstream_error(got.error, rid, got.stage)
            d = got.decision
            out.bin, out.strategy, out.off_policy = _bin(d.bin), d.strategy, bool(got.off_policy)
            ttc = ttc_field(got, budget, loaded.label, loaded.policy_id, loaded.version)
            return JSONResponse(response(got, parsed.model, chat, ttc), headers=headers(ttc))
        except ApiError as exc:
            return error_response(exc)
        finally:
            gw.in_flight -= 1
            gw.metrics.in_flight.dec()

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
    async def healthz() -> Response:
        if gw.draining:
            body = {"status": "draining", "policy": gw.current.label, "in_flight": gw.in_flight}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "policy": gw.current.label})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(gw.metrics.text(), media_type="text/plain; version=0.0.4")

    @app.post("/admin/reload")
    async def reload() -> Response:
        try:
            new = await asyncio.to_thread(gw.reload, "http")
        except PlannerError as exc:
            msg = f"reload refused, still serving {gw.current.label}: {exc}"
            return error_response(ApiError(400, msg, code="invalid_policy"))
        label = {"id": new.policy_id, "version": new.version, "label": new.label}
        return JSONResponse({"policy": {**label, "path": new.path}})

    return app


def _bin(b: int | None) -> str:
    return "none" if b is None else str(int(b))


async def _prompt_ids(
    gw: Gateway, loaded: LoadedPolicy, prompt: str, budget: float, chat: bool
) -> list[int]:
    """The prompt's token ids, refused with 400 `context_length_exceeded` (OpenAI's code) when
    the model's context cannot hold it and what the policy generates after it at this budget.
    A prompt that cannot fit even at the tokenizer's longest token is refused untokenised."""
    room = loaded.room_for(budget)

    def refuse(n: int, at_least: bool = False) -> ApiError:
        got = f"at least {n}" if at_least else str(n)
        return ApiError(
            400,
            f"this prompt has {got} tokens; at budget {budget:g} the policy leaves room for "
            f"{room} (the model's context less the tokens generated after the prompt)",
            param="messages" if chat else "prompt",
            code="context_length_exceeded",
        )

    if room is not None:
        floor = len(prompt) // max(gw.engine.max_token_chars(), 1)
        if floor > room:
            raise refuse(floor, at_least=True)
    if len(prompt) > _INLINE_CHARS:
        ids = await asyncio.to_thread(gw.engine.prompt_ids, prompt)
    else:
        ids = gw.engine.prompt_ids(prompt)
    if room is not None and len(ids) > room:
        raise refuse(len(ids))
    return ids

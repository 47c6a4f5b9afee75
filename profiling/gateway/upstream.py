"""Mapping a backend's failure to the HTTP status a client should see.

An upstream server (vLLM, SGLang) that cannot be reached is a bad gateway (502); one that does
not answer in time is a gateway time-out (504); anything else is the gateway's own fault (500).
The test is on the exception's type and its causes (the HTTP client's errors are wrapped by the
backend), so it holds for any backend that raises the standard or httpx exception types; the
OpenAI-compatible backend (`profiling.openai`) gives up with one PlannerError naming the last
transport error after its retries, which is read from its message.
"""

from __future__ import annotations

from planner.errors import PlannerError
from profiling.gateway.protocol import ApiError


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _is_timeout(e: BaseException) -> bool:
    if isinstance(e, TimeoutError):
        return True
    name = type(e).__name__.lower()
    return "timeout" in name


def _is_unreachable(e: BaseException) -> bool:
    if isinstance(e, ConnectionError):
        return True
    name = type(e).__name__.lower()
    return any(s in name for s in ("connecterror", "connectionerror", "unreachable", "network"))


def upstream_error(exc: BaseException) -> ApiError:
    """The OpenAI-shaped error for a failure while answering."""
    if isinstance(exc, ApiError):
        return exc
    chain = _chain(exc)
    text = str(exc)
    if isinstance(exc, PlannerError) and "did not answer" in text:
        # profiling.openai: "server URL did not answer POST /v1/... after N tries: ReadTimeout"
        if "Timeout" in text:
            return ApiError(504, f"upstream time-out: {text}", "upstream_error",
                            code="upstream_timeout")  # fmt: skip
        return ApiError(502, f"upstream unreachable: {text}", "upstream_error",
                        code="upstream_unreachable")  # fmt: skip
    if isinstance(exc, PlannerError) and "refused" in text and text.startswith("server "):
        return ApiError(502, f"upstream refused: {text}", "upstream_error", code="upstream_error")
    if any(_is_timeout(e) for e in chain):
        return ApiError(504, f"upstream time-out: {exc}", "upstream_error", code="upstream_timeout")
    if any(_is_unreachable(e) for e in chain):
        return ApiError(
            502, f"upstream unreachable: {exc}", "upstream_error", code="upstream_unreachable"
        )
    return ApiError(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")

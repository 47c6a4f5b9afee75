"""Mapping a backend's failure to the HTTP status a client should see.

An upstream server (vLLM, SGLang) that cannot be reached is a bad gateway (502); one that does
not answer in time is a gateway time-out (504); anything else is the gateway's own fault (500).
The reply names a short reason and the request id, never the exception's text (the server log
has it, with the traceback, under the same id).
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


def classify(exc: BaseException) -> str | None:
    """`timeout`, `unreachable` or `refused` for an upstream server's failure, else None."""
    text = str(exc)
    if isinstance(exc, PlannerError) and "did not answer" in text:
        # profiling.openai: "server URL did not answer POST /v1/... after N tries: ReadTimeout"
        return "timeout" if "Timeout" in text else "unreachable"
    if isinstance(exc, PlannerError) and "refused" in text and text.startswith("server "):
        return "refused"
    chain = _chain(exc)
    if any(_is_timeout(e) for e in chain):
        return "timeout"
    if any(_is_unreachable(e) for e in chain):
        return "unreachable"
    return None


def fails_every_request(exc: BaseException) -> bool:
    """A server that cannot be reached, or does not answer in time, fails whatever is sent: the
    engine does not retry a batch's requests one by one on it."""
    return classify(exc) in ("timeout", "unreachable")


_STAGES = {
    "probe": "probing the prompt failed",
    "decide": "deciding the strategy failed",
    "strategy": "running the decided strategy failed",
}


def upstream_error(exc: BaseException, request_id: str, stage: str = "") -> ApiError:
    """The OpenAI-shaped error for a failure while answering: a short reason and the request id
    (the server log has the details under that id), never the exception's text."""
    if isinstance(exc, ApiError):
        return exc
    kind = classify(exc)
    ref = f"(request id {request_id})"
    if kind == "timeout":
        return ApiError(504, f"the upstream server did not answer in time {ref}",
                        "upstream_error", code="upstream_timeout")  # fmt: skip
    if kind == "unreachable":
        return ApiError(502, f"the upstream server could not be reached {ref}",
                        "upstream_error", code="upstream_unreachable")  # fmt: skip
    if kind == "refused":
        return ApiError(502, f"the upstream server refused the request {ref}",
                        "upstream_error", code="upstream_error")  # fmt: skip
    reason = _STAGES.get(stage, "internal error")
    return ApiError(500, f"{reason} {ref}", "server_error", code="internal_error")

"""The OpenAI request and response shapes the gateway speaks, and its errors.

Requests are checked by hand (not by a schema library) so that every refusal is one OpenAI-shaped
error naming the field: unknown fields are refused (a field we do not understand may be one the
client relies on), and so are the features a policy-driven answer cannot honour (streaming,
several choices, log-probs).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from profiling.gateway.asks import Reply

# OpenAI fields accepted (the policy, not the request, sets the sampler: temperature and the
# like are accepted and ignored); `ttc_budget` is ours (`extra_body` in the openai package).
_COMMON = {
    "model", "max_tokens", "temperature", "top_p", "n", "stream", "seed", "user", "stop",
    "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "stream_options",
    "ttc_budget",
}  # fmt: skip
COMPLETION_FIELDS = _COMMON | {"prompt", "echo", "best_of", "suffix"}
CHAT_FIELDS = _COMMON | {
    "messages", "max_completion_tokens", "top_logprobs", "response_format", "metadata", "store",
}  # fmt: skip


class ApiError(Exception):
    """An error answered in the OpenAI shape with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass(frozen=True)
class Parsed:
    """A request after its checks: the prompt text, the model name asked for, the budget
    (None: the default) and the generation cap."""

    prompt: str
    model: str
    budget: float | None
    max_tokens: int | None
    seed: int | None


def parse_body(raw: bytes, max_bytes: int) -> dict[str, Any]:
    if len(raw) > max_bytes:
        raise ApiError(413, f"request body of {len(raw)} bytes exceeds the limit of {max_bytes}")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"malformed JSON body: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(400, f"'{name}' must be a finite number, got {value!r}", param=name)
    return float(value)


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ApiError(
            400, f"'{name}' must be an integer in [{lo}, {hi}], got {value!r}", param=name
        )
    return int(value)


def parse_request(body: dict[str, Any], chat: bool, max_tokens_limit: int) -> Parsed:
    allowed = CHAT_FIELDS if chat else COMPLETION_FIELDS
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field '{unknown[0]}'", param=unknown[0])
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' is required (a string)", param="model")
    if body.get("stream"):
        raise ApiError(400, "streaming is not supported; send stream=false", param="stream")
    if body.get("n", 1) != 1 or body.get("best_of", 1) != 1:
        raise ApiError(400, "only n=1 is supported (the policy picks one answer)", param="n")
    if body.get("logprobs") not in (None, False) or body.get("echo"):
        raise ApiError(400, "logprobs and echo are not supported", param="logprobs")
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = None if cap is None else _int(cap, "max_tokens", 1, max_tokens_limit)
    seed = body.get("seed")
    if seed is not None:
        seed = _int(seed, "seed", 0, 2**63 - 1)
    budget = body.get("ttc_budget")
    if budget is not None:
        budget = _number(budget, "ttc_budget")
    prompt = _chat_prompt(body.get("messages")) if chat else _prompt(body.get("prompt"))
    return Parsed(prompt, model, budget, max_tokens, seed)


def _prompt(value: Any) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str) or not value:
        raise ApiError(400, "'prompt' must be a non-empty string", param="prompt")
    return value


def _chat_prompt(messages: Any) -> str:
    """The prompt of a conversation: its messages' contents, in order (the model's template is
    applied by the backend, as in profiling)."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", param="messages")
    parts = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise ApiError(
                400, f"messages[{i}] must be an object with a string 'content'", param="messages"
            )
        if m.get("role") not in ("system", "user", "assistant", "developer"):
            raise ApiError(400, f"messages[{i}]: unknown role {m.get('role')!r}", param="messages")
        parts.append(m["content"])
    return "\n".join(parts)


def ttc_field(reply: Reply, requested: float, label: str, policy_id: str, version: int) -> dict:
    """The `ttc` field of a response. A decision made without probes has bin None and no probe
    fields; an off-policy request (see `Reply.off_policy`) carries no promise (expected
    accuracy, interval and FLOPs are None) and says why in `off_policy`."""
    d = reply.decision
    off = reply.off_policy
    probe = None
    if reply.probe_scores is not None:
        probe = {
            "scores": reply.probe_scores,
            "answers": reply.probe_answers,
            "gen_tokens": reply.probe_tokens,
        }
    return {
        "bin": None if d.bin is None else int(d.bin),
        "strategy": d.strategy,
        "config": d.config,
        "budget": float(d.budget),
        "requested_budget": float(requested),
        "option_budget": float(d.option_budget),
        "fallback": bool(d.fallback),
        "probed": probe is not None,
        "flops": reply.spend.total_flops,
        "expected_flops": None if off else float(d.total_flops),
        "expected_accuracy": None if off else float(d.accuracy),
        "ci": None if off else [float(d.ci_lo), float(d.ci_hi)],
        "off_policy": off,
        "policy": {"id": policy_id, "version": version, "label": label},
        "answer": reply.answer,
        "probe": probe,
        "usage": reply.spend.as_dict(),
    }


def headers(ttc: dict[str, Any]) -> dict[str, str]:
    out = {
        "x-ttc-bin": "none" if ttc["bin"] is None else str(ttc["bin"]),
        "x-ttc-strategy": ttc["strategy"],
        "x-ttc-config": ttc["config"],
        "x-ttc-budget": f"{ttc['budget']:g}",
        "x-ttc-flops": f"{ttc['flops']:.6e}",
        "x-ttc-policy": ttc["policy"]["label"],
    }
    if ttc["off_policy"]:
        out["x-ttc-off-policy"] = ttc["off_policy"]
    return out


def response(reply: Reply, model: str, chat: bool, ttc: dict[str, Any]) -> dict[str, Any]:
    s = reply.spend
    # The verifier reads prompts and candidates: its tokens count as prompt tokens, so that
    # total = prompt + completion as clients expect.
    usage = {
        "prompt_tokens": s.prompt_tokens + s.verifier_tokens,
        "completion_tokens": s.completion_tokens,
        "total_tokens": s.total_tokens,
    }
    created = int(time.time())
    if chat:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": reply.text},
            "finish_reason": reply.finish_reason,
            "logprobs": None,
        }
        kind, prefix = "chat.completion", "chatcmpl"
    else:
        choice = {
            "index": 0,
            "text": reply.text,
            "finish_reason": reply.finish_reason,
            "logprobs": None,
        }
        kind, prefix = "text_completion", "cmpl"
    return {
        "id": f"{prefix}-{uuid.uuid4().hex}",
        "object": kind,
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage,
        "ttc": ttc,
    }

"""What the harness checks and reads on a server before and while it profiles through it.

`check_server` runs once when a backend opens, so a misconfigured run fails before anything is
written, with one clear error: the server unreachable, the served model not there, no
`max_model_len`, a local folder that is not the served model (`profiling.openai.identity`: the
tokenizer over its whole vocabulary, the vocabulary size, the config, the log-probs of a probe),
a server that returns no `logprobs` or `prompt_logprobs`. `PrefixCacheMeter` reads vLLM's
prefix-cache counters from `/metrics` (Prometheus text) so a run can record its hit rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from planner.errors import PlannerError
from profiling.openai.client import OpenAIClient
from profiling.openai.identity import PROBE_TEXT, ModelCheck, check_model, check_vocabulary

_HITS = ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total")
_QUERIES = ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total")


@dataclass(frozen=True)
class ServerInfo:
    """What a server said about its model."""

    served_model: str
    max_model_len: int
    root: str
    entry: dict[str, Any]  # its /v1/models entry
    tokenizer_check: str  # what `check_vocabulary` compared
    check: ModelCheck | None = None  # None until `identify` ran


def served_models(client: OpenAIClient) -> dict[str, dict[str, Any]]:
    """{id: entry} of `/v1/models`."""
    body = client.get_json("/v1/models")
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise PlannerError(
            f"server {client.root}: /v1/models has no model list ({str(body)[:200]})"
        )
    return {str(m.get("id")): m for m in data if isinstance(m, dict)}


def check_server(
    client: OpenAIClient,
    served_model: str,
    tokenizer: Any,
    model_config: str | Path,
    hf_config: Any,
    *,
    what: str = "model",
    max_model_len: int | None = None,
    logprobs: bool = True,
    identity: bool = True,
) -> ServerInfo:
    """Check the server serves `served_model` with the local tokenizer, (`logprobs`) that it
    returns log-probs, and (`identity`, see `identify`) that the local folder `model_config`
    (its `tokenizer` and `hf_config`) is that model; `max_model_len` from the server (or given,
    for servers that do not report it). A pooling verifier passes `logprobs=False` and
    `identity=False`, probes `/pooling` itself (its error says how to serve the PRM), then
    calls `identify`."""
    models = served_models(client)
    if served_model not in models:
        raise PlannerError(
            f"{what}: server {client.root} does not serve {served_model!r} "
            f"(it serves: {', '.join(sorted(models)) or 'nothing'}); "
            "set served_model to one of them"
        )
    entry = models[served_model]
    limit = max_model_len or entry.get("max_model_len")
    if not isinstance(limit, int) or limit < 2:
        raise PlannerError(
            f"{what}: server {client.root} reports no max_model_len for {served_model!r} "
            "in /v1/models (a vLLM server does)"
        )
    vocab = check_vocabulary(client, served_model, tokenizer, what)
    if logprobs:
        _check_logprobs(client, served_model, tokenizer, what)
    info = ServerInfo(served_model, int(limit), client.root, entry, vocab)
    if not identity:
        return info
    return identify(client, info, tokenizer, model_config, hf_config, what=what, logprobs=logprobs)


def identify(
    client: OpenAIClient,
    info: ServerInfo,
    tokenizer: Any,
    model_config: str | Path,
    hf_config: Any,
    *,
    what: str,
    logprobs: bool,
) -> ServerInfo:
    """`info` with its `ModelCheck` (`profiling.openai.identity.check_model`; raises on a
    mismatch)."""
    config, lik, verified = check_model(
        client,
        info.served_model,
        info.entry,
        model_config,
        hf_config,
        tokenizer,
        what=what,
        logprobs=logprobs,
    )
    return replace(info, check=ModelCheck(info.tokenizer_check, config, lik, verified))


def _check_logprobs(client: OpenAIClient, served_model: str, tokenizer: Any, what: str) -> None:
    ids = list(tokenizer.encode(PROBE_TEXT, add_special_tokens=False))[:8] or [0]
    status, body = client.post_status(
        "/v1/completions",
        {
            "model": served_model,
            "prompt": ids,
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": 0,
            "prompt_logprobs": 0,
            "return_tokens_as_token_ids": True,
        },
    )
    if status == 404:
        # vLLM registers /v1/completions only for a generating model (`--runner generate`)
        raise PlannerError(
            f"{what}: server {client.root} has no /v1/completions for {served_model!r} (it "
            "serves it as a pooling model, `--runner pooling`?); the harness needs its "
            "logprobs and prompt_logprobs: serve the model as a generator (`vllm serve DIR`)"
        )
    if status >= 400:
        raise PlannerError(
            f"{what}: server {client.root} refused logprobs and prompt_logprobs for "
            f"{served_model!r} (HTTP {status}: {body}); the harness needs both (the sampled "
            "token's log-prob, `logprobs: 0`)"
        )
    choice = (body.get("choices") or [{}])[0] if isinstance(body, dict) else {}
    lp = choice.get("logprobs") or {}
    missing = []
    if not lp.get("token_logprobs") or not str((lp.get("tokens") or [""])[0]).startswith(
        "token_id:"
    ):
        missing.append("logprobs with return_tokens_as_token_ids")
    plp = choice.get("prompt_logprobs")
    if not isinstance(plp, list) or len(plp) != len(ids):
        missing.append("prompt_logprobs")
    if missing:
        raise PlannerError(
            f"{what}: server {client.root} returned no {' and no '.join(missing)} for "
            f"{served_model!r}; the harness needs them (a vLLM server gives both)"
        )


_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN|[+-]Inf)\s*$")


def read_counters(text: str, names: tuple[str, ...]) -> float | None:
    """The sum over label sets of the first metric of `names` present in Prometheus text."""
    for name in names:
        total, seen = 0.0, False
        for line in text.splitlines():
            m = _METRIC.match(line.strip())
            if m and m.group(1) == name:
                total += float(m.group(3))
                seen = True
        if seen:
            return total
    return None


class PrefixCacheMeter:
    """vLLM's prefix-cache counters (prompt tokens looked up, tokens found cached) since the
    meter was made; None where the server exposes none."""

    def __init__(self, client: OpenAIClient) -> None:
        self.client = client
        self.start = self._read()

    def _read(self) -> tuple[float, float] | None:
        text = self.client.get_text("/metrics")
        hits, queries = read_counters(text, _HITS), read_counters(text, _QUERIES)
        return None if hits is None or queries is None else (hits, queries)

    def delta(self) -> dict[str, float] | None:
        now = self._read()
        if now is None or self.start is None:
            return None
        hits, queries = now[0] - self.start[0], now[1] - self.start[1]
        return {
            "prefix_cache_hit_tokens": hits,
            "prefix_cache_query_tokens": queries,
            "prefix_cache_hit_rate": hits / queries if queries > 0 else 0.0,
        }

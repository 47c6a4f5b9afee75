"""Profiling through a serving engine: the backend Protocol over an OpenAI-compatible server.

    from profiling.openai import open_backend

    backend = open_backend(
        base_url="http://localhost:8000",   # the server (with or without /v1)
        served_model="policy",              # a name in its /v1/models
        model_config="testbed/policy",      # local folder: the served model's config.json +
                                            # tokenizer (FLOPs meter, prompt token ids)
        max_concurrency=32,                 # requests in flight at once
        timeout_s=600.0,                    # seconds for one answer
        connect_timeout_s=10.0,
        retries=4,                          # extra tries on connection errors, time-outs, 5xx
        template=None,                      # profiling.backend.PromptTemplate (default {prompt})
        step_delimiter="\\n",
        batch_size=64,                      # rows per search batch (as in-process)
    )
    rows = profiling.run("beam", problems, backend, verifiers, {"n": 16, "m": 4})

`open_backend(base_url, served_model, model_config, *, max_concurrency=32, timeout_s=600.0,
connect_timeout_s=10.0, retries=4, backoff_s=0.5, api_key=None, template=None,
step_delimiter="\\n", batch_size=64, dtype="float32", max_model_len=None) -> OpenAIBackend`
checks the server first (reachable, serves `served_model`, `max_model_len` known, `logprobs` and
`prompt_logprobs` returned, and `model_config` the served model: `identity`, over the tokenizer's
whole vocabulary, the vocabulary size, the config and a probe's log-probs) and raises one
`PlannerError` otherwise; `metadata()["model_check"]` says what could be compared.

`OpenAIBackend` samples pools (`n`, temperature, top-p, seed, max tokens), searches step by step
(`ServerSearchState`: one step per request with the step's stop tokens, every row in flight at
once, the shared prefix served from the server's prefix cache) and meters FLOPs as the in-process
backend does; `metadata()` adds the server's prefix-cache hit rate since the backend opened.
`ServerLikelihood` and `ServerStepTagPRM` (`open_verifier`) score through a server's log-probs;
`ServerTokenClassPRM` and `ServerPooledStepTagPRM` (`pooling`) through a pooling server's
`/pooling` endpoint; any in-process verifier also works with a served policy.
`launch.VLLMServer` starts a local vLLM server (tests, benchmarks) with the flags seeded sampling
needs on CPU (`launch.SEEDED_SAMPLING_ARGS`); a server whose engine died is one error naming them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from profiling.backend import PromptTemplate
from profiling.openai.backend import OpenAIBackend, open_policy
from profiling.openai.client import ClientConfig, OpenAIClient
from profiling.openai.pooling import (
    ServerPooledStepTagPRM,
    ServerTokenClassPRM,
    served_prm_meta,
    serves_pooling,
)
from profiling.openai.state import ServerSearchState
from profiling.openai.verifiers import ServerLikelihood, ServerStepTagPRM
from profiling.verifiers.prm import prm_format


def make_client(
    base_url: str,
    *,
    max_concurrency: int = 32,
    timeout_s: float = 600.0,
    connect_timeout_s: float = 10.0,
    retries: int = 4,
    backoff_s: float = 0.5,
    api_key: str | None = None,
) -> OpenAIClient:
    return OpenAIClient(
        ClientConfig(
            base_url=base_url,
            max_concurrency=max_concurrency,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            retries=retries,
            backoff_s=backoff_s,
            api_key=api_key,
        )
    )


def open_backend(
    base_url: str,
    served_model: str,
    model_config: str | Path,
    *,
    max_concurrency: int = 32,
    timeout_s: float = 600.0,
    connect_timeout_s: float = 10.0,
    retries: int = 4,
    backoff_s: float = 0.5,
    api_key: str | None = None,
    template: PromptTemplate | None = None,
    step_delimiter: str = "\n",
    batch_size: int = 64,
    dtype: str = "float32",
    max_model_len: int | None = None,
) -> OpenAIBackend:
    """A checked backend for the model `served_model` of the server at `base_url`."""
    client = make_client(
        base_url,
        max_concurrency=max_concurrency,
        timeout_s=timeout_s,
        connect_timeout_s=connect_timeout_s,
        retries=retries,
        backoff_s=backoff_s,
        api_key=api_key,
    )
    return open_policy(
        client,
        served_model,
        model_config,
        template=template,
        step_delimiter=step_delimiter,
        batch_size=batch_size,
        dtype=dtype,
        max_model_len=max_model_len,
    )


def open_verifier(
    kind: str, base_url: str, served_model: str, model_config: str | Path, **kwargs: Any
) -> ServerLikelihood | ServerStepTagPRM | ServerTokenClassPRM:
    """`kind` "likelihood" or "prm" scored by the server at `base_url`; kwargs are the
    verifier's (name, stat, agg, mode, template, delimiter, format, tags...) plus the client's
    max_concurrency, timeout_s, retries.

    A PRM's format is `prm_format`'s (format=, verifier.json, else the architecture):
    token_class -> `ServerTokenClassPRM` (the server runs it for pooling); step_tag ->
    `ServerPooledStepTagPRM` when the server answers `/pooling` for it (served as a 1-label
    classifier, `pooling.step_tag_command`), else `ServerStepTagPRM` (prompt log-probs of a
    generating server). An rlhflow PRM scores in-process only."""
    client_keys = ("max_concurrency", "timeout_s", "connect_timeout_s", "retries", "backoff_s")
    client = make_client(base_url, **{k: kwargs.pop(k) for k in client_keys if k in kwargs})
    if kind == "likelihood":
        return ServerLikelihood(client, served_model, model_config, **kwargs)
    if kind != "prm":
        raise ValueError(f"a served verifier is 'likelihood' or 'prm', got {kind!r}")
    fmt = prm_format(model_config, kwargs.pop("format", None))
    kwargs = served_prm_meta(model_config, fmt, kwargs)
    if fmt == "token_class":
        return ServerTokenClassPRM(client, served_model, model_config, **kwargs)
    if fmt == "step_tag":
        pooled = serves_pooling(client, served_model)
        cls = ServerPooledStepTagPRM if pooled else ServerStepTagPRM
        return cls(client, served_model, model_config, **kwargs)
    raise ValueError(
        f"PRM {model_config}: a served PRM is of the step_tag or token_class format, got "
        f"{fmt!r} (score it in-process)"
    )


__all__ = [
    "ClientConfig",
    "OpenAIBackend",
    "OpenAIClient",
    "ServerLikelihood",
    "ServerPooledStepTagPRM",
    "ServerSearchState",
    "ServerStepTagPRM",
    "ServerTokenClassPRM",
    "make_client",
    "open_backend",
    "open_verifier",
]

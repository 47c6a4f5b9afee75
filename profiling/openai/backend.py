"""`OpenAIBackend`: the backend Protocol over an OpenAI-compatible server (vLLM, SGLang).

Prompts go to `/v1/completions` as token ids (so the server reads exactly the ids the local
tokenizer made) and answers come back as token ids with their log-probs
(`return_tokens_as_token_ids`, `logprobs: 0`: the sampled token's log-prob under the raw
distribution, as the in-process backend records). Steps end on the same stop token ids as
in-process (every token whose text holds the step delimiter, `stop_token_ids`), eos included.

Costs are counted as the in-process backend counts them (`profiling.flops`, a prompt encoded once
per pool or search run) from the token ids the server returned; the server's `usage` is checked
against them on every answer (a mismatch raises). What the server really computed is reported
beside: its prefix-cache hit rate over the run (`metadata()["prefix_cache_hit_rate"]`), which is
what makes re-sending a search's shared prefix every round cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from models.decoding import Generation
from planner.errors import PlannerError
from profiling.backend import BackendConfig, PromptTemplate, TransformersBackend, _mix
from profiling.flops import forward_flops, shape_from_config
from profiling.openai.client import OpenAIClient
from profiling.openai.server import PrefixCacheMeter, ServerInfo, check_server
from profiling.openai.state import ServerSearchState

_TOKEN_ID = "token_id:"


def count_params(config: Any) -> int:
    """Parameters of a causal LM from its config alone (built on the meta device: no weights)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return int(sum(p.numel() for p in model.parameters()))


class OpenAIBackend(TransformersBackend):
    """The policy (or reviser) served over HTTP; tokenising and step splitting are the local
    tokenizer's, shared with `TransformersBackend` (no model weights are loaded here)."""

    def __init__(
        self,
        config: BackendConfig,
        tokenizer: Any,
        hf_config: Any,
        client: OpenAIClient,
        info: ServerInfo,
    ) -> None:
        self.config = config
        self.model = None
        self.tokenizer = tokenizer
        self.model_id = info.served_model
        self.n_params = count_params(hf_config)
        self.shape = shape_from_config(hf_config)
        self.step_delimiter = config.step_delimiter
        self.eos_token_id = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else (self.eos_token_id or 0))
        self.step_stop_ids = self._delimiter_ids(config.step_delimiter)
        self.device = torch.device("cpu")
        self.dtype = config.dtype
        self._decode_cache: dict[tuple[int, ...], str] = {}
        self.client = client
        self.info = info
        self.served_model = info.served_model
        self.max_model_len = info.max_model_len
        self.meter = PrefixCacheMeter(client)

    # -- requests --------------------------------------------------------------------------------
    def body(
        self,
        prompt: Sequence[int],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
        stop_ids: Sequence[int] = (),
    ) -> dict[str, Any]:
        """One `/v1/completions` request; max_tokens capped so prompt + answer fit the model."""
        room = self.max_model_len - len(prompt)
        if room < 1:
            raise PlannerError(
                f"a prompt of {len(prompt)} tokens leaves no room in the served model's "
                f"max_model_len of {self.max_model_len} ({self.info.root}, {self.served_model})"
            )
        body: dict[str, Any] = {
            "model": self.served_model,
            "prompt": [int(t) for t in prompt],
            "n": int(n),
            "max_tokens": int(min(max_new_tokens, room)),
            "temperature": float(temperature),
            "top_p": float(top_p),
            # server-side defaults from a generation_config.json must not change the sampler
            "top_k": -1,
            "min_p": 0.0,
            "repetition_penalty": 1.0,
            "seed": int(seed) % (2**31 - 1),
            "logprobs": 0,
            "return_tokens_as_token_ids": True,
            "skip_special_tokens": False,
        }
        if stop_ids:
            body["stop_token_ids"] = [int(t) for t in stop_ids]
        return body

    def generations(
        self,
        answer: dict[str, Any],
        body: dict[str, Any],
        max_new_tokens: int,
        cap: str = "max_new_tokens",
    ) -> list[Generation]:
        """The choices of one answer as Generations, checked against `usage` and the limit
        (`cap` names the caller's limit of `max_new_tokens`, e.g. a search's per-step one)."""
        choices = sorted(answer.get("choices") or [], key=lambda c: int(c.get("index", 0)))
        if len(choices) != body["n"]:
            raise PlannerError(
                f"server {self.info.root} answered {len(choices)} choices for n={body['n']}"
            )
        stops = set(body.get("stop_token_ids") or ())
        out = []
        for c in choices:
            lp = c.get("logprobs") or {}
            ids = [_token_id(t, self.info.root) for t in lp.get("tokens") or []]
            lps = [float(x) for x in lp.get("token_logprobs") or []]
            if len(lps) != len(ids):
                raise PlannerError(f"server {self.info.root}: log-probs missing for some tokens")
            if ids and ids[-1] == self.eos_token_id:
                finish = "eos"
            elif ids and ids[-1] in stops:
                finish = "stop"
            else:
                finish = "length"
            if finish == "length" and len(ids) < max_new_tokens:
                limit = self.max_model_len
                raise PlannerError(
                    f"a response was cut at {len(body['prompt']) + len(ids)} tokens by the "
                    f"served model's max_model_len of {limit} ({self.info.root}, "
                    f"{self.served_model}) before {cap}={max_new_tokens}: serve it with a "
                    f"larger --max-model-len, or use shorter prompts or a lower {cap}"
                )
            out.append(Generation(ids, lps, finish))
        usage = answer.get("usage") or {}
        got = (usage.get("prompt_tokens"), usage.get("completion_tokens"))
        want = (len(body["prompt"]), sum(len(g.token_ids) for g in out))
        if got != want:
            raise PlannerError(
                f"server {self.info.root} counted (prompt, completion) tokens {got}, the local "
                f"tokenizer {want}: the served model and model_config do not match"
            )
        return out

    def complete(
        self, bodies: Sequence[dict[str, Any]], max_new_tokens: int, cap: str = "max_new_tokens"
    ) -> list[list[Generation]]:
        # greedy answers of one prompt are all the same and servers refuse n > 1 for them: ask
        # once, copy (each copy still counts its tokens, as the in-process rows do)
        sent = [{**b, "n": 1} if b["temperature"] <= 0 else b for b in bodies]
        answers = self.client.post_many("/v1/completions", sent)
        out = []
        for a, b, s in zip(answers, bodies, sent, strict=True):
            gens = self.generations(a, s, max_new_tokens, cap)
            if s is not b:
                g = gens[0]
                gens = [Generation(list(g.token_ids), list(g.logprobs), g.finish)] * b["n"]
            out.append(gens)
        return out

    # -- the Protocol ----------------------------------------------------------------------------
    def sample(
        self,
        prompts: Sequence[Sequence[int]],
        n: int,
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        stop_at_step: bool = False,
    ) -> list[list[Generation]]:
        """n samples per prompt, one request per prompt (the server batches them all)."""
        if n < 1:
            raise ValueError("n must be >= 1")
        stop = self.step_stop_ids if stop_at_step else ()
        bodies = [
            self.body(
                p,
                n=n,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=_mix(seed, pi, 0),
                stop_ids=stop,
            )
            for pi, p in enumerate(prompts)
        ]
        return self.complete(bodies, max_new_tokens)

    def start(self, prompt: Sequence[int]) -> ServerSearchState:
        return self.start_batch([prompt])

    def start_batch(self, prompts: Sequence[Sequence[int]]) -> ServerSearchState:
        st = ServerSearchState(self, prompts)
        for i, p in enumerate(prompts):
            st.flops_by[i] += forward_flops(self.shape, len(p), 0, logits=1)
        return st

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "model_id": self.model_id,
            "model_params": self.n_params,
            "device": "server",
            "dtype": self.config.dtype,
            "step_delimiter": self.step_delimiter,
            "backend": "openai",
            "base_url": self.info.root,
            "served_model": self.served_model,
            "max_model_len": self.max_model_len,
            "model_check": self.info.check.as_dict(),
        }
        meta.update(self.meter.delta() or {})
        return meta


def _token_id(token: Any, root: str) -> int:
    text = str(token)
    if not text.startswith(_TOKEN_ID):
        raise PlannerError(
            f"server {root} returned tokens as text ({text[:20]!r}), not ids: it needs "
            "return_tokens_as_token_ids (vLLM supports it)"
        )
    return int(text[len(_TOKEN_ID) :])


def load_local(model_config: str | Path) -> tuple[Any, Any]:
    """The local tokenizer and Hugging Face config of a served model's folder."""
    from transformers import AutoConfig, AutoTokenizer

    path = Path(model_config)
    if not (path / "config.json").is_file():
        raise PlannerError(
            f"model_config {path}: no config.json (a folder with the served model's "
            "config.json and tokenizer)"
        )
    try:
        return AutoTokenizer.from_pretrained(path), AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise PlannerError(f"model_config {path}: {' '.join(str(exc).split())}") from None


def open_policy(
    client: OpenAIClient,
    served_model: str,
    model_config: str | Path,
    *,
    template: PromptTemplate | None = None,
    step_delimiter: str = "\n",
    batch_size: int = 64,
    dtype: str = "float32",
    max_model_len: int | None = None,
    what: str = "model",
) -> OpenAIBackend:
    """Check the server (see `check_server`) and return its backend."""
    tok, hf_config = load_local(model_config)
    info = check_server(
        client, served_model, tok, model_config, hf_config, what=what, max_model_len=max_model_len
    )
    cfg = BackendConfig(
        model_dir=str(model_config),
        dtype=dtype,
        step_delimiter=step_delimiter,
        batch_size=batch_size,
        template=template or PromptTemplate(),
    )
    return OpenAIBackend(cfg, tok, hf_config, client, info)

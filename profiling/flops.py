"""Analytic inference FLOPs of decoder-only transformers, read from a Hugging Face config.

Counting rule (the one `torch.utils.flop_counter.FlopCounterMode` uses): a matrix multiply of an
(m x k) by a (k x n) matrix costs 2*m*k*n FLOPs. Per token and per layer:

- projections: 2*d*(n_heads*head_dim) for q and o, 2*d*(n_kv_heads*head_dim) for k and v (GQA);
- MLP: 2*d*d_ff per matrix, 3 matrices when gated (SwiGLU: Llama, Qwen2, Mistral), 2 otherwise
  (GPT-2);
- attention: QK^T and AV each 2*n_heads*head_dim*c, where c is the number of keys the token
  attends to; with a KV cache c is the cached context plus the token itself (`causal=True`).
  Dense attention kernels (eager, SDPA math) compute the full square for a prefill chunk whatever
  the causal mask; `causal=False` counts that (what FlopCounterMode reports);
- head: 2*d*vocab for every position whose logits are computed (`logits` argument; generation
  computes one position per step), or 2*d*num_labels for a classification head.

Not counted (they are O(d) per token, below 1% for any real model, and FlopCounterMode counts them
as 0 too): embeddings lookups, norms, activations, softmax, rotary embeddings, residual adds,
biases, sampling (top-p sort), and padding/holes that a batched kernel computes but that belong to
no real token. The weights read from memory (the decode bottleneck) are a time cost, not FLOPs.

Forward FLOPs are about 2*params per token (Kaplan et al. 2020: 2N + 2*n_layer*n_ctx*d_attn).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from planner.costs.modelspec import config_shape


@dataclass(frozen=True)
class ModelShape:
    """What the FLOPs of a decoder-only transformer depend on."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    gated_mlp: bool
    vocab_size: int
    head_out: int  # vocab size for an LM head, num_labels for a classification head

    def __post_init__(self) -> None:
        for name in (
            "n_layers",
            "d_model",
            "n_heads",
            "n_kv_heads",
            "head_dim",
            "d_ff",
            "vocab_size",
            "head_out",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"ModelShape.{name} must be > 0, got {getattr(self, name)}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError("n_heads must be a multiple of n_kv_heads")

    @property
    def linear_flops_per_token(self) -> float:
        """Projections and MLP over all layers, without attention scores and the head."""
        d, hd = self.d_model, self.head_dim
        attn = 2 * d * hd * (2 * self.n_heads + 2 * self.n_kv_heads)
        mlp = 2 * d * self.d_ff * (3 if self.gated_mlp else 2)
        return float(self.n_layers * (attn + mlp))

    @property
    def head_flops_per_token(self) -> float:
        return float(2 * self.d_model * self.head_out)

    @property
    def attn_flops_per_key(self) -> float:
        """QK^T and AV for one query against one key, all layers."""
        return float(self.n_layers * 4 * self.n_heads * self.head_dim)

    @property
    def non_embedding_params(self) -> int:
        d, hd = self.d_model, self.head_dim
        attn = d * hd * (2 * self.n_heads + 2 * self.n_kv_heads)
        mlp = d * self.d_ff * (3 if self.gated_mlp else 2)
        return self.n_layers * (attn + mlp)


def shape_from_config(cfg: Mapping[str, Any] | Any, *, head_out: int | None = None) -> ModelShape:
    """ModelShape of a Hugging Face config: a transformers config object or its `config.json` as a
    dict, read by the planner's one reader (`planner.costs.modelspec.config_shape`).

    `head_out` overrides the head's width (e.g. num_labels for a token-classification PRM).
    """
    if not isinstance(cfg, Mapping):
        # its json keys plus the attribute aliases a config answers to (GPT-2's n_embd is also
        # hidden_size): the keys a config.json may use either way
        cfg = {**cfg.to_dict(), **{a: getattr(cfg, a) for a in getattr(cfg, "attribute_map", {})}}
    s = config_shape(cfg)
    return ModelShape(
        n_layers=s.n_layers,
        d_model=s.hidden_size,
        n_heads=s.n_heads,
        n_kv_heads=s.n_kv_heads,
        head_dim=s.head_dim,
        d_ff=s.intermediate_size,
        gated_mlp=s.gated_mlp,
        vocab_size=s.vocab_size,
        head_out=int(head_out) if head_out is not None else s.vocab_size,
    )


def forward_flops(
    shape: ModelShape,
    n_tokens: int,
    past: int = 0,
    *,
    logits: int | None = None,
    causal: bool = True,
) -> float:
    """FLOPs of one forward pass over `n_tokens` new tokens after `past` cached tokens.

    logits: positions whose head output is computed (default all n_tokens; 1 for a decode step or
    a prefill with logits_to_keep=1). causal=False counts the dense square attention a
    non-causal-skipping kernel computes for the chunk (each query against all past+n_tokens keys).
    """
    if n_tokens < 0 or past < 0:
        raise ValueError("n_tokens and past must be >= 0")
    if n_tokens == 0:
        return 0.0
    n_logits = n_tokens if logits is None else logits
    if causal:
        keys = n_tokens * past + n_tokens * (n_tokens + 1) / 2
    else:
        keys = n_tokens * (past + n_tokens)
    return (
        n_tokens * shape.linear_flops_per_token
        + keys * shape.attn_flops_per_key
        + n_logits * shape.head_flops_per_token
    )


def generation_flops(
    shape: ModelShape, prompt_tokens: int, gen_tokens: int, *, prefill: bool = True
) -> float:
    """Prefill the prompt (logits at its last position), then decode `gen_tokens` tokens.

    The last sampled token is never fed back, so decoding feeds gen_tokens - 1 tokens, each
    computing logits. prefill=False when the prompt's KV cache is shared and counted elsewhere.
    """
    total = forward_flops(shape, prompt_tokens, 0, logits=1) if prefill and prompt_tokens else 0.0
    if gen_tokens > 1:
        total += forward_flops(shape, gen_tokens - 1, prompt_tokens)
    return total

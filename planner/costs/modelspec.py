"""Model shapes in pure Python: parameter count, layers, widths, heads, KV heads, vocabulary.

A `ModelSpec` is what the cost simulator needs to know about a model: how many parameters are read
per forward (weights traffic), how many multiply-adds a token costs, and how many bytes of KV cache
a token keeps. It comes from a shipped data row (`data/models/*.json`), from a local Hugging Face
`config.json` read with plain `json` (planner never imports torch or transformers), or is scaled
from another spec (`scaled`) for "a model M times larger".
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from planner.data import shipped_dir, shipped_names
from planner.errors import PlannerError

# Architectures whose MLP is gated (gate, up, down projections: 3·h·I weights) rather than 2·h·I.
_GATED = {
    "llama",
    "qwen2",
    "qwen3",
    "mistral",
    "mixtral",
    "gemma",
    "gemma2",
    "phi3",
    "olmo",
    "olmo2",
    "granite",
}
# GPT-style blocks: a plain two-matrix MLP whatever the activation.
_GPT = {"gpt2", "gpt_neo", "gptj", "gpt_bigcode"}
_DTYPE_BYTES = {
    "float32": 4,
    "float": 4,
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "int8": 1,
    "fp8": 1,
}


@dataclass(frozen=True)
class ModelSpec:
    """Shapes of a decoder-only transformer.

    n_params: total parameters (embeddings included, tied ones counted once).
    bytes_per_param: storage of weights and KV cache when served (2 for bf16/fp16).
    pretrain_tokens: tokens seen in pretraining (D_pretrain), when known; 0 when unknown.
    """

    name: str
    n_params: float
    n_layers: int
    hidden_size: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    intermediate_size: int = 0
    tied_embeddings: bool = False
    bytes_per_param: float = 2.0
    pretrain_tokens: float = 0.0
    # Learned position tables (GPT-2): looked up, not multiplied.
    position_params: float = 0.0
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.n_params) and self.n_params > 0):
            raise ValueError(
                f"model {self.name!r}: n_params must be positive, got {self.n_params!r}"
            )
        for f in ("n_layers", "hidden_size", "n_heads", "n_kv_heads", "head_dim", "vocab_size"):
            v = getattr(self, f)
            if not (isinstance(v, int) and v > 0):
                raise ValueError(f"model {self.name!r}: {f} must be a positive integer, got {v!r}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"model {self.name!r}: n_heads {self.n_heads} not a multiple of "
                f"n_kv_heads {self.n_kv_heads}"
            )
        if self.intermediate_size < 0 or self.pretrain_tokens < 0:
            raise ValueError(f"model {self.name!r}: sizes must be >= 0")
        if not self.bytes_per_param > 0:
            raise ValueError(f"model {self.name!r}: bytes_per_param must be positive")

    @property
    def d_attn(self) -> int:
        """Width of the attention (query heads × head dim)."""
        return self.n_heads * self.head_dim

    @property
    def matmul_params(self) -> float:
        """Parameters used in matrix multiplies per token: all but the input embedding lookup.

        Tied embeddings are the LM head too, so they stay in; an untied input table is a gather.
        """
        gathered = self.position_params + (
            0 if self.tied_embeddings else self.vocab_size * self.hidden_size
        )
        return max(self.n_params - gathered, 1.0)

    @property
    def weight_bytes(self) -> float:
        return self.n_params * self.bytes_per_param

    @property
    def kv_bytes_per_token(self) -> float:
        """KV cache per token: 2 (K and V) · layers · kv_heads · head_dim · bytes."""
        return 2.0 * self.n_layers * self.n_kv_heads * self.head_dim * self.bytes_per_param

    def flops_per_token(self, context: float) -> float:
        """Forward FLOPs for one token attending to `context` earlier tokens.

        2·P_matmul (one multiply-add per weight) + 4·n_layers·context·d_attn (QKᵀ and AV, each
        context·d_attn multiply-adds); Kaplan et al. 2020 Table 1 (their 2·n_layer·n_ctx·d_attn
        counts one of the two products over a full context).
        """
        return 2.0 * self.matmul_params + 4.0 * self.n_layers * max(context, 0.0) * self.d_attn

    def scaled(self, multiplier: float, name: str | None = None) -> ModelSpec:
        """A model `multiplier` times larger with the same aspect ratio (depth and width grow as
        the cube root, as in Kaplan-style families); for cost estimates of "M times larger"."""
        if not (math.isfinite(multiplier) and multiplier > 0):
            raise PlannerError(f"model multiplier must be positive, got {multiplier!r}")
        g = multiplier ** (1.0 / 3.0)
        layers = max(1, round(self.n_layers * g))
        heads = max(self.n_kv_heads, round(self.n_heads * g / self.n_kv_heads) * self.n_kv_heads)
        return replace(
            self,
            name=name or f"{self.name}x{multiplier:g}",
            n_params=self.n_params * multiplier,
            n_layers=layers,
            hidden_size=max(1, round(self.hidden_size * g)),
            n_heads=heads,
            intermediate_size=max(0, round(self.intermediate_size * g)),
            sources={
                **self.sources,
                "scaled": f"{multiplier:g}x {self.name}, depth and width x {g:.3f}",
            },
        )


# ----------------------------------------------------------------------------------------------
# Reading Hugging Face configs with plain json


def _get(cfg: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in cfg and cfg[k] is not None:
            return cfg[k]
    return default


@dataclass(frozen=True)
class ConfigShape:
    """The layer shapes a Hugging Face `config.json` declares (the one reader of them: parameter
    counts here, analytic FLOPs in `profiling.flops`). `model_type` is lower case."""

    model_type: str
    hidden_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate_size: int
    gated_mlp: bool
    vocab_size: int


def config_shape(cfg: Mapping[str, Any]) -> ConfigShape:
    """Shapes of a Llama / Qwen2 / Mistral / Granite / GPT-2 style config (plain json keys, either
    naming). Gated MLPs: the Llama family by model type, or a SiLU / SwiGLU `hidden_act`; never
    the GPT family. Raises KeyError, TypeError or ValueError when a shape is missing."""
    h = int(_get(cfg, "hidden_size", "n_embd", "d_model"))
    heads = int(_get(cfg, "num_attention_heads", "n_head", "num_heads"))
    mtype = str(cfg.get("model_type", "")).lower()
    act = str(cfg.get("hidden_act", "")).lower()
    return ConfigShape(
        model_type=mtype,
        hidden_size=h,
        n_layers=int(_get(cfg, "num_hidden_layers", "n_layer", "num_layers")),
        n_heads=heads,
        n_kv_heads=int(_get(cfg, "num_key_value_heads", default=heads)),
        head_dim=int(_get(cfg, "head_dim", default=h // heads)),
        intermediate_size=int(
            _get(cfg, "intermediate_size", "n_inner", "ffn_dim", default=4 * h) or 4 * h
        ),
        gated_mlp=mtype not in _GPT and (mtype in _GATED or act in ("silu", "swiglu")),
        vocab_size=int(cfg["vocab_size"]),
    )


def params_from_config(cfg: dict[str, Any]) -> float:
    """Parameter count of a decoder-only transformer from its config (embeddings counted once
    when tied). Gated MLPs (Llama, Qwen2, Mistral) have 3·h·I weights, others 2·h·I; Qwen2 adds
    q/k/v biases. Norm weights are included; rotary tables hold no parameters."""
    s = config_shape(cfg)
    h, heads, kv, hd = s.hidden_size, s.n_heads, s.n_kv_heads, s.head_dim
    inter, mtype = s.intermediate_size, s.model_type
    tied = bool(cfg.get("tie_word_embeddings", mtype in ("gpt2",)))
    attn = h * heads * hd + 2 * h * kv * hd + heads * hd * h
    if bool(cfg.get("attention_bias", mtype in ("qwen2", "gpt2"))):
        attn += heads * hd + 2 * kv * hd + (h if mtype == "gpt2" else 0)
    # GPT-2's two MLP matrices have biases
    mlp = (3 if s.gated_mlp else 2) * h * inter + (inter + h if mtype == "gpt2" else 0)
    norms = 2 * h * (2 if mtype == "gpt2" else 1)
    per_layer = attn + mlp + norms
    embed = s.vocab_size * h
    pos = int(cfg.get("n_positions", 0)) * h if mtype == "gpt2" else 0
    final_norm = 2 * h if mtype == "gpt2" else h  # GPT-2's LayerNorm has a bias
    return float(s.n_layers * per_layer + embed * (1 if tied else 2) + final_norm + pos)


def _safetensors_params(folder: Path) -> float | None:
    """Exact parameter count from the JSON headers of `*.safetensors` files, if any."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                return None
            (n,) = struct.unpack("<Q", raw)
            if n > 100_000_000:
                return None
            header = json.loads(fh.read(n))
        for k, v in header.items():
            if k == "__metadata__":
                continue
            total += math.prod(v.get("shape", []))
    return float(total)


def spec_from_config(
    cfg: dict[str, Any],
    name: str,
    source: str,
    n_params: float | None = None,
    pretrain_tokens: float = 0.0,
    bytes_per_param: float | None = None,
) -> ModelSpec:
    try:
        s = config_shape(cfg)
        gpt2 = s.model_type == "gpt2"
        spec_params = float(n_params) if n_params else params_from_config(cfg)
        dtype = str(cfg.get("torch_dtype", cfg.get("dtype", "bfloat16")))
        return ModelSpec(
            name=name,
            n_params=spec_params,
            n_layers=s.n_layers,
            hidden_size=s.hidden_size,
            n_heads=s.n_heads,
            n_kv_heads=s.n_kv_heads,
            head_dim=s.head_dim,
            vocab_size=s.vocab_size,
            intermediate_size=s.intermediate_size,
            tied_embeddings=bool(cfg.get("tie_word_embeddings", gpt2)),
            bytes_per_param=bytes_per_param or float(_DTYPE_BYTES.get(dtype, 2)),
            pretrain_tokens=float(pretrain_tokens),
            position_params=float(cfg.get("n_positions", 0)) * s.hidden_size if gpt2 else 0.0,
            sources={"config": source},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PlannerError(
            f"{source}: not a decoder config this reader understands ({exc})"
        ) from None


def read_hf_config(path: str | os.PathLike[str], name: str | None = None) -> ModelSpec:
    """A spec from a local Hugging Face model folder or its `config.json` (plain json).

    The parameter count is exact when the folder holds safetensors (their JSON headers list every
    tensor's shape); otherwise it is computed from the config's shapes.
    """
    p = Path(path)
    cfg_path = p / "config.json" if p.is_dir() else p
    if not cfg_path.is_file():
        raise PlannerError(f"{cfg_path}: config.json not found")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PlannerError(f"{cfg_path}: not valid JSON ({exc.msg})") from None
    if not isinstance(cfg, dict):
        raise PlannerError(f"{cfg_path}: a config must be a JSON object")
    n = _safetensors_params(cfg_path.parent)
    return spec_from_config(cfg, name or cfg_path.parent.name, str(cfg_path), n_params=n)


def known_models() -> list[str]:
    return shipped_names("models", ".json")


def load_model(name_or_path: str | os.PathLike[str]) -> ModelSpec:
    """A shipped model row by name (`llama-3.1-8b`), a data-row JSON, or a Hugging Face
    config.json / model folder by path."""
    text = str(name_or_path)
    p = Path(text)
    if not p.exists():
        p = shipped_dir("models") / f"{text.lower()}.json"
        if not p.is_file():
            raise PlannerError(
                f"unknown model {text!r}; known: {', '.join(known_models())} "
                "(or give a Hugging Face model folder or config.json path)"
            )
    if p.is_dir() or p.name == "config.json":
        return read_hf_config(p)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PlannerError(f"{p}: not valid JSON ({exc.msg})") from None
    if isinstance(doc, dict) and "config" in doc and "name" in doc:
        n = doc.get("n_params", {})
        d = doc.get("pretrain_tokens", {})
        spec = spec_from_config(
            doc["config"],
            doc["name"],
            str(p),
            n_params=n.get("value") if isinstance(n, dict) else None,
            pretrain_tokens=float(d.get("value", 0.0)) if isinstance(d, dict) else 0.0,
        )
        srcs = {"config": doc.get("config_source", str(p))}
        if isinstance(n, dict):
            srcs["n_params"] = str(n.get("source", ""))
        if isinstance(d, dict):
            srcs["pretrain_tokens"] = str(d.get("source", ""))
        return replace(spec, sources=srcs)
    if isinstance(doc, dict):
        return spec_from_config(doc, p.stem, str(p), n_params=_safetensors_params(p.parent))
    raise PlannerError(f"{p}: a model spec must be a JSON object")

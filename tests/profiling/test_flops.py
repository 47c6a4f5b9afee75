"""profiling.flops against torch's FlopCounterMode on random tiny configs (eager attention)."""

from __future__ import annotations

import pytest
import torch
from profiling_tiny import single_thread  # noqa: F401  (autouse fixture)
from torch.utils.flop_counter import FlopCounterMode

from models.decoding._runners import cache_argument
from profiling.flops import forward_flops, generation_flops, shape_from_config

transformers = pytest.importorskip("transformers")

CONFIGS = {
    "llama_gqa": lambda: transformers.LlamaConfig(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=256,
    ),
    "qwen2": lambda: transformers.Qwen2Config(
        vocab_size=151,
        hidden_size=96,
        intermediate_size=224,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=3,
        max_position_embeddings=256,
    ),
    "mistral": lambda: transformers.MistralConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=256,
    ),
    "gpt2": lambda: transformers.GPT2Config(
        vocab_size=80,
        n_embd=64,
        n_layer=3,
        n_head=4,
        n_positions=256,
        bos_token_id=0,
        eos_token_id=0,
    ),
}

LINEAR_OPS = {"mm", "addmm"}
ATTN_OPS = {"bmm", "baddbmm"}


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = CONFIGS[name]()
    cfg._attn_implementation = "eager"
    return transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()


def _counts(fn) -> tuple[float, float, float]:
    mode = FlopCounterMode(display=False)
    with torch.no_grad(), mode:
        fn()
    by_op = {str(op).split(".")[-1]: v for op, v in mode.get_flop_counts()["Global"].items()}
    linear = sum(v for k, v in by_op.items() if k in LINEAR_OPS)
    attn = sum(v for k, v in by_op.items() if k in ATTN_OPS)
    return float(mode.get_total_flops()), float(linear), float(attn)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("batch,length", [(1, 17), (3, 40)])
def test_prefill_matches_flop_counter(name: str, batch: int, length: int) -> None:
    model = _model(name)
    shape = shape_from_config(model.config)
    ids = torch.randint(0, shape.vocab_size, (batch, length))
    total, linear, attn = _counts(lambda: model(ids))
    assert attn > 0, "eager attention should expose its matmuls"
    expected = batch * forward_flops(shape, length, 0, causal=False)
    expected_linear = batch * length * (shape.linear_flops_per_token + shape.head_flops_per_token)
    assert linear == pytest.approx(expected_linear, rel=0.01)
    assert total == pytest.approx(expected, rel=0.05)
    # The causal count is what the model needs; it sits below the dense one.
    assert forward_flops(shape, length, 0) < forward_flops(shape, length, 0, causal=False)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_decode_step_with_kv_cache_matches_flop_counter(name: str) -> None:
    model = _model(name)
    shape = shape_from_config(model.config)
    past = 23
    ids = torch.randint(0, shape.vocab_size, (2, past))
    name = cache_argument(model)  # `cache` in recent transformers, `past_key_values` before
    with torch.no_grad():
        cache = model(ids, use_cache=True)[name]
    nxt = torch.randint(0, shape.vocab_size, (2, 1))
    total, linear, _ = _counts(lambda: model(nxt, use_cache=True, **{name: cache}))
    assert total == pytest.approx(2 * forward_flops(shape, 1, past), rel=0.05)
    assert linear == pytest.approx(
        2 * (shape.linear_flops_per_token + shape.head_flops_per_token), rel=0.01
    )


def test_generation_flops_is_prefill_plus_decode_and_about_2n_per_token() -> None:
    model = _model("llama_gqa")
    shape = shape_from_config(model.config)
    g = generation_flops(shape, 10, 5)
    manual = forward_flops(shape, 10, 0, logits=1) + sum(
        forward_flops(shape, 1, 10 + i) for i in range(4)
    )
    assert g == pytest.approx(manual)
    n_params = sum(p.numel() for p in model.parameters()) - shape.vocab_size * shape.d_model
    # At short context, per-token FLOPs are about 2 x (non-embedding params + head).
    per_token = forward_flops(shape, 1, 0)
    assert per_token == pytest.approx(2 * n_params, rel=0.1)


def test_shape_validation() -> None:
    cfg = CONFIGS["llama_gqa"]()
    shape = shape_from_config(cfg)
    assert shape.gated_mlp and shape.n_kv_heads == 2 and shape.head_dim == 8
    assert not shape_from_config(CONFIGS["gpt2"]()).gated_mlp
    with pytest.raises(ValueError):
        forward_flops(shape, -1)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_config_object_and_its_json_give_one_shape(name: str) -> None:
    """One reader (the planner's, plain json): a transformers config reads as its config.json."""
    import json

    cfg = CONFIGS[name]()
    assert shape_from_config(cfg) == shape_from_config(json.loads(cfg.to_json_string()))


def test_granite_is_a_gated_mlp_like_llama() -> None:
    from planner.costs.modelspec import config_shape

    base = {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "vocab_size": 80,
    }
    # by model type, without an activation to go by
    assert config_shape({**base, "model_type": "granite"}).gated_mlp
    assert config_shape({**base, "model_type": "llama"}).gated_mlp
    assert not config_shape({**base, "model_type": "gpt2", "hidden_act": "silu"}).gated_mlp
    assert not config_shape({**base, "model_type": "opt", "hidden_act": "relu"}).gated_mlp

"""Tiny real models for the profiling tests (random weights, real code paths, saved to disk).

The policy gets a constant residual dimension whose LM-head weights favour the newline and eos
tokens, so random sampling still produces multi-step solutions that end (a bias without a bias
parameter, since Llama's head has none).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

from models.testbed.task import format_prompt
from models.testbed.tokenizer import build_tokenizer
from profiling.problems import Problem


def tokenizer():
    return build_tokenizer()


def _llama_cfg(tok, **kw):
    base = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    base.update(kw)
    return transformers.LlamaConfig(**base)


def _bias_tokens(model, boosts: dict[int, float]) -> None:
    """Make residual dim 0 a constant and give chosen tokens a logit bonus through it."""
    with torch.no_grad():
        inner = model.model
        inner.embed_tokens.weight[:, 0] = 4.0
        for layer in inner.layers:
            layer.self_attn.o_proj.weight[0, :] = 0.0
            layer.mlp.down_proj.weight[0, :] = 0.0
        model.lm_head.weight[:, 0] = 0.0
        for t, b in boosts.items():
            model.lm_head.weight[t, 0] = b


def save_policy(
    path: Path, *, seed: int = 0, newline_boost: float = 0.55, eos_boost: float = 0.3
) -> Path:
    tok = tokenizer()
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(_llama_cfg(tok)).eval()
    nl = tok.convert_tokens_to_ids("\n")
    _bias_tokens(model, {nl: newline_boost, tok.eos_token_id: eos_boost})
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_lm_prm(path: Path, *, seed: int = 1) -> Path:
    tok = tokenizer()
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(_llama_cfg(tok, hidden_size=48)).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<' + m['role'] + '>' + m['content'] + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<assistant>' }}{% endif %}"
)


def save_chat_prm(path: Path, *, seed: int = 3) -> Path:
    """A causal LM whose tokenizer has a chat template (an RLHFlow-format PRM's shape)."""
    tok = tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(_llama_cfg(tok, hidden_size=48)).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_token_class_prm(
    path: Path, *, num_labels: int, arch: str = "llama", seed: int = 2
) -> Path:
    tok = tokenizer()
    torch.manual_seed(seed)
    if arch == "llama":
        cfg = _llama_cfg(tok, num_labels=num_labels)
        model = transformers.LlamaForTokenClassification(cfg)
    else:
        cfg = transformers.Qwen2Config(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            num_labels=num_labels,
            pad_token_id=tok.pad_token_id,
        )
        model = transformers.Qwen2ForTokenClassification(cfg)
    model.eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def problems(k: int = 3) -> list[Problem]:
    qs = ["3+8*2-5", "7-2", "4*4+1", "9-3*2", "2+2+2"]
    ans = ["14", "5", "17", "3", "6"]
    return [Problem(f"p{i}", format_prompt(qs[i]), ans[i], level=str(i % 3 + 1)) for i in range(k)]


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models run far faster on one thread (and the CI machine's two cores are shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

"""Where the tests find vLLM, what a started server fixture gives (`Served`), the checkpoint the
pooling server serves (`save_value_head_prm`), and long distinct prompts (`long_prompts`: what
makes vLLM prefill in parts)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = Path(os.environ.get("TTC_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))


@dataclass(frozen=True)
class Served:
    """A running server and the local folder of the model it serves."""

    url: str
    name: str
    model_dir: Path
    max_model_len: int


def require_vllm() -> None:
    """Skip (locally) or fail (CI=true) when the vLLM venv is absent."""
    if VLLM_PYTHON.exists():
        return
    reason = f"no vLLM venv at {VLLM_PYTHON} (create it as .ci/run does)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def save_value_head_prm(prm_dir: Path, out: Path) -> Path:
    """A one-label `LlamaForTokenClassification` PRM on a step-tag PRM's decoder, its head the
    tag head's logit(good) - logit(bad) (what vLLM builds from a causal PRM with
    `--convert classify` and `method: from_2_way_softmax`): its sigmoid at a tag is the step-tag
    PRM's P(good). Read at the tag (`separator` = the tag), as a value-head PRM."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        LlamaConfig,
        LlamaForTokenClassification,
    )

    from profiling.verifiers.base import load_meta

    meta = load_meta(prm_dir)
    tok = AutoTokenizer.from_pretrained(prm_dir)
    lm = AutoModelForCausalLM.from_pretrained(prm_dir, use_safetensors=True)
    good, bad = (tok.convert_tokens_to_ids(meta[k]) for k in ("good_token", "bad_token"))
    cfg = lm.config.to_dict()
    cfg = {k: v for k, v in cfg.items() if k not in ("id2label", "label2id")}
    cfg.update(num_labels=1, architectures=["LlamaForTokenClassification"])
    model = LlamaForTokenClassification(LlamaConfig(**cfg)).eval()
    model.model.load_state_dict(lm.model.state_dict())
    with torch.no_grad():
        w = lm.lm_head.weight
        model.score.weight.copy_((w[good] - w[bad])[None])
        if model.score.bias is not None:
            model.score.bias.zero_()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    verifier = {"format": "token_class", "separator": meta["step_tag"]}
    (out / "verifier.json").write_text(json.dumps(verifier))
    return out


def long_prompts(backend: Any, count: int, min_tokens: int) -> list[list[int]]:
    """`count` distinct few-shot prompts of at least `min_tokens` tokens (testbed problems with
    their answers, each prompt starting at another problem, so no two share a prefix block)."""
    from profiling.sweep.datasets import DataSpec, load_problems

    problems = load_problems(DataSpec(source="testbed", n=count + 200)).problems
    out = []
    for i in range(count):
        shots, k = "", i
        while len(backend.text_ids(shots)) < min_tokens:
            p = problems[k % len(problems)]
            shots += f"{p.prompt}Answer: {p.answer}\n\n"
            k += 1
        out.append(backend.text_ids(shots + problems[-1 - i].prompt))
    return out

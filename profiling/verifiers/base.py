"""What every verifier shares: candidates, scores, the protocol, and loading a scoring model.

A verifier scores each step of a candidate solution (`score(candidates) -> list[Scored]`); `agg`
names how its step scores become the row's `score` (`planner.strategies.aggregate`) and
`mode="outcome"` scores only the whole solution (one score, at its end).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from models.lean import LeanRunner, lean_supported
from planner.strategies import AGGS
from profiling.flops import ModelShape, shape_from_config
from profiling.problems import Problem

MODES = ("process", "outcome")


@dataclass
class Candidate:
    """A (partial or complete) solution: the policy's tokens split into steps.

    segments: the decoded text of each step including its delimiter (the last may lack it);
    seg_tokens: how many policy tokens each segment has (to map log-probs to steps).
    """

    problem: Problem
    segments: list[str]
    logprobs: list[float] = field(default_factory=list)
    seg_tokens: list[int] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.segments)


@dataclass
class Scored:
    step_scores: list[float]
    flops: float


class Verifier(Protocol):
    verifier_id: str
    agg: str
    mode: str

    def score(self, candidates: Sequence[Candidate]) -> list[Scored]: ...


def strip_delim(segment: str, delimiter: str) -> str:
    return segment[: -len(delimiter)] if segment.endswith(delimiter) else segment


def step_texts(c: Candidate, delimiter: str, mode: str) -> list[str]:
    steps = [strip_delim(s, delimiter) for s in c.segments]
    steps = [s for s in steps if s.strip()]
    if mode == "outcome" and steps:
        return [delimiter.join(steps)]
    return steps


def tagged_ids(
    prompt_ids: list[int],
    steps: Sequence[str],
    enc: Any,
    separator: str | None,
    tag_ids: Sequence[int],
) -> tuple[list[int], list[int]]:
    """A step-tag PRM's input (prompt, then each step followed by the tag, steps joined by
    `separator`) and the position of every tag, where the step's score is read."""
    ids = list(prompt_ids)
    tags: list[int] = []
    for i, step in enumerate(steps):
        if i and separator:
            ids += enc(separator)
        ids += [*enc(step), *tag_ids]
        tags.append(len(ids) - 1)
    return ids, tags


def check_agg_mode(agg: str, mode: str) -> None:
    if agg not in AGGS:
        raise ValueError(f"agg must be one of {AGGS}, got {agg!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def left_pad(
    seqs: Sequence[Sequence[int]], pad: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, width - len(s) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(1) - 1).clamp_min(0)
    return ids, mask, pos, width


_ENC_CACHE_MAX = 200_000  # entries (step texts); cleared when full


class PromptEncoder:
    """A verifier's prompt rendering and cached tokenisation, whether its weights are here
    (`HFScorer`) or on a server: the subclass sets `tokenizer`, `template`,
    `add_special_tokens` and an empty `_enc_cache`."""

    tokenizer: Any
    template: str
    add_special_tokens: bool
    _enc_cache: dict[tuple[str, bool], tuple[int, ...]]

    def enc(self, text: str, special: bool = False) -> list[int]:
        # Search re-scores every partial solution each round: the same step texts come back
        # again and again, and a tokenizer call costs more than this tiny model's forward.
        key = (text, special)
        cache = self._enc_cache
        ids = cache.get(key)
        if ids is None:
            if len(cache) >= _ENC_CACHE_MAX:
                cache.clear()
            ids = cache[key] = tuple(self.tokenizer.encode(text, add_special_tokens=special))
        return list(ids)

    def prompt_ids(self, c: Candidate) -> list[int]:
        text = self.template.format(prompt=c.problem.prompt)
        return self.enc(text, self.add_special_tokens)


class HFScorer(PromptEncoder):
    """Shared loading, prompt rendering and tokenisation of a verifier model."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        template: str = "{prompt}",
        delimiter: str = "\n",
        add_special_tokens: bool = True,
        batch_size: int = 16,
        head_out: int | None = None,
    ) -> None:
        if "{prompt}" not in template:
            raise ValueError("verifier template must contain '{prompt}'")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = template
        self.delimiter = delimiter
        self.add_special_tokens = add_special_tokens
        self.batch_size = batch_size
        self.shape: ModelShape = shape_from_config(model.config, head_out=head_out)
        pad = tokenizer.pad_token_id
        self.pad = int(pad if pad is not None else (tokenizer.eos_token_id or 0))
        self.device = next(model.parameters()).device
        self._enc_cache = {}

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Final hidden states [B, T, H] of a causal LM (its base model's output).

        Llama-family models run through the lean forward of `models.lean` (same maths, a
        fraction of the Python work per call: this is called every search round)."""
        if lean_supported(self.model):
            runner = LeanRunner.for_model(self.model)
            return runner.forward(
                runner.new_cache(ids.shape[0]), ids, pos, mask, keep_all=True, head=False
            )
        return self.model.base_model(
            input_ids=ids, attention_mask=mask, position_ids=pos
        ).last_hidden_state


def load_meta(model_dir: Path) -> dict[str, Any]:
    """A PRM's tag/label tokens, template, separator: `verifier.json` in its directory, else
    the `prm` section of a testbed `manifest.json` one level up."""
    f = model_dir / "verifier.json"
    if f.exists():
        return json.loads(f.read_text())
    manifest = model_dir.parent / "manifest.json"
    if model_dir.name == "prm" and manifest.exists():
        section = json.loads(manifest.read_text()).get("prm", {})
        return {k: section[k] for k in ("step_tag", "good_token", "bad_token") if k in section}
    return {}


def meta_for(path: Path, keys: Sequence[str], kwargs: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in load_meta(path).items() if k in keys}
    meta.update(kwargs)
    return meta


def load_causal(path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    return model, AutoTokenizer.from_pretrained(path)


def incremental(verifier: Verifier) -> contextlib.AbstractContextManager:
    """The verifier's `incremental()` block when it has one (see `profiling.verifiers.prm`)."""
    inc = getattr(verifier, "incremental", None)
    return inc() if inc is not None else contextlib.nullcontext()

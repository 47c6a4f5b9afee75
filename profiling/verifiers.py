"""Verifiers: score each step of a candidate solution.

Three kinds, one interface (`score(candidates) -> list[Scored]`):

- `LMCandidatePRM` (Math-Shepherd shape): a causal LM reads the solution with a step tag after
  every step; a step's score is P(good) over the {good, bad} token logits at its tag.
- `RLHFlowPRM` (RLHFlow shape): a chat, each step a user turn answered `+` by the assistant; a
  step's score is P(good) vs P(bad) where the assistant's reply is predicted. Both share the
  candidate-token read (`_CandidateTokenPRM`); `load_prm` picks the adapter (see its docstring
  for pointing them at Math-Shepherd, RLHFlow and Qwen2.5-Math-PRM checkpoints).
- `TokenClassPRM`: an AutoModelForTokenClassification (1 label: sigmoid; 2 labels: softmax, a
  chosen positive class) read at each step's end (after an optional separator).
- `LikelihoodVerifier`: no training; a step's score is exp(mean or min token log-prob of the
  step's tokens) under the policy itself (`SelfLikelihood`, free: the log-probs were kept while
  sampling) or under any other local LM (its forward passes are verifier FLOPs).

`mode="outcome"` scores only the whole solution (one score, at its end). Step scores lie in
[0, 1] (PRMs) or (0, 1] (likelihood); `aggregate` turns them into one score (`last` default).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from profiling.flops import ModelShape, forward_flops, shape_from_config
from profiling.problems import Problem

AGGREGATIONS = ("last", "min", "prod", "mean")
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
    prompt_text: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.segments)


@dataclass
class Scored:
    step_scores: list[float]
    flops: float


def aggregate(step_scores: Sequence[float], agg: str = "last") -> float:
    """One score from step scores; 0.0 for a solution without steps (never NaN)."""
    if agg not in AGGREGATIONS:
        raise ValueError(f"agg must be one of {AGGREGATIONS}, got {agg!r}")
    if not step_scores:
        return 0.0
    if agg == "last":
        return float(step_scores[-1])
    if agg == "min":
        return float(min(step_scores))
    if agg == "prod":
        return float(math.prod(step_scores))
    return float(sum(step_scores) / len(step_scores))


class Verifier(Protocol):
    verifier_id: str
    agg: str
    mode: str

    def score(self, candidates: Sequence[Candidate]) -> list[Scored]: ...


def _strip_delim(segment: str, delimiter: str) -> str:
    return segment[: -len(delimiter)] if segment.endswith(delimiter) else segment


def _step_texts(c: Candidate, delimiter: str, mode: str) -> list[str]:
    steps = [_strip_delim(s, delimiter) for s in c.segments]
    steps = [s for s in steps if s.strip()]
    if mode == "outcome" and steps:
        return [delimiter.join(steps)]
    return steps


def _check(agg: str, mode: str) -> None:
    if agg not in AGGREGATIONS:
        raise ValueError(f"agg must be one of {AGGREGATIONS}, got {agg!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _left_pad(seqs: Sequence[Sequence[int]], pad: int, device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, width - len(s):] = 1
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(1) - 1).clamp_min(0)
    return ids, mask, pos, width


_ENC_CACHE_MAX = 200_000  # entries (step texts); cleared when full


class _HFScorer:
    """Shared loading, prompt rendering and tokenisation of a verifier model."""

    def __init__(self, model: Any, tokenizer: Any, *, template: str = "{prompt}",
                 delimiter: str = "\n", add_special_tokens: bool = True, batch_size: int = 16,
                 head_out: int | None = None) -> None:
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
        self._enc_cache: dict[tuple[str, bool], tuple[int, ...]] = {}

    def enc(self, text: str, special: bool = False) -> list[int]:
        # Search re-scores every partial solution each round: the same step texts come back
        # again and again, and a tokenizer call costs more than this tiny model's forward.
        key = (text, special)
        ids = self._enc_cache.get(key)
        if ids is None:
            if len(self._enc_cache) >= _ENC_CACHE_MAX:
                self._enc_cache.clear()
            ids = self._enc_cache[key] = tuple(self.tokenizer.encode(
                text, add_special_tokens=special))
        return list(ids)

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Final hidden states [B, T, H] of a causal LM (its base model's output).

        Llama-family models run through the lean forward of `models.lean` (same maths, a
        fraction of the Python work per call: this is called every search round)."""
        from models.lean import LeanRunner, lean_supported

        if lean_supported(self.model):
            runner = LeanRunner.for_model(self.model)
            return runner.forward(runner.new_cache(ids.shape[0]), ids, pos, mask,
                                  keep_all=True, head=False)
        return self.model.base_model(input_ids=ids, attention_mask=mask,
                                     position_ids=pos).last_hidden_state

    def prompt_ids(self, c: Candidate) -> list[int]:
        text = self.template.format(prompt=c.problem.prompt)
        return self.enc(text, self.add_special_tokens)


def _load_meta(model_dir: Path) -> dict[str, Any]:
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


def _meta_for(path: Path, keys: Sequence[str], kwargs: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in _load_meta(path).items() if k in keys}
    meta.update(kwargs)
    return meta


def _load_causal(path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    return model, AutoTokenizer.from_pretrained(path)


class _CandidateTokenPRM:
    """A causal-LM PRM read at chosen positions: P(good) over the {good, bad} token logits.

    The two LM formats (Math-Shepherd step tags, RLHFlow chat turns) differ only in how a
    solution becomes token ids and which positions predict a step's label (`_build`); the
    batched forward, the head at those positions only, and the FLOPs are shared here.
    """

    format: str = ""

    def __init__(self, model: Any, tokenizer: Any, *, name: str, good_token: str,
                 bad_token: str, template: str = "{prompt}", delimiter: str = "\n",
                 agg: str = "last", mode: str = "process", add_special_tokens: bool = True,
                 batch_size: int = 16) -> None:
        _check(agg, mode)
        self.s = _HFScorer(model, tokenizer, template=template, delimiter=delimiter,
                           add_special_tokens=add_special_tokens, batch_size=batch_size)
        good, bad = self.s.enc(good_token), self.s.enc(bad_token)
        if len(good) != 1 or len(bad) != 1:
            raise ValueError(f"PRM {name}: the good/bad labels must encode to exactly one token "
                             f"each (got {good}, {bad})")
        self.good, self.bad = good[0], bad[0]
        self.agg, self.mode = agg, mode
        suffix = "" if mode == "process" else ":outcome"
        self.verifier_id = f"prm:{name}{suffix}"

    def _build(self, c: Candidate) -> tuple[list[int], list[int]]:
        """Token ids of the candidate and the positions whose next-token logits are read."""
        raise NotImplementedError

    _inc: _PrefixState | None = None

    @contextlib.contextmanager
    def incremental(self) -> Iterator[None]:
        """Within this block each `score` call reuses the KV rows of the previous call's
        candidates: a candidate that extends one of them (at one of its read positions) feeds
        only its new tokens, and the earlier steps keep their scores. Search scores every
        partial solution every round; this reads each step once instead of once per round.
        FLOPs count only the tokens fed (with the attention over the reused prefix).

        Scoped, so a score never depends on what was scored before the block (determinism,
        honest costs). Needs a Llama-family model (`models.lean`); otherwise a no-op. All
        candidates of a call are read in one batch (their KV rows are kept until the next
        call), so `batch_size` does not bound memory here.
        """
        from models.lean import lean_supported

        if not lean_supported(self.s.model) or self._inc is not None:
            yield
            return
        self._inc = _PrefixState()
        try:
            yield
        finally:
            self._inc = None

    @torch.no_grad()
    def score(self, candidates: Sequence[Candidate]) -> list[Scored]:
        built = [self._build(c) for c in candidates]
        if self._inc is not None:
            return self._score_incremental(built)
        out: list[Scored] = [Scored([], 0.0) for _ in candidates]
        order = [i for i in sorted(range(len(built)), key=lambda i: len(built[i][0]))
                 if built[i][1]]
        for start in range(0, len(order), self.s.batch_size):
            chunk = order[start:start + self.s.batch_size]
            ids, mask, pos, width = _left_pad([built[i][0] for i in chunk], self.s.pad,
                                              self.s.device)
            hidden = self.s.hidden(ids, mask, pos)
            for r, i in enumerate(chunk):
                seq, at_pos = built[i]
                at = torch.as_tensor([width - len(seq) + t for t in at_pos],
                                     device=self.s.device)
                flops = forward_flops(self.s.shape, len(seq), 0, logits=len(at_pos))
                out[i] = Scored(self._read(hidden[r, at]), flops)
        return out

    def _read(self, hidden: torch.Tensor) -> list[float]:
        """P(good) over {good, bad} from final hidden states [K, H] at read positions (only
        those go through the LM head: that is all a PRM needs)."""
        head = self.s.model.get_output_embeddings()
        logits = head(hidden).float()[:, [self.good, self.bad]]
        return [float(x) for x in logits.softmax(-1)[:, 0].tolist()]

    @torch.no_grad()
    def _score_incremental(self, built: list[tuple[list[int], list[int]]]) -> list[Scored]:
        from models.lean import LeanRunner

        prev = self._inc
        assert prev is not None
        out: list[Scored] = [Scored([], 0.0) for _ in built]
        todo = [i for i, (_, reads) in enumerate(built) if reads]
        if not todo:
            return out
        # the longest prefix (ending at one of its read positions) held by a previous row
        src, plen, known = [], [], []
        for i in todo:
            ids, reads = built[i]
            hit = None
            for j in range(len(reads) - 1, -1, -1):
                hit = prev.index.get(tuple(ids[:reads[j] + 1]))
                if hit is not None:
                    break
            row, scores = hit if hit is not None else (-1, ())
            src.append(row)
            known.append(list(scores))
            plen.append(built[i][1][len(scores) - 1] + 1 if scores else 0)
        runner = LeanRunner.for_model(self.s.model)
        dev = self.s.device
        b = len(todo)
        plen_t = torch.as_tensor(plen, dtype=torch.long, device=dev)
        if prev.cache is None or max(src) < 0:
            cache = runner.new_cache(b)
            mask = torch.zeros((b, 0), dtype=torch.long, device=dev)
        else:
            idx = torch.as_tensor([max(r, 0) for r in src], dtype=torch.long, device=dev)
            cache = prev.cache.fork(idx)
            mask = prev.mask.index_select(0, idx)
            # keep each row's first plen real tokens (0 for rows with no cached prefix): the
            # rest become holes, which positions per row make harmless
            mask = mask * (mask.cumsum(1) <= plen_t[:, None]).long()
            mask = _squeeze_holes(cache, mask)
        new = [built[i][0][p:] for i, p in zip(todo, plen, strict=True)]
        width = max(len(t) for t in new)
        ids = torch.full((b, max(width, 1)), self.s.pad, dtype=torch.long)
        real = torch.zeros((b, max(width, 1)), dtype=torch.long)
        for r, t in enumerate(new):
            if t:
                ids[r, :len(t)] = torch.as_tensor(t, dtype=torch.long)
                real[r, :len(t)] = 1
        ids, real = ids.to(dev), real.to(dev)
        pos = plen_t[:, None] + torch.arange(ids.shape[1], device=dev)[None, :]
        mask = torch.cat([mask, real], dim=1)
        hidden = runner.forward(cache, ids, pos, mask, keep_all=True, head=False)
        fresh = [[t - plen[r] for t in built[i][1][len(known[r]):]] for r, i in enumerate(todo)]
        # one head call for every read position of the batch
        at_r = torch.as_tensor([r for r, f in enumerate(fresh) for _ in f], dtype=torch.long,
                               device=dev)
        at_t = torch.as_tensor([t for f in fresh for t in f], dtype=torch.long, device=dev)
        read = self._read(hidden[at_r, at_t]) if len(at_t) else []
        index: dict[tuple[int, ...], tuple[int, tuple[float, ...]]] = {}
        k = 0
        for r, i in enumerate(todo):
            seq, reads = built[i]
            scores = known[r] + read[k:k + len(fresh[r])]
            k += len(fresh[r])
            flops = (forward_flops(self.s.shape, len(new[r]), plen[r], logits=len(fresh[r]))
                     if new[r] else 0.0)
            out[i] = Scored(scores, flops)
            for j, t in enumerate(reads):
                index[tuple(seq[:t + 1])] = (r, tuple(scores[:j + 1]))
        prev.cache, prev.mask, prev.index = cache, mask, index
        return out


class _PrefixState:
    """The KV rows of a verifier's previous `score` call, and which prefix each row holds."""

    def __init__(self) -> None:
        self.cache: Any = None
        self.mask: torch.Tensor | None = None
        # token prefix ending at a read position -> (row, scores of the reads up to it)
        self.index: dict[tuple[int, ...], tuple[int, tuple[float, ...]]] = {}


def _squeeze_holes(cache: Any, mask: torch.Tensor, min_waste: float = 0.25) -> torch.Tensor:
    """Right-align each row's real columns when holes exceed `min_waste` of the width."""
    width = mask.shape[1]
    keep = int(mask.sum(dim=1).max()) if width else 0
    if width == 0 or width - keep <= min_waste * width:
        return mask
    cols = torch.arange(width, device=mask.device)
    key = torch.where(mask.bool(), cols, -1)
    idx = key.sort(dim=1).values[:, width - keep:]  # holes (-1) sort first
    cache.gather_columns(idx.clamp_min(0))
    return (idx >= 0).long()


def incremental(verifier: Any) -> contextlib.AbstractContextManager:
    """The verifier's `incremental()` block when it has one (see `_CandidateTokenPRM`)."""
    inc = getattr(verifier, "incremental", None)
    return inc() if inc is not None else contextlib.nullcontext()


class LMCandidatePRM(_CandidateTokenPRM):
    """Math-Shepherd format: a step tag after each step; P(good) vs P(bad) at each tag."""

    format = "step_tag"

    def __init__(self, model: Any, tokenizer: Any, *, name: str, step_tag: str, good_token: str,
                 bad_token: str, separator: str = "\n", template: str = "{prompt}",
                 delimiter: str = "\n", agg: str = "last", mode: str = "process",
                 add_special_tokens: bool = True, batch_size: int = 16) -> None:
        super().__init__(model, tokenizer, name=name, good_token=good_token,
                         bad_token=bad_token, template=template, delimiter=delimiter, agg=agg,
                         mode=mode, add_special_tokens=add_special_tokens,
                         batch_size=batch_size)
        self.tag_ids = self.s.enc(step_tag)
        if not self.tag_ids:
            raise ValueError(f"PRM {name}: the step tag must encode to >= 1 token")
        self.separator = separator

    @classmethod
    def load(cls, model_dir: str | Path, **kwargs: Any) -> LMCandidatePRM:
        path = Path(model_dir)
        meta = _meta_for(path, ("step_tag", "good_token", "bad_token", "separator", "template"),
                         kwargs)
        model, tok = _load_causal(path)
        return cls(model, tok, name=meta.pop("name", path.name), **meta)

    def _build(self, c: Candidate) -> tuple[list[int], list[int]]:
        ids = self.s.prompt_ids(c)
        tags: list[int] = []
        for i, step in enumerate(_step_texts(c, self.s.delimiter, self.mode)):
            if i:
                ids += self.s.enc(self.separator) if self.separator else []
            ids += self.s.enc(step) + self.tag_ids
            tags.append(len(ids) - 1)
        return ids, tags


class RLHFlowPRM(_CandidateTokenPRM):
    """RLHFlow format: a chat where each step is a user turn and the assistant replies `+`.

    The first user turn is the question (the rendered `template`), `question_joiner`, then the
    first step; each later step is its own user turn; every assistant turn is `good_token`
    (as the PRM was trained). A step's score is P(good) vs P(bad) at the position that
    predicts its assistant reply: the last token of the conversation rendered up to that user
    turn with the generation prompt. The tokenizer's chat template renders the turns; it must
    render a conversation as a prefix of any longer one (the usual templates do).
    """

    format = "rlhflow"

    def __init__(self, model: Any, tokenizer: Any, *, name: str, good_token: str = "+",
                 bad_token: str = "-", question_joiner: str = " ", template: str = "{prompt}",
                 delimiter: str = "\n", agg: str = "last", mode: str = "process",
                 add_special_tokens: bool = False, batch_size: int = 16) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"PRM {name}: the RLHFlow format needs a tokenizer with a chat "
                             "template")
        # the chat template writes any special tokens (bos) itself
        super().__init__(model, tokenizer, name=name, good_token=good_token,
                         bad_token=bad_token, template=template, delimiter=delimiter, agg=agg,
                         mode=mode, add_special_tokens=add_special_tokens,
                         batch_size=batch_size)
        self.good_token = good_token
        self.question_joiner = question_joiner

    @classmethod
    def load(cls, model_dir: str | Path, **kwargs: Any) -> RLHFlowPRM:
        path = Path(model_dir)
        meta = _meta_for(path, ("good_token", "bad_token", "question_joiner", "template"),
                         kwargs)
        model, tok = _load_causal(path)
        return cls(model, tok, name=meta.pop("name", path.name), **meta)

    def _render(self, turns: list[dict[str, str]], reply_next: bool) -> str:
        return self.s.tokenizer.apply_chat_template(turns, tokenize=False,
                                                    add_generation_prompt=reply_next)

    def _extend(self, ids: list[int], text: str, full: str) -> str:
        if not full.startswith(text):
            raise ValueError("RLHFlow PRM: the chat template does not render a conversation "
                             "as a prefix of a longer one")
        ids += self.s.enc(full[len(text):], False)
        return full

    def _build(self, c: Candidate) -> tuple[list[int], list[int]]:
        steps = _step_texts(c, self.s.delimiter, self.mode)
        if not steps:
            return [], []
        question = self.s.template.format(prompt=c.problem.prompt)
        turns: list[dict[str, str]] = []
        ids: list[int] = []
        text = ""
        reads: list[int] = []
        # Render turn by turn and encode only what each turn adds, so the read positions are
        # exact token indices (special tokens in the rendered text encode to themselves).
        for i, step in enumerate(steps):
            turns.append({"role": "user",
                          "content": question + self.question_joiner + step if i == 0 else step})
            text = self._extend(ids, text, self._render(turns, True))
            reads.append(len(ids) - 1)
            if i < len(steps) - 1:  # the last reply is never read
                turns.append({"role": "assistant", "content": self.good_token})
                text = self._extend(ids, text, self._render(turns, False))
        return ids, reads


class TokenClassPRM:
    """A token-classification / value-head PRM read at each step's end."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str, separator: str = "\n",
                 positive_label: int = 1, template: str = "{prompt}", delimiter: str = "\n",
                 agg: str = "last", mode: str = "process", add_special_tokens: bool = True,
                 batch_size: int = 16) -> None:
        _check(agg, mode)
        n_labels = int(model.config.num_labels)
        if n_labels not in (1, 2):
            raise ValueError(f"PRM {name}: a token-classification PRM needs 1 or 2 labels, "
                             f"got {n_labels}")
        self.s = _HFScorer(model, tokenizer, template=template, delimiter=delimiter,
                           add_special_tokens=add_special_tokens, batch_size=batch_size,
                           head_out=n_labels)
        self.n_labels = n_labels
        self.positive = positive_label
        self.sep_ids = self.s.enc(separator) if separator else []
        self.agg, self.mode = agg, mode
        suffix = "" if mode == "process" else ":outcome"
        self.verifier_id = f"prm:{name}{suffix}"

    @classmethod
    def load(cls, model_dir: str | Path, **kwargs: Any) -> TokenClassPRM:
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        path = Path(model_dir)
        meta = _meta_for(path, ("separator", "positive_label", "template"), kwargs)
        model = AutoModelForTokenClassification.from_pretrained(path, use_safetensors=True)
        tok = AutoTokenizer.from_pretrained(path)
        return cls(model, tok, name=meta.pop("name", path.name), **meta)

    def _build(self, c: Candidate) -> tuple[list[int], list[int]]:
        ids = self.s.prompt_ids(c)
        ends: list[int] = []
        for step in _step_texts(c, self.s.delimiter, self.mode):
            ids += self.s.enc(step) + self.sep_ids
            ends.append(len(ids) - 1)
        return ids, ends

    @torch.no_grad()
    def score(self, candidates: Sequence[Candidate]) -> list[Scored]:
        built = [self._build(c) for c in candidates]
        out: list[Scored] = [Scored([], 0.0) for _ in candidates]
        order = [i for i in sorted(range(len(built)), key=lambda i: len(built[i][0]))
                 if built[i][1]]
        for start in range(0, len(order), self.s.batch_size):
            chunk = order[start:start + self.s.batch_size]
            ids, mask, pos, width = _left_pad([built[i][0] for i in chunk], self.s.pad,
                                              self.s.device)
            try:
                logits = self.s.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
            except TypeError:  # heads whose forward takes no position_ids
                logits = self.s.model(input_ids=ids, attention_mask=mask).logits
            logits = logits.float()
            for r, i in enumerate(chunk):
                seq, ends = built[i]
                at = torch.as_tensor([width - len(seq) + e for e in ends], device=self.s.device)
                row = logits[r, at]
                if self.n_labels == 1:
                    scores = torch.sigmoid(row[:, 0])
                else:
                    scores = row.softmax(-1)[:, self.positive]
                # the classifier head runs at every position of the sequence
                flops = forward_flops(self.s.shape, len(seq), 0)
                out[i] = Scored([float(x) for x in scores.tolist()], flops)
        return out


def _stat(values: Sequence[float], stat: str) -> float:
    return min(values) if stat == "min" else sum(values) / len(values)


class LikelihoodVerifier:
    """exp(mean or min token log-prob) of each step under a local causal LM (no training)."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str, stat: str = "mean",
                 template: str = "{prompt}", delimiter: str = "\n", agg: str = "last",
                 mode: str = "process", add_special_tokens: bool = True,
                 batch_size: int = 16) -> None:
        _check(agg, mode)
        if stat not in ("mean", "min"):
            raise ValueError(f"stat must be 'mean' or 'min', got {stat!r}")
        self.s = _HFScorer(model, tokenizer, template=template, delimiter=delimiter,
                           add_special_tokens=add_special_tokens, batch_size=batch_size)
        self.stat, self.agg, self.mode = stat, agg, mode
        suffix = "" if mode == "process" else ":outcome"
        self.verifier_id = f"lik:{name}:{stat}{suffix}"

    @classmethod
    def load(cls, model_dir: str | Path, **kwargs: Any) -> LikelihoodVerifier:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model_dir)
        model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
        tok = AutoTokenizer.from_pretrained(path)
        return cls(model, tok, name=kwargs.pop("name", path.name), **kwargs)

    @torch.no_grad()
    def score(self, candidates: Sequence[Candidate]) -> list[Scored]:
        from models.decoding import score_tokens

        seqs, plens, bounds = [], [], []
        for c in candidates:
            ids = self.s.prompt_ids(c)
            plen = len(ids)
            b = []
            for seg in c.segments:
                t = self.s.enc(seg)
                ids += t
                b.append(len(t))
            seqs.append(ids)
            plens.append(plen)
            bounds.append(b)
        lps = score_tokens(self.s.model, seqs, plens, pad_token_id=self.s.pad,
                           batch_size=self.s.batch_size)
        out = []
        for c, seq, lp, b in zip(candidates, seqs, lps, bounds, strict=True):
            out.append(Scored(_step_stats(lp, b, c, self.s.delimiter, self.stat, self.mode),
                              forward_flops(self.s.shape, len(seq), 0) if any(b) else 0.0))
        return out


def _step_stats(lp: Sequence[float], counts: Sequence[int], c: Candidate, delimiter: str,
                stat: str, mode: str) -> list[float]:
    """exp(stat) per step; blank segments (a lone delimiter) fold into a neighbouring step, so
    the steps are the same as a PRM's (`_step_texts`)."""
    groups: list[list[float]] = []
    pending: list[float] = []
    pos = 0
    for seg, n in zip(c.segments, counts, strict=True):
        vals = list(lp[pos:pos + n])
        pos += n
        if not _strip_delim(seg, delimiter).strip():
            (groups[-1] if groups else pending).extend(vals)
        else:
            groups.append(pending + vals)
            pending = []
    groups = [g for g in groups if g]
    if mode == "outcome" and groups:
        groups = [[v for g in groups for v in g]]
    return [float(math.exp(_stat(g, stat))) for g in groups]


class SelfLikelihood:
    """The policy's own log-probs kept while sampling: a free likelihood verifier."""

    def __init__(self, *, stat: str = "mean", delimiter: str = "\n", agg: str = "last",
                 mode: str = "process") -> None:
        _check(agg, mode)
        if stat not in ("mean", "min"):
            raise ValueError(f"stat must be 'mean' or 'min', got {stat!r}")
        self.stat, self.agg, self.mode, self.delimiter = stat, agg, mode, delimiter
        suffix = "" if mode == "process" else ":outcome"
        self.verifier_id = f"self:{stat}{suffix}"

    def score(self, candidates: Sequence[Candidate]) -> list[Scored]:
        out = []
        for c in candidates:
            if sum(c.seg_tokens) != len(c.logprobs):
                raise ValueError("SelfLikelihood needs the sampled log-probs of every token")
            out.append(Scored(_step_stats(c.logprobs, c.seg_tokens, c, self.delimiter,
                                          self.stat, self.mode), 0.0))
        return out


PRM_FORMATS = ("step_tag", "rlhflow", "token_class")


def load_prm(model_dir: str | Path, **kwargs: Any
             ) -> LMCandidatePRM | RLHFlowPRM | TokenClassPRM:
    """Load a PRM with the adapter of its format.

    The format comes from `format=` (one of PRM_FORMATS), else `"format"` in the model's
    `verifier.json`, else the architecture: `…ForTokenClassification` -> token_class, a causal
    LM -> step_tag (Math-Shepherd). Other kwargs (and `verifier.json` keys) go to the adapter:

    - Math-Shepherd style (`step_tag`): step_tag (e.g. " ки"), good_token ("+"),
      bad_token ("-"), separator between steps ("\\n"), template.
    - RLHFlow style (`rlhflow`, e.g. RLHFlow/Llama3.1-8B-PRM-*): good_token ("+"), bad_token
      ("-"), question_joiner (" "); the tokenizer's own chat template renders the turns.
    - Qwen2.5-Math-PRM style (`token_class`): a 2-label head read at each step's end; steps
      are joined by "<extra_0>", so pass separator="<extra_0>", positive_label=1, and the
      template its model card uses. Any `…ForTokenClassification` checkpoint loads directly;
      the hub Qwen2.5-Math-PRM ships custom code (`Qwen2ForProcessRewardModel`, an MLP head):
      load it with `AutoModel.from_pretrained(dir, trust_remote_code=True)` yourself and pass
      it to `TokenClassPRM(model, tokenizer, name=..., separator="<extra_0>")`; any model whose
      output has `.logits` of shape [batch, tokens, 1 or 2] works there.

    Example `verifier.json` beside an RLHFlow checkpoint (or the same keys as kwargs):
    `{"format": "rlhflow", "good_token": "+", "bad_token": "-"}`; beside a Math-Shepherd
    one: `{"step_tag": " ки", "good_token": " +", "bad_token": " -"}` (the labels as its
    tokenizer spells them: each must encode to one token).
    """
    path = Path(model_dir)
    fmt = kwargs.pop("format", None) or _load_meta(path).get("format")
    if fmt is None:
        cfg = json.loads((path / "config.json").read_text())
        archs = cfg.get("architectures") or []
        token_class = any(a.endswith("ForTokenClassification") for a in archs)
        fmt = "token_class" if token_class else "step_tag"
    if fmt not in PRM_FORMATS:
        raise ValueError(f"{path}: PRM format must be one of {PRM_FORMATS}, got {fmt!r}")
    if fmt == "token_class":
        return TokenClassPRM.load(path, **kwargs)
    if fmt == "rlhflow":
        return RLHFlowPRM.load(path, **kwargs)
    return LMCandidatePRM.load(path, **kwargs)

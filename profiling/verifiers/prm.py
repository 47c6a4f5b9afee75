"""PRMs read by a causal LM at chosen positions: Math-Shepherd step tags and RLHFlow chat turns.

- `LMCandidatePRM` (Math-Shepherd shape): a causal LM reads the solution with a step tag after
  every step; a step's score is P(good) over the {good, bad} token logits at its tag.
- `RLHFlowPRM` (RLHFlow shape): a chat, each step a user turn answered `+` by the assistant; a
  step's score is P(good) vs P(bad) where the assistant's reply is predicted.

Both share the candidate-token read (`_CandidateTokenPRM`), including incremental scoring for
search; `load_prm` picks the adapter of a checkpoint's format (these two or `TokenClassPRM`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from models.lean import LeanRunner, lean_supported
from profiling.flops import forward_flops
from profiling.verifiers.base import (
    Candidate,
    HFScorer,
    Scored,
    check_agg_mode,
    left_pad,
    load_causal,
    load_meta,
    meta_for,
    step_texts,
    tagged_ids,
)
from profiling.verifiers.token_class import TokenClassPRM


class _CandidateTokenPRM:
    """A causal-LM PRM read at chosen positions: P(good) over the {good, bad} token logits.

    The two LM formats (Math-Shepherd step tags, RLHFlow chat turns) differ only in how a
    solution becomes token ids and which positions predict a step's label (`_build`); the
    batched forward, the head at those positions only, and the FLOPs are shared here.
    """

    format: str = ""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        good_token: str,
        bad_token: str,
        template: str = "{prompt}",
        delimiter: str = "\n",
        agg: str = "last",
        mode: str = "process",
        add_special_tokens: bool = True,
        batch_size: int = 16,
    ) -> None:
        check_agg_mode(agg, mode)
        self.s = HFScorer(
            model,
            tokenizer,
            template=template,
            delimiter=delimiter,
            add_special_tokens=add_special_tokens,
            batch_size=batch_size,
        )
        good, bad = self.s.enc(good_token), self.s.enc(bad_token)
        if len(good) != 1 or len(bad) != 1:
            raise ValueError(
                f"PRM {name}: the good/bad labels must encode to exactly one token "
                f"each (got {good}, {bad})"
            )
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
        order = [
            i for i in sorted(range(len(built)), key=lambda i: len(built[i][0])) if built[i][1]
        ]
        for start in range(0, len(order), self.s.batch_size):
            chunk = order[start : start + self.s.batch_size]
            ids, mask, pos, width = left_pad(
                [built[i][0] for i in chunk], self.s.pad, self.s.device
            )
            hidden = self.s.hidden(ids, mask, pos)
            for r, i in enumerate(chunk):
                seq, at_pos = built[i]
                at = torch.as_tensor([width - len(seq) + t for t in at_pos], device=self.s.device)
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
                hit = prev.index.get(tuple(ids[: reads[j] + 1]))
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
                ids[r, : len(t)] = torch.as_tensor(t, dtype=torch.long)
                real[r, : len(t)] = 1
        ids, real = ids.to(dev), real.to(dev)
        pos = plen_t[:, None] + torch.arange(ids.shape[1], device=dev)[None, :]
        mask = torch.cat([mask, real], dim=1)
        hidden = runner.forward(cache, ids, pos, mask, keep_all=True, head=False)
        fresh = [[t - plen[r] for t in built[i][1][len(known[r]) :]] for r, i in enumerate(todo)]
        # one head call for every read position of the batch
        at_r = torch.as_tensor(
            [r for r, f in enumerate(fresh) for _ in f], dtype=torch.long, device=dev
        )
        at_t = torch.as_tensor([t for f in fresh for t in f], dtype=torch.long, device=dev)
        read = self._read(hidden[at_r, at_t]) if len(at_t) else []
        index: dict[tuple[int, ...], tuple[int, tuple[float, ...]]] = {}
        k = 0
        for r, i in enumerate(todo):
            seq, reads = built[i]
            scores = known[r] + read[k : k + len(fresh[r])]
            k += len(fresh[r])
            flops = (
                forward_flops(self.s.shape, len(new[r]), plen[r], logits=len(fresh[r]))
                if new[r]
                else 0.0
            )
            out[i] = Scored(scores, flops)
            for j, t in enumerate(reads):
                index[tuple(seq[: t + 1])] = (r, tuple(scores[: j + 1]))
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
    idx = key.sort(dim=1).values[:, width - keep :]  # holes (-1) sort first
    cache.gather_columns(idx.clamp_min(0))
    return (idx >= 0).long()


class LMCandidatePRM(_CandidateTokenPRM):
    """Math-Shepherd format: a step tag after each step; P(good) vs P(bad) at each tag."""

    format = "step_tag"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        step_tag: str,
        good_token: str,
        bad_token: str,
        separator: str = "\n",
        template: str = "{prompt}",
        delimiter: str = "\n",
        agg: str = "last",
        mode: str = "process",
        add_special_tokens: bool = True,
        batch_size: int = 16,
    ) -> None:
        super().__init__(
            model,
            tokenizer,
            name=name,
            good_token=good_token,
            bad_token=bad_token,
            template=template,
            delimiter=delimiter,
            agg=agg,
            mode=mode,
            add_special_tokens=add_special_tokens,
            batch_size=batch_size,
        )
        self.tag_ids = self.s.enc(step_tag)
        if not self.tag_ids:
            raise ValueError(f"PRM {name}: the step tag must encode to >= 1 token")
        self.separator = separator

    @classmethod
    def load(cls, model_dir: str | Path, **kwargs: Any) -> LMCandidatePRM:
        path = Path(model_dir)
        meta = meta_for(
            path, ("step_tag", "good_token", "bad_token", "separator", "template"), kwargs
        )
        model, tok = load_causal(path)
        return cls(model, tok, name=meta.pop("name", path.name), **meta)

    def _build(self, c: Candidate) -> tuple[list[int], list[int]]:
        steps = step_texts(c, self.s.delimiter, self.mode)
        return tagged_ids(self.s.prompt_ids(c), steps, self.s.enc, self.separator, self.tag_ids)


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

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        good_token: str = "+",
        bad_token: str = "-",
        question_joiner: str = " ",
        template: str = "{prompt}",
        delimiter: str = "\n",
        agg: str = "last",
        mode: str = "process",
        add_special_tokens: bool = False,
        batch_size: int = 16,
    ) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"PRM {name}: the RLHFlow format needs a tokenizer with a chat template"
            )
        # the chat template writes any special tokens (bos) itself
        super().__init__(
            model,
            tokenizer,
            name=name,
            good_token=good_token,
            bad_token=bad_token,
            template=template,
            delimiter=delimiter,
            agg=agg,
            mode=mode,
            add_special_tokens=add_special_tokens,
            batch_size=batch_size,
        )
        self.good_token = good_token
        self.question_joiner = question_joiner

    @classmethod
    def load(cls, model_dir: str | Path, **kwargs: Any) -> RLHFlowPRM:
        path = Path(model_dir)
        meta = meta_for(path, ("good_token", "bad_token", "question_joiner", "template"), kwargs)
        model, tok = load_causal(path)
        return cls(model, tok, name=meta.pop("name", path.name), **meta)

    def _render(self, turns: list[dict[str, str]], reply_next: bool) -> str:
        return self.s.tokenizer.apply_chat_template(
            turns, tokenize=False, add_generation_prompt=reply_next
        )

    def _extend(self, ids: list[int], text: str, full: str) -> str:
        if not full.startswith(text):
            raise ValueError(
                "RLHFlow PRM: the chat template does not render a conversation "
                "as a prefix of a longer one"
            )
        ids += self.s.enc(full[len(text) :], False)
        return full

    def _build(self, c: Candidate) -> tuple[list[int], list[int]]:
        steps = step_texts(c, self.s.delimiter, self.mode)
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
            turns.append(
                {
                    "role": "user",
                    "content": question + self.question_joiner + step if i == 0 else step,
                }
            )
            text = self._extend(ids, text, self._render(turns, True))
            reads.append(len(ids) - 1)
            if i < len(steps) - 1:  # the last reply is never read
                turns.append({"role": "assistant", "content": self.good_token})
                text = self._extend(ids, text, self._render(turns, False))
        return ids, reads


PRM_FORMATS = ("step_tag", "rlhflow", "token_class")


def prm_format(model_dir: str | Path, format: str | None = None) -> str:
    """A PRM checkpoint's format: `format` when given, else `"format"` in its `verifier.json`,
    else its architecture (`…ForTokenClassification` -> token_class, a causal LM -> step_tag)."""
    path = Path(model_dir)
    fmt = format or load_meta(path).get("format")
    if fmt is None:
        cfg = json.loads((path / "config.json").read_text())
        archs = cfg.get("architectures") or []
        token_class = any(a.endswith("ForTokenClassification") for a in archs)
        fmt = "token_class" if token_class else "step_tag"
    return str(fmt)


def load_prm(model_dir: str | Path, **kwargs: Any) -> LMCandidatePRM | RLHFlowPRM | TokenClassPRM:
    """Load a PRM with the adapter of its format.

    The format comes from `format=` (one of PRM_FORMATS), else `"format"` in the model's
    `verifier.json`, else the architecture (`prm_format`): `…ForTokenClassification` ->
    token_class, a causal LM -> step_tag (Math-Shepherd). Other kwargs (and `verifier.json`
    keys) go to the adapter:

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
    fmt = prm_format(path, kwargs.pop("format", None))
    if fmt not in PRM_FORMATS:
        raise ValueError(f"{path}: PRM format must be one of {PRM_FORMATS}, got {fmt!r}")
    if fmt == "token_class":
        return TokenClassPRM.load(path, **kwargs)
    if fmt == "rlhflow":
        return RLHFlowPRM.load(path, **kwargs)
    return LMCandidatePRM.load(path, **kwargs)

"""`TokenClassPRM`: a token-classification / value-head PRM read at each step's end.

An AutoModelForTokenClassification (1 label: sigmoid; 2 labels: softmax, a chosen positive
class), read after an optional separator that ends each step.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from profiling.flops import forward_flops
from profiling.verifiers.base import (
    Candidate,
    HFScorer,
    Scored,
    check_agg_mode,
    left_pad,
    meta_for,
    step_texts,
)


def check_labels(name: str, n_labels: int, positive_label: int) -> int:
    """A token-classification PRM's label count (1: sigmoid, 2: softmax at `positive_label`)."""
    if n_labels not in (1, 2):
        raise ValueError(
            f"PRM {name}: a token-classification PRM needs 1 or 2 labels, got {n_labels}"
        )
    if n_labels == 2 and positive_label not in (0, 1):
        raise ValueError(f"PRM {name}: positive_label must be 0 or 1")
    return n_labels


class TokenClassPRM:
    """A token-classification / value-head PRM read at each step's end."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        separator: str = "\n",
        positive_label: int = 1,
        template: str = "{prompt}",
        delimiter: str = "\n",
        agg: str = "last",
        mode: str = "process",
        add_special_tokens: bool = True,
        batch_size: int = 16,
    ) -> None:
        check_agg_mode(agg, mode)
        n_labels = check_labels(name, int(model.config.num_labels), positive_label)
        self.s = HFScorer(
            model,
            tokenizer,
            template=template,
            delimiter=delimiter,
            add_special_tokens=add_special_tokens,
            batch_size=batch_size,
            head_out=n_labels,
        )
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
        meta = meta_for(path, ("separator", "positive_label", "template"), kwargs)
        model = AutoModelForTokenClassification.from_pretrained(path, use_safetensors=True)
        tok = AutoTokenizer.from_pretrained(path)
        return cls(model, tok, name=meta.pop("name", path.name), **meta)

    def _build(self, c: Candidate) -> tuple[list[int], list[int]]:
        ids = self.s.prompt_ids(c)
        ends: list[int] = []
        for step in step_texts(c, self.s.delimiter, self.mode):
            ids += self.s.enc(step) + self.sep_ids
            ends.append(len(ids) - 1)
        return ids, ends

    @torch.no_grad()
    def score(self, candidates: Sequence[Candidate]) -> list[Scored]:
        built = [self._build(c) for c in candidates]
        out: list[Scored] = [Scored([], 0.0) for _ in candidates]
        order = [
            i for i in sorted(range(len(built)), key=lambda i: len(built[i][0])) if built[i][1]
        ]
        for start in range(0, len(order), self.s.batch_size):
            chunk = order[start : start + self.s.batch_size]
            ids, mask, pos, width = left_pad(
                [built[i][0] for i in chunk], self.s.pad, self.s.device
            )
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

"""Likelihood verifiers: no training, a step's score is exp(mean or min token log-prob).

`LikelihoodVerifier` reads the steps under any local causal LM (its forward passes are verifier
FLOPs); `SelfLikelihood` uses the policy's own log-probs, kept while sampling (free).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from models.decoding import score_tokens
from profiling.flops import forward_flops
from profiling.verifiers.base import (
    Candidate,
    HFScorer,
    PromptEncoder,
    Scored,
    check_agg_mode,
    load_causal,
    strip_delim,
)


def _stat(values: Sequence[float], stat: str) -> float:
    return min(values) if stat == "min" else sum(values) / len(values)


class LikelihoodVerifier:
    """exp(mean or min token log-prob) of each step under a local causal LM (no training)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        stat: str = "mean",
        template: str = "{prompt}",
        delimiter: str = "\n",
        agg: str = "last",
        mode: str = "process",
        add_special_tokens: bool = True,
        batch_size: int = 16,
    ) -> None:
        check_agg_mode(agg, mode)
        if stat not in ("mean", "min"):
            raise ValueError(f"stat must be 'mean' or 'min', got {stat!r}")
        self.s = HFScorer(
            model,
            tokenizer,
            template=template,
            delimiter=delimiter,
            add_special_tokens=add_special_tokens,
            batch_size=batch_size,
        )
        self.stat, self.agg, self.mode = stat, agg, mode
        suffix = "" if mode == "process" else ":outcome"
        self.verifier_id = f"lik:{name}:{stat}{suffix}"

    @classmethod
    def load(cls, model_dir: str | Path, **kwargs: Any) -> LikelihoodVerifier:
        path = Path(model_dir)
        model, tok = load_causal(path)
        return cls(model, tok, name=kwargs.pop("name", path.name), **kwargs)

    @torch.no_grad()
    def score(self, candidates: Sequence[Candidate]) -> list[Scored]:
        seqs, plens, bounds = segment_ids(self.s, candidates)
        # A problem's candidates repeat its prompt: encode it once (the FLOPs charged below stay
        # those of a full forward per candidate, the cost of a verifier that shares nothing).
        lps = score_tokens(
            self.s.model,
            seqs,
            plens,
            pad_token_id=self.s.pad,
            batch_size=self.s.batch_size,
            share_prompts=True,
        )
        out = []
        for c, seq, lp, b in zip(candidates, seqs, lps, bounds, strict=True):
            out.append(
                Scored(
                    _step_stats(lp, b, c, self.s.delimiter, self.stat, self.mode),
                    forward_flops(self.s.shape, len(seq), 0) if any(b) else 0.0,
                )
            )
        return out


def segment_ids(
    s: PromptEncoder, candidates: Sequence[Candidate]
) -> tuple[list[list[int]], list[int], list[list[int]]]:
    """Each candidate as prompt + segment tokens, its prompt length, and the token count of each
    segment (where the per-step statistics split the log-probs)."""
    seqs, plens, bounds = [], [], []
    for c in candidates:
        ids = s.prompt_ids(c)
        plens.append(len(ids))
        counts = []
        for seg in c.segments:
            t = s.enc(seg)
            ids += t
            counts.append(len(t))
        seqs.append(ids)
        bounds.append(counts)
    return seqs, plens, bounds


def _step_stats(
    lp: Sequence[float], counts: Sequence[int], c: Candidate, delimiter: str, stat: str, mode: str
) -> list[float]:
    """exp(stat) per step; blank segments (a lone delimiter) fold into a neighbouring step, so
    the steps are the same as a PRM's (`step_texts`)."""
    groups: list[list[float]] = []
    pending: list[float] = []
    pos = 0
    for seg, n in zip(c.segments, counts, strict=True):
        vals = list(lp[pos : pos + n])
        pos += n
        if not strip_delim(seg, delimiter).strip():
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

    def __init__(
        self, *, stat: str = "mean", delimiter: str = "\n", agg: str = "last", mode: str = "process"
    ) -> None:
        check_agg_mode(agg, mode)
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
            out.append(
                Scored(
                    _step_stats(c.logprobs, c.seg_tokens, c, self.delimiter, self.stat, self.mode),
                    0.0,
                )
            )
        return out

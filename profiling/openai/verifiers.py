"""Verifiers read through a server: likelihood (`prompt_logprobs`) and step-tag PRMs.

Both build exactly the token ids their in-process twins build (`LikelihoodVerifier`,
`LMCandidatePRM`, with the same local tokenizer and template) and send them as prompts, so the
scores agree with in-process ones to float precision:

- `ServerLikelihood`: teacher-forced log-probs of every prompt token (`prompt_logprobs: 0`),
  then the same per-step statistic.
- `ServerStepTagPRM`: a step's score is P(good) over {good, bad} at its tag. The server returns
  the log-prob of the prompt's actual next token at each position, so each tag is read by two
  short prompts (the solution up to the tag, then the good or the bad token), sent together; the
  server's prefix cache holds the shared part. In a search (`incremental()`), a prefix read once
  keeps its score, so each round reads only the new steps' tags.

FLOPs are the in-process verifier's (one forward over the sequence; incremental: the new tokens
only), so tables from either backend compare.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

from planner.errors import PlannerError
from profiling.flops import forward_flops, shape_from_config
from profiling.openai.backend import count_params, load_local
from profiling.openai.client import OpenAIClient
from profiling.openai.identity import read_prompt_logprobs
from profiling.openai.server import check_server
from profiling.verifiers.base import (
    Candidate,
    PromptEncoder,
    Scored,
    check_agg_mode,
    load_meta,
    step_texts,
    tagged_ids,
)
from profiling.verifiers.likelihood import _step_stats, segment_ids


class _LocalScorer(PromptEncoder):
    """A verifier model's tokenizer, template and shape (its weights stay on the server)."""

    # what the server must answer beyond /tokenize: prompt log-probs here; a pooling scorer
    # (`profiling.openai.pooling`) probes /pooling instead
    logprobs = True

    def __init__(
        self,
        client: OpenAIClient,
        served_model: str,
        model_config: str | Path,
        *,
        template: str,
        delimiter: str,
        add_special_tokens: bool,
        batch_size: int,
    ) -> None:
        if "{prompt}" not in template:
            raise ValueError("verifier template must contain '{prompt}'")
        self.tokenizer, hf_config = load_local(model_config)
        self.info = check_server(
            client,
            served_model,
            self.tokenizer,
            model_config,
            hf_config,
            what="verifier",
            logprobs=self.logprobs,
            identity=self.logprobs,
        )
        self.model_config = model_config
        self.client, self.served_model = client, served_model
        self.template, self.delimiter = template, delimiter
        self.add_special_tokens, self.batch_size = add_special_tokens, batch_size
        self.hf_config = hf_config
        self.shape = shape_from_config(hf_config)
        self.n_params = count_params(hf_config)
        self._enc_cache = {}

    def prompt_logprobs(self, seqs: Sequence[Sequence[int]]) -> list[list[float]]:
        """Teacher-forced log-prob of every token but the first, per sequence."""
        bodies = []
        for s in seqs:
            if len(s) >= self.info.max_model_len:
                raise PlannerError(
                    f"verifier {self.served_model}: a sequence of {len(s)} tokens does not fit "
                    f"the served model's max_model_len of {self.info.max_model_len}"
                )
            bodies.append(
                {
                    "model": self.served_model,
                    "prompt": [int(t) for t in s],
                    "max_tokens": 1,
                    "temperature": 0.0,
                    "prompt_logprobs": 0,
                }
            )
        answers = self.client.post_many("/v1/completions", bodies)
        return [
            read_prompt_logprobs(a, s, self.info.root) for a, s in zip(answers, seqs, strict=True)
        ]


class ServerLikelihood:
    """exp(mean or min token log-prob) of each step under a served causal LM."""

    def __init__(
        self,
        client: OpenAIClient,
        served_model: str,
        model_config: str | Path,
        *,
        name: str | None = None,
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
        self.s = _LocalScorer(
            client,
            served_model,
            model_config,
            template=template,
            delimiter=delimiter,
            add_special_tokens=add_special_tokens,
            batch_size=batch_size,
        )
        self.stat, self.agg, self.mode = stat, agg, mode
        suffix = "" if mode == "process" else ":outcome"
        self.verifier_id = f"lik:{name or Path(model_config).name}:{stat}{suffix}"

    def score(self, candidates: Sequence[Candidate]) -> list[Scored]:
        seqs, plens, bounds = segment_ids(self.s, candidates)
        todo = [i for i, b in enumerate(bounds) if any(b)]
        lps = dict(zip(todo, self.s.prompt_logprobs([seqs[i] for i in todo]), strict=True))
        out = []
        for i, c in enumerate(candidates):
            lp = lps.get(i, [])[plens[i] - 1 :] if i in lps else []
            out.append(
                Scored(
                    _step_stats(lp, bounds[i], c, self.s.delimiter, self.stat, self.mode),
                    forward_flops(self.s.shape, len(seqs[i]), 0) if i in lps else 0.0,
                )
            )
        return out


class ServerStepTagPRM:
    """Math-Shepherd-format PRM served over HTTP: P(good) vs P(bad) at each step tag."""

    scorer: type[_LocalScorer] = _LocalScorer

    def __init__(
        self,
        client: OpenAIClient,
        served_model: str,
        model_config: str | Path,
        *,
        name: str | None = None,
        step_tag: str | None = None,
        good_token: str | None = None,
        bad_token: str | None = None,
        separator: str = "\n",
        template: str = "{prompt}",
        delimiter: str = "\n",
        agg: str = "last",
        mode: str = "process",
        add_special_tokens: bool = True,
        batch_size: int = 16,
    ) -> None:
        check_agg_mode(agg, mode)
        meta = load_meta(Path(model_config))
        step_tag = step_tag or meta.get("step_tag")
        good_token = good_token or meta.get("good_token")
        bad_token = bad_token or meta.get("bad_token")
        if not (step_tag and good_token and bad_token):
            raise ValueError("a step-tag PRM needs step_tag, good_token and bad_token")
        self.s = self.scorer(
            client,
            served_model,
            model_config,
            template=template,
            delimiter=delimiter,
            add_special_tokens=add_special_tokens,
            batch_size=batch_size,
        )
        good, bad = self.s.enc(good_token), self.s.enc(bad_token)
        if len(good) != 1 or len(bad) != 1:
            raise ValueError(f"PRM {served_model}: the good/bad labels must be one token each")
        self.good, self.bad = good[0], bad[0]
        self.tag_ids = self.s.enc(step_tag)
        self.separator = separator
        self.agg, self.mode = agg, mode
        suffix = "" if mode == "process" else ":outcome"
        self.verifier_id = f"prm:{name or Path(model_config).name}{suffix}"
        self._memo: dict[tuple[int, ...], float] | None = None

    @contextlib.contextmanager
    def incremental(self) -> Iterator[None]:
        """Within this block a tag read once keeps its score (see the module docstring)."""
        if self._memo is not None:
            yield
            return
        self._memo = {}
        try:
            yield
        finally:
            self._memo = None

    def _build(self, c: Candidate) -> tuple[list[int], list[int]]:
        steps = step_texts(c, self.s.delimiter, self.mode)
        return tagged_ids(self.s.prompt_ids(c), steps, self.s.enc, self.separator, self.tag_ids)

    def score(self, candidates: Sequence[Candidate]) -> list[Scored]:
        built = [self._build(c) for c in candidates]
        memo = self._memo if self._memo is not None else {}
        fresh = self._read_tags(built, memo)
        out = []
        for ids, tags in built:
            scores = [memo.get(tuple(ids[: t + 1]), fresh.get(tuple(ids[: t + 1]))) for t in tags]
            out.append(Scored([float(x) for x in scores], self._flops(ids, tags, memo)))
        if self._memo is not None:
            self._memo.update(fresh)
        return out

    def _read_tags(
        self, built: list[tuple[list[int], list[int]]], memo: dict[tuple[int, ...], float]
    ) -> dict[tuple[int, ...], float]:
        """P(good) at every tag not in `memo`, keyed by the prefix that ends at the tag."""
        need = sorted({tuple(ids[: t + 1]) for ids, tags in built for t in tags} - set(memo))
        seqs = [[*p, tok] for p in need for tok in (self.good, self.bad)]
        lps = self.s.prompt_logprobs(seqs)
        fresh = {}
        for k, p in enumerate(need):
            lg, lb = lps[2 * k][-1], lps[2 * k + 1][-1]
            # softmax over the two logits = over their log-probs (the normaliser cancels)
            fresh[p] = 1.0 / (1.0 + math.exp(lb - lg))
        return fresh

    def _flops(self, ids: list[int], tags: list[int], memo: dict[tuple[int, ...], float]) -> float:
        if not tags:
            return 0.0
        if self._memo is None:
            return forward_flops(self.s.shape, len(ids), 0, logits=len(tags))
        known = 0
        while known < len(tags) and tuple(ids[: tags[known] + 1]) in memo:
            known += 1
        plen = tags[known - 1] + 1 if known else 0
        new = len(ids) - plen
        return forward_flops(self.s.shape, new, plen, logits=len(tags) - known) if new else 0.0

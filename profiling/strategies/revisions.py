"""`revisions`: chains of sequential revisions by a reviser model (Snell et al. 2024, section 6).

`chains` independent chains of `length` answers each; answer t of a chain is sampled with the
`window` most recent previous answers of that chain in context (none for the first). Every answer
is a row (`run` = chain index, `position` = step in the chain), scored by each verifier, so the
planner can select within and across chains and sweep the parallel:sequential ratio.

The backend is the reviser model. Its prompt is `prompt_format` with `{prompt}` (the problem's
prompt), `{question}` (the problem's `meta["question"]`, else its prompt) and `{attempts}` (the
previous answers, each rendered by `attempt_format` with `{attempt}` (the completion text),
`{index}`, `{prompt}` and `{question}`), then the backend's prompt template. Costs are exact per
row: each answer encodes its own prompt (identical prompts in one step, e.g. every chain's first
answer, are encoded once and their FLOPs spread over them) and decodes its own tokens; a row's
`prompt_tokens` is its whole prompt, earlier attempts included.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from profiling.backend import Backend
from profiling.flops import forward_flops
from profiling.problems import Problem
from profiling.strategies.common import (
    Verifiers,
    config_from,
    grader_for,
    judge,
    make_candidate,
    row,
    row_config,
    timed_score,
    verifier_list,
)

# The testbed reviser's format (its manifest): each earlier attempt after the problem's prompt and
# ended by the tokenizer's <eos> (special-token text is parsed by HF tokenizers), then the prompt
# again, so the new attempt follows the plain prompt ("Q: {question}\n" there).
DEFAULT_PROMPT_FORMAT = "{attempts}{prompt}"
DEFAULT_ATTEMPT_FORMAT = "{prompt}{attempt}<eos>"


@dataclass(frozen=True)
class RevisionsConfig:
    chains: int
    length: int
    window: int = 4
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 256
    prompt_format: str = DEFAULT_PROMPT_FORMAT
    attempt_format: str = DEFAULT_ATTEMPT_FORMAT
    seed: int = 0
    runs: int = 1
    grader: str = "testbed"

    def __post_init__(self) -> None:
        if self.chains < 1 or self.length < 1:
            raise ValueError(
                f"revisions: chains and length must be >= 1, got {self.chains}, {self.length}"
            )
        if not 0 <= self.window <= 16:
            raise ValueError("revisions: window must be in [0, 16]")
        if "{attempts}" not in self.prompt_format or not (
            "{prompt}" in self.prompt_format or "{question}" in self.prompt_format
        ):
            raise ValueError("revisions: prompt_format needs {attempts} and {prompt} or {question}")
        if "{attempt}" not in self.attempt_format:
            raise ValueError("revisions: attempt_format needs {attempt}")
        if self.runs != 1:
            raise ValueError("revisions: runs must be 1 (run is the chain index)")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1:
            raise ValueError("revisions: temperature >= 0, top_p in (0, 1], max_new_tokens >= 1")


def revision_prompt(cfg: RevisionsConfig, problem: Problem, previous: Sequence[str]) -> str:
    recent = list(previous)[-cfg.window :] if cfg.window else []
    question = str(problem.meta.get("question", problem.prompt))
    attempts = "".join(
        cfg.attempt_format.format(attempt=c, index=i + 1, prompt=problem.prompt, question=question)
        for i, c in enumerate(recent)
    )
    return cfg.prompt_format.format(prompt=problem.prompt, question=question, attempts=attempts)


def revisions(
    problems: Sequence[Problem], backend: Backend, verifier: Verifiers, config: Mapping[str, Any]
) -> list[dict]:
    cfg: RevisionsConfig = config_from(RevisionsConfig, config, "revisions")
    verifiers = verifier_list(verifier)
    grader = grader_for(cfg.grader)
    cfg_json = row_config(cfg)
    history: dict[tuple[int, int], list[str]] = {
        (pi, c): [] for pi in range(len(problems)) for c in range(cfg.chains)
    }
    rows: list[dict] = []
    for step in range(cfg.length):
        keys = list(history)
        prompts = [
            backend.text_ids(revision_prompt(cfg, problems[pi], history[(pi, c)])) for pi, c in keys
        ]
        t0 = time.perf_counter()
        gens = [
            pool[0]
            for pool in backend.sample(
                prompts,
                1,
                max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                seed=cfg.seed * 1_000_003 + step,
            )
        ]
        wall = time.perf_counter() - t0
        total_tokens = sum(len(g.token_ids) for g in gens) or 1
        # identical prompts were encoded once: spread that prefill over them
        share: dict[tuple[int, ...], int] = {}
        for p in prompts:
            share[tuple(p)] = share.get(tuple(p), 0) + 1
        cands, costs = [], []
        for (pi, c), p, g in zip(keys, prompts, gens, strict=True):
            problem = problems[pi]
            cand = make_candidate(backend, problem, g.token_ids, g.logprobs)
            cands.append(cand)
            history[(pi, c)].append(cand.text)
            n, plen, k = len(g.token_ids), len(p), share[tuple(p)]
            flops = forward_flops(backend.shape, plen, 0, logits=1) / k
            if n > 1:
                flops += forward_flops(backend.shape, n - 1, plen)
            costs.append((plen, n, flops, wall * max(n, 1) / total_tokens))
        outcomes = [judge(grader, cd) for cd in cands]
        for v in verifiers or [None]:
            if v is None:
                scored, vwall, vid, agg = [None] * len(cands), 0.0, "none", "last"
            else:
                scored, vwall = timed_score(v, cands)
                vid, agg = v.verifier_id, v.agg
            for (pi, c), o, s, (plen, n, flops, w) in zip(
                keys, outcomes, scored, costs, strict=True
            ):
                rows.append(
                    row(
                        problems[pi],
                        "revisions",
                        cfg_json,
                        c,
                        step,
                        o,
                        vid,
                        s,
                        agg,
                        prompt_tokens=plen,
                        gen_tokens=n,
                        gen_flops=flops,
                        verifier_flops=0.0 if s is None else s.flops,
                        wall_s=w + vwall / len(cands),
                    )
                )
    return rows

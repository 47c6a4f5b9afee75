"""`sample`: a pool of n independent solutions per problem, scored by every verifier.

One row per candidate and verifier. The planner derives majority, best-of-k and weighted best-of-k
at every k <= n from the pool, so this strategy runs once (per `runs` repetition).

Cost accounting: each candidate carries its own decode cost exactly (its tokens, fed with the
KV cache at their real context lengths); the prompt is encoded once per pool (prefix sharing), so
its FLOPs are spread evenly over the pool's rows (they sum to one prefill), while every row's
`prompt_tokens` is the whole prompt its candidate was sampled from (the samples table's rule for
shared prompts, `planner.tables.schema`). Wall time
of a generation batch is split over its candidates in proportion to their tokens; each verifier's
scoring time is split over its own rows.
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
    spread_float,
    timed_score,
    verifier_list,
)


@dataclass(frozen=True)
class SampleConfig:
    n: int
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    runs: int = 1
    grader: str = "testbed"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"sample: n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError("sample: temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("sample: top_p must be in (0, 1]")
        if self.max_new_tokens < 1 or self.runs < 1:
            raise ValueError("sample: max_new_tokens and runs must be >= 1")


def sample(
    problems: Sequence[Problem], backend: Backend, verifier: Verifiers, config: Mapping[str, Any]
) -> list[dict]:
    cfg: SampleConfig = config_from(SampleConfig, config, "sample")
    verifiers = verifier_list(verifier)
    grader = grader_for(cfg.grader)
    cfg_json = row_config(cfg)
    rows: list[dict] = []
    prompts = [backend.prompt_ids(p) for p in problems]
    for run in range(cfg.runs):
        t0 = time.perf_counter()
        pools = backend.sample(
            prompts,
            cfg.n,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            seed=cfg.seed + 1_000 * run,
        )
        gen_wall = time.perf_counter() - t0
        all_tokens = sum(len(g.token_ids) for pool in pools for g in pool) or 1
        for problem, prompt, pool in zip(problems, prompts, pools, strict=True):
            plen = len(prompt)
            cands = [make_candidate(backend, problem, g.token_ids, g.logprobs) for g in pool]
            outcomes = [judge(grader, c) for c in cands]
            prefill = forward_flops(backend.shape, plen, 0, logits=1)
            p_flops = spread_float(prefill, len(pool))
            gen = []
            for i, g in enumerate(pool):
                n = len(g.token_ids)
                flops = p_flops[i] + (forward_flops(backend.shape, n - 1, plen) if n > 1 else 0.0)
                wall = gen_wall * max(n, 1) / all_tokens
                gen.append((plen, n, flops, wall))
            scorers = verifiers or [None]
            for v in scorers:
                if v is None:
                    scored, vwall = [None] * len(cands), 0.0
                    vid, agg = "none", "last"
                else:
                    scored, vwall = timed_score(v, cands)
                    vid, agg = v.verifier_id, v.agg
                for i, (o, s) in enumerate(zip(outcomes, scored, strict=True)):
                    pt, n, flops, wall = gen[i]
                    rows.append(
                        row(
                            problem,
                            "sample",
                            cfg_json,
                            run,
                            i,
                            o,
                            vid,
                            s,
                            agg,
                            prompt_tokens=pt,
                            gen_tokens=n,
                            gen_flops=flops,
                            verifier_flops=0.0 if s is None else s.flops,
                            wall_s=wall + vwall / len(cands),
                        )
                    )
    return rows

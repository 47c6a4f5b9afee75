"""Helpers shared by the strategies: candidates from tokens, verifier lists, cost spreading,
rows."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from planner.strategies import aggregate
from planner.tables.schema import canonical_config
from profiling.backend import Backend
from profiling.grading import Grader, get_grader
from profiling.problems import Problem
from profiling.verifiers import Candidate, Scored, Verifier

# What a strategy's `verifier` argument may be: one verifier, several, or none.
Verifiers = Verifier | Sequence[Verifier] | None


def verifier_list(verifier: Verifiers) -> list[Verifier]:
    if verifier is None:
        return []
    vs = list(verifier) if isinstance(verifier, list | tuple) else [verifier]
    ids = [v.verifier_id for v in vs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"verifier ids must be distinct, got {ids}")
    return vs


def make_candidate(
    backend: Backend, problem: Problem, token_ids: Sequence[int], logprobs: Sequence[float]
) -> Candidate:
    groups = backend.split_steps(token_ids)
    segments = [backend.decode(g) for g in groups]
    n = sum(len(g) for g in groups)
    return Candidate(
        problem=problem,
        segments=segments,
        logprobs=list(logprobs[:n]),
        seg_tokens=[len(g) for g in groups],
    )


def spread_int(total: int, k: int) -> list[int]:
    """Split an integer into k non-negative parts summing to it (earlier parts get the rest)."""
    if k <= 0:
        return []
    q, r = divmod(int(total), k)
    return [q + (1 if i < r else 0) for i in range(k)]


def spread_float(total: float, k: int) -> list[float]:
    if k <= 0:
        return []
    part = float(total) / k
    out = [part] * k
    out[-1] = float(total) - part * (k - 1)  # so the parts sum exactly to the total
    return [max(0.0, x) for x in out]


def config_from(cls: type, config: Mapping[str, Any], strategy: str) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(config) - names)
    if unknown:
        raise ValueError(f"{strategy}: unknown config keys {unknown} (known: {sorted(names)})")
    return cls(**dict(config))


# Keys that say how to run, not what was run: kept out of the rows' config so repetitions with
# other seeds are runs of the same config.
EXECUTION_KEYS = ("seed", "runs", "grader")


def row_config(cfg: Any, extra: Mapping[str, Any] | None = None) -> str:
    d = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in EXECUTION_KEYS}
    d.update(extra or {})
    return canonical_config(d)


def grader_for(name: str) -> Grader:
    """The grader a strategy config names (`grader`; empty: the testbed's)."""
    return get_grader(name or "testbed")


@dataclass
class Outcome:
    """What a strategy learns about one final candidate before it becomes rows."""

    candidate: Candidate
    answer: str | None
    correct: bool


def judge(grader: Grader, c: Candidate) -> Outcome:
    text = c.text
    return Outcome(c, grader.extract_answer(text), bool(grader.is_correct(text, c.problem.answer)))


def row(
    problem: Problem,
    strategy: str,
    config: str,
    run: int,
    position: int,
    outcome: Outcome,
    verifier_id: str,
    scored: Scored | None,
    agg: str,
    *,
    prompt_tokens: int,
    gen_tokens: int,
    gen_flops: float,
    verifier_flops: float,
    wall_s: float,
) -> dict:
    steps = [] if scored is None else [float(x) for x in scored.step_scores]
    return {
        "problem_id": problem.problem_id,
        "strategy": strategy,
        "config": config,
        "run": int(run),
        "position": int(position),
        "answer": outcome.answer,
        "correct": bool(outcome.correct),
        "verifier": verifier_id,
        "score": aggregate(steps, agg) if scored is not None else 0.0,
        "step_scores": steps,
        "prompt_tokens": int(prompt_tokens),
        "gen_tokens": int(gen_tokens),
        "gen_flops": float(gen_flops),
        "verifier_flops": float(verifier_flops),
        "wall_s": float(wall_s),
        # Not a column of the samples table (the sweep drops it): what the gateway returns as
        # the completion of a search or revision strategy.
        "text": outcome.candidate.text,
    }


def timed_score(v: Verifier, cands: Sequence[Candidate]) -> tuple[list[Scored], float]:
    t = time.perf_counter()
    s = v.score(cands)
    return s, time.perf_counter() - t

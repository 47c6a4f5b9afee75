"""Candidates of one request, the answer a decision's `select` picks, and the tokens and FLOPs
spent on them.

The selection rules are the curves' (`planner.estimate.curves`) applied to one drawn pool:
`majority` (most frequent answer), `best` (highest aggregated verifier score), `weighted`
(largest summed score per answer). Candidates without an extractable answer never win a vote;
ties go to the earliest candidate (deterministic, where the curves average over tie-breaks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from planner.strategies import aggregate


@dataclass
class Pick:
    """One candidate answer of a request: its text (None where a strategy kept only the extracted
    answer), extracted answer and step scores by verifier id."""

    text: str | None
    answer: str | None
    steps: dict[str, list[float]] = field(default_factory=dict)
    # The verifier's own aggregated score (the samples table's `score`), by verifier id.
    scores: dict[str, float] = field(default_factory=dict)
    gen_tokens: int = 0
    finish: str = "stop"
    # What a verifier reads (`profiling.verifiers.Candidate`) and the prompt's length in tokens;
    # None where the strategy returned rows only.
    candidate: Any = None
    prompt_tokens: int = 0

    def score(self, verifier: str, agg: str) -> float:
        steps = self.steps.get(verifier, [])
        if agg == "last" or not steps:
            return float(self.scores.get(verifier, 0.0))
        return aggregate(steps, agg)


@dataclass
class Spend:
    """Tokens and FLOPs spent on one request, by where they went."""

    prompt_tokens: int = 0
    probe_tokens: int = 0
    candidate_tokens: int = 0
    verifier_tokens: int = 0
    probe_flops: float = 0.0
    candidate_flops: float = 0.0
    verifier_flops: float = 0.0

    @property
    def completion_tokens(self) -> int:
        return self.probe_tokens + self.candidate_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens + self.verifier_tokens

    @property
    def total_flops(self) -> float:
        return self.probe_flops + self.candidate_flops + self.verifier_flops

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "probe_tokens": self.probe_tokens,
            "candidate_tokens": self.candidate_tokens,
            "verifier_tokens": self.verifier_tokens,
            "probe_flops": self.probe_flops,
            "candidate_flops": self.candidate_flops,
            "verifier_flops": self.verifier_flops,
            "total_flops": self.total_flops,
        }


def choose(picks: Sequence[Pick], select: str, verifier: str, agg: str) -> int:
    """Index of the candidate whose answer `select` chooses (0 for an empty vote)."""
    if not picks:
        raise ValueError("no candidates to choose from")
    if select == "best":
        scores = [p.score(verifier, agg) for p in picks]
        return max(range(len(picks)), key=lambda i: (scores[i], -i))
    totals: dict[str, float] = {}
    first: dict[str, int] = {}
    for i, p in enumerate(picks):
        if p.answer is None:
            continue
        w = 1.0 if select == "majority" else p.score(verifier, agg)
        totals[p.answer] = totals.get(p.answer, 0.0) + w
        first.setdefault(p.answer, i)
    if not totals:
        return 0
    win = max(totals, key=lambda a: (totals[a], -first[a]))
    # The winning answer's best-scored candidate gives the completion text.
    members = [i for i, p in enumerate(picks) if p.answer == win]
    if select == "majority":
        return members[0]
    return max(members, key=lambda i: (picks[i].score(verifier, agg), -i))

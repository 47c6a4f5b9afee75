"""Problems: what a strategy sees.

A `Problem` is an id, the prompt text (the question as the model should read it, before any
few-shot template), the gold answer and an optional difficulty label. Graders, which judge a
completion against the gold answer, are in `profiling.grading`; problem sets in
`profiling.sweep.datasets`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    problem_id: str
    prompt: str
    answer: str
    level: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.problem_id:
            raise ValueError("Problem.problem_id must not be empty")
        if not isinstance(self.prompt, str) or not self.prompt:
            raise ValueError(f"Problem {self.problem_id}: prompt must be a non-empty string")
        if not isinstance(self.answer, str):
            raise ValueError(f"Problem {self.problem_id}: answer must be a string")


def testbed_problems(items: Iterable[Any]) -> list[Problem]:
    """Problems from `models.testbed.task.TestbedProblem` objects (prompt = the testbed format)."""
    from models.testbed.task import format_prompt

    return [
        Problem(
            p.problem_id,
            format_prompt(p.question),
            str(p.answer),
            str(p.level),
            {"question": p.question},
        )
        for p in items
    ]

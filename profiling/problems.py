"""Problems and graders.

A `Problem` is what a strategy sees: an id, the prompt text (the question as the model should
read it, before any few-shot template), the gold answer and an optional difficulty label.
A grader extracts a normalised final answer from a completion and judges it. The testbed's grader
is `models.testbed.task`; dataset loaders (MATH, GSM8K) add theirs beside it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


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


@runtime_checkable
class Grader(Protocol):
    def extract_answer(self, completion: str) -> str | None: ...

    def is_correct(self, completion: str, answer: str) -> bool: ...


class TestbedGrader:
    """The testbed task's grader ("Answer: <int>" line)."""

    __test__ = False
    name = "testbed"

    def extract_answer(self, completion: str) -> str | None:
        from models.testbed import task

        return task.extract_answer(completion)

    def is_correct(self, completion: str, answer: str) -> bool:
        from models.testbed import task

        return task.is_correct(completion, answer)


_BOXED = re.compile(r"\\boxed\{")
_HASHES = re.compile(r"####\s*(.+)")
_ANSWER = re.compile(r"(?:^|\n)\s*(?:Final )?Answer:\s*(.+)", re.IGNORECASE)


def _last_boxed(text: str) -> str | None:
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    i = starts[-1]
    depth = 1
    j = i
    while j < len(text) and depth:
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
        j += 1
    return text[i:j - 1] if depth == 0 else None


def normalize_simple(text: str) -> str | None:
    text = text.strip().rstrip(".").strip().replace(",", "")
    text = re.sub(r"^\$|\$$", "", text).strip()
    if not text:
        return None
    if re.fullmatch(r"[+-]?\d+(\.0+)?", text):
        return str(int(float(text)))
    return text


class SimpleGrader:
    """A dependency-free grader: the last \\boxed{...}, '#### x' or 'Answer: x', compared as text.

    Dataset loaders with math-aware equivalence (math-verify) replace it for MATH.
    """

    name = "simple"

    def extract_answer(self, completion: str) -> str | None:
        boxed = _last_boxed(completion)
        if boxed is not None:
            return normalize_simple(boxed)
        for rx in (_HASHES, _ANSWER):
            found = rx.findall(completion)
            if found:
                return normalize_simple(found[-1].splitlines()[0])
        return None

    def is_correct(self, completion: str, answer: str) -> bool:
        got = self.extract_answer(completion)
        return got is not None and got == normalize_simple(answer)


GRADERS: dict[str, type] = {"testbed": TestbedGrader, "simple": SimpleGrader}


def get_grader(name: str) -> Grader:
    try:
        return GRADERS[name]()
    except KeyError:
        raise ValueError(f"unknown grader {name!r} (known: {', '.join(sorted(GRADERS))})") from None


def testbed_problems(items: Iterable[Any]) -> list[Problem]:
    """Problems from `models.testbed.task.TestbedProblem` objects (prompt = the testbed format)."""
    from models.testbed.task import format_prompt

    return [Problem(p.problem_id, format_prompt(p.question), str(p.answer), str(p.level),
                    {"question": p.question}) for p in items]

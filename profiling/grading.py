"""Graders: the normalised final answer of a completion, and whether it is right.

A grader has `extract_answer(completion) -> str | None` (the normalised answer that goes in the
samples table's `answer` column) and `is_correct(completion, answer) -> bool` (`answer` is the
gold answer as the data set writes it). `GRADERS` is the one registry, by the name a data set or a
strategy config (`grader = "..."`) gives:

- testbed: the CPU testbed task's "Answer: <int>" line (`models.testbed.task`);
- math: MATH / MATH-500, the last ``\\boxed{}`` (else "the answer is X");
- gsm8k: ``#### N``, else a boxed answer, else "the answer is N", else the last number;
- string: generic JSONL, the last ``\\boxed{}`` or the last line.

math, gsm8k and string decide equivalence with math-verify (sympy), so ``\\frac{1}{2}``, ``0.5``
and ``\\dfrac12`` agree; when math-verify cannot parse one side (names such as
``\\text{Evelyn}``, multiple-choice letters, base-n numerals such as ``52_8``), normalised
strings are compared, so such answers are still graded, exactly.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@runtime_checkable
class Grader(Protocol):
    def extract_answer(self, completion: str) -> str | None: ...

    def is_correct(self, completion: str, answer: str) -> bool: ...


@dataclass(frozen=True)
class TestbedGrader:
    """The testbed task's grader ("Answer: <int>" line). `models.testbed` is imported when a
    completion is graded: the package brings its training stack (seconds to import)."""

    __test__ = False  # not a pytest test class
    name: str = "testbed"

    def extract_answer(self, completion: str) -> str | None:
        from models.testbed import task

        return task.extract_answer(completion)

    def is_correct(self, completion: str, answer: str) -> bool:
        from models.testbed import task

        return task.is_correct(completion, answer)


_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_GSM8K_RE = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS_RE = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*([^\n]+)", re.IGNORECASE)
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` (balanced braces, stripped), or
    None when there is none; a last box left open falls back to the one before it. The brace-less
    ``\\boxed 5`` is not read (None)."""
    starts = [m.end() for m in _BOXED_RE.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
    return None


def gsm8k_gold(answer_field: str) -> str | None:
    """The number after ``####`` in a GSM8K answer field (commas removed)."""
    matches = _GSM8K_RE.findall(answer_field)
    if not matches:
        return None
    return matches[-1].strip().replace(",", "")


def normalize_string(text: str) -> str:
    """A conservative normal form for string comparison (the fallback when math-verify can't
    parse)."""
    s = text.strip()
    s = s.strip("$").strip()
    s = re.sub(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = s.replace("\\left", "").replace("\\right", "").replace("\\!", "").replace("\\,", "")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\%", "").replace("%", "")
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    if re.fullmatch(r"-?\d[\d,]*(?:\.\d+)?", s):
        s = s.replace(",", "")
        if "." in s:
            s = s.rstrip("0").rstrip(".")
    return s.lower()


def _latex(text: str) -> str:
    t = text.strip()
    return t if t.startswith("$") else f"${t}$"


@functools.lru_cache(maxsize=16384)
def _parse(text: str, main_thread: bool) -> tuple:
    from math_verify import parse

    # math-verify's timeouts use SIGALRM, which only works on the main thread (Ray actors, tqdm
    # monitors and notebooks may call us elsewhere); disable them there rather than crash.
    kwargs = {} if main_thread else {"parsing_timeout": None}
    try:
        return tuple(parse(_latex(text), **kwargs))
    except Exception:  # math-verify raises on some malformed LaTeX; treat as unparseable
        return ()


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@functools.lru_cache(maxsize=16384)
def answers_equivalent(predicted: str, gold: str) -> bool:
    """Whether two answer strings are mathematically equal (math-verify), else string-equal."""
    if predicted is None or gold is None:
        return False
    if normalize_string(predicted) == normalize_string(gold):
        return True
    main = _on_main_thread()
    g, p = _parse(gold, main), _parse(predicted, main)
    if not g or not p:
        return False
    from math_verify import verify

    kwargs = {} if main else {"timeout_seconds": None}
    try:
        return bool(verify(list(g), list(p), **kwargs))
    except Exception:
        return False


@dataclass(frozen=True)
class MathGrader:
    """MATH / MATH-500 style: the answer is the last ``\\boxed{}``; else 'the answer is X'."""

    name: str = "math"

    def extract_answer(self, completion: str) -> str | None:
        boxed = last_boxed(completion)
        if boxed is not None:
            return boxed or None
        m = _ANSWER_IS_RE.findall(completion)
        if m:
            ans = m[-1].strip().rstrip(".").strip().strip("$").strip()
            return ans or None
        return None

    def is_correct(self, completion: str, answer: str) -> bool:
        got = self.extract_answer(completion)
        return got is not None and answers_equivalent(got, answer)


@dataclass(frozen=True)
class GSM8KGrader:
    """GSM8K style: ``#### N``; else a boxed answer; else 'the answer is N'; else the last
    number."""

    name: str = "gsm8k"

    def extract_answer(self, completion: str) -> str | None:
        got = gsm8k_gold(completion)
        if got is None:
            got = last_boxed(completion)
        if got is None:
            m = _ANSWER_IS_RE.findall(completion)
            got = m[-1] if m else None
        if got is None:
            nums = _NUMBER_RE.findall(completion)
            got = nums[-1] if nums else None
        if got is None:
            return None
        got = got.strip().rstrip(".").strip("$").strip()
        nums = _NUMBER_RE.findall(got)
        # "$18 dollars" -> "18": keep the number when the phrase has exactly one.
        if len(nums) == 1 and not _NUMBER_RE.fullmatch(got):
            got = nums[0]
        return normalize_string(got) or None

    def is_correct(self, completion: str, answer: str) -> bool:
        got = self.extract_answer(completion)
        return got is not None and answers_equivalent(got, answer)


@dataclass(frozen=True)
class StringGrader:
    """Generic JSONL: the answer is the last line (or the last ``\\boxed{}``); math-verify then
    strings."""

    name: str = "string"

    def extract_answer(self, completion: str) -> str | None:
        boxed = last_boxed(completion)
        if boxed is not None:
            return boxed or None
        lines = [ln.strip() for ln in completion.strip().splitlines() if ln.strip()]
        if not lines:
            return None
        last = lines[-1]
        m = _ANSWER_IS_RE.search(last) or re.match(r"^answer\s*:\s*(.+)$", last, re.IGNORECASE)
        return (m.group(1) if m else last).strip().rstrip(".") or None

    def is_correct(self, completion: str, answer: str) -> bool:
        got = self.extract_answer(completion)
        return got is not None and answers_equivalent(got, answer)


GRADERS: dict[str, type[Grader]] = {
    "math": MathGrader,
    "gsm8k": GSM8KGrader,
    "string": StringGrader,
    "testbed": TestbedGrader,
}


def get_grader(name: str) -> Grader:
    try:
        return GRADERS[name]()
    except KeyError:
        raise ValueError(f"unknown grader {name!r} (known: {', '.join(sorted(GRADERS))})") from None

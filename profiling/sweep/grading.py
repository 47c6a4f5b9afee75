"""Answer extraction and grading for real problem sets: math-verify, with a plain-string fallback.

Graders follow the profiling grader protocol: `extract_answer(completion) -> str | None` (the
normalised final answer that goes in the samples table's `answer` column) and
`is_correct(completion, answer) -> bool` (`answer` is the gold answer as the dataset writes it).

Equivalence is decided by math-verify (sympy), so ``\\frac{1}{2}``, ``0.5`` and ``\\dfrac12`` agree.
When math-verify cannot parse one side (names such as ``\\text{Evelyn}``, multiple-choice letters,
base-n numerals such as ``52_8``), the fallback compares normalised strings, so such answers are
still graded, exactly.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass

__all__ = [
    "GSM8KGrader",
    "MathGrader",
    "StringGrader",
    "answers_equivalent",
    "gsm8k_gold",
    "last_boxed",
    "normalize_string",
]

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_GSM8K_RE = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS_RE = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*([^\n]+)", re.IGNORECASE)
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (balanced braces), or None when there is none."""
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
    """A conservative normal form for string comparison (the fallback when math-verify can't parse)."""
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
    """GSM8K style: ``#### N``; else a boxed answer; else 'the answer is N'; else the last number."""

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
    """Generic JSONL: the answer is the last line (or the last ``\\boxed{}``); math-verify then strings."""

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


GRADERS = {"math": MathGrader, "gsm8k": GSM8KGrader, "string": StringGrader}

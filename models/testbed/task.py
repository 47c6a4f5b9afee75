"""The testbed's synthetic step-by-step reasoning task: integer arithmetic with operator precedence.

A question is an expression of `level + 1` single-digit operands joined by `level` operators from
`+ - *` (e.g. ``3+8*2-5``); `level` is the difficulty knob. A solution reduces one operation per
line and restates the rest of the expression, so every line can be checked on its own
(``8*2=16>3+16-5``), then ends with a final answer line (``Answer: 14``)::

    Q: 3+8*2-5
    8*2=16>3+16-5
    3+16=19>19-5
    19-5=14>14
    Answer: 14

Why this shape: the restated expression makes an arithmetic slip visible in a single line (which is
what lets a larger LM's likelihood check steps), and answers span 0..999 (intermediate values are
kept in that range) so a wrong chain rarely lands on the right answer by luck and majority voting
is a meaningful baseline.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

STEP_DELIMITER = "\n"
PROMPT_FORMAT = "Q: {question}\n"
ANSWER_PREFIX = "Answer: "
ANSWER_FORMAT = ANSWER_PREFIX + "{answer}"
MAX_VALUE = 999
DEFAULT_LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)

_OPS = ("+", "-", "*")
_STEP_RE = re.compile(r"^(\d+)([+\-*])(\d+)=(\d+)>([0-9+\-*]+)$")
_EXPR_TOKEN_RE = re.compile(r"\d+|[+\-*]")


@dataclass(frozen=True)
class TestbedProblem:
    """One question with its gold answer and gold solution (step lines, without the answer line)."""

    __test__ = False  # not a pytest test class despite the name

    problem_id: str
    question: str
    answer: str
    level: int
    solution: str

    def __post_init__(self) -> None:
        if self.level < 1:
            raise ValueError(f"level must be >= 1, got {self.level}")
        if not self.problem_id:
            raise ValueError("problem_id must not be empty")

    @property
    def completion(self) -> str:
        """The gold completion: step lines and the final answer line (what the policy is trained
        on)."""
        return self.solution + STEP_DELIMITER + ANSWER_FORMAT.format(answer=self.answer)


def format_prompt(question: str) -> str:
    """The exact text every testbed model is conditioned on before the first step."""
    return PROMPT_FORMAT.format(question=question)


# --- expressions ------------------------------------------------------------------------------


def _tokens(expr: str) -> list[str] | None:
    """Split an expression into alternating numbers and operators; None if it is malformed."""
    toks = _EXPR_TOKEN_RE.findall(expr)
    if "".join(toks) != expr or not toks or len(toks) % 2 == 0:
        return None
    for i, t in enumerate(toks):
        if (i % 2 == 0) != t.isdigit():
            return None
    return toks


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _next_index(toks: Sequence[str]) -> int:
    """Index of the operator the canonical solution reduces next: leftmost `*`, else leftmost."""
    for i in range(1, len(toks), 2):
        if toks[i] == "*":
            return i
    return 1


def _reduce(toks: Sequence[str], i: int) -> list[str]:
    value = _apply(int(toks[i - 1]), toks[i], int(toks[i + 1]))
    return [*toks[: i - 1], str(value), *toks[i + 2 :]]


def evaluate(expr: str) -> int | None:
    """Value of an expression with the usual precedence; None if malformed."""
    toks = _tokens(expr)
    if toks is None:
        return None
    while len(toks) > 1:
        toks = _reduce(toks, _next_index(toks))
    return int(toks[0])


def solve(question: str) -> tuple[list[str], int] | None:
    """Canonical step lines and the answer; None if an intermediate value leaves 0..MAX_VALUE."""
    toks = _tokens(question)
    if toks is None:
        return None
    lines = []
    while len(toks) > 1:
        i = _next_index(toks)
        a, op, b = toks[i - 1], toks[i], toks[i + 1]
        toks = _reduce(toks, i)
        value = int(toks[i - 1])
        if not 0 <= value <= MAX_VALUE:
            return None
        lines.append(f"{a}{op}{b}={value}>{''.join(toks)}")
    return lines, int(toks[0])


def _random_question(rng: random.Random, level: int) -> str:
    parts = [str(rng.randint(1, 9))]
    for _ in range(level):
        parts += [rng.choice(_OPS), str(rng.randint(1, 9))]
    return "".join(parts)


def make_problem(problem_id: str, question: str, level: int | None = None) -> TestbedProblem:
    solved = solve(question)
    if solved is None:
        raise ValueError(f"question {question!r} is malformed or leaves 0..{MAX_VALUE}")
    lines, answer = solved
    return TestbedProblem(
        problem_id=problem_id,
        question=question,
        answer=str(answer),
        level=len(lines) if level is None else level,
        solution=STEP_DELIMITER.join(lines),
    )


def sample_problem(rng: random.Random, level: int, problem_id: str = "p") -> TestbedProblem:
    """Draw one problem of `level` operations (rejection sampling keeps values in 0..MAX_VALUE)."""
    while True:
        question = _random_question(rng, level)
        if solve(question) is not None:
            return make_problem(problem_id, question, level)


def generate_problems(
    n: int, seed: int, levels: Sequence[int] | None = None
) -> list[TestbedProblem]:
    """`n` seeded problems, levels cycling through `levels` (default 1..8), ids ``tb-<seed>-<i>``.

    The levels are assigned round-robin so every level gets n/len(levels) problems; the same
    (n, seed, levels) always gives the same list, and a longer list extends a shorter one.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    levels = tuple(DEFAULT_LEVELS if levels is None else levels)
    if not levels or any(int(k) < 1 for k in levels):
        raise ValueError(f"levels must be a non-empty list of integers >= 1, got {levels!r}")
    out = []
    for i in range(n):
        # One RNG per problem, so problem i does not depend on n.
        rng = random.Random(f"testbed-problem:{seed}:{i}")
        out.append(sample_problem(rng, int(levels[i % len(levels)]), f"tb-{seed}-{i}"))
    return out


# --- grading ----------------------------------------------------------------------------------


def is_answer_line(line: str) -> bool:
    """The line states the final answer (`Answer: N`)."""
    return line.startswith(ANSWER_PREFIX.strip())


def split_lines(completion: str) -> tuple[list[str], str | None]:
    """(step lines, final answer line or None). Lines after the first answer line are ignored."""
    steps: list[str] = []
    for line in completion.split(STEP_DELIMITER):
        if is_answer_line(line):
            return steps, line
        if line.strip():
            steps.append(line)
    return steps, None


def normalize_answer(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        return str(int(text))
    return text


def extract_answer(completion: str) -> str | None:
    """The normalised final answer (integers without sign or leading zeros), None if absent."""
    _, answer_line = split_lines(completion)
    if answer_line is None:
        return None
    return normalize_answer(answer_line[len(ANSWER_PREFIX.strip()) :])


def is_correct(completion: str, answer: str) -> bool:
    got = extract_answer(completion)
    return got is not None and got == normalize_answer(answer)


def check_step(previous: str, line: str, answer: int) -> bool:
    """Whether `line` is a correct reduction of the expression `previous` (value-preserving).

    Correct means: the line parses, its arithmetic ``a op b = c`` is right, the restated expression
    is `previous` with one occurrence of ``a op b`` replaced by ``c``, and its value is still the
    answer (so reducing a `+` before a `*` it binds to is wrong, any other valid order is right).
    """
    m = _STEP_RE.match(line.strip())
    prev = _tokens(previous)
    if m is None or prev is None:
        return False
    a, op, b, c, rest = m.groups()
    if _apply(int(a), op, int(b)) != int(c):
        return False
    rest_toks = _tokens(rest)
    if rest_toks is None or len(rest_toks) != len(prev) - 2:
        return False
    if not any(
        prev[i - 1 : i + 2] == [a, op, b] and _splice(prev, i, c) == rest_toks
        for i in range(1, len(prev), 2)
    ):
        return False
    return evaluate(rest) == answer


def _splice(toks: Sequence[str], i: int, value: str) -> list[str]:
    return [*toks[: i - 1], value, *toks[i + 2 :]]


def check_steps(problem: TestbedProblem, completion: str) -> list[bool]:
    """Per-step correctness of a completion's step lines (the answer line is not a step).

    A step is correct when it and every step before it are correct reductions (see `check_step`):
    the chain's prefix up to that step can still reach the right answer. Used only to *evaluate*
    verifiers, never to train them. Extra lines after the expression is reduced to a number are
    wrong; a malformed line makes it and every later step wrong.
    """
    steps, _ = split_lines(completion)
    answer = int(problem.answer)
    state = problem.question
    out: list[bool] = []
    ok = True
    for line in steps:
        ok = ok and check_step(state, line, answer)
        out.append(ok)
        if ok:
            state = line.strip().split(">", 1)[1]
    return out


def chain_correct(problem: TestbedProblem, completion: str) -> bool:
    """The whole chain is right: every step correct, fully reduced, and the right final answer."""
    steps = check_steps(problem, completion)
    return (
        bool(steps)
        and all(steps)
        and len(steps) == problem.level
        and is_correct(completion, problem.answer)
    )

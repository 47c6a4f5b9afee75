"""The reviser's prompt and its training examples (torch-free: the harness and tests read them).

Prompt: the earlier attempts come first, each as a worked example of the same question ended by
<eos>, and the question last, so the text right before the new attempt is the plain prompt::

    Q: 6-1\n6-1=4>4\nAnswer: 4<eos>Q: 6-1\n6-1=3>3\nAnswer: 3<eos>Q: 6-1\n   <- new attempt

Three recipes of (prompt, target) pairs, chosen by `ReviserSpec.context` (models/testbed/reviser.py
says what each measured):
- `wrong`, the paper's: 0-4 incorrect attempts in context, then a correct one;
- `sampled`: 0-4 attempts as sampled, right or wrong, then a right one;
- `fix`: contrast pairs. The most recent attempt in context is right in half the examples and wrong
  in the other half; the target copies its lines up to its first wrong line and continues
  correctly from there (a right attempt is copied whole: kept), so the reviser learns to fix the
  attempt in front of it rather than to start again, and to keep a right one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from models.testbed import task
from models.testbed.tokenizer import BAD_TOKEN, EOS_TOKEN

MAX_ATTEMPTS = 4
# The harness's templates (profiling.strategies.revisions): attempts, each after the prompt and
# ended by <eos> as in the packed pretraining rows, then the prompt again.
ATTEMPT_FORMAT = "{prompt}{attempt}" + EOS_TOKEN
REVISER_PROMPT_FORMAT = "{attempts}{prompt}"
MAX_PROMPT_TOKENS = 760  # leaves room for a level-8 answer within the 1024 positions
CONTEXTS = ("wrong", "sampled", "fix", "feedback")
# `feedback`: a line of an earlier attempt that the verifier flags ends with <bad>. At test time
# the flag is the first line whose mean token log-prob under the larger LM is below this; on 600
# policy attempts at levels 1-5 (default testbed) that line was the step checker's first wrong
# line (or the answer line of an answer-only slip, or none for a right attempt) 98.7% of the time
# (-0.05: 98.2%, -0.2: 96.0%, -0.5: 79.7%).
FEEDBACK_THRESHOLD = -0.1
FLAG = BAD_TOKEN


def clean_attempt(attempt: str) -> str:
    """An attempt as shown in context: its lines up to the answer line."""
    lines = [line for line in attempt.split(task.STEP_DELIMITER) if line.strip()]
    for i, line in enumerate(lines):
        if task.is_answer_line(line):
            lines = lines[: i + 1]
            break
    return task.STEP_DELIMITER.join(lines)


def format_reviser_prompt(question: str, attempts: Sequence[str]) -> str:
    """The reviser's prompt: the (at most 4) most recent attempts, oldest first, then the question.

    Oldest attempts are dropped while the prompt would exceed MAX_PROMPT_TOKENS characters.
    """
    kept = [clean_attempt(a) for a in attempts[-MAX_ATTEMPTS:]]
    prompt = task.format_prompt(question)
    while True:
        text = REVISER_PROMPT_FORMAT.format(
            prompt=prompt,
            attempts="".join(ATTEMPT_FORMAT.format(prompt=prompt, attempt=a) for a in kept),
        )
        if len(text) <= MAX_PROMPT_TOKENS or not kept:
            return text
        kept = kept[1:]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one character each)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def revision_examples(
    problems: Sequence[task.TestbedProblem],
    attempts: Sequence[Sequence[str]],
    rng: random.Random,
    keep_share: float = 0.0,
) -> list[tuple[str, str]]:
    """(prompt, target completion) pairs: 0-4 incorrect attempts, then a correct one.

    A question with no incorrect attempt gets 0 or 1 attempts in context, the one a correct
    attempt; with probability `keep_share` an example with incorrect attempts also ends its
    context with a correct one. The target is then another correct attempt when there is one."""
    out = []
    for p, atts in zip(problems, attempts, strict=True):
        atts = [clean_attempt(a) for a in atts]
        right = [a for a in atts if task.is_correct(a, p.answer)]
        wrong = [a for a in atts if not task.is_correct(a, p.answer)]
        target = rng.choice(right) if right else p.completion
        # the wrong attempt closest to the target: the last one in context when wrong ones are shown
        closest = min(wrong, key=lambda w: (edit_distance(w, target), w)) if wrong else None
        for _ in range(2):
            m = rng.randint(0, min(MAX_ATTEMPTS, len(wrong) + (1 if right else 0)))
            if m == 0:
                ctx: list[str] = []
            elif right and (not wrong or rng.random() < keep_share):
                others = rng.sample(wrong, min(m - 1, len(wrong)))
                last = rng.choice(right)
                target_k = rng.choice([r for r in right if r is not last] or [last])
                out.append((format_reviser_prompt(p.question, [*others, last]), target_k))
                continue
            else:
                m = min(m, len(wrong))
                others = [w for w in wrong if w is not closest]
                ctx = [*rng.sample(others, min(m - 1, len(others))), closest]
            out.append((format_reviser_prompt(p.question, ctx), target))
    return out


def sampled_context_examples(
    problems: Sequence[task.TestbedProblem],
    attempts: Sequence[Sequence[str]],
    rng: random.Random,
) -> list[tuple[str, str]]:
    """(prompt, target) pairs whose context is 0-4 of the policy's attempts as sampled, right or
    wrong, and whose target is another right attempt (the gold solution if none is right).

    A departure from the paper's data (context of wrong attempts only), recorded in the manifest.
    Why: a test-time chain holds right attempts too, and the paper's data teaches the reviser that
    whatever is in context is wrong. With sampled contexts the target agrees with the context's
    right lines and not with its slips, so the reviser learns to keep what earlier attempts got
    right; measured against the paper's data in `benchmarks/testbed_quality.py`.
    """
    out = []
    for p, atts in zip(problems, attempts, strict=True):
        atts = [clean_attempt(a) for a in atts]
        right = [i for i, a in enumerate(atts) if task.is_correct(a, p.answer)]
        for _ in range(2):
            t = rng.choice(right) if right else None
            others = [i for i in range(len(atts)) if i != t]
            m = rng.randint(0, min(MAX_ATTEMPTS, len(others)))
            ctx = [atts[i] for i in rng.sample(others, m)]
            out.append(
                (format_reviser_prompt(p.question, ctx), atts[t] if t is not None else p.completion)
            )
    return out


def flag_line(attempt: str, index: int | None) -> str:
    """The attempt as shown in context, its line `index` (None: none) marked with FLAG."""
    lines = clean_attempt(attempt).split(task.STEP_DELIMITER)
    if index is not None and index < len(lines):
        lines[index] += FLAG
    return task.STEP_DELIMITER.join(lines)


def first_wrong_line(problem: task.TestbedProblem, attempt: str) -> int | None:
    """The step checker's first wrong line of an attempt (the answer line when only the answer
    is wrong), None for a right attempt. Training data only: at test time a verifier flags."""
    ok = task.check_steps(problem, attempt)
    first = next((i for i, good in enumerate(ok) if not good), None)
    if first is None and not task.is_correct(attempt, problem.answer):
        return len(ok)
    return first


def fix_target(problem: task.TestbedProblem, attempt: str) -> str:
    """The attempt's lines up to its first wrong line, then the canonical correct continuation
    from the expression those lines reached, then the answer; a right attempt comes back whole.

    The first wrong line is found with the step checker (`task.check_steps`): a departure from the
    paper, which picks near-miss attempts by edit distance. Only training targets use it, never
    the reviser at test time.
    """
    steps, _ = task.split_lines(clean_attempt(attempt))
    ok = task.check_steps(problem, attempt)
    n = next((i for i, good in enumerate(ok) if not good), len(ok))
    kept = [line.strip() for line in steps[:n]]
    state = kept[-1].split(">", 1)[1] if kept else problem.question
    solved = task.solve(state)
    if solved is None or str(solved[1]) != task.normalize_answer(problem.answer):
        return problem.completion  # the canonical order from there leaves 0..999
    lines, answer = solved
    return task.STEP_DELIMITER.join([*kept, *lines, task.ANSWER_FORMAT.format(answer=answer)])


def contrast_examples(
    problems: Sequence[task.TestbedProblem],
    attempts: Sequence[Sequence[str]],
    rng: random.Random,
    per_kind: int = 2,
    flagged: bool = False,
) -> list[tuple[str, str]]:
    """(prompt, target) contrast pairs: per question, `per_kind` examples whose most recent
    attempt in context is right (target: that attempt, kept) and `per_kind` whose most recent
    attempt is wrong (target: `fix_target`), each after 0-3 other attempts of the question as
    sampled. Right means every line right (`fix_target` returns it unchanged). A question with no
    right attempt keeps its gold solution; one with no wrong attempt has nothing to fix.
    `flagged` (the `feedback` recipe): every attempt in context has its first wrong line flagged
    (`flag_line`, from the step checker: the larger LM flags them at test time)."""
    out = []
    for p, atts in zip(problems, attempts, strict=True):
        shown = [clean_attempt(a) for a in atts]
        targets = [fix_target(p, a) for a in shown]
        right = [i for i, (a, t) in enumerate(zip(shown, targets, strict=True)) if a == t]
        wrong = [i for i in range(len(shown)) if i not in right]
        if not right:
            shown.append(p.completion)
            targets.append(p.completion)
            right = [len(shown) - 1]
        if flagged:
            shown = [flag_line(a, first_wrong_line(p, a)) for a in shown]
        for kind in (right, wrong):
            if not kind:
                continue
            for i in (rng.choice(kind) for _ in range(per_kind)):
                others = [j for j in range(len(atts)) if j != i]
                m = rng.randint(0, min(MAX_ATTEMPTS - 1, len(others)))
                ctx = [shown[j] for j in rng.sample(others, m)] + [shown[i]]
                out.append((format_reviser_prompt(p.question, ctx), targets[i]))
    return out

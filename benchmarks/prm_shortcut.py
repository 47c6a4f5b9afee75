"""What a PRM's top-scored wrong solutions share (used by `prm_recipes.py --analyse`).

Within each question that has right and wrong solutions, the PRM's top pick (by the answer
line's score) is compared with the question's other solutions: the kind and place of the first
error, the length against the gold solution, and whether the answer line restates the last
line's value. A feature far more common among the top-scored wrong picks than among wrong
solutions in general is what the PRM rewards instead of correct steps.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from models.testbed import task

KINDS = ("arith", "copy", "order", "malformed", "unfinished", "no_answer", "answer_copy", "lucky")


def first_error(question: str, answer: str, completion: str) -> tuple[str, int]:
    """The kind of a solution's first error and its line index (`lucky`: no error in the
    steps and the answer line right, but the answer is graded wrong; never for right ones):

    arith: `a op b = c` is wrong; copy: the restated expression is not the previous one with
    that operation replaced; order: both hold but the value changed (a `+` reduced before the `*`
    it binds to); malformed: the line does not parse; unfinished: the steps stop before one
    number is left; no_answer: no answer line; answer_copy: the answer line differs from the
    last line's value."""
    steps, answer_line = task.split_lines(completion)
    state = question
    gold = int(answer)
    for i, line in enumerate(steps):
        m = task._STEP_RE.match(line.strip())
        prev = task._tokens(state)
        if m is None or prev is None:
            return "malformed", i
        a, op, b, c, rest = m.groups()
        if task._apply(int(a), op, int(b)) != int(c):
            return "arith", i
        rest_toks = task._tokens(rest)
        if rest_toks is None or not any(
            prev[j - 1 : j + 2] == [a, op, b] and task._splice(prev, j, c) == rest_toks
            for j in range(1, len(prev), 2)
        ):
            return "copy", i
        if task.evaluate(rest) != gold:
            return "order", i
        state = rest
    if len(task._tokens(state) or []) > 1:
        return "unfinished", len(steps)
    if answer_line is None:
        return "no_answer", len(steps)
    if task.extract_answer(completion) != task.normalize_answer(state):
        return "answer_copy", len(steps)
    return "lucky", len(steps)


def _restates_last(completion: str) -> bool:
    """The answer line gives the value the last step line left (right or wrong)."""
    steps, _ = task.split_lines(completion)
    if not steps or ">" not in steps[-1]:
        return False
    return task.extract_answer(completion) == task.normalize_answer(steps[-1].split(">", 1)[1])


def analyse(pool: dict, scores: list[list[list[float]]]) -> dict:
    """Print and return the comparison of top-scored wrong picks with the other solutions."""
    top_wrong, wrong, right = [], [], []
    for r, sc in zip(pool["rows"], scores, strict=True):
        if all(r["correct"]) or not any(r["correct"]):
            continue
        gold_steps = r["level"]
        last = [s[-1] if s else 0.0 for s in sc]
        best = int(np.argmax(last))
        for i, (c, ok) in enumerate(zip(r["completions"], r["correct"], strict=True)):
            steps, _ = task.split_lines(c)
            kind, at = ("right", -1) if ok else first_error(r["question"], r["answer"], c)
            f = {
                "kind": kind,
                "at_rel": at / max(1, len(steps)) if at >= 0 else None,
                "late": at >= len(steps) - 1 if at >= 0 else None,
                "length": np.sign(len(steps) - gold_steps),
                "restates": _restates_last(c),
                "score": last[i],
                "rank": int((np.asarray(last) > last[i]).sum()),
            }
            (right if ok else wrong).append(f)
            if i == best and not ok:
                top_wrong.append(f)
    n_q = sum(1 for r in pool["rows"] if any(r["correct"]) and not all(r["correct"]))
    print(
        f"\nshortcut analysis: {n_q} questions with right and wrong solutions; the PRM's top pick "
        f"is wrong in {len(top_wrong)} of them"
    )
    print("first error            | top-scored wrong | all wrong | mean answer-line score")
    kinds = Counter(f["kind"] for f in wrong)
    top = Counter(f["kind"] for f in top_wrong)
    for k in KINDS:
        if kinds[k]:
            mean = np.mean([f["score"] for f in wrong if f["kind"] == k])
            print(
                f"{k:22s} | {top[k] / max(1, len(top_wrong)):16.1%} | "
                f"{kinds[k] / len(wrong):9.1%} | {mean:.3f}"
            )
    print(
        f"{'(right solutions)':22s} | {'':16s} | {'':9s} | "
        f"{np.mean([f['score'] for f in right]):.3f}"
    )

    def share(rows: list[dict], key: str, value: object) -> float:
        return sum(f[key] == value for f in rows) / max(1, len(rows))

    lines = [
        ("first error on the last step line or later", "late", True),
        ("answer line restates the last line's value", "restates", True),
        ("fewer lines than the gold solution", "length", -1),
        ("more lines than the gold solution", "length", 1),
    ]
    print("\nfeature                                     | top wrong | all wrong | right")
    for label, key, value in lines:
        print(
            f"{label:43s} | {share(top_wrong, key, value):9.1%} | {share(wrong, key, value):9.1%}"
            f" | {share(right, key, value):5.1%}"
        )
    rel = [f["at_rel"] for f in top_wrong if f["at_rel"] is not None]
    rel_all = [f["at_rel"] for f in wrong if f["at_rel"] is not None]
    print(
        f"first error's place (0 first line, 1 after the last): top wrong "
        f"{np.mean(rel):.2f}, all wrong {np.mean(rel_all):.2f}"
    )
    return {"top_wrong": dict(top), "wrong": dict(kinds), "n_top_wrong": len(top_wrong)}

"""The reviser's contrast data (fix the attempt in front, keep a right one) and the revision
figures' transition rates, on hand-made attempts whose first wrong line is known."""

from __future__ import annotations

import random

import pytest

from models.testbed import task
from models.testbed.revision_data import (
    CONTEXTS,
    clean_attempt,
    contrast_examples,
    fix_target,
    format_reviser_prompt,
)
from models.testbed.settings import TestbedSettings
from models.testbed.train import MODEL_DIRS, REVISER_TRAINING, build_manifest

P = task.make_problem("r", "3+8*2-5")
# A valid order other than the canonical one (16-5 before 3+16), then a slip on the third line.
OTHER_ORDER_SLIP = "8*2=16>3+16-5\n16-5=11>3+11\n3+11=15>15\nAnswer: 15"
SLIP_AT_TWO = "8*2=16>3+16-5\n3+16=20>20-5\n20-5=15>15\nAnswer: 15"
WRONG_ANSWER_LINE = "8*2=16>3+16-5\n3+16=19>19-5\n19-5=14>14\nAnswer: 13"


def test_fix_target_copies_up_to_the_first_wrong_line_then_continues_correctly() -> None:
    # the fix keeps the attempt's own (valid, non-canonical) order: it fixes, it does not restart
    assert fix_target(P, OTHER_ORDER_SLIP) == "8*2=16>3+16-5\n16-5=11>3+11\n3+11=14>14\nAnswer: 14"
    assert fix_target(P, SLIP_AT_TWO) == P.completion
    assert fix_target(P, WRONG_ANSWER_LINE) == P.completion  # every step right: only the answer
    assert fix_target(P, "3+8=11>11*2-5\nAnswer: 17") == P.completion  # wrong from the first line
    assert fix_target(P, P.completion + "\n") == P.completion  # a right attempt is kept whole
    for bad in (OTHER_ORDER_SLIP, SLIP_AT_TWO, WRONG_ANSWER_LINE):
        assert task.chain_correct(P, fix_target(P, bad))


def test_contrast_examples_balance_keeping_and_fixing() -> None:
    right, wrong = [P.completion], [OTHER_ORDER_SLIP, SLIP_AT_TWO]
    examples = contrast_examples([P] * 30, [wrong + right] * 30, random.Random(0), per_kind=2)
    assert len(examples) == 30 * 4
    last = [
        q.rsplit("<eos>", 2)[-2].rsplit(task.format_prompt(P.question), 1)[-1] for q, _ in examples
    ]
    kept = [(a, t) for a, (_, t) in zip(last, examples, strict=True) if a == P.completion]
    fixed = [(a, t) for a, (_, t) in zip(last, examples, strict=True) if a != P.completion]
    assert len(kept) == len(fixed) == 60  # half keep, half fix
    assert all(t == a for a, t in kept)
    assert {a for a, _ in fixed} == set(wrong)
    assert all(t == fix_target(P, a) for a, t in fixed)
    for q, _ in examples:
        assert q.endswith(task.format_prompt(P.question)) and 2 <= q.count("Q: ") <= 5
    # a question never solved keeps its gold solution; one never wrong has nothing to fix
    gold = contrast_examples([P], [wrong], random.Random(1), per_kind=2)
    assert sum(q.endswith(format_reviser_prompt(P.question, [P.completion])) for q, _ in gold) == 2
    assert len(contrast_examples([P], [right * 3], random.Random(1), per_kind=2)) == 2
    assert clean_attempt(P.completion + "\nAnswer: 3") == P.completion


def test_transition_rates_count_right_to_wrong_and_wrong_to_right() -> None:
    from models.testbed.reviser_eval import transition_rates

    # question 1: R R W R ; R W W W   question 2: W W R R
    chains = [
        [[True, True, False, True], [True, False, False, False]],
        [[False, False, True, True]],
    ]
    res = transition_rates(chains, seed=0)
    # R->W: 1 of 2 right (chain 1), 1 of 1 (chain 2), 0 of 1 (chain 3): 2 of 4
    r2w = res["all_steps"]["right_to_wrong"]
    assert (r2w["rate"], r2w["n"]) == (0.5, 4)
    # W->R: 1 of 1 (chain 1), 0 of 2 (chain 2), 1 of 2 (chain 3): 2 of 5
    w2r = res["all_steps"]["wrong_to_right"]
    assert (w2r["rate"], w2r["n"]) == (0.4, 5)
    lo, hi = w2r["ci95"]
    assert lo <= 0.4 <= hi and lo < hi
    # per step: step 1 (attempt 0 -> 1): right 2, one turned wrong; wrong 1, stayed wrong
    assert res["by_step"][0]["right_to_wrong"]["rate"] == 0.5
    assert res["by_step"][0]["wrong_to_right"]["rate"] == 0.0
    assert len(res["by_step"]) == 3


def test_feedback_examples_flag_the_first_wrong_line_of_every_attempt_in_context() -> None:
    from models.testbed.revision_data import FLAG, first_wrong_line, flag_line

    assert first_wrong_line(P, OTHER_ORDER_SLIP) == 2
    assert first_wrong_line(P, SLIP_AT_TWO) == 1
    assert first_wrong_line(P, WRONG_ANSWER_LINE) == 3  # only the answer line is wrong
    assert first_wrong_line(P, P.completion) is None
    assert flag_line(SLIP_AT_TWO, 1).split("\n")[1] == "3+16=20>20-5" + FLAG
    assert flag_line(P.completion, None) == P.completion
    examples = contrast_examples(
        [P] * 20, [[SLIP_AT_TWO, P.completion]] * 20, random.Random(0), flagged=True
    )
    for q, t in examples:
        assert FLAG not in t  # the reviser writes plain attempts
        # the wrong attempt is always shown flagged at its slip, the right one never
        assert SLIP_AT_TWO + "<eos>" not in q
        assert q.count(FLAG) == q.count(flag_line(SLIP_AT_TWO, 1) + "<eos>")
    assert any(FLAG in q for q, _ in examples) and any(FLAG not in q for q, _ in examples)


def test_transition_rates_compare_with_resampling_at_each_questions_accuracy() -> None:
    from models.testbed.reviser_eval import transition_rates

    # a reviser that keeps a right attempt and fixes a wrong one at once: rates 0 and 1, against
    # what attempts drawn afresh at each question's accuracy would give
    keep = [[[True] * 5, [False] + [True] * 4], [[False, True, True, True, True]] * 5]
    res = transition_rates(keep, seed=0)
    assert res["all_steps"]["right_to_wrong"]["rate"] == 0.0
    assert res["all_steps"]["wrong_to_right"]["rate"] == 1.0
    ref = res["if_resampled"]
    # q1: p = 0.9, 8 transitions; q2: p = 0.8, 20 transitions
    rw = 8 * 0.9 * 0.1 + 20 * 0.8 * 0.2
    assert ref["right_to_wrong"] == round(rw / (8 * 0.9 + 20 * 0.8), 4)
    assert ref["wrong_to_right"] == round(rw / (8 * 0.1 + 20 * 0.2), 4)


@pytest.mark.parametrize("context", CONTEXTS)
def test_the_manifest_describes_every_reviser_recipe(context: str) -> None:
    # Every recipe a scale can train gets its manifest written (the default and paper scales
    # train `fix`, which no quick test trains end to end).
    settings = TestbedSettings(quick=False, scale="default", seed=0)
    records = {n: {"params": 10, "train_seconds": 1.0} for n in MODEL_DIRS}
    records["reviser"]["context"] = context
    records["quality"] = {}
    manifest = build_manifest(settings, records)
    assert manifest["reviser"]["context"] == context
    assert manifest["reviser"]["training"] == REVISER_TRAINING[context]
    assert {s.reviser.context for s in map(_scale, ("default", "paper"))} <= set(REVISER_TRAINING)


def _scale(scale: str) -> TestbedSettings:
    return TestbedSettings(quick=False, scale=scale, seed=0)

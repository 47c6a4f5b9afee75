"""The testbed task (generator, grader, step checker) and its tokenizer; no training needed."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.testbed import task
from models.testbed.task import (
    STEP_DELIMITER,
    TestbedProblem,
    check_steps,
    extract_answer,
    format_prompt,
    generate_problems,
    is_correct,
)
from models.testbed.tokenizer import (
    BAD_TOKEN,
    CHARACTERS,
    GOOD_TOKEN,
    STEP_TAG,
    CharCodec,
    build_tokenizer,
)


def test_generate_problems_is_seeded_and_stable() -> None:
    a = generate_problems(24, seed=3)
    b = generate_problems(24, seed=3)
    assert a == b
    assert [p.problem_id for p in a] == [f"tb-3-{i}" for i in range(24)]
    assert generate_problems(10, seed=3) == a[:10]  # a longer list extends a shorter one
    assert generate_problems(24, seed=4) != a
    assert [p.level for p in a[:8]] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_levels_knob_and_gold_solutions() -> None:
    probs = generate_problems(60, seed=0, levels=[2, 5])
    assert {p.level for p in probs} == {2, 5}
    for p in probs:
        assert p.question.count("+") + p.question.count("-") + p.question.count("*") == p.level
        assert len(p.solution.split(STEP_DELIMITER)) == p.level
        assert eval(p.question) == int(p.answer)  # Python's precedence is the task's
        assert 0 <= int(p.answer) <= task.MAX_VALUE
        assert check_steps(p, p.completion) == [True] * p.level
        assert is_correct(p.completion, p.answer)
        assert task.chain_correct(p, p.completion)


def test_answers_are_diverse() -> None:
    hard = [p.answer for p in generate_problems(800, seed=1) if p.level >= 6]
    # Guessing must be rare: no answer covers more than a few percent of hard questions.
    assert len(set(hard)) > 100
    assert max(hard.count(a) for a in set(hard)) / len(hard) < 0.05


def test_problem_is_frozen_and_checked() -> None:
    p = generate_problems(1, seed=0)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.answer = "1"  # type: ignore[misc]
    with pytest.raises(ValueError):
        TestbedProblem("x", "1+1", "2", 0, "1+1=2>2")
    with pytest.raises(ValueError):
        generate_problems(3, seed=0, levels=[0])


def test_prompt_format_and_example() -> None:
    p = task.make_problem("e", "3+8*2-5")
    assert format_prompt(p.question) == "Q: 3+8*2-5\n"
    assert p.completion == "8*2=16>3+16-5\n3+16=19>19-5\n19-5=14>14\nAnswer: 14"
    assert p.answer == "14"


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("1+2=3>3\nAnswer: 3", "3"),
        ("Answer: 007", "7"),
        ("Answer:  12 ", "12"),
        ("1+2=3>3\nAnswer: 3\nAnswer: 4", "3"),  # the first answer line counts
        ("1+2=3>3", None),
        ("Answer:", None),
        ("", None),
        ("Answer: x1", "x1"),
    ],
)
def test_extract_answer(completion: str, expected: str | None) -> None:
    assert extract_answer(completion) == expected


def test_is_correct() -> None:
    assert is_correct("Answer: 14", "14")
    assert is_correct("Answer: 014", "14")
    assert not is_correct("Answer: 15", "14")
    assert not is_correct("14", "14")


def test_check_steps_detects_the_first_wrong_step() -> None:
    p = task.make_problem("e", "3+8*2-5")
    wrong_arith = "8*2=16>3+16-5\n3+16=18>18-5\n18-5=13>13\nAnswer: 13"
    assert check_steps(p, wrong_arith) == [True, False, False]
    wrong_copy = "8*2=16>3+16-6\n3+16=19>19-6\n19-6=13>13\nAnswer: 13"
    assert check_steps(p, wrong_copy) == [False, False, False]
    bad_precedence = "3+8=11>11*2-5\n11*2=22>22-5\n22-5=17>17\nAnswer: 17"
    assert check_steps(p, bad_precedence) == [False, False, False]
    # Another valid order of reductions is right (only value-preserving reductions are).
    q = task.make_problem("f", "2*3+4*5")
    alt = "4*5=20>2*3+20\n2*3=6>6+20\n6+20=26>26\nAnswer: 26"
    assert check_steps(q, alt) == [True, True, True]
    assert task.chain_correct(q, alt)


def test_check_steps_on_malformed_completions() -> None:
    p = task.make_problem("e", "3+8*2-5")
    assert check_steps(p, "") == []
    assert check_steps(p, "Answer: 14") == []
    assert check_steps(p, "hello\n8*2=16>3+16-5") == [False, False]
    assert check_steps(p, "8*2=16>3+16-5\n3+16=19>19-5\n19-5=14>14\n14=14>14\nAnswer: 14") == [
        True,
        True,
        True,
        False,
    ]
    assert check_steps(p, "8*2=16>3+16-5\n\n3+16=19>19-5") == [True, True]  # blank lines skipped
    assert check_steps(p, "8*2=16>3+16-5\n3+16=19>19-5\n19-5=14>") == [True, True, False]
    assert check_steps(p, "8*2=16>3+16-5\n3+16=19>19-5+") == [True, False]
    # Lucky answer: wrong chain, right final answer -> correct but not a correct chain.
    lucky = "8*2=16>3+16-5\n3+16=20>20-5\n19-5=14>14\nAnswer: 14"
    assert is_correct(lucky, p.answer)
    assert not task.chain_correct(p, lucky)
    # Truncated chain: steps right so far, no answer.
    assert not task.chain_correct(p, "8*2=16>3+16-5")


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    level=st.integers(1, 8),
    cut=st.integers(0, 8),
    delta=st.integers(1, 9),
)
def test_check_steps_property(seed: int, level: int, cut: int, delta: int) -> None:
    """Corrupting the result of step `cut` makes that step and all later ones wrong."""
    p = task.sample_problem(random.Random(seed), level)
    lines = p.solution.split(STEP_DELIMITER)
    cut = min(cut, len(lines) - 1)
    lhs, rest = lines[cut].split("=", 1)
    value, tail = rest.split(">", 1)
    new_value = str(int(value) + delta)
    tail = tail.replace(value, new_value, 1) if cut < len(lines) - 1 else new_value
    lines[cut] = f"{lhs}={new_value}>{tail}"
    got = check_steps(p, STEP_DELIMITER.join(lines))
    assert got[:cut] == [True] * cut
    assert not any(got[cut:])


def test_tokenizer_round_trip_and_specials(tmp_path) -> None:
    from transformers import AutoTokenizer

    tok = build_tokenizer()
    codec = CharCodec()
    rng = random.Random(0)
    texts = [p.completion for p in generate_problems(16, 0)] + [
        "".join(rng.choice(CHARACTERS) for _ in range(50)) for _ in range(20)
    ]
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in texts:
        ids = loaded(text)["input_ids"]
        assert ids[0] == codec.bos_id
        assert ids[1:] == codec.encode(text)
        assert len(ids) == len(text) + 1  # one token per character
        assert loaded.decode(ids, skip_special_tokens=True) == text
        assert codec.decode(ids) == text
    for special in (STEP_TAG, GOOD_TOKEN, BAD_TOKEN):
        ids = loaded(f"1{special}2", add_special_tokens=False)["input_ids"]
        assert len(ids) == 3 and ids[1] == loaded.convert_tokens_to_ids(special)
    assert loaded.pad_token_id == codec.pad_id
    assert loaded.eos_token_id == codec.eos_id
    assert len(loaded) == codec.vocab_size


def test_quality_estimators() -> None:
    from models.testbed.metrics import grouped_auroc, subset_accuracy, vote

    # Within-group AUROC ignores between-group differences.
    auc, pairs = grouped_auroc([[(0.9, True), (0.8, False)], [(0.1, True), (0.0, False)]])
    assert auc == 1.0 and pairs == 2
    auc, _ = grouped_auroc([[(0.5, True), (0.5, False)]])
    assert auc == 0.5
    assert grouped_auroc([[(0.5, True)]]) == (None, 0)
    assert vote(["1", "2", "2", None]) == ["2"]
    assert vote(["1", "2", "2"], [5.0, 1.0, 1.0]) == ["1"]
    assert vote([None]) == []
    acc = subset_accuracy(["1", "2", "2"], [True, False, False], 3, random.Random(0), 8)
    assert acc == 0.0
    acc = subset_accuracy(
        ["1", "2", "2"], [True, False, False], 3, random.Random(0), 8, [5.0, 1.0, 1.0]
    )
    assert acc == 1.0

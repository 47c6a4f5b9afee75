"""Problem sets and graders: testbed, MATH-500, MATH, GSM8K and generic JSONL; math-verify
grading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.errors import PlannerError
from profiling.grading import (
    GRADERS,
    GSM8KGrader,
    MathGrader,
    StringGrader,
    TestbedGrader,
    answers_equivalent,
    get_grader,
    last_boxed,
)
from profiling.sweep.datasets import DataSpec, load_problems, shared_data_dir

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(
    not (DATA / "math500" / "test.jsonl").exists(),
    reason=f"shared data not found at {DATA} (set TTC_DATA_DIR)",
)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("0.5", "\\frac{1}{2}", True),
        ("\\dfrac12", "0.5", True),
        ("\\frac{14}{3}", "14/3", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\pi/2)", True),
        ("90", "90^\\circ", True),
        ("Evelyn", "\\text{Evelyn}", True),
        ("1,800", "1800", True),
        ("18.00", "18", True),
        ("3\\sqrt{13}", "\\sqrt{117}", True),
        ("1/3", "0.5", False),
        ("17", "18", False),
        ("\\text{(B)}", "\\text{(C)}", False),
    ],
)
def test_equivalent_forms(a: str, b: str, same: bool) -> None:
    assert answers_equivalent(a, b) is same


def test_last_boxed_handles_nested_braces() -> None:
    assert last_boxed("so \\boxed{1} then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert last_boxed("no box") is None


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # where the two former copies disagreed (profiling.problems' SimpleGrader read None,
        # " 5 ", None and None): the one kept reads them all
        ("\\fbox{7}", "7"),
        ("\\boxed{ 5 }", "5"),
        ("\\boxed {12}", "12"),
        ("\\boxed{1} and then \\boxed{2", "1"),  # an unclosed last box: the one before it
        # where they agreed
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed 5", None),  # brace-less: not read
        ("\\boxed{3", None),
    ],
)
def test_last_boxed_forms(text: str, want: str | None) -> None:
    assert last_boxed(text) == want


def test_one_grader_registry() -> None:
    assert set(GRADERS) == {"testbed", "math", "gsm8k", "string"}
    assert isinstance(get_grader("testbed"), TestbedGrader)
    assert get_grader("math").extract_answer("so \\fbox{42}") == "42"
    with pytest.raises(ValueError, match="unknown grader 'simple'"):
        get_grader("simple")
    assert DataSpec(source="jsonl", path="x.jsonl", grader="testbed").grader == "testbed"


@needs_data
def test_real_math500_answers_grade_right_and_wrong() -> None:
    ps = load_problems(DataSpec(source="math500", limit=40))
    rows = {
        json.loads(line)["unique_id"]: json.loads(line)
        for line in (DATA / "math500" / "test.jsonl").read_text().splitlines()
    }
    g = MathGrader()
    for p in ps.problems:
        solution = rows[p.problem_id]["solution"]  # the reference solution ends in \boxed{answer}
        assert g.is_correct(solution, p.answer), p.problem_id
    # a handful of equivalent rewrites of real gold answers
    by_answer = {p.answer: p for p in ps.problems}
    assert g.is_correct(
        "Thus the answer is $\\boxed{\\dfrac{14}{3}}$.", by_answer["\\frac{14}{3}"].answer
    )
    assert g.is_correct(
        "\\boxed{(3, \\pi/2)}", by_answer["\\left( 3, \\frac{\\pi}{2} \\right)"].answer
    )
    assert g.is_correct("The final answer is 9", by_answer["9"].answer)
    assert not g.is_correct("\\boxed{15/4}", by_answer["\\frac{14}{3}"].answer)
    assert not g.is_correct("no answer here", by_answer["9"].answer)
    assert ps.problems[0].level in {"1", "2", "3", "4", "5"}


@needs_data
def test_real_gsm8k_answers() -> None:
    ps = load_problems(DataSpec(source="gsm8k", limit=5))
    assert [p.answer for p in ps.problems] == ["18", "3", "70000", "540", "20"]
    g = GSM8KGrader()
    assert g.is_correct("She makes 9 * 2 = $18 every day.\n#### 18", "18")
    assert g.is_correct("The answer is $18.00.", "18")
    assert g.is_correct("\\boxed{70,000}", "70000")
    assert g.is_correct("so 540 meters", "540")
    assert not g.is_correct("#### 19", "18")
    assert g.extract_answer("#### 1,234") == "1234"


@needs_data
def test_full_math_reads_the_boxed_answer_of_the_solution() -> None:
    ps = load_problems(DataSpec(source="math", limit=3))
    assert [p.problem_id for p in ps.problems] == ["math-0", "math-1", "math-2"]
    assert ps.problems[0].answer == "2" and ps.problems[0].level == "3"


@needs_data
def test_shuffle_offset_limit_are_seeded_and_consistent() -> None:
    a = load_problems(DataSpec(source="math500", shuffle=True, shuffle_seed=1, limit=10))
    b = load_problems(DataSpec(source="math500", shuffle=True, shuffle_seed=1, limit=10))
    c = load_problems(DataSpec(source="math500", shuffle=True, shuffle_seed=2, limit=10))
    d = load_problems(DataSpec(source="math500", shuffle=True, shuffle_seed=1, offset=5, limit=5))
    ids = [p.problem_id for p in a.problems]
    assert ids == [p.problem_id for p in b.problems] != [p.problem_id for p in c.problems]
    assert [p.problem_id for p in d.problems] == ids[5:]
    assert a.problems_sha256 == b.problems_sha256 != c.problems_sha256
    assert a.source_sha256 == c.source_sha256  # same file


def test_testbed_problems_and_grader() -> None:
    ps = load_problems(DataSpec(source="testbed", n=16, limit=4, offset=2))
    assert [p.problem_id for p in ps.problems] == ["tb-0-2", "tb-0-3", "tb-0-4", "tb-0-5"]
    p = ps.problems[0]
    assert p.prompt.startswith("Q: ") and ps.grader.is_correct(f"x\nAnswer: {p.answer}", p.answer)
    assert ps.metadata()["dataset_id"].startswith("testbed(seed=0,n=16")


def test_generic_jsonl_with_field_mapping(tmp_path: Path) -> None:
    f = tmp_path / "qa.jsonl"
    f.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "id": "a",
                    "q": "What is half of one?",
                    "sol": "It is \\boxed{\\frac12}",
                    "lvl": "easy",
                },
                {"id": "b", "q": "Capital of France?", "sol": "\\boxed{Paris}", "lvl": "easy"},
            ]
        )
        + "\n"
    )
    ps = load_problems(
        DataSpec(
            source="jsonl",
            path=str(f),
            id_field="id",
            prompt_field="q",
            answer_field="sol",
            level_field="lvl",
            answer_format="boxed",
        )
    )
    assert [(p.problem_id, p.answer, p.level) for p in ps.problems] == [
        ("a", "\\frac12", "easy"),
        ("b", "Paris", "easy"),
    ]
    assert ps.grader_name == "math" and ps.grader.is_correct("\\boxed{0.5}", "\\frac12")
    raw = load_problems(DataSpec(source="jsonl", path=str(f), prompt_field="q", answer_field="id"))
    assert raw.problems[0].problem_id == "qa-0" and raw.grader_name == "string"
    assert StringGrader().is_correct("work\nAnswer: Paris", "Paris")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "no problems (the file is empty)"),
        ("\n\n", "no problems (the file is empty)"),
        (
            '{"problem": "x", "answer": "1"}\n{"problem": "y", "answer": \n',
            "line 2: not valid JSON",
        ),
        ('{"problem": "x", "answer": "1"}\n[1, 2]\n', "line 2: expected a JSON object"),
        ('{"problem": "x", "answer": "1"}\n\n{"problem": "y"}\n', "line 3: missing field 'answer'"),
        ('{"problem": "", "answer": "1"}\n', "line 1: field 'problem' is empty"),
    ],
)
def test_bad_problem_files_name_the_line(tmp_path: Path, content: str, needle: str) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(content)
    with pytest.raises(PlannerError) as err:
        load_problems(DataSpec(source="jsonl", path=str(f)))
    assert needle in str(err.value) and str(f) in str(err.value)


def test_duplicate_ids_and_missing_boxed_answer(tmp_path: Path) -> None:
    f = tmp_path / "dup.jsonl"
    f.write_text(
        '{"id": "a", "problem": "x", "answer": "1"}\n{"id": "a", "problem": "y", "answer": "2"}\n'
    )
    with pytest.raises(
        PlannerError, match="line 2: duplicate problem id 'a' \\(first on line 1\\)"
    ):
        load_problems(DataSpec(source="jsonl", path=str(f), id_field="id"))
    with pytest.raises(PlannerError, match=r"line 1: field 'answer' has no \\boxed"):
        load_problems(DataSpec(source="jsonl", path=str(f), answer_format="boxed"))
    with pytest.raises(PlannerError, match="problem file not found"):
        load_problems(DataSpec(source="jsonl", path=str(tmp_path / "none.jsonl")))
    with pytest.raises(PlannerError, match="the selection is empty"):
        load_problems(DataSpec(source="jsonl", path=str(f), offset=5))

"""`ttc samples import` on synthetic files and on the real Qwen2.5-Math reward-model dump."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.estimate.curves import profile_from_samples
from planner.tables import file_sha256, read_problems, read_samples

QWEN = (
    Path(__file__).resolve().parents[3].parent
    / "shared/data/samples/qwen25math_rm8/math_cot_100.jsonl"
)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_import_lists_with_one_element_score_lists(tmp_path):
    src = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {
                "idx": 0,
                "pred": ["1", "2"],
                "score": [True, False],
                "pred_score": [[0.9], [0.1]],
                "level": "Level 1",
            },
            {
                "idx": 1,
                "pred": ["3", ""],
                "score": [False, False],
                "pred_score": [[0.4], [0.2]],
                "level": "Level 5",
            },
        ],
    )
    res = CliRunner().invoke(
        main,
        [
            "samples",
            "import",
            str(src),
            "--out",
            str(tmp_path / "o"),
            "--level-field",
            "level",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["problems"] == 2 and out["samples"] == 4
    df, meta = read_samples(tmp_path / "o")
    assert meta["source_sha256"] == file_sha256(src)
    assert df["answer"].tolist() == ["1", "2", "3", None]  # empty answers become null
    assert df["score"].tolist() == [0.9, 0.1, 0.4, 0.2]
    probs, _ = read_problems(tmp_path / "o")
    assert probs["level"].tolist() == ["Level 1", "Level 5"]


def test_import_flattened_rows(tmp_path):
    src = write_jsonl(
        tmp_path / "flat.jsonl",
        [
            {"q": "a", "ans": "1", "ok": True, "s": 0.7},
            {"q": "a", "ans": "2", "ok": False, "s": 0.2},
            {"q": "b", "ans": "5", "ok": True, "s": 0.5},
        ],
    )
    res = CliRunner().invoke(
        main,
        [
            "samples",
            "import",
            str(src),
            "--out",
            str(tmp_path / "o"),
            "--flatten",
            "--id-field",
            "q",
            "--answers-field",
            "ans",
            "--correct-field",
            "ok",
            "--scores-field",
            "s",
        ],
    )
    assert res.exit_code == 0, res.output
    df, _ = read_samples(tmp_path / "o")
    assert df.groupby("problem_id")["position"].apply(list).to_dict() == {"a": [0, 1], "b": [0]}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"idx": 0, "pred": ["1"], "score": ["yes"], "pred_score": [0.1]}],
            "line 1: field 'score'[0]: correctness must be true/false",
        ),
        ([{"idx": 0, "pred": ["1"], "score": [True]}], "line 1: missing field 'pred_score'"),
        (
            [{"idx": 0, "pred": ["1", "2"], "score": [True], "pred_score": [0.1, 0.2]}],
            "different lengths",
        ),
        ([{"idx": 0, "pred": ["1"], "score": [True], "pred_score": [float("nan")]}], "NaN"),
        (
            [{"idx": 0, "pred": ["1"], "score": [True], "pred_score": [0.1]}] * 2,
            "line 2: problem id '0' appears twice",
        ),
    ],
)
def test_bad_dumps_fail_with_one_line_and_write_nothing(tmp_path, rows, message):
    src = write_jsonl(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["samples", "import", str(src), "--out", str(out)])
    assert res.exit_code == 1
    assert message in res.output
    assert "Traceback" not in res.output
    assert not out.exists() or list(out.iterdir()) == []


def test_malformed_json_names_the_line(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text(
        '{"idx": 0, "pred": ["1"], "score": [true], "pred_score": [0.5]}\n{"idx": 1, "pred": [\n'
    )
    res = CliRunner().invoke(main, ["samples", "import", str(src), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "line 2: not valid JSON" in res.output


@pytest.mark.skipif(not QWEN.exists(), reason="../shared/data is not beside this checkout")
def test_real_qwen_dump(tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "samples",
            "import",
            str(QWEN),
            "--out",
            str(tmp_path / "q"),
            "--id-field",
            "idx",
            "--answers-field",
            "pred",
            "--correct-field",
            "score",
            "--scores-field",
            "pred_score",
            "--level-field",
            "level",
            "--score-transform",
            "sigmoid",
        ],
    )
    assert res.exit_code == 0, res.output
    df, meta = read_samples(tmp_path / "q")
    assert df["problem_id"].nunique() == 100
    assert (df.groupby("problem_id").size() == 8).all()
    assert meta["source_sha256"] == file_sha256(QWEN)
    prof = profile_from_samples(df)
    cfg = prof["config"].map(json.loads)

    def at(sel, k):
        return prof[
            (cfg.map(lambda c: c["select"]) == sel)
            & (cfg.map(lambda c: c["agg"]).isin(["last", "none"]))
            & (prof["budget"] == k)
        ]["accuracy"].mean()

    pass1, pass8 = at("coverage", 1), at("coverage", 8)
    assert pass1 < pass8
    for sel in ("best", "majority", "weighted"):
        assert pass1 - 1e-9 <= at(sel, 8) <= pass8 + 1e-9, sel

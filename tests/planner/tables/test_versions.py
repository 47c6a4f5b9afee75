"""Tables written under an older contract: version-1 samples are read with each shared prompt made
whole again (exactly: version 1 split it in integer parts summing to its length), version-1
profiles and tables of a newer version are refused with one line naming the file and field."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from planner.errors import PlannerError
from planner.tables import PROBLEMS, PROFILE, SAMPLES, read_table, write_table
from planner.tables.parquet import META_KEY
from planner.tables.schema import SCHEMA_VERSION, TableSpec


def _write_as(df: pd.DataFrame, path: Path, spec: TableSpec, version: int) -> Path:
    """`df` written as a ttc whose contract was `version` wrote it."""
    write_table(df, path, spec)
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[META_KEY])
    meta["schema_version"] = version
    pq.write_table(table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()}), path)
    return path


def _row(strategy: str, run: int, position: int, prompt_tokens: int, verifier: str) -> dict:
    return {
        "problem_id": "p0",
        "strategy": strategy,
        "config": "{}",
        "run": run,
        "position": position,
        "answer": "1",
        "correct": True,
        "verifier": verifier,
        "score": 0.5,
        "step_scores": [],
        "prompt_tokens": prompt_tokens,
        "gen_tokens": 5,
        "gen_flops": 1e3,
        "verifier_flops": 0.0,
        "wall_s": float("nan"),
    }


def test_version_1_samples_read_with_shared_prompts_whole(tmp_path: Path) -> None:
    # As version 1 wrote them: a pool of 4 on a 13-token prompt (4, 3, 3, 3) under two
    # verifiers, two beam runs of 3 finals on it (5, 4, 4), and a revision chain whose rows held
    # their own prompts (13, then 30 with the first attempt in it).
    rows = [_row("sample", 0, i, t, v) for v in ("a", "b") for i, t in enumerate((4, 3, 3, 3))]
    rows += [_row("beam", r, i, t, "a") for r in (0, 1) for i, t in enumerate((5, 4, 4))]
    rows += [_row("revisions", 0, 0, 13, "a"), _row("revisions", 0, 1, 30, "a")]
    path = _write_as(pd.DataFrame(rows), tmp_path / "samples.parquet", SAMPLES, 1)
    df, meta = read_table(path, SAMPLES)
    assert meta["schema_version"] == 1
    got = df.groupby("strategy")["prompt_tokens"].apply(list).to_dict()
    assert got == {"sample": [13] * 8, "beam": [13] * 6, "revisions": [13, 30]}
    assert df["prompt_tokens"].dtype == "int64"
    # written again, it is a table of this version holding the same rows
    write_table(df, tmp_path / "again.parquet", SAMPLES)
    again, meta2 = read_table(tmp_path / "again.parquet", SAMPLES)
    assert meta2["schema_version"] == SCHEMA_VERSION == 2
    pd.testing.assert_frame_equal(again, df)


def test_version_1_profile_is_refused_with_how_to_remake_it(tmp_path: Path) -> None:
    prof = pd.DataFrame(
        {
            "problem_id": ["p0"],
            "strategy": ["sample"],
            "config": ["{}"],
            "budget": [1.0],
            "accuracy": [0.5],
            "accuracy_se": [0.0],
            "flops": [1e3],
            "tokens": [5.0],
            "prompt_tokens": [3.25],
            "wall_s": [float("nan")],
        }
    )
    path = _write_as(prof, tmp_path / "profile.parquet", PROFILE, 1)
    with pytest.raises(PlannerError) as err:
        read_table(path, PROFILE)
    text = str(err.value)
    assert str(path) in text and "'schema_version'" in text and "version 1" in text
    assert "ttc curves SAMPLES_DIR" in text
    # a newer ttc's samples are refused too; tables without prompt tokens read at any version
    newer = _write_as(
        pd.DataFrame([_row("sample", 0, 0, 4, "a")]), tmp_path / "s.parquet", SAMPLES, 3
    )
    with pytest.raises(PlannerError, match=r"s\.parquet: field 'schema_version'.*version 3"):
        read_table(newer, SAMPLES)
    probs = pd.DataFrame(
        {
            "problem_id": ["a"],
            "fold": [0],
            "pass1": [0.5],
            "oracle_bin": [1],
            "predicted_bin": [None],
            "level": [None],
        }
    )
    old = _write_as(probs, tmp_path / "problems.parquet", PROBLEMS, 1)
    assert read_table(old, PROBLEMS)[0]["problem_id"].tolist() == ["a"]

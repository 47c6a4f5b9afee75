"""Table contracts: every violation gives one SchemaError naming file, column and first bad row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from planner.errors import PlannerError, SchemaError
from planner.tables import PROBLEMS, SAMPLES, read_table, validate, write_table


def good_samples(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "problem_id": [f"p{i}" for i in range(n)],
            "strategy": ["sample"] * n,
            "config": ["{}"] * n,
            "run": [0] * n,
            "position": list(range(n)),
            "answer": ["1", None, "3"][:n],
            "correct": [True, False, True][:n],
            "verifier": ["prm"] * n,
            "score": [0.5, 0.2, 0.9][:n],
            "step_scores": [[0.1, 0.5], [], [0.9]][:n],
            "prompt_tokens": [4] * n,
            "gen_tokens": [7] * n,
            "gen_flops": [1e6] * n,
            "verifier_flops": [0.0] * n,
            "wall_s": [np.nan] * n,
        }
    )


def test_round_trip_with_metadata_and_byte_identical(tmp_path):
    df = good_samples()
    meta = {"model_id": "tiny", "seed": 3}
    write_table(df, tmp_path / "a.parquet", SAMPLES, meta)
    write_table(df, tmp_path / "b.parquet", SAMPLES, meta)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    back, got = read_table(tmp_path / "a.parquet", SAMPLES)
    assert got["model_id"] == "tiny" and got["table"] == "samples" and got["schema_version"] == 2
    assert back["step_scores"].tolist() == [[0.1, 0.5], [], [0.9]]
    assert back["answer"].tolist() == ["1", None, "3"]
    assert back["correct"].dtype == bool


@pytest.mark.parametrize(
    ("column", "value", "row", "message"),
    [
        ("score", np.nan, 1, "NaN"),
        ("gen_tokens", -1, 2, "negative"),
        ("correct", "yes", 0, "boolean"),
        ("correct", 1, 1, "boolean"),
        ("run", 1.5, 1, "integer"),
        ("prompt_tokens", "many", 0, "integer"),
        ("score", "high", 2, "number"),
        ("step_scores", "0.3", 1, "list"),
        ("problem_id", 7, 1, "string"),
    ],
)
def test_bad_values_name_column_and_first_row(column, value, row, message):
    df = good_samples()
    df[column] = df[column].astype(object)
    df.at[row, column] = value
    with pytest.raises(SchemaError) as err:
        validate(df, SAMPLES, "runs/x/samples.parquet")
    text = str(err.value)
    assert "runs/x/samples.parquet" in text and f"'{column}'" in text and f"row {row}" in text
    assert message.lower() in text.lower()


def test_missing_column():
    df = good_samples().drop(columns=["verifier"])
    with pytest.raises(SchemaError, match=r"'verifier'.*missing column"):
        validate(df, SAMPLES, "f.parquet")


def test_duplicate_keys_reported_at_first_duplicate():
    df = good_samples()
    df.loc[2, ["problem_id", "position"]] = ["p0", 0]
    with pytest.raises(SchemaError, match=r"row 2: duplicate key"):
        validate(df, SAMPLES, "f.parquet")


def test_nan_step_score_and_unit_interval():
    df = good_samples()
    df.at[2, "step_scores"] = [0.5, float("nan")]
    with pytest.raises(SchemaError, match="row 2"):
        validate(df, SAMPLES, "f")
    probs = pd.DataFrame(
        {
            "problem_id": ["a", "b"],
            "fold": [0, 1],
            "pass1": [0.5, 1.5],
            "oracle_bin": [1, 2],
            "predicted_bin": [None, None],
            "level": [None, None],
        }
    )
    with pytest.raises(SchemaError, match=r"'pass1', row 1: value 1.5 outside \[0, 1\]"):
        validate(probs, PROBLEMS, "problems.parquet")


def test_feature_columns_must_be_numbers():
    probs = pd.DataFrame(
        {
            "problem_id": ["a"],
            "fold": [0],
            "pass1": [0.5],
            "oracle_bin": [1],
            "predicted_bin": [None],
            "level": [None],
            "feat_mean": ["x"],
        }
    )
    with pytest.raises(SchemaError, match="'feat_mean'"):
        validate(probs, PROBLEMS, "problems.parquet")


def test_invalid_table_is_never_written(tmp_path):
    df = good_samples()
    df.at[0, "score"] = np.nan
    with pytest.raises(SchemaError):
        write_table(df, tmp_path / "s.parquet", SAMPLES)
    assert list(tmp_path.iterdir()) == []


def test_reading_garbage_and_wrong_table(tmp_path):
    bad = tmp_path / "samples.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(PlannerError, match="not a readable parquet"):
        read_table(bad, SAMPLES)
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
    write_table(probs, tmp_path / "p.parquet", PROBLEMS)
    with pytest.raises(PlannerError, match="holds a 'problems' table"):
        read_table(tmp_path / "p.parquet", SAMPLES)

"""The sweep runner on tiny real models: shard invariance, kill -9 + resume, metadata, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import profiling_tiny as tiny
import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.tables import PROBLEMS, SAMPLES, read_table
from profiling.sweep.config import EXECUTORS, config_from_dict
from profiling.sweep.runner import CHECKPOINT_DIR, EXECUTOR_TYPES, run_sweep

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tiny-models")
    tiny.save_policy(d / "policy")
    tiny.save_lm_prm(d / "prm")
    return d


def raw_config(models: Path, *, n: int = 10, shard_size: int = 2) -> dict:
    search = {"max_new_tokens": 16, "max_step_tokens": 8, "max_rounds": 2}
    return {
        "seed": 5,
        "shard_size": shard_size,
        "timing": False,
        "data": {"source": "testbed", "n": n},
        "model": {"path": str(models / "policy")},
        "verifiers": [
            {
                "kind": "prm",
                "path": str(models / "prm"),
                "step_tag": "<step>",
                "good_token": "<good>",
                "bad_token": "<bad>",
            },
            {"kind": "self", "stat": "min"},
        ],
        "strategies": [
            {"name": "sample", "n": 4, "max_new_tokens": 16},
            {"name": "beam", "n": 2, "m": 2, **search},
        ],
    }


def to_toml(raw: dict) -> str:
    def val(v: object) -> str:
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    lines = [f"{k} = {val(v)}" for k, v in raw.items() if not isinstance(v, dict | list)]
    for sec in ("data", "model"):
        lines += [f"[{sec}]"] + [f"{k} = {val(v)}" for k, v in raw[sec].items()]
    for arr in ("verifiers", "strategies"):
        for t in raw[arr]:
            lines += [f"[[{arr}]]"] + [f"{k} = {val(v)}" for k, v in t.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def reference(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run (shard size 2)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    run_sweep(config_from_dict(raw_config(models)), out, progress=False)
    return out


def test_tables_metadata_and_no_leftovers(reference: Path) -> None:
    samples, meta = read_table(reference / "samples.parquet", SAMPLES)
    problems, _ = read_table(reference / "problems.parquet", PROBLEMS)
    assert sorted(samples["strategy"].unique()) == ["beam", "sample"]
    assert set(samples["verifier"]) == {"prm:prm", "self:min"}
    assert samples["problem_id"].nunique() == 10 == len(problems)
    assert samples["wall_s"].isna().all()  # timing = false
    for key in (
        "model_id",
        "model_params",
        "verifier_ids",
        "device",
        "dtype",
        "seed",
        "dataset_id",
        "dataset_sha256",
        "problems_sha256",
        "package_version",
    ):
        assert key in meta, key
    assert meta["model_params"] > 0 and meta["seed"] == 5 and meta["dtype"] == "float32"
    assert not (reference / CHECKPOINT_DIR).exists()
    assert sorted(p.name for p in reference.iterdir()) == [
        "problems.parquet",
        "run.json",
        "samples.parquet",
    ]


def test_shard_size_does_not_change_the_tables(
    models: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run_sweep(config_from_dict(raw_config(models, shard_size=4)), out, progress=False)
    for name in ("samples.parquet", "problems.parquet"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_resume_after_sigkill_gives_identical_tables(
    models: Path, reference: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text(to_toml(raw_config(models, shard_size=1)))
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "planner.cli",
        "profile",
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = out / CHECKPOINT_DIR
    deadline = time.time() + 240
    try:
        while not list(ck.glob("*.parquet")):
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.time() < deadline, "no checkpoint after 240 s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "samples.parquet").exists()
    done = len(list(ck.glob("*.parquet")))
    assert 1 <= done < 20  # 10 problems x 2 strategies, one problem per shard

    res = CliRunner().invoke(
        main,
        ["profile", "--config", str(cfg), "--out", str(out), "--resume", "--no-progress", "--json"],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["units_resumed"] == done and summary["units_run"] == 20 - done
    got, _ = read_table(out / "samples.parquet", SAMPLES)
    want, _ = read_table(reference / "samples.parquet", SAMPLES)
    assert len(got) == len(want) and not got.duplicated(list(SAMPLES.key)).any()
    pd.testing.assert_frame_equal(got, want)
    for name in ("samples.parquet", "problems.parquet"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    # resuming a finished run is a no-op that reports it
    again = CliRunner().invoke(
        main,
        ["profile", "--config", str(cfg), "--out", str(out), "--resume", "--no-progress", "--json"],
    )
    assert again.exit_code == 0 and json.loads(again.output)["units_run"] == 0


def test_resume_refuses_checkpoints_of_another_config(models: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / CHECKPOINT_DIR).mkdir(parents=True)
    (out / CHECKPOINT_DIR / "run.json").write_text('{"fingerprint": {"config": {"seed": 1}}}')
    cfg = tmp_path / "run.toml"
    cfg.write_text(to_toml(raw_config(models)))
    res = CliRunner().invoke(
        main, ["profile", "--config", str(cfg), "--out", str(out), "--resume", "--no-progress"]
    )
    assert res.exit_code == 1 and "holds checkpoints of another config (differs in: " in res.output
    res = CliRunner().invoke(
        main, ["profile", "--config", str(cfg), "--out", str(out), "--no-progress"]
    )
    assert res.exit_code == 1 and "pass --resume" in res.output


def _fails_cleanly(args: list[str], out: Path, needle: str) -> None:
    res = CliRunner().invoke(main, ["profile", *args, "--out", str(out), "--no-progress"])
    assert res.exit_code != 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert needle in lines[0], lines[0]
    assert not out.exists()  # nothing partial on disk


def test_bad_input_one_clear_error_and_nothing_on_disk(models: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = tmp_path / "run.toml"
    raw = raw_config(models)
    cfg.write_text(to_toml(raw))
    common = ["--config", str(cfg)]
    _fails_cleanly([*common, "--model", str(tmp_path / "nope")], out, "model directory")
    _fails_cleanly(
        [*common, "--strategy", "sampel:n=4"],
        out,
        "unknown strategy 'sampel' (known: beam, dvts, lookahead, revisions, sample)",
    )
    _fails_cleanly(
        [*common, "--strategy", "sample:n=4,nn=3"], out, "unknown key 'nn' for strategy 'sample'"
    )
    _fails_cleanly(
        [*common, "--strategy", "beam:n=3,m=2"], out, "n (3) must be a multiple of m (2)"
    )
    _fails_cleanly(
        ["--model", str(models / "policy"), "--strategy", "beam:n=2,m=2"],
        out,
        "beam needs a verifier",
    )
    _fails_cleanly(
        [
            *common,
            "--verifier",
            f"prm:path={models / 'prm'},step_tag=ки,good_token=<good>,bad_token=<bad>",
        ],
        out,
        "no single token for the PRM step_tag 'ки'",
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    _fails_cleanly(
        [*common, "--data", "jsonl", "--data-path", str(empty)],
        out,
        "no problems (the file is empty)",
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "Q: 1+1\\n", "answer": "2"}\n{"problem": oops}\n')
    _fails_cleanly(
        [*common, "--data", "jsonl", "--data-path", str(bad)], out, "line 2: not valid JSON"
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((models / "policy" / "config.json").read_text())
    _fails_cleanly([*common, "--model", str(broken)], out, "loading models")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    _fails_cleanly(common, blocker / "out", "not writable")
    assert blocker.read_text() == "x"


def test_flags_alone_run_a_sweep(models: Path, tmp_path: Path) -> None:
    out = tmp_path / "flags"
    res = CliRunner().invoke(
        main,
        [
            "profile",
            "--model",
            str(models / "policy"),
            "--data",
            "testbed",
            "--n",
            "3",
            "--strategy",
            "sample:n=2,max_new_tokens=8",
            "--verifier",
            "self:stat=mean",
            "--out",
            str(out),
            "--progress",
            "--no-timing",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    # off a terminal (as here) the progress is lines, not a bar: the last says what was done
    assert "[ttc profile] done: 3 problem-configs in " in res.stderr
    s = json.loads(res.stdout)
    assert (s["samples"], s["problems"], s["verifiers"]) == (6, 3, ["self:mean"])


def test_every_executor_name_has_an_executor() -> None:
    assert set(EXECUTOR_TYPES) == set(EXECUTORS)

"""`ttc profile --backend openai` against a real vLLM server: the same sweep as in-process, clear
errors for each fault (nothing written), and a run cut off mid-way resumes to complete tables."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from tcp_proxy import TCPProxy
from vllm_servers import Served

from planner.cli import main
from planner.errors import PlannerError
from planner.tables import SAMPLES, read_table
from profiling.openai import open_backend
from profiling.openai.launch import free_port
from profiling.sweep.config import config_from_dict
from profiling.sweep.datasets import DataSpec, load_problems
from profiling.sweep.runner import CHECKPOINT_DIR, run_sweep

pytestmark = pytest.mark.slow
KEY = ["problem_id", "strategy", "config", "verifier", "run", "position"]


def _raw(testbed: Path, model: dict, n: int = 16) -> dict:
    return {
        "seed": 3,
        "shard_size": 4,
        "timing": False,
        "testbed": str(testbed),
        "data": {"source": "testbed", "n": n},
        "model": {"path": "testbed:policy", **model},
        "verifiers": [{"kind": "self"}, {"kind": "prm", "path": "testbed:prm"}],
        "strategies": [
            {"name": "sample", "n": 8, "max_new_tokens": 64},
            {"name": "beam", "n": 4, "m": 2, "max_rounds": 6, "max_new_tokens": 64},
        ],
    }


def test_same_sweep_through_the_server_and_in_process(
    vllm_policy: Served, quick_testbed: Path, tmp_path: Path
) -> None:
    served = {"backend": "openai", "base_url": vllm_policy.url, "served_model": "policy"}
    a = run_sweep(config_from_dict(_raw(quick_testbed, served)), tmp_path / "a", progress=False)
    b = run_sweep(config_from_dict(_raw(quick_testbed, {})), tmp_path / "b", progress=False)
    sa, _ = read_table(tmp_path / "a" / "samples.parquet", SAMPLES)
    sb, _ = read_table(tmp_path / "b" / "samples.parquet", SAMPLES)
    assert a.problems == b.problems == 16
    assert (sa.strategy == "sample").sum() == (sb.strategy == "sample").sum() == 16 * 8 * 2
    assert set(map(tuple, sa[KEY[:4]].drop_duplicates().values)) == set(
        map(tuple, sb[KEY[:4]].drop_duplicates().values)
    )
    assert not sa.duplicated(KEY).any()
    for df in (sa, sb):  # budgets: at most n final candidates per problem, run and verifier
        sizes = df.groupby(["problem_id", "strategy", "verifier", "run"]).size()
        assert sizes.xs("sample", level="strategy").eq(8).all()
        assert sizes.xs("beam", level="strategy").le(4).all()
    # accuracy per problem agrees within sampling error (4 standard errors)
    for strategy in ("sample", "beam"):
        pa = sa[sa.strategy == strategy].groupby("problem_id").correct.mean()
        pb = sb[sb.strategy == strategy].groupby("problem_id").correct.mean()
        diff = pa - pb
        se = (diff.var(ddof=1) / len(diff)) ** 0.5
        assert abs(diff.mean()) <= 4 * se + 0.05, (strategy, pa.mean(), pb.mean())
    # the same FLOPs rule: sample rows of identical token counts cost the same
    meta = json.loads((tmp_path / "a" / "run.json").read_text())["metadata"]
    assert meta["backend"] == "openai" and meta["served_model"] == "policy"
    assert 0.0 < meta["prefix_cache_hit_rate"] <= 1.0
    assert "base_url" not in meta["run_config"]["model"]


def test_unreachable_server_is_one_clear_error(vllm_policy: Served) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PlannerError, match=r"did not answer GET /v1/models .*is it running"):
        open_backend(url, "policy", vllm_policy.model_dir, retries=1, backoff_s=0.05)


def test_wrong_served_model_fails_before_anything_is_written(
    vllm_policy: Served, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = ["profile", "--backend", "openai", "--base-url", vllm_policy.url]
    args += ["--served-model", "nope", "--model-config", str(vllm_policy.model_dir)]
    args += ["--data", "testbed", "--n", "2", "--strategy", "sample:n=2", "--out", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0
    assert "does not serve 'nope' (it serves: policy)" in res.output
    assert not out.exists()


def test_tokenizer_mismatch_is_caught_by_the_probe(vllm_policy: Served, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(vllm_policy.model_dir, other)
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    vocab["1"], vocab["2"] = vocab["2"], vocab["1"]  # a tokenizer that spells digits differently
    (other / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(PlannerError, match="local tokenizer does not match the served model"):
        open_backend(vllm_policy.url, "policy", other)


def test_responses_beyond_max_model_len_are_errors(vllm_policy: Served) -> None:
    backend = open_backend(vllm_policy.url, "policy", vllm_policy.model_dir)
    limit = backend.max_model_len
    digits = backend.encode("12+")
    long = (digits * limit)[: limit - 1]
    with pytest.raises(
        PlannerError, match="cut at 1024 tokens by the served model's max_model_len"
    ):
        # one token of room: the greedy answer goes on past it
        backend.sample([long], 1, max_new_tokens=64, temperature=0.0)
    with pytest.raises(PlannerError, match="leaves no room"):
        backend.sample([digits * limit], 1, max_new_tokens=8)


def test_server_cut_off_mid_run_then_resume_gives_complete_tables(
    vllm_policy: Served, quick_testbed: Path, tmp_path: Path
) -> None:
    proxy = TCPProxy(int(vllm_policy.url.rsplit(":", 1)[1]))
    out = tmp_path / "run"
    base = [sys.executable, "-m", "planner.cli", "profile", "--testbed", str(quick_testbed)]
    base += ["--backend", "openai", "--served-model", "policy", "--model", "testbed:policy"]
    base += ["--data", "testbed", "--n", "40", "--shard-size", "1", "--no-timing", "--seed", "2"]
    base += ["--strategy", "sample:n=16,max_new_tokens=64", "--verifier", "self", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    proc = subprocess.Popen(
        [*base, "--base-url", proxy.url], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    ck = out / CHECKPOINT_DIR
    deadline = time.monotonic() + 300
    while len(list(ck.glob("*.parquet"))) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proxy.stop()  # the server is gone, mid-run
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0, "the run finished before the server was cut off"
    assert "did not answer" in err.decode() and "Traceback" not in err.decode()
    kept = {p.name: read_table(p, SAMPLES)[0] for p in ck.glob("*.parquet")}
    assert 3 <= len(kept) < 40 and not (out / "samples.parquet").exists()
    # back (here: reached directly, on another address), the run resumes where it stopped
    res = subprocess.run(
        [*base, "--base-url", vllm_policy.url, "--resume"], env=env, capture_output=True
    )
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    samples, _ = read_table(out / "samples.parquet", SAMPLES)
    assert len(samples) == 40 * 16 and samples.problem_id.nunique() == 40
    assert not samples.duplicated(KEY).any()
    for df in kept.values():  # rows written before the cut are kept as they were
        pid = df.problem_id.iloc[0]
        got = samples[samples.problem_id == pid].sort_values(KEY).reset_index(drop=True)
        want = df.sort_values(KEY).reset_index(drop=True)
        cols = [*KEY, "answer", "gen_tokens"]
        assert got[cols].equals(want[cols])
    # the prefix-cache figures cover both parts of the run: the server looks up every prompt
    # token of each of a pool's 16 sequences once, in whichever part its shard finished
    meta = json.loads((out / "run.json").read_text())["metadata"]
    problems = load_problems(DataSpec(source="testbed", n=40)).problems
    assert {p.problem_id for p in problems} == set(samples.problem_id)
    backend = open_backend(vllm_policy.url, "policy", vllm_policy.model_dir)
    prompts = sum(len(backend.prompt_ids(p)) for p in problems)
    assert meta["prefix_cache_query_tokens"] == 16 * prompts
    assert meta["prefix_cache_hit_rate"] == pytest.approx(
        meta["prefix_cache_hit_tokens"] / meta["prefix_cache_query_tokens"]
    )

"""PRMs read through a real vLLM pooling server (`/pooling`): served scores and FLOPs equal the
in-process twins'; a server that cannot answer what a verifier or the backend needs (no
`/pooling`, no log-probs) gives one clear error before anything is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from vllm_servers import Served

from models.testbed.tokenizer import BAD_TOKEN, GOOD_TOKEN, STEP_TAG
from planner.cli import main
from planner.errors import PlannerError
from planner.tables import SAMPLES, read_table
from profiling import TransformersBackend, load_prm
from profiling.openai import (
    ServerPooledStepTagPRM,
    ServerTokenClassPRM,
    open_backend,
    open_verifier,
)
from profiling.strategies.common import make_candidate
from profiling.sweep.config import config_from_dict
from profiling.sweep.datasets import DataSpec, load_problems
from profiling.sweep.runner import run_sweep
from profiling.verifiers import Candidate, TokenClassPRM

pytestmark = pytest.mark.slow
TAGS = {"step_tag": STEP_TAG, "good_token": GOOD_TOKEN, "bad_token": BAD_TOKEN}


@pytest.fixture(scope="module")
def cands(quick_testbed: Path) -> list[Candidate]:
    """Sampled solutions of the testbed policy (in-process), split into steps."""
    problems = load_problems(DataSpec(source="testbed", n=4)).problems
    local = TransformersBackend.load(quick_testbed / "policy", threads=1)
    pools = local.sample([local.prompt_ids(p) for p in problems], 2, max_new_tokens=48, seed=3)
    out = [
        make_candidate(local, p, g.token_ids, g.logprobs)
        for p, pool in zip(problems, pools, strict=True)
        for g in pool
    ]
    return [*out, Candidate(problems[0], [])]  # no steps: no request, no score


def _same(got: list, want: list) -> None:
    for a, b in zip(got, want, strict=True):
        assert len(a.step_scores) == len(b.step_scores)
        assert all(abs(x - y) < 1e-3 for x, y in zip(a.step_scores, b.step_scores, strict=True))
        assert a.flops == pytest.approx(b.flops)


def test_token_class_prm_through_pooling_equals_in_process(
    vllm_value: Served, cands: list[Candidate]
) -> None:
    srv = open_verifier("prm", vllm_value.url, vllm_value.name, vllm_value.model_dir)
    assert isinstance(srv, ServerTokenClassPRM) and srv.n_labels == 1
    inproc = load_prm(vllm_value.model_dir)
    assert isinstance(inproc, TokenClassPRM)
    assert srv.verifier_id == inproc.verifier_id == "prm:value"
    assert srv.s.n_params == sum(p.numel() for p in inproc.s.model.parameters())
    got = srv.score(cands)
    _same(got, inproc.score(cands))
    assert sum(len(a.step_scores) for a in got) > len(got)  # several steps per candidate
    outcome = open_verifier(
        "prm", vllm_value.url, vllm_value.name, vllm_value.model_dir, mode="outcome"
    )
    got = outcome.score(cands)
    _same(got, load_prm(vllm_value.model_dir, mode="outcome").score(cands))
    assert [len(a.step_scores) for a in got] == [1] * (len(cands) - 1) + [0]


def test_step_tag_prm_through_pooling_equals_in_process(
    vllm_value: Served, quick_testbed: Path, cands: list[Candidate]
) -> None:
    # The served head is the testbed PRM's logit(good) - logit(bad) (what vLLM's
    # `--convert classify` with `from_2_way_softmax` builds): its sigmoid at each tag is the
    # step-tag PRM's P(good), every tag of a candidate in one request.
    srv = open_verifier(
        "prm",
        vllm_value.url,
        vllm_value.name,
        vllm_value.model_dir,
        format="step_tag",
        separator="\n",
        **TAGS,
    )
    assert isinstance(srv, ServerPooledStepTagPRM)
    inproc = load_prm(quick_testbed / "prm")
    _same(srv.score(cands), inproc.score(cands))
    with srv.incremental(), inproc.incremental():
        halves = [Candidate(c.problem, c.segments[:1]) for c in cands]
        _same(srv.score(halves), inproc.score(halves))
        _same(srv.score(cands), inproc.score(cands))  # FLOPs: the new steps only


def test_pooling_prm_on_a_generator_or_a_mismatched_head_is_one_clear_error(
    vllm_policy: Served, vllm_value: Served, tmp_path: Path
) -> None:
    with pytest.raises(PlannerError) as err:
        open_verifier("prm", vllm_policy.url, vllm_policy.name, vllm_value.model_dir)
    assert (
        f"server {vllm_policy.url} has no /pooling endpoint for 'policy' (it serves it as a "
        f"generator); start the server with: vllm serve {vllm_value.model_dir} --runner pooling"
    ) in str(err.value)
    two = tmp_path / "two-labels"
    shutil.copytree(vllm_value.model_dir, two)
    cfg = json.loads((two / "config.json").read_text())
    cfg["id2label"] = {"0": "bad", "1": "good"}
    (two / "config.json").write_text(json.dumps(cfg))
    need = "returns 1 values per token for 'value', the PRM needs 2"
    with pytest.raises(PlannerError, match=need):
        open_verifier("prm", vllm_value.url, vllm_value.name, two)


def test_a_server_without_log_probs_fails_before_anything_is_written(
    vllm_value: Served, tmp_path: Path
) -> None:
    # A pooling server has no /v1/completions: no logprobs, no prompt_logprobs.
    need = rf"server {vllm_value.url} has no /v1/completions for 'value' .*serve the model as a"
    with pytest.raises(PlannerError, match=need):
        open_backend(vllm_value.url, vllm_value.name, vllm_value.model_dir)
    with pytest.raises(PlannerError, match="verifier: " + need):
        open_verifier("likelihood", vllm_value.url, vllm_value.name, vllm_value.model_dir)
    out = tmp_path / "run"
    args = ["profile", "--backend", "openai", "--base-url", vllm_value.url, "--served-model"]
    args += ["value", "--model-config", str(vllm_value.model_dir), "--data", "testbed"]
    args += ["--n", "2", "--strategy", "sample:n=2", "--out", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0
    assert "has no /v1/completions for 'value'" in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_sweep_scores_with_a_served_token_class_prm_as_in_process(
    vllm_value: Served, quick_testbed: Path, tmp_path: Path
) -> None:
    path = str(vllm_value.model_dir)
    raw = {
        "seed": 1,
        "timing": False,
        "testbed": str(quick_testbed),
        "data": {"source": "testbed", "n": 3},
        "model": {"path": "testbed:policy"},
        "verifiers": [
            {"kind": "prm", "path": path, "base_url": vllm_value.url, "served_model": "value"},
            {"kind": "prm", "path": path, "name": "local"},
        ],
        "strategies": [{"name": "sample", "n": 3, "max_new_tokens": 48}],
    }
    run_sweep(config_from_dict(raw), tmp_path / "run", progress=False)
    samples, _ = read_table(tmp_path / "run" / "samples.parquet", SAMPLES)
    key = ["problem_id", "run", "position"]
    served = samples[samples.verifier == "prm:value"].set_index(key).sort_index()
    local = samples[samples.verifier == "prm:local"].set_index(key).sort_index()
    assert len(served) == len(local) == 3 * 3
    assert (served.score - local.score).abs().max() < 1e-3
    assert served.verifier_flops.tolist() == local.verifier_flops.tolist()

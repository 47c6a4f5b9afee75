"""Rows made through a real vLLM server can be recomputed: an answer's text keeps the special
tokens the policy sampled (so it encodes back to its ids, and a likelihood verifier rescoring the
text equals the policy's own log-probs), `prompt_tokens` follow the schema's rule for shared
prompts, and an answer cut by the server's length names the limit that was hit."""

from __future__ import annotations

from typing import Any

import pytest
from vllm_servers import Served, long_prompts

from models.testbed.tokenizer import STEP_TAG, UNK_TOKEN
from planner.errors import PlannerError
from profiling import SelfLikelihood, run
from profiling.openai import OpenAIBackend, open_backend, open_verifier
from profiling.sweep.datasets import DataSpec, load_problems
from profiling.verifiers import LikelihoodVerifier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(vllm_policy: Served) -> OpenAIBackend:
    return open_backend(vllm_policy.url, vllm_policy.name, vllm_policy.model_dir)


def test_answers_keep_sampled_special_tokens_and_rescore_as_sampled(
    served: OpenAIBackend, vllm_policy: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A policy that samples <unk> and the step tag now and then (a logit bias on the server:
    # the log-probs it returns are the model's raw ones), as an untrained model does.
    tok = served.tokenizer
    bias = {str(tok.convert_tokens_to_ids(t)): 10.0 for t in (UNK_TOKEN, STEP_TAG)}
    plain = served.body

    def biased(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {**plain(*args, **kwargs), "logit_bias": bias}

    monkeypatch.setattr(served, "body", biased)
    problems = load_problems(DataSpec(source="testbed", n=6)).problems
    lik = open_verifier("likelihood", vllm_policy.url, "policy", vllm_policy.model_dir)
    inproc = LikelihoodVerifier.load(vllm_policy.model_dir, name="local")
    config = {"n": 8, "max_new_tokens": 48, "seed": 3}
    rows = run("sample", problems, served, [SelfLikelihood(), lik, inproc], config)
    by = {(r["problem_id"], r["position"], r["verifier"]): r for r in rows}
    special = 0
    for (pid, pos, vid), r in by.items():
        if vid != "self:mean":
            continue
        ids = tok.encode(r["text"], add_special_tokens=False)
        # the text is the answer's tokens, less the eos that ended it
        assert r["gen_tokens"] - len(ids) in (0, 1)
        special += UNK_TOKEN in r["text"] or STEP_TAG in r["text"]
        for other in ("lik:policy:mean", "lik:local:mean"):
            o = by[(pid, pos, other)]
            assert o["text"] == r["text"]
            assert o["step_scores"] == pytest.approx(r["step_scores"], abs=2e-5)
    assert special >= 10, special  # the check above ran on answers holding special tokens


def test_prompt_tokens_follow_the_schema_for_shared_prompts(
    served: OpenAIBackend, vllm_policy: Served
) -> None:
    # A pool's candidates and a search run's finals share one prompt, read once: their rows
    # split its length (planner.tables.schema: samples.prompt_tokens).
    problems = load_problems(DataSpec(source="testbed", n=3)).problems
    for strategy, config in (
        ("sample", {"n": 5, "max_new_tokens": 32}),
        ("beam", {"n": 4, "m": 2, "max_rounds": 3, "max_new_tokens": 32}),
    ):
        rows = run(strategy, problems, served, [SelfLikelihood()], {**config, "seed": 1})
        for p in problems:
            mine = [r["prompt_tokens"] for r in rows if r["problem_id"] == p.problem_id]
            assert sum(mine) == len(served.prompt_ids(p))
            assert max(mine) - min(mine) <= 1


def test_a_search_cut_by_max_model_len_names_the_per_step_limit(
    served: OpenAIBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a prompt that leaves 8 tokens, and a step that cannot end (eos and the delimiter banned)
    tok = served.tokenizer
    ban = {str(t): -100.0 for t in [tok.eos_token_id, *served.step_stop_ids]}
    plain = served.body
    monkeypatch.setattr(served, "body", lambda *a, **k: {**plain(*a, **k), "logit_bias": ban})
    ids = long_prompts(served, 1, served.max_model_len)[0]
    state = served.start(ids[:1] + ids[-(served.max_model_len - 9) :])
    with pytest.raises(PlannerError) as err:
        state.step(temperature=1.0, max_step_tokens=64)
    message = str(err.value)
    assert f"by the served model's max_model_len of {served.max_model_len}" in message
    assert "before max_step_tokens=64" in message and "max_new_tokens" not in message

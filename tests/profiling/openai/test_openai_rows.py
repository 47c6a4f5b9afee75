"""Rows made through a real vLLM server can be recomputed: an answer's text keeps the special
tokens the policy sampled (so it encodes back to its ids, and a likelihood verifier rescoring the
text equals the policy's own log-probs), `prompt_tokens` is the prompt each answer was generated
from as the server counted it (a revision's with its earlier attempts), and an answer cut by the
server's length names the limit that was hit."""

from __future__ import annotations

from typing import Any

import pytest
from transformers import AutoTokenizer
from vllm_servers import Served, long_prompts

from models.testbed.tokenizer import STEP_TAG, UNK_TOKEN
from planner.errors import PlannerError
from planner.strategies import prefilled_prompt_tokens
from profiling import SelfLikelihood, run
from profiling.openai import OpenAIBackend, open_backend, open_verifier
from profiling.strategies.revisions import RevisionsConfig, revision_prompt
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


def test_prompt_tokens_are_the_prompts_the_server_counted(
    served: OpenAIBackend, vllm_policy: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A row's prompt_tokens is the length of the prompt its answer was generated from, whole on
    # every row that shares it (planner.tables.schema: samples.prompt_tokens): the server's own
    # count of a request that was sent, and the tokenizer's length of the prompt text.
    counted: dict[tuple[int, ...], int] = {}
    plain = served.client.post_many

    def recording(path: str, bodies: list[dict[str, Any]]) -> list[Any]:
        answers = plain(path, bodies)
        for b, a in zip(bodies, answers, strict=True):
            counted[tuple(b["prompt"])] = int(a["usage"]["prompt_tokens"])
        return answers

    monkeypatch.setattr(served.client, "post_many", recording)
    tok = AutoTokenizer.from_pretrained(vllm_policy.model_dir)
    tpl = served.config.template

    def sent_as(text: str) -> int:
        special = tpl.add_special_tokens and not tpl.chat
        ids = tok(tpl.render(text, tok), add_special_tokens=special)["input_ids"]
        assert tuple(ids) in counted, "no request was sent with this prompt"
        assert counted[tuple(ids)] == len(ids)
        return len(ids)

    problems = load_problems(DataSpec(source="testbed", n=3)).problems
    by_id = {p.problem_id: p for p in problems}
    for strategy, config in (
        ("sample", {"n": 5, "max_new_tokens": 32}),
        ("beam", {"n": 4, "m": 2, "max_rounds": 3, "max_new_tokens": 32}),
    ):
        counted.clear()
        rows = run(strategy, problems, served, [SelfLikelihood()], {**config, "seed": 1})
        for r in rows:
            assert r["prompt_tokens"] == sent_as(by_id[r["problem_id"]].prompt)
        # the problem's prompt was prefilled once per problem: what the gateway charges
        for p in problems:
            mine = [
                (r["run"], r["position"], r["prompt_tokens"])
                for r in rows
                if r["problem_id"] == p.problem_id
            ]
            assert prefilled_prompt_tokens(strategy, mine) == len(served.prompt_ids(p))
    # a revision step's prompt holds the chain's earlier attempts
    counted.clear()
    cfg = {"chains": 2, "length": 3, "max_new_tokens": 24, "seed": 2}
    rows = run("revisions", problems, served, [SelfLikelihood()], cfg)
    text = {(r["problem_id"], r["run"], r["position"]): r["text"] for r in rows}
    own = {(r["problem_id"], r["run"], r["position"]): r["prompt_tokens"] for r in rows}
    assert len(rows) == len(problems) * 2 * 3
    for r in rows:
        pid, chain, step = r["problem_id"], r["run"], r["position"]
        earlier = [text[(pid, chain, t)] for t in range(step)]
        prompt = revision_prompt(RevisionsConfig(**cfg), by_id[pid], earlier)
        assert r["prompt_tokens"] == sent_as(prompt)
        if step:  # one more attempt (with the problem's prompt before it) than the last step's
            base = len(served.prompt_ids(by_id[pid]))
            assert r["prompt_tokens"] >= own[(pid, chain, step - 1)] + base


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

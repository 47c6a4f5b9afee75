"""The openai backend against a real vLLM server: log-probs, PRM scores and token counts equal
the in-process ones; pools and searches keep their budgets."""

from __future__ import annotations

import pytest
from vllm_servers import Served

from models.decoding import score_tokens
from models.testbed.tokenizer import BAD_TOKEN, GOOD_TOKEN, STEP_TAG
from profiling import TransformersBackend, load_prm, run
from profiling.openai import OpenAIBackend, ServerStepTagPRM, open_backend, open_verifier
from profiling.sweep.datasets import DataSpec, load_problems
from profiling.verifiers import Candidate, LikelihoodVerifier

TAGS = {"step_tag": STEP_TAG, "good_token": GOOD_TOKEN, "bad_token": BAD_TOKEN}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def problems() -> list:
    return load_problems(DataSpec(source="testbed", n=8)).problems


@pytest.fixture(scope="module")
def served(vllm_policy: Served) -> OpenAIBackend:
    return open_backend(vllm_policy.url, vllm_policy.name, vllm_policy.model_dir)


@pytest.fixture(scope="module")
def local(vllm_policy: Served) -> TransformersBackend:
    return TransformersBackend.load(vllm_policy.model_dir, threads=1)


def test_sampled_and_teacher_forced_logprobs_equal_in_process(
    served: OpenAIBackend, local: TransformersBackend, problems: list
) -> None:
    prompts = [served.prompt_ids(p) for p in problems[:4]]
    assert prompts == [local.prompt_ids(p) for p in problems[:4]]
    pools = served.sample(prompts, 3, max_new_tokens=48, temperature=1.0, seed=1)
    seqs, plens, sampled = [], [], []
    for p, pool in zip(prompts, pools, strict=True):
        for g in pool:
            assert g.finish in ("eos", "stop", "length") and len(g.logprobs) == len(g.token_ids)
            seqs.append(p + g.token_ids)
            plens.append(len(p))
            sampled.append(g.logprobs)
    ref = score_tokens(local.model, seqs, plens, pad_token_id=local.pad_token_id)
    for got, want in zip(sampled, ref, strict=True):
        assert len(got) == len(want)
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 1e-3
    # teacher-forced (prompt_logprobs) through the likelihood verifier, and its step scores
    srv = open_verifier(
        "likelihood", served.client.root, served.served_model, local.config.model_dir
    )
    inproc = LikelihoodVerifier.load(local.config.model_dir)
    tf = srv.s.prompt_logprobs(seqs)
    for got, seq, plen, want in zip(tf, seqs, plens, ref, strict=True):
        assert len(got) == len(seq) - 1
        assert max(abs(a - b) for a, b in zip(got[plen - 1 :], want, strict=True)) < 1e-3
    cands = [
        Candidate(problems[0], ["1+2=3\n", "Answer: 3"], seg_tokens=[6, 9]),
        Candidate(problems[1], ["7*3=21\n", "\n", "Answer: 21"], seg_tokens=[7, 1, 10]),
    ]
    for a, b in zip(srv.score(cands), inproc.score(cands), strict=True):
        assert a.flops == b.flops
        assert max(abs(x - y) for x, y in zip(a.step_scores, b.step_scores, strict=True)) < 1e-3


def test_step_tag_prm_through_the_server_equals_in_process(
    vllm_policy: Served, local: TransformersBackend, problems: list
) -> None:
    # The served policy read as a Math-Shepherd PRM (P(good) vs P(bad) at the testbed's tags):
    # the reads a trained PRM gets, on the generating server the session runs anyway.
    srv = open_verifier("prm", vllm_policy.url, vllm_policy.name, vllm_policy.model_dir, **TAGS)
    assert type(srv) is ServerStepTagPRM  # a generator: read through prompt log-probs
    inproc = load_prm(vllm_policy.model_dir, format="step_tag", **TAGS)
    pools = local.sample([local.prompt_ids(p) for p in problems[:4]], 2, max_new_tokens=48)
    from profiling.strategies.common import make_candidate

    cands = [
        make_candidate(local, p, g.token_ids, g.logprobs)
        for p, pool in zip(problems, pools, strict=False)
        for g in pool
    ]
    want = inproc.score(cands)
    got = srv.score(cands)
    with srv.incremental(), inproc.incremental():
        halves = [Candidate(c.problem, c.segments[:1]) for c in cands]
        srv.score(halves), inproc.score(halves)
        got_inc, want_inc = srv.score(cands), inproc.score(cands)
    for a, b in [*zip(got, want, strict=True), *zip(got_inc, want_inc, strict=True)]:
        assert len(a.step_scores) == len(b.step_scores) > 0
        assert max(abs(x - y) for x, y in zip(a.step_scores, b.step_scores, strict=True)) < 1e-3
        assert a.flops == pytest.approx(b.flops)


def test_server_token_counts_equal_the_local_tokenizer(
    served: OpenAIBackend, problems: list
) -> None:
    text = problems[0].prompt
    body = served.body(
        served.text_ids(text), n=2, max_new_tokens=40, temperature=1.0, top_p=1.0, seed=3
    )
    answer = served.client.post_json("/v1/completions", body)
    tok = served.tokenizer
    assert answer["usage"]["prompt_tokens"] == len(tok.encode(text, add_special_tokens=True))
    gens = served.generations(answer, body, 40)
    completion = 0
    for g, choice in zip(gens, sorted(answer["choices"], key=lambda c: c["index"]), strict=True):
        # decoded text keeps special tokens (eos included): it encodes back to the very ids
        assert tok.encode(served.decode(g.token_ids), add_special_tokens=False) == g.token_ids
        completion += len(g.token_ids)
        # the server's text leaves out the eos that stopped it, and no other token
        assert choice["text"] == served.decode(g.token_ids[: -1 if g.finish == "eos" else None])
    assert answer["usage"]["completion_tokens"] == completion


@pytest.mark.parametrize(
    ("strategy", "config"),
    [
        ("sample", {"n": 6, "max_new_tokens": 64}),
        ("beam", {"n": 4, "m": 2, "max_rounds": 6}),
        ("lookahead", {"n": 4, "m": 2, "k": 1, "max_rounds": 4}),
        ("dvts", {"n": 4, "m": 2, "max_rounds": 6}),
    ],
)
def test_strategies_keep_their_budgets_and_costs_match_in_process_rules(
    served: OpenAIBackend, local: TransformersBackend, problems: list, strategy: str, config: dict
) -> None:
    from profiling import SelfLikelihood

    verifiers = [SelfLikelihood(), LikelihoodVerifier.load(local.config.model_dir, name="pol")]
    rows = run(strategy, problems[:3], served, verifiers, {**config, "seed": 7})
    n = config["n"]
    for p in problems[:3]:
        for v in ("self:mean", "lik:pol:mean"):
            mine = [r for r in rows if r["problem_id"] == p.problem_id and r["verifier"] == v]
            assert 0 < len(mine) <= n
            assert len({r["position"] for r in mine}) == len(mine)
            assert sum(r["gen_tokens"] for r in mine) <= n * config.get("max_new_tokens", 1024) * (
                1 + config.get("k", 0)
            )
            assert all(r["gen_flops"] > 0 for r in mine)


def test_revisions_with_the_reviser_served(served: OpenAIBackend, problems: list) -> None:
    rows = run("revisions", problems[:2], served, None, {"chains": 2, "length": 2, "seed": 1})
    assert len(rows) == 2 * 2 * 2
    assert {(r["run"], r["position"]) for r in rows} == {(c, t) for c in range(2) for t in range(2)}


def test_policy_metadata_records_the_prefix_cache(served: OpenAIBackend, problems: list) -> None:
    meta = served.metadata()
    assert meta["backend"] == "openai" and meta["served_model"] == "policy"
    assert meta["max_model_len"] == 1024 and meta["model_params"] > 0
    assert 0.0 <= meta["prefix_cache_hit_rate"] <= 1.0

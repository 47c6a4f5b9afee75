"""profiling.verifiers: both PRM shapes, the likelihood verifiers, outcome mode."""

from __future__ import annotations

import json
import math

import profiling_tiny as T
import pytest
import torch
from profiling_tiny import single_thread  # noqa: F401  (autouse fixture)

from models.decoding import score_tokens
from profiling.backend import TransformersBackend
from profiling.flops import forward_flops
from profiling.problems import Problem
from profiling.strategies.common import make_candidate
from profiling.verifiers import (
    Candidate,
    LikelihoodVerifier,
    LMCandidatePRM,
    RLHFlowPRM,
    SelfLikelihood,
    TokenClassPRM,
    load_prm,
)

PROBLEM = Problem("p", "Q: 3+8*2-5\n", "14")
SEGMENTS = ["8*2=16>3+16-5\n", "3+16=19>19-5\n", "\n", "19-5=14>14\n", "Answer: 14"]
LINES = ["8*2=16>3+16-5", "3+16=19>19-5", "19-5=14>14", "Answer: 14"]


def _cand(segments=SEGMENTS) -> Candidate:
    return Candidate(PROBLEM, list(segments))


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("verifiers")
    return {
        "policy": T.save_policy(root / "policy"),
        "lm_prm": T.save_lm_prm(root / "lm_prm"),
        "tc1": T.save_token_class_prm(root / "tc1", num_labels=1),
        "tc2": T.save_token_class_prm(root / "tc2", num_labels=2, arch="qwen2"),
        "chat_prm": T.save_chat_prm(root / "chat_prm"),
    }


def _manual_lm_prm(prm: LMCandidatePRM, lines: list[str]) -> list[float]:
    tok = prm.s.tokenizer
    text = PROBLEM.prompt + "\n".join(line + "<step>" for line in lines)
    ids = tok.encode(text)
    tag = tok.convert_tokens_to_ids("<step>")
    with torch.no_grad():
        logits = prm.s.model(torch.tensor([ids])).logits[0]
    at = [i for i, t in enumerate(ids) if t == tag]
    good, bad = tok.convert_tokens_to_ids("<good>"), tok.convert_tokens_to_ids("<bad>")
    return logits[at][:, [good, bad]].softmax(-1)[:, 0].tolist()


def test_lm_candidate_prm_matches_a_manual_read_at_the_tags(dirs) -> None:
    (dirs["lm_prm"] / "verifier.json").write_text(
        json.dumps({"step_tag": "<step>", "good_token": "<good>", "bad_token": "<bad>"})
    )
    prm = load_prm(dirs["lm_prm"])
    assert isinstance(prm, LMCandidatePRM) and prm.verifier_id == "prm:lm_prm"
    short = _cand(SEGMENTS[:2])
    scored = prm.score([_cand(), short, Candidate(PROBLEM, [])])
    assert scored[0].step_scores == pytest.approx(_manual_lm_prm(prm, LINES), abs=1e-5)
    # batched with a shorter (left-padded) candidate: same numbers as alone
    assert scored[1].step_scores == pytest.approx(prm.score([short])[0].step_scores, abs=1e-5)
    assert all(0 <= s <= 1 for s in scored[0].step_scores)
    assert scored[2].step_scores == [] and scored[2].flops == 0
    n_tokens = len(
        prm.s.tokenizer.encode(PROBLEM.prompt + "\n".join(line + "<step>" for line in LINES))
    )
    assert scored[0].flops == pytest.approx(forward_flops(prm.s.shape, n_tokens, 0, logits=4))
    outcome = LMCandidatePRM.load(dirs["lm_prm"], mode="outcome")
    assert outcome.verifier_id == "prm:lm_prm:outcome"
    out = outcome.score([_cand()])[0].step_scores
    assert out == pytest.approx(_manual_lm_prm(prm, ["\n".join(LINES)]), abs=1e-5)


def _manual_rlhflow(prm: RLHFlowPRM, lines: list[str]) -> list[float]:
    """The RLHFlow recipe: the whole conversation (every reply `+`) in one forward; read the
    logits that predict each assistant reply (char tokenizer: token index = char index)."""
    tok = prm.s.tokenizer
    turns = []
    for i, line in enumerate(lines):
        turns.append({"role": "user", "content": PROBLEM.prompt + " " + line if i == 0 else line})
        turns.append({"role": "assistant", "content": "+"})
    text = tok.apply_chat_template(turns, tokenize=False)
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) == len(text)
    marker = "<assistant>"
    at = [i + len(marker) - 1 for i in range(len(text)) if text.startswith(marker, i)]
    assert len(at) == len(lines) and all(text[i + 1] == "+" for i in at)
    with torch.no_grad():
        logits = prm.s.model(torch.tensor([ids])).logits[0, at]
    plus, minus = tok.convert_tokens_to_ids("+"), tok.convert_tokens_to_ids("-")
    return logits[:, [plus, minus]].softmax(-1)[:, 0].tolist()


def test_rlhflow_prm_reads_the_assistant_reply_of_each_step(dirs) -> None:
    (dirs["chat_prm"] / "verifier.json").write_text(json.dumps({"format": "rlhflow"}))
    prm = load_prm(dirs["chat_prm"])
    assert isinstance(prm, RLHFlowPRM) and prm.verifier_id == "prm:chat_prm"
    short = _cand(SEGMENTS[:2])
    scored = prm.score([_cand(), short, Candidate(PROBLEM, [])])
    manual = _manual_rlhflow(prm, LINES)
    assert scored[0].step_scores == pytest.approx(manual, abs=1e-5)
    # the read does not depend on later turns (causal): a prefix scores as the full's prefix
    assert scored[1].step_scores == pytest.approx(manual[:2], abs=1e-5)
    assert scored[1].step_scores == pytest.approx(prm.score([short])[0].step_scores, abs=1e-5)
    assert scored[2].step_scores == [] and scored[2].flops == 0
    ids, reads = prm._build(_cand())
    assert len(reads) == len(LINES)
    assert scored[0].flops == pytest.approx(forward_flops(prm.s.shape, len(ids), 0, logits=4))
    outcome = load_prm(dirs["chat_prm"], mode="outcome", name="chat")
    assert outcome.verifier_id == "prm:chat:outcome"
    assert outcome.score([_cand()])[0].step_scores == pytest.approx(
        _manual_rlhflow(prm, ["\n".join(LINES)]), abs=1e-5
    )
    # the step-tag adapter on the same model is a different read (format selects the adapter)
    tagged = load_prm(
        dirs["chat_prm"],
        format="step_tag",
        step_tag="<step>",
        good_token="<good>",
        bad_token="<bad>",
    )
    assert isinstance(tagged, LMCandidatePRM)
    with pytest.raises(ValueError, match="format"):
        load_prm(dirs["chat_prm"], format="shepherd")
    with pytest.raises(ValueError, match="chat template"):
        RLHFlowPRM(prm.s.model, T.tokenizer(), name="no-template")


@pytest.mark.parametrize("name,labels", [("tc1", 1), ("tc2", 2)])
def test_token_class_prm_reads_step_ends(dirs, name: str, labels: int) -> None:
    prm = load_prm(dirs[name])
    assert isinstance(prm, TokenClassPRM) and prm.n_labels == labels
    scored = prm.score([_cand(), _cand(SEGMENTS[:1])])
    tok = prm.s.tokenizer
    ids = tok.encode(PROBLEM.prompt)
    ends = []
    for line in LINES:
        ids += tok.encode(line + "\n", add_special_tokens=False)
        ends.append(len(ids) - 1)
    with torch.no_grad():
        logits = prm.s.model(torch.tensor([ids])).logits[0, ends]
    manual = torch.sigmoid(logits[:, 0]) if labels == 1 else logits.softmax(-1)[:, 1]
    assert scored[0].step_scores == pytest.approx(manual.tolist(), abs=1e-5)
    assert len(scored[1].step_scores) == 1
    assert prm.s.shape.head_out == labels
    assert scored[0].flops == pytest.approx(forward_flops(prm.s.shape, len(ids), 0))


def test_likelihood_verifier_mean_and_min(dirs) -> None:
    lik = LikelihoodVerifier.load(dirs["lm_prm"], stat="min", name="large")
    assert lik.verifier_id == "lik:large:min"
    mean = LikelihoodVerifier.load(dirs["lm_prm"], stat="mean")
    c = _cand()
    s_min, s_mean = lik.score([c])[0], mean.score([c])[0]
    assert len(s_min.step_scores) == len(LINES)  # the blank line folds into its neighbour
    for a, b in zip(s_min.step_scores, s_mean.step_scores, strict=True):
        assert 0 < a <= b <= 1
    tok = lik.s.tokenizer
    prompt = tok.encode(PROBLEM.prompt)
    seq = prompt + tok.encode("".join(SEGMENTS), add_special_tokens=False)
    lp = score_tokens(lik.s.model, [seq], [len(prompt)])[0]
    first = len(SEGMENTS[0])
    assert s_mean.step_scores[0] == pytest.approx(math.exp(sum(lp[:first]) / first), rel=1e-5)
    assert s_min.flops == pytest.approx(forward_flops(lik.s.shape, len(seq), 0))
    with pytest.raises(ValueError):
        LikelihoodVerifier.load(dirs["lm_prm"], stat="median")


def test_self_likelihood_is_free_and_equals_scoring_with_the_policy(dirs) -> None:
    backend = TransformersBackend.load(dirs["policy"])
    prompt = backend.prompt_ids(PROBLEM)
    gens = backend.sample([prompt], 12, max_new_tokens=30, seed=2)[0]
    # a random model also samples special tokens, which do not survive decode -> encode;
    # keep the candidates whose text round-trips (the paid verifier re-tokenises text)
    special = set(backend.tokenizer.all_special_ids)
    gens = [g for g in gens if not special & set(g.token_ids[:-1])]
    assert gens
    cands = [make_candidate(backend, PROBLEM, g.token_ids, g.logprobs) for g in gens]
    free = SelfLikelihood(stat="min").score(cands)
    paid = LikelihoodVerifier(backend.model, backend.tokenizer, name="policy", stat="min").score(
        cands
    )
    for f, p in zip(free, paid, strict=True):
        assert f.flops == 0 and p.flops > 0
        assert f.step_scores == pytest.approx(p.step_scores, rel=1e-4)


@pytest.mark.parametrize("name", ["lm_prm", "chat_prm"])
def test_incremental_scoring_reads_each_step_once(dirs, name: str) -> None:
    if name == "lm_prm":
        prm = LMCandidatePRM.load(
            dirs[name], step_tag="<step>", good_token="<good>", bad_token="<bad>"
        )
    else:
        prm = RLHFlowPRM.load(dirs[name])
    other = ["7*1=7\n", "1+1=2\n"]
    rounds = [
        [_cand(SEGMENTS[:1]), _cand(other[:1])],
        # expansions of the kept rows (two siblings share a parent), as beam search asks
        [_cand(SEGMENTS[:2]), _cand(SEGMENTS[:2]), _cand(other)],
        # a branch off an earlier step (a truncated row) and several new steps at once
        [_cand([*SEGMENTS[:1], "9-9=0\n"]), _cand(SEGMENTS), Candidate(PROBLEM, [])],
    ]
    plain = [prm.score(r) for r in rounds]
    with prm.incremental():
        inc = [prm.score(r) for r in rounds]
    for rp, ri in zip(plain, inc, strict=True):
        for a, b in zip(rp, ri, strict=True):
            assert b.step_scores == pytest.approx(a.step_scores, abs=1e-5)
    assert [s.flops for s in inc[0]] == pytest.approx([s.flops for s in plain[0]])
    for rp, ri in zip(plain[1:], inc[1:], strict=True):
        for a, b in zip(rp, ri, strict=True):
            assert (b.flops < a.flops) if a.flops else b.flops == 0
    # a sibling pays for its new tokens only, attending over its parent's cached prefix
    ids, reads = prm._build(_cand(SEGMENTS[:2]))
    past = reads[0] + 1
    assert inc[1][0].flops == pytest.approx(
        forward_flops(prm.s.shape, len(ids) - past, past, logits=1)
    )
    # outside the block a score is a plain read again (no state leaks between searches)
    assert prm._inc is None
    again = prm.score(rounds[2])
    assert [s.flops for s in again] == pytest.approx([s.flops for s in plain[2]])

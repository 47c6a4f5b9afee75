"""models.decoding on tiny random Llama / Qwen2 / GPT-2 models (real code paths)."""

from __future__ import annotations

import pytest
import torch
from profiling_tiny import single_thread  # noqa: F401  (autouse fixture)

from models.decoding import DecodeState, make_generator, sample_batch, score_tokens

transformers = pytest.importorskip("transformers")


def _tiny(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "llama":
        cfg = transformers.LlamaConfig(
            vocab_size=40,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
        )
        m = transformers.LlamaForCausalLM(cfg)
    elif kind == "qwen2":
        cfg = transformers.Qwen2Config(
            vocab_size=40,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
        )
        m = transformers.Qwen2ForCausalLM(cfg)
    else:
        cfg = transformers.GPT2Config(
            vocab_size=40, n_embd=32, n_layer=2, n_head=4, n_positions=128
        )
        m = transformers.GPT2LMHeadModel(cfg)
    # Sharpen the random model a little so sampled sequences are not pure noise.
    return m.eval()


PROMPTS = [[1, 5, 6, 7], [2, 9], [3, 4, 5, 6, 7, 8, 9], [1, 5, 6, 7]]


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_greedy_matches_generate_and_logprobs_match_scoring(kind: str) -> None:
    model = _tiny(kind)
    gens = sample_batch(model, PROMPTS, max_new_tokens=6, temperature=0.0)
    for p, g in zip(PROMPTS, gens, strict=True):
        ref = model.generate(
            torch.tensor([p]),
            max_new_tokens=6,
            do_sample=False,
            attention_mask=torch.ones(1, len(p), dtype=torch.long),
            pad_token_id=0,
        )
        assert g.token_ids == ref[0, len(p) :].tolist()
        assert g.finish == "length" and len(g.logprobs) == 6
    scored = score_tokens(
        model,
        [p + g.token_ids for p, g in zip(PROMPTS, gens, strict=True)],
        [len(p) for p in PROMPTS],
    )
    for g, s in zip(gens, scored, strict=True):
        assert s == pytest.approx(g.logprobs, abs=1e-4)
        assert all(v <= 0 for v in s)


def test_stop_eos_and_determinism() -> None:
    model = _tiny("llama")
    kw = dict(max_new_tokens=12, temperature=1.0, stop_token_ids={3, 4, 5}, eos_token_id=6, seed=7)
    a = sample_batch(model, PROMPTS * 4, **kw)
    b = sample_batch(model, PROMPTS * 4, **kw)
    assert [(g.token_ids, g.logprobs, g.finish) for g in a] == [
        (g.token_ids, g.logprobs, g.finish) for g in b
    ]
    c = sample_batch(model, PROMPTS * 4, **{**kw, "seed": 8})
    assert [g.token_ids for g in a] != [g.token_ids for g in c]
    finishes = {g.finish for g in a}
    assert finishes <= {"stop", "eos", "length"}
    for g in a:
        assert len(g.token_ids) == len(g.logprobs) <= 12
        if g.finish == "stop":
            assert g.token_ids[-1] in {3, 4, 5}
            assert not set(g.token_ids[:-1]) & {3, 4, 5, 6}
        elif g.finish == "eos":
            assert g.token_ids[-1] == 6
        else:
            assert len(g.token_ids) == 12
    # Log-probs of sampled tokens equal teacher-forced scoring, holes and compaction included.
    prompts = PROMPTS * 4
    scored = score_tokens(
        model, [p + g.token_ids for p, g in zip(prompts, a, strict=True)], [len(p) for p in prompts]
    )
    for g, s in zip(a, scored, strict=True):
        assert s == pytest.approx(g.logprobs, abs=1e-4)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_shared_prompts_score_as_one_forward(kind: str) -> None:
    """Candidates of the same prompts, of different lengths (one with no continuation), split
    across batches: encoding each prompt once gives the log-probs of the plain forward."""
    model = _tiny(kind)
    gens = sample_batch(model, PROMPTS * 3, max_new_tokens=7, stop_token_ids={3}, seed=5)
    seqs = [p + g.token_ids for p, g in zip(PROMPTS * 3, gens, strict=True)] + [PROMPTS[0]]
    plens = [len(p) for p in PROMPTS * 3] + [len(PROMPTS[0])]
    plain = score_tokens(model, seqs, plens, batch_size=4)
    for batch in (1, 4, len(seqs)):
        shared = score_tokens(model, seqs, plens, batch_size=batch, share_prompts=True)
        assert [len(s) for s in shared] == [len(s) for s in plain]
        assert shared[-1] == []
        for a, b in zip(shared, plain, strict=True):
            assert a == pytest.approx(b, abs=1e-5)
    with pytest.raises(ValueError, match="prompt_lens"):
        score_tokens(model, [[1, 2]], [0], share_prompts=True)


def test_shared_scoring_takes_the_order_that_feeds_fewer_tokens() -> None:
    """Long shared prompts with short continuations batch by prompt; short prompts with long,
    varied continuations batch by length; either way the log-probs are the plain forward's."""
    from models.decoding._scoring import _fed_tokens, shared_orders

    model = _tiny("llama")
    long_p = [[1, 5, 6, 7, 8, 9, 4, 3] * 3, [2, 9, 8, 7, 6, 5, 4] * 3]
    short_p = [[1, 5], [2, 9]]
    for prompts, want in ((long_p, "prompt"), (short_p, "length")):
        seqs = [p + [3] * (1 + 5 * (j % 4)) for j in range(8) for p in prompts]
        plens = [len(p) for _ in range(8) for p in prompts]
        keys = [tuple(s[:pl]) for s, pl in zip(seqs, plens, strict=True)]
        fed = {o: _fed_tokens(order, keys, seqs, 4) for o, order in
               shared_orders(keys, seqs).items()}  # fmt: skip
        assert min(fed, key=fed.__getitem__) == want
        shared = score_tokens(model, seqs, plens, batch_size=4, share_prompts=True)
        for a, b in zip(shared, score_tokens(model, seqs, plens, batch_size=4), strict=True):
            assert a == pytest.approx(b, abs=1e-5)


def test_top_p_small_is_greedy() -> None:
    model = _tiny("qwen2")
    greedy = sample_batch(model, PROMPTS, max_new_tokens=5, temperature=0.0)
    nucleus = sample_batch(model, PROMPTS, max_new_tokens=5, temperature=1.0, top_p=1e-6, seed=3)
    assert [g.token_ids for g in greedy] == [g.token_ids for g in nucleus]


def test_state_select_step_and_extend_reuse_the_prefix() -> None:
    model = _tiny("llama")
    prompt = [1, 5, 6, 7, 8]
    state = DecodeState.prefill(model, [prompt])
    state.select([0, 0, 0])
    gen = make_generator(0)
    step1 = state.decode(max_new_tokens=4, stop_token_ids={3}, generator=gen)
    state.select([2, 0])
    forced = state.extend([[9, 9], [10]])
    step2 = state.decode(max_new_tokens=3, temperature=0.0)
    rows = [prompt + step1[2].token_ids + [9, 9], prompt + step1[0].token_ids + [10]]
    scored = score_tokens(
        model, [r + s.token_ids for r, s in zip(rows, step2, strict=True)], [len(prompt)] * 2
    )
    for r, f, s, sc in zip(rows, forced, step2, scored, strict=True):
        n_before = len(r) - len(prompt)
        assert sc[n_before - len(f) : n_before] == pytest.approx(f, abs=1e-4)
        assert sc[n_before:] == pytest.approx(s.logprobs, abs=1e-4)
    assert state.lengths() == [len(r) + len(s.token_ids) for r, s in zip(rows, step2, strict=True)]


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_lean_decoder_equals_the_model_forward(kind: str) -> None:
    from models.lean import lean_supported

    model = _tiny(kind)
    assert lean_supported(model)
    kw = dict(max_new_tokens=10, temperature=1.0, stop_token_ids={3}, seed=11)
    lean = sample_batch(model, PROMPTS * 2, lean=True, **kw)
    hf = sample_batch(model, PROMPTS * 2, lean=False, **kw)
    for a, b in zip(lean, hf, strict=True):
        assert a.token_ids == b.token_ids and a.finish == b.finish
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
    assert not lean_supported(_tiny("gpt2"))
    with pytest.raises(ValueError):
        sample_batch(_tiny("gpt2"), PROMPTS, max_new_tokens=2, lean=True)


@pytest.mark.parametrize("lean", [True, False])
def test_compacting_holes_keeps_the_maths(lean: bool) -> None:
    model = _tiny("llama")
    prompt = [1, 5, 6, 7, 8]
    state = DecodeState.prefill(model, [prompt], lean=lean)
    state.select([0, 0, 0])
    first = state.decode(max_new_tokens=6, stop_token_ids={3, 4}, generator=make_generator(4))
    state.extend([[9], [], []])  # holes of different sizes in every row
    state.extend([[], [], [10, 11, 12, 13, 14, 15]])
    width = state.mask.shape[1]
    assert state.compact_holes(min_waste=0.0)
    assert state.mask.shape[1] == max(state.lengths()) < width
    second = state.decode(max_new_tokens=4, temperature=0.0)
    extra = [[9], [], [10, 11, 12, 13, 14, 15]]
    seqs = [
        prompt + f.token_ids + e + s.token_ids for f, e, s in zip(first, extra, second, strict=True)
    ]
    scored = score_tokens(
        model, seqs, [len(s) - len(g.token_ids) for s, g in zip(seqs, second, strict=True)]
    )
    for sc, g in zip(scored, second, strict=True):
        assert sc == pytest.approx(g.logprobs, abs=1e-4)


def test_lean_decoder_sees_weight_updates() -> None:
    """A model trained between two calls must not be sampled with stale fused weights."""
    model = _tiny("llama")
    before = sample_batch(model, PROMPTS, max_new_tokens=4, temperature=0.0, lean=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    after = sample_batch(model, PROMPTS, max_new_tokens=4, temperature=0.0, lean=True)
    ref = sample_batch(model, PROMPTS, max_new_tokens=4, temperature=0.0, lean=False)
    assert [g.token_ids for g in after] == [g.token_ids for g in ref]
    assert [g.logprobs for g in after] != [g.logprobs for g in before]


def test_lean_decoder_without_fused_weights(monkeypatch) -> None:
    import models.lean

    monkeypatch.setattr(models.lean, "_FUSE_MAX_PARAMS", 0)  # the path large models take
    model = _tiny("qwen2")  # q/k/v biases
    kw = dict(max_new_tokens=6, temperature=0.0)
    lean = sample_batch(model, PROMPTS, lean=True, **kw)
    hf = sample_batch(model, PROMPTS, lean=False, **kw)
    assert models.lean.LeanRunner.for_model(model)._layers[0][2].__len__() == 3
    for a, b in zip(lean, hf, strict=True):
        assert a.token_ids == b.token_ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)

"""profiling.backend: loading, templates, batched sampling, step search on a shared KV cache."""

from __future__ import annotations

import profiling_tiny as T
import pytest
import torch
from profiling_tiny import single_thread  # noqa: F401  (autouse fixture)

from models.decoding import make_generator, score_tokens
from profiling.backend import BackendConfig, PromptTemplate, TransformersBackend
from profiling.flops import forward_flops


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> TransformersBackend:
    path = T.save_policy(tmp_path_factory.mktemp("policy") / "policy")
    return TransformersBackend.load(path, batch_size=8)


def test_load_and_prompt(backend: TransformersBackend) -> None:
    p = T.problems(1)[0]
    ids = backend.prompt_ids(p)
    assert ids[0] == backend.tokenizer.bos_token_id
    # special tokens stay in decoded text (it encodes back to the same ids)
    assert backend.decode(ids) == backend.tokenizer.bos_token + p.prompt
    assert backend.encode(backend.decode(ids)) == ids
    assert backend.model_id == "policy" and backend.n_params > 1000
    assert backend.step_stop_ids == [backend.tokenizer.convert_tokens_to_ids("\n")]
    meta = backend.metadata()
    assert meta["device"] == "cpu" and meta["dtype"] == "float32"


def test_few_shot_template() -> None:
    tpl = PromptTemplate(
        template="Question: {prompt}", few_shot=(("1+1", "2"), ("2+2", "4")), shot_separator="\n"
    )
    assert tpl.render("3+3") == "Question: 1+12\nQuestion: 2+24\nQuestion: 3+3"
    with pytest.raises(ValueError):
        PromptTemplate(template="no placeholder")
    with pytest.raises(ValueError):
        PromptTemplate(system="be brief")


def test_config_errors(tmp_path) -> None:
    with pytest.raises(ValueError):
        BackendConfig(model_dir="x", dtype="float8")
    with pytest.raises(ValueError):
        BackendConfig(model_dir="x", device="tpu")
    with pytest.raises(FileNotFoundError):
        TransformersBackend.load(tmp_path / "missing")


def test_sample_shapes_and_determinism(backend: TransformersBackend) -> None:
    prompts = [backend.prompt_ids(p) for p in T.problems(3)]
    # n=3 batches prompts together; n=10 > batch_size=8 prefills once and copies the rows
    for n in (3, 10):
        a = backend.sample(prompts, n, max_new_tokens=20, seed=5)
        b = backend.sample(prompts, n, max_new_tokens=20, seed=5)
        assert [len(pool) for pool in a] == [n] * 3
        assert [[g.token_ids for g in pool] for pool in a] == [
            [g.token_ids for g in pool] for pool in b
        ]
        for pool in a:
            for g in pool:
                assert 1 <= len(g.token_ids) <= 20 and len(g.logprobs) == len(g.token_ids)
    steps = backend.sample(prompts, 4, max_new_tokens=30, seed=1, stop_at_step=True)
    nl = backend.step_stop_ids[0]
    for pool in steps:
        for g in pool:
            assert nl not in g.token_ids[:-1]
            assert g.finish in ("stop", "eos", "length")


def test_search_state_reuses_the_prefix_and_meters_flops(backend: TransformersBackend) -> None:
    prompt = backend.prompt_ids(T.problems(1)[0])
    st = backend.start(prompt)
    prefill = forward_flops(backend.shape, len(prompt), 0, logits=1)
    assert st.flops == pytest.approx(prefill)
    st.select([0, 0, 0, 0])
    gen = make_generator(3)
    first = st.step(temperature=1.0, max_step_tokens=6, generator=gen)
    st.select([3, 1])
    second = st.step(temperature=1.0, max_step_tokens=6, generator=gen)
    seqs = [
        prompt + first[3].token_ids + second[0].token_ids,
        prompt + first[1].token_ids + second[1].token_ids,
    ]
    ref = score_tokens(backend.model, seqs, [len(prompt)] * 2)
    got = [first[3].logprobs + second[0].logprobs, first[1].logprobs + second[1].logprobs]
    for r, g in zip(ref, got, strict=True):
        assert r == pytest.approx(g, abs=1e-4)
    expected = prefill
    for g in first:
        expected += forward_flops(backend.shape, len(g.token_ids), len(prompt))
    for g, parent in zip(second, (3, 1), strict=True):
        past = len(prompt) + len(first[parent].token_ids)
        expected += forward_flops(backend.shape, len(g.token_ids), past)
    assert st.flops == pytest.approx(expected)
    assert st.generated == sum(len(g.token_ids) for g in first + second)
    assert st.step_rows == [4, 2]


def test_forward_pass_counts_only_new_tokens(backend: TransformersBackend) -> None:
    """Tokens fed to the model: the prompt once plus each step's tokens, never the prefix again."""
    fed: list[int] = []

    def hook(_module, args):
        fed.append(int(args[0].numel()))

    # every forward (the lean decoder's and the model's own) embeds its input ids
    handle = backend.model.get_input_embeddings().register_forward_pre_hook(hook)
    try:
        prompt = backend.prompt_ids(T.problems(1)[0])
        st = backend.start(prompt)
        st.select([0, 0])
        a = st.step(temperature=1.0, max_step_tokens=5, generator=make_generator(0))
        b = st.step(temperature=1.0, max_step_tokens=5, generator=make_generator(1))
    finally:
        handle.remove()
    longest = max(len(g.token_ids) for g in a) + max(len(g.token_ids) for g in b)
    # one prefill of the prompt, then at most (rows x step length) per step, holes included
    assert fed[0] == len(prompt)
    assert sum(fed[1:]) <= 2 * longest
    assert torch.is_tensor(st.state.mask)


def test_chat_template(backend: TransformersBackend) -> None:
    tok = backend.tokenizer
    saved = getattr(tok, "chat_template", None)
    tok.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n"
        "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    try:
        tpl = PromptTemplate(chat=True, system="Solve.", few_shot=(("1+1", "2"),))
        text = tpl.render("3+3", tok)
        assert text == "<system>Solve.\n<user>1+1\n<assistant>2\n<user>3+3\n<assistant>"
        chat = TransformersBackend(
            BackendConfig(model_dir="policy", template=tpl), backend.model, tok
        )
        ids = chat.text_ids("3+3")
        assert chat.decode(ids) == text and ids[0] != tok.bos_token_id
    finally:
        tok.chat_template = saved

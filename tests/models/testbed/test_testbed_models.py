"""Real tiny testbed models: training determinism and resume, save/reload, sampler, verifiers, PRM
format, and the quick testbed's manifest (trained once per test run by the `quick_testbed`
fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.testbed import task
from models.testbed.modeling import (
    LlamaShape,
    TrainSpec,
    build_model,
    count_params,
    grow_layers,
    pretrain,
)
from models.testbed.tokenizer import CharCodec

TINY = LlamaShape(16, 1, 2)
TINY_TRAIN = TrainSpec(steps=6, batch_size=4, lr=3e-3, warmup=2)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_training_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    m1, r1 = pretrain(TINY, TINY_TRAIN, 5, tmp_path / "a.pt", desc="a", progress=False)
    m2, r2 = pretrain(TINY, TINY_TRAIN, 5, tmp_path / "b.pt", desc="b", progress=False)
    m3, _ = pretrain(TINY, TINY_TRAIN, 6, tmp_path / "c.pt", desc="c", progress=False)
    assert _same_weights(m1, m2)
    assert not _same_weights(m1, m3)
    assert r1["d_pretrain_tokens"] == r2["d_pretrain_tokens"] > 0
    assert r1["pretrain_flops"] == 6 * r1["params"] * r1["d_pretrain_tokens"]
    assert r1["params"] == count_params(m1)


def test_grown_layers_compute_the_same_function_until_trained() -> None:
    # The reviser's capacity experiment starts from the policy with each layer repeated: the
    # repeats must add nothing at first (else the grown reviser starts worse than the policy).
    small = build_model(LlamaShape(16, 2, 2), seed=3)
    with torch.no_grad():  # a trained-looking model: no layer left at its initial zeros
        for p in small.parameters():
            p.add_(0.05 * torch.randn_like(p))
    small.eval()
    grown = grow_layers(small, 3)
    ids = torch.randint(4, CharCodec().vocab_size, (2, 24))
    assert grown.config.num_hidden_layers == 6
    assert count_params(grown) > 2.5 * (
        count_params(small) - small.model.embed_tokens.weight.numel()
    )
    torch.testing.assert_close(grown(ids).logits, small(ids).logits)
    grown.model.layers[1].self_attn.o_proj.weight.data.fill_(0.1)  # trained repeats change it
    assert not torch.allclose(grown(ids).logits, small(ids).logits)


def test_interrupted_training_resumes_to_the_same_weights(tmp_path: Path) -> None:
    from models.testbed.modeling import lm_loss, pad_batch, pretrain_batch, train_loop

    codec = CharCodec()
    spec = TrainSpec(steps=6, batch_size=4, lr=3e-3, warmup=2)

    def make_loss(fail_at: int | None):
        def loss_fn(m: torch.nn.Module, step: int):
            if step == fail_at:
                raise KeyboardInterrupt
            seqs, masks = pretrain_batch(0, step, spec.batch_size)
            ids, att, labels = pad_batch(seqs, masks, codec.pad_id)
            return lm_loss(m, ids, att, labels), int(att.sum())

        return loss_fn

    ref = build_model(TINY, 0)
    train_loop(
        ref, spec, make_loss(None), tmp_path / "ref.pt", desc="ref", progress=False, ckpt_every=3
    )
    model = build_model(TINY, 0)
    with pytest.raises(KeyboardInterrupt):
        train_loop(
            model, spec, make_loss(4), tmp_path / "run.pt", desc="run", progress=False, ckpt_every=3
        )
    assert (tmp_path / "run.pt").exists()
    resumed = build_model(TINY, 0)
    train_loop(
        resumed,
        spec,
        make_loss(None),
        tmp_path / "run.pt",
        desc="run",
        progress=False,
        ckpt_every=3,
    )
    assert _same_weights(ref, resumed)


def test_sampler_greedy_matches_generate_and_is_seeded() -> None:
    from models.testbed.generation import sample_chunked

    codec = CharCodec()
    model = build_model(LlamaShape(32, 2, 2), 1).eval()
    prompts = [
        [codec.bos_id, *codec.encode(task.format_prompt(q))] for q in ("1+2", "3*4-5+6", "7")
    ]
    greedy = sample_chunked(
        model, prompts, max_new_tokens=12, temperature=0.0, pad_token_id=codec.pad_id
    )
    for p, g in zip(prompts, greedy, strict=True):
        ref = model.generate(
            torch.tensor([p]), max_new_tokens=12, do_sample=False, pad_token_id=codec.pad_id
        )
        assert g.token_ids == ref[0, len(p) :].tolist()
    a = sample_chunked(model, prompts * 3, max_new_tokens=10, seed=3, eos_token_id=codec.eos_id)
    b = sample_chunked(model, prompts * 3, max_new_tokens=10, seed=3, eos_token_id=codec.eos_id)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert all(len(g.token_ids) <= 10 and all(lp <= 0 for lp in g.logprobs) for g in a)


@pytest.mark.slow
def test_quick_testbed_manifest(quick_testbed: Path) -> None:
    manifest = json.loads((quick_testbed / "manifest.json").read_text())
    assert manifest["quick"] is True and manifest["seed"] == 0 and manifest["scale"] == "default"
    models = manifest["models"]
    names = ("policy", "large", "prm", "reviser")
    for name in names:
        assert models[name]["params"] > 0
        assert models[name]["train_steps"] > 0
        assert models[name]["train_seconds"] > 0  # timed, and no run of steps takes under 5 ms
    assert manifest["train_seconds_total"] == round(
        sum(models[n]["train_seconds"] for n in names), 2
    )
    for name in ("policy", "large"):
        m = models[name]
        assert m["d_pretrain_tokens"] > 0
        assert m["pretrain_flops"] == 6 * m["params"] * m["d_pretrain_tokens"]
    assert models["policy"]["d_pretrain_tokens"] == models["large"]["d_pretrain_tokens"]
    assert models["large"]["params"] > models["policy"]["params"]
    assert manifest["task"]["prompt_format"] == "Q: {question}\n"
    assert manifest["task"]["step_delimiter"] == "\n"
    assert manifest["prm"]["step_tag"] == "<step>"
    assert {manifest["prm"]["good_token"], manifest["prm"]["bad_token"]} == {"<good>", "<bad>"}
    assert "{attempts}" in manifest["reviser"]["prompt_format"]
    assert (
        manifest["reviser"]["context"] == "wrong"
        and models["reviser"]["length_grouped_batches"] is True
    )
    prm = models["prm"]
    # labels: outcome-balanced selection, rollouts stopped at dead prefixes (counts in the manifest)
    assert prm["stop_dead"] is True and prm["wrong_per_question"] == 1
    assert 0 < prm["prm_wrong_answer_solutions"] <= prm["prm_solutions"]
    # Every step line is either rolled out from or labelled dead; only answer lines (at most one
    # per solution) are neither.
    per_step = manifest["settings"]["prm"]["rollouts"]
    assert prm["prm_rollouts"] > 0 and prm["prm_rollouts"] % per_step == 0
    steps = prm["prm_rollouts"] // per_step + prm["prm_lines_labelled_dead"]
    assert prm["prm_labelled_lines"] - prm["prm_solutions"] <= steps <= prm["prm_labelled_lines"]
    assert "label_selection" in manifest["prm"]
    q = manifest["quality"]
    assert set(q["levels"]) == {str(k) for k in manifest["settings"]["levels"]}
    for row in q["levels"].values():
        assert 0.0 <= row["policy_pass1"] <= row["policy_pass_n"] <= 1.0
        assert row["policy_chain_ceiling_n"] <= row["policy_pass_n"]


@pytest.mark.slow
def test_models_reload_offline_with_identical_logits(quick_testbed: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = task.format_prompt("3+4*2") + "4*2=8>3+8"
    for name in ("policy", "large", "prm", "reviser"):
        d = quick_testbed / name
        model = AutoModelForCausalLM.from_pretrained(d).eval()
        tok = AutoTokenizer.from_pretrained(d)
        ids = tok(text, return_tensors="pt")["input_ids"]
        assert ids.shape[1] == len(text) + 1
        with torch.no_grad():
            before = model(ids).logits
        model.save_pretrained(tmp_path / name)
        again = AutoModelForCausalLM.from_pretrained(tmp_path / name).eval()
        with torch.no_grad():
            assert torch.equal(before, again(ids).logits)


@pytest.mark.slow
def test_prm_format_and_scores(quick_testbed: Path) -> None:
    from transformers import AutoModelForCausalLM

    from models.testbed.verifiers import completion_lines, prm_input, prm_line_scores

    codec = CharCodec()
    p = task.make_problem("e", "3+8*2-5")
    ids, tags = prm_input(codec, p.question, completion_lines(p.completion))
    assert [ids[t] for t in tags] == [codec.tag_id] * 4  # 3 steps + the answer line
    assert ids.count(codec.tag_id) == 4
    assert codec.decode(ids[: tags[0]]) == task.format_prompt(p.question) + "8*2=16>3+16-5"
    assert ids[tags[0] + 1] == codec.newline_id and ids[-1] == codec.tag_id
    prm = AutoModelForCausalLM.from_pretrained(quick_testbed / "prm").eval()
    comps = [p.completion, "8*2=16>3+16-5\nAnswer: 3", ""]
    scores = prm_line_scores(prm, [p.question] * 3, comps)
    assert [len(s) for s in scores] == [4, 2, 0]
    assert all(0.0 <= s <= 1.0 for row in scores for s in row)


@pytest.mark.slow
def test_likelihood_verifier_scores(quick_testbed: Path) -> None:
    from transformers import AutoModelForCausalLM

    from models.testbed.verifiers import likelihood_line_scores

    large = AutoModelForCausalLM.from_pretrained(quick_testbed / "large").eval()
    p = task.make_problem("e", "3+8*2-5")
    scores = likelihood_line_scores(
        large, [p.question] * 2, [p.completion, "8*2=16>3+16-5\nAnswer: 3"]
    )
    assert len(scores[0]) == 4 and len(scores[1]) == 2
    assert all(s <= 0 for row in scores for s in row)
    # The first line's score does not depend on what follows it.
    assert scores[0][0] == pytest.approx(scores[1][0], abs=1e-5)


def test_reviser_prompt_keeps_four_recent_attempts() -> None:
    from models.testbed.revision_data import edit_distance, format_reviser_prompt

    attempts = [f"1+1={i}>{i}\nAnswer: {i}" for i in range(6)]
    prompt = format_reviser_prompt("1+1", attempts)
    # Earlier attempts first (oldest first), each after the question; the question last.
    assert prompt.startswith("Q: 1+1\n1+1=2>2\nAnswer: 2<eos>Q: 1+1\n") and prompt.endswith(
        "Answer: 5<eos>Q: 1+1\n"
    )
    assert prompt.count("Q: 1+1\n") == 5 and "Answer: 1<eos>" not in prompt
    # With no earlier attempt the reviser's prompt is the policy's.
    assert format_reviser_prompt("1+1", []) == task.format_prompt("1+1")
    assert edit_distance("kitten", "sitting") == 3


def test_revision_examples_follow_the_paper() -> None:
    import random

    from models.testbed.revision_data import (
        edit_distance,
        format_reviser_prompt,
        revision_examples,
    )

    p = task.make_problem("r", "3+8*2-5")
    wrong = [
        "8*2=16>3+16-5\n3+16=19>19-5\n19-5=13>13\nAnswer: 13",
        "8*2=18>3+18-5\nAnswer: 16",
        "8*2=16>3+16-5\n3+16=20>20-5\nAnswer: 15",
    ]
    right = [p.completion]
    examples = revision_examples([p] * 40, [wrong + right] * 40, random.Random(0))
    assert {t for _, t in examples} == {p.completion}  # the target is always a correct attempt
    closest = min(wrong, key=lambda w: edit_distance(w, p.completion))
    with_context = [q for q, _ in examples if q != task.format_prompt(p.question)]
    assert with_context and len(with_context) < len(examples)  # 0 attempts happens too
    for q in with_context:
        # only incorrect attempts in context, the last one the closest to the target
        assert q.endswith(format_reviser_prompt(p.question, [closest]))
        assert p.completion not in q
    kept = revision_examples(
        [p] * 40, [wrong + right + right] * 40, random.Random(0), keep_share=1.0
    )
    assert any(q.endswith(p.completion + "<eos>" + task.format_prompt(p.question)) for q, _ in kept)


def test_harness_revision_prompt_is_the_testbed_reviser_format() -> None:
    """`ttc profile`'s revisions strategy, on its defaults, prompts the testbed reviser exactly as
    the reviser was trained (earlier attempts, then the question)."""
    from models.testbed.revision_data import format_reviser_prompt
    from profiling.problems import Problem
    from profiling.strategies.revisions import RevisionsConfig, revision_prompt

    q = "3+8*2-5"
    problem = Problem("p", task.format_prompt(q), "14", meta={"question": q})
    attempts = ["8*2=16>3+16-5\n3+16=19>19-5\n19-5=13>13\nAnswer: 13", "8*2=18>3+18-5\nAnswer: 16"]
    cfg = RevisionsConfig(chains=1, length=3)
    assert revision_prompt(cfg, problem, attempts) == format_reviser_prompt(q, attempts)
    assert revision_prompt(cfg, problem, []) == task.format_prompt(q)
    # <eos> in the text is one token, for the HF tokenizer and the testbed's fast codec alike.
    from models.testbed.tokenizer import CharCodec, build_tokenizer

    text = format_reviser_prompt(q, attempts)
    ids = CharCodec().encode(text)
    assert ids.count(CharCodec().eos_id) == 2
    assert [CharCodec().bos_id, *ids] == build_tokenizer()(text)["input_ids"]


def test_packed_rows_hold_several_examples_after_one_bos() -> None:
    from models.testbed.modeling import PACK_EXAMPLES, packed_batch
    from models.testbed.tokenizer import CharCodec

    codec = CharCodec()
    seqs, masks = packed_batch(0, 3, 10)
    assert len(seqs) == 3 and [s.count(codec.eos_id) for s in seqs] == [
        PACK_EXAMPLES,
        PACK_EXAMPLES,
        2,
    ]
    for seq, mask in zip(seqs, masks, strict=True):
        assert seq[0] == codec.bos_id and seq.count(codec.bos_id) == 1 and len(seq) == len(mask)
        text = codec.decode(seq)
        assert text.count("Q: ") == seq.count(codec.eos_id)
        # the loss covers completions and <eos>, never a question
        assert all(m == 0 for t, m in zip(seq, mask, strict=True) if t == codec.ids["Q"])
        assert all(m == 1 for t, m in zip(seq, mask, strict=True) if t == codec.eos_id)
    assert packed_batch(0, 3, 10) == (seqs, masks)  # seeded by step


def test_default_scale_larger_lm_is_at_least_four_times_the_policy() -> None:
    from models.testbed.modeling import build_model, count_params
    from models.testbed.settings import TestbedSettings

    s = TestbedSettings(quick=False, scale="default", seed=0)
    ratio = count_params(build_model(s.large, 0)) / count_params(build_model(s.policy, 0))
    assert 4.0 <= ratio < 5.0
    paper = TestbedSettings(quick=False, scale="paper", seed=0)
    assert (
        12
        <= count_params(build_model(paper.large, 0)) / count_params(build_model(paper.policy, 0))
        <= 16
    )
    # Both models of a pair see the same data and tokens (same steps and batches, same seed).
    for st in (s, paper):
        assert (st.large_pretrain.steps, st.large_pretrain.batch_size) == (
            st.pretrain.steps,
            st.pretrain.batch_size,
        )
    assert s.large_pretrain == s.pretrain and paper.large_pretrain.lr < paper.pretrain.lr


def test_sampled_context_examples_keep_right_and_wrong_attempts() -> None:
    import random

    from models.testbed.revision_data import format_reviser_prompt, sampled_context_examples

    p = task.make_problem("r", "3+8*2-5")
    wrong = ["8*2=16>3+16-5\n3+16=19>19-5\n19-5=13>13\nAnswer: 13", "8*2=18>3+18-5\nAnswer: 16"]
    right = [p.completion, p.completion]
    examples = sampled_context_examples([p] * 60, [wrong + right] * 60, random.Random(0))
    assert len(examples) == 120 and {t for _, t in examples} == {p.completion}
    contexts = [q for q, _ in examples]
    assert task.format_prompt(p.question) in contexts  # no attempt at all happens
    # a right attempt in context happens (the paper's data never has one), and so do wrong ones
    assert any(q.count(p.completion + "<eos>") for q in contexts)
    assert any(w + "<eos>" in q for q in contexts for w in wrong)
    # the target attempt itself is never in its own context: at most one right attempt is left
    assert max(q.count(p.completion + "<eos>") for q in contexts) == 1
    assert all(q.endswith(task.format_prompt(p.question)) and q.count("Q: ") <= 5 for q in contexts)
    # a question with no right attempt is revised towards the gold solution
    gold = sampled_context_examples([p], [wrong], random.Random(1))
    assert all(t == p.completion for _, t in gold)
    assert format_reviser_prompt(p.question, []) == task.format_prompt(p.question)


def test_length_grouped_batches_pad_less_and_lose_nothing() -> None:
    import random

    from models.testbed.modeling import (
        length_grouped,
        lm_loss,
        lm_loss_parts,
        pad_batch,
        pretrain_batch,
    )

    rng = random.Random(0)
    lengths = [rng.randrange(10, 1000) for _ in range(500)]
    picks, spread, plain = [], 0, 0
    for step in range(300):
        batch = length_grouped(random.Random(step), lengths, 8)
        assert len(batch) == 8
        picks += batch
        spread += max(lengths[i] for i in batch) - min(lengths[i] for i in batch)
        r = random.Random(10_000 + step)
        uni = [r.randrange(len(lengths)) for _ in range(8)]
        plain += max(lengths[i] for i in uni) - min(lengths[i] for i in uni)
    assert spread < plain / 3  # far less padding than uniform draws
    # every item stays reachable, short and long alike (no bias to one end)
    short = sum(lengths[i] < 505 for i in picks) / len(picks)
    assert 0.4 < short < 0.6 and len(set(picks)) > 450
    # the loss over sub-batches padded apart is the one-batch loss
    codec = CharCodec()
    model = build_model(TINY, 0)
    a, b = pretrain_batch(0, 1, 3), pretrain_batch(0, 2, 2)
    ids, att, labels = pad_batch(a[0] + b[0], a[1] + b[1], codec.pad_id)
    with torch.no_grad():
        whole = lm_loss(model, ids, att, labels)
        parts, n_read = lm_loss_parts(model, [a, b])
    assert torch.allclose(whole, parts, atol=1e-5) and n_read == int(att.sum())


def test_prm_label_selection_by_outcome() -> None:
    from models.testbed.prm import _select

    p = task.make_problem("s", "3+8*2-5")
    right, w1, w2, w3 = (
        p.completion,
        "8*2=18>3+18-5\nAnswer: 16",
        "8*2=16>3+16-5\nAnswer: 1",
        "Answer: 2",
    )
    comps = [right, w1, right, w2, w3, right]
    assert _select(p, comps, 0) == comps  # 0: label every sample
    # up to 2 wrong ones and as many right ones, in sample order
    assert _select(p, comps, 2) == [right, w1, right, w2]
    # no wrong sample: still one right one (the PRM sees easy questions too)
    assert _select(p, [right, right, right], 2) == [right]
    assert _select(p, [w1, w2, w3], 2) == [w1, w2]


@pytest.mark.slow
def test_prm_rollout_labels_stop_after_a_dead_prefix(quick_testbed: Path) -> None:
    from dataclasses import replace

    from models.testbed.checkpoints import load_hf_model
    from models.testbed.prm import rollout_labels
    from models.testbed.settings import TestbedSettings

    policy = load_hf_model(quick_testbed / "policy")
    base = TestbedSettings(quick=True, scale="default", seed=0)
    runs = {}
    for stop in (False, True):
        s = TestbedSettings(quick=True, scale="default", seed=0)
        object.__setattr__(
            s,
            "prm",
            replace(
                base.prm,
                questions=6,
                samples_per_question=3,
                rollouts=3,
                wrong_per_question=0,
                stop_dead=stop,
            ),
        )
        runs[stop] = rollout_labels(policy, s, progress=False)
    (full, full_stats), (cut, cut_stats) = runs[False], runs[True]
    assert [it["lines"] for it in full] == [it["lines"] for it in cut]  # the same solutions
    steps = lambda it: len(it["lines"]) - int(it["lines"][-1].startswith("Answer"))  # noqa: E731
    assert full_stats["prm_rollouts"] == 3 * sum(steps(it) for it in full)
    rolled = 0
    for a, b in zip(full, cut, strict=True):
        n = steps(a)
        dead = next((j for j in range(n) if b["labels"][j] == 0.0), n)
        rolled += min(n, dead + 1)
        # after the first step no rollout finished, every step is labelled 0 without rollouts
        assert all(x == 0.0 for x in b["labels"][dead + 1 : n])
        assert all(x in (0.0, 1 / 3, 2 / 3, 1.0) for x in b["labels"])
        assert b["labels"][n:] == a["labels"][n:]  # the answer line: its own correctness
    assert cut_stats["prm_rollouts"] == 3 * rolled < full_stats["prm_rollouts"]
    assert cut_stats["prm_lines_labelled_dead"] == sum(steps(it) for it in full) - rolled > 0


def test_switching_threads_mid_training_keeps_the_weights(tmp_path: Path) -> None:
    """The larger LM takes a second core for its last steps (`threads_from`); the weights must
    be those of a one-thread run, or the testbed would depend on the machine's schedule."""
    spec = LlamaShape(32, 2, 2)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, _ = pretrain(spec, TINY_TRAIN, 3, tmp_path / "one.pt", desc="one", progress=False)
        torch.set_num_threads(1)
        two, _ = pretrain(
            spec,
            TINY_TRAIN,
            3,
            tmp_path / "two.pt",
            desc="two",
            progress=False,
            threads_from=(3, 2),
        )
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert _same_weights(one, two)


@pytest.mark.slow
def test_reviser_context_effect_pairs_each_question_with_its_no_context_accuracy(
    quick_testbed: Path,
) -> None:
    from models.testbed.checkpoints import load_hf_model
    from models.testbed.quality import eval_problems
    from models.testbed.reviser_eval import context_effect

    model = load_hf_model(quick_testbed / "reviser")
    problems = [p for p in eval_problems(0, 2) if p.level <= 3]
    res = context_effect(model, problems, seed=3, pool=5, repeats=2)
    assert res == context_effect(model, problems, seed=3, pool=5, repeats=2)  # seeded
    assert set(res["groups"]) == {"easy", "medium"}
    for g, f in res["groups"].items():
        rows = f["by_right_in_context"]
        assert set(rows) == {"0", "1", "2", "3", "4"}
        n_group = sum(p.level in ((1, 2) if g == "easy" else (3, 4, 5)) for p in problems)
        for r in rows.values():
            # a count k is only built where the pool of 5 holds k right and 4-k wrong attempts
            assert 0 <= r["questions"] <= n_group
            if r["questions"]:
                assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["none_same_questions"] <= 1.0
                assert r["minus_none"]["n"] == r["questions"]
        # a pool of 5 with r right attempts allows k = r - 1 and k = r (within 0..4): every question
        # gets at least one context
        assert sum(r["questions"] for r in rows.values()) >= n_group

"""The testbed PRM's recipes: the ranking loss, hard labels, the value head, added layers, the
self-distilled surprise targets, the
cache keys of the paper's recipe, and a value-head PRM read by the harness's token-class adapter
exactly as the testbed reads it."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from models.testbed import task
from models.testbed.prm_train import (
    Probes,
    deepen,
    draw,
    hard_labels,
    make_batch,
    prm_loss,
    question_groups,
    rank_loss,
    value_head_model,
    with_surprise,
)
from models.testbed.settings import DEFAULT_PRM_RECIPE, TestbedSettings
from models.testbed.tokenizer import CharCodec


def _items() -> list[dict]:
    p = task.make_problem("e", "3+8*2-5")
    q = task.make_problem("f", "2*3+4")
    right = p.completion.split("\n")
    return [
        {"question": p.question, "answer": p.answer, "lines": right, "labels": [0.8, 0.6, 1, 1]},
        {
            "question": p.question,
            "answer": p.answer,
            "lines": ["8*2=16>3+16-5", "3+16=20>20-5", "20-5=15>15", "Answer: 15"],
            "labels": [0.5, 0.0, 0.0, 0.0],
        },
        {
            "question": q.question,
            "answer": q.answer,
            "lines": q.completion.split("\n"),
            "labels": [0.9, 1.0, 1.0],
        },
    ]


def test_rank_loss_pairs_only_within_a_question_and_step_index() -> None:
    z = torch.tensor([2.0, -1.0, 0.5, 3.0])
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    groups = torch.tensor([0, 0, 1, 1])
    keys = torch.tensor([0, 0, 0, 1])  # the last tag is another step index: no pair
    got = rank_loss(z, y, groups, keys)
    assert got == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(-3.0))))
    # A question's offset (what its difficulty alone explains) cancels in every pair.
    shifted = rank_loss(z + torch.tensor([5.0, 5.0, -7.0, -7.0]), y, groups, keys)
    assert shifted == pytest.approx(got)
    assert rank_loss(z, torch.ones(4), groups, keys) is None  # no label gap, no pair


def test_batches_key_steps_and_answer_lines() -> None:
    codec = CharCodec()
    items = _items()
    groups = question_groups(items)
    assert groups == [[0, 1]]  # the second question has one solution: nothing to rank
    chosen = draw(items, random.Random(0), 4, None, groups, 2)
    assert len(chosen) == 4 and set(chosen) <= {0, 1}
    batch = make_batch(items, [0, 1, 2], codec)
    # step indices per tag, -1 for the answer line, so answer lines of different lengths pair
    assert batch.keys.tolist() == [0, 1, 2, -1, 0, 1, 2, -1, 0, 1, -1]
    assert batch.groups.tolist() == [0] * 8 + [1] * 3
    assert batch.labels[batch.tag_mask].tolist() == pytest.approx(
        [0.8, 0.6, 1, 1, 0.5, 0, 0, 0, 0.9, 1, 1]
    )
    assert [it["labels"] for it in hard_labels(items)][1] == [1.0, 0.0, 0.0, 0.0]


@pytest.mark.slow
def test_value_head_and_added_layers_start_from_the_larger_lm(quick_testbed: Path) -> None:
    from models.testbed.checkpoints import load_hf_model
    from models.testbed.verifiers import prm_line_scores

    codec = CharCodec()
    large = load_hf_model(quick_testbed / "large")
    p = task.make_problem("e", "3+8*2-5")
    tag = prm_line_scores(large, [p.question], [p.completion])[0]
    value = value_head_model(large, codec).eval()
    # the value head reads the same model, without the newline after each tag
    ids = torch.tensor([[codec.bos_id, *codec.encode("Q: 1+2\n1+2=3>3")]])
    with torch.no_grad():
        a = large(input_ids=ids).logits[0, -1]
        b = value(input_ids=ids).logits[0, -1, 0]
    assert float(b) == pytest.approx(float(a[codec.good_id] - a[codec.bad_id]), abs=1e-4)
    deep = deepen(large, 2, 0).eval()
    assert deep.config.num_hidden_layers == large.config.num_hidden_layers + 2
    assert prm_line_scores(deep, [p.question], [p.completion])[0] == pytest.approx(tag, abs=1e-5)
    # every recipe's loss is finite and trains the head
    batch = make_batch(_items(), [0, 1, 2], codec, "value")
    for head, model in (("tag", deep), ("value", value)):
        for loss in ("bce", "rank", "bce+rank"):
            total, tokens = prm_loss(
                model,
                batch if head == "value" else make_batch(_items(), [0, 1, 2], codec),
                codec,
                head=head,
                loss=loss,
                lm_weight=0.5,
            )
            assert torch.isfinite(total) and tokens > 0


@pytest.mark.slow
def test_self_distillation_targets_sit_on_each_line_and_the_probes_train(
    quick_testbed: Path,
) -> None:
    """The larger LM's per-character log-probs land on the line's own characters (the tag and
    the question get none), the line's mean on its tag; the probes get gradients."""
    from models.testbed.checkpoints import load_hf_model

    codec = CharCodec()
    large = load_hf_model(quick_testbed / "large")
    items = with_surprise(large, _items())
    for it in items:
        assert [len(lp) for lp in it["surprise"][:-1]] == [len(x) + 1 for x in it["lines"][:-1]]
        assert all(v <= 0 for lp in it["surprise"] for v in lp)
    batch = make_batch(items, [0, 1, 2], codec)
    assert batch.char_lp is not None and batch.line_lp is not None
    has_char = ~torch.isnan(batch.char_lp)
    assert int(has_char[0].sum()) == sum(len(x) for x in items[0]["lines"])
    assert not bool((has_char & batch.tag_mask).any())
    assert torch.equal(~torch.isnan(batch.line_lp), batch.tag_mask)
    first = items[0]["surprise"][0]
    assert float(batch.line_lp[batch.tag_mask][0]) == pytest.approx(sum(first) / len(first))
    deep = deepen(large, 2, 0)
    deep.ttc_probes = Probes(int(large.config.hidden_size), large.config.num_hidden_layers + 1)
    plain, _ = prm_loss(deep, batch, codec)
    total, _ = prm_loss(deep, batch, codec, surprise=1.0)
    assert float(total.detach()) > float(plain.detach())  # the distillation term adds to it
    total.backward()
    assert deep.ttc_probes.char.weight.grad is not None
    assert float(deep.ttc_probes.line.weight.grad.abs().sum()) > 0


def test_the_paper_recipe_keeps_its_cache_keys() -> None:
    s = TestbedSettings(quick=False, scale="default", seed=0)
    assert s.prm.is_paper() and s.prm.recipe()["paper"]
    other = TestbedSettings(quick=False, scale="default", seed=0)
    object.__setattr__(other, "prm", replace(s.prm, per_question=8))
    assert other.stage_key("prm") == s.stage_key("prm")  # per_question only matters for ranking
    object.__setattr__(other, "prm", replace(s.prm, loss="rank"))
    assert other.stage_key("prm") != s.stage_key("prm")
    object.__setattr__(other, "prm", replace(s.prm, surprise=1.0))
    assert other.stage_key("prm") != s.stage_key("prm") and not other.prm.is_paper()
    with pytest.raises(ValueError, match="recipe"):
        replace(s.prm, head="mlp")


def test_each_scale_trains_its_default_recipe_unless_one_is_named() -> None:
    """The paper scale's PRM is the best measured recipe on 8x the labels; the default and quick
    scales keep the paper's recipe (and its cache keys); a named recipe wins at any scale."""
    paper = TestbedSettings(quick=False, scale="paper", seed=0)
    assert paper.prm_recipe == DEFAULT_PRM_RECIPE["paper"] == "surprise+deep2"
    assert (paper.prm.extra_layers, paper.prm.surprise) == (2, 1.0)
    assert (paper.prm.questions, paper.prm.train.steps) == (1280, 1600)
    default = TestbedSettings(quick=False, scale="default", seed=0)
    assert default.prm_recipe == "paper" and default.prm.is_paper()
    assert (default.prm.questions, default.prm.train.steps) == (160, 200)
    assert TestbedSettings(quick=True, scale="paper", seed=0).prm.is_paper()
    named = TestbedSettings(quick=False, scale="paper", seed=0, prm_recipe="paper")
    assert named.prm.is_paper() and named.prm.questions == 1280
    assert named.stage_key("prm") != paper.stage_key("prm")


@pytest.mark.slow
def test_a_value_head_prm_reads_the_same_through_the_harness(
    quick_testbed: Path, tmp_path: Path
) -> None:
    """A value-head PRM saved as the testbed stage saves it loads with the harness's
    token-class adapter, which scores every step as the testbed's own reader does."""
    import json

    from models.testbed.checkpoints import load_hf_model, save_model
    from models.testbed.tokenizer import STEP_TAG
    from models.testbed.verifiers import prm_line_scores
    from profiling.problems import Problem
    from profiling.verifiers import load_prm
    from profiling.verifiers.base import Candidate

    codec = CharCodec()
    model = value_head_model(load_hf_model(quick_testbed / "large"), codec)
    save_model(model, tmp_path / "prm")
    (tmp_path / "prm" / "verifier.json").write_text(
        json.dumps({"format": "token_class", "separator": STEP_TAG})
    )
    p = task.make_problem("e", "3+8*2-5")
    comps = [p.completion, "8*2=16>3+16-5\nAnswer: 3"]
    ref = prm_line_scores(load_hf_model(tmp_path / "prm"), [p.question] * 2, comps)
    prm = load_prm(tmp_path / "prm")
    problem = Problem("e", task.format_prompt(p.question), p.answer)
    got = prm.score([Candidate(problem, [line + "\n" for line in c.split("\n")]) for c in comps])
    for g, r in zip(got, ref, strict=True):
        assert g.step_scores == pytest.approx(r, abs=1e-5)

"""The testbed PRM's training recipes: batches, heads and losses over rollout-labelled solutions.

A recipe (`PRMSpec`) chooses
- the labels: `soft` (the paper: the fraction of rollouts that reach the right answer) or `hard`
  (1 when any rollout did);
- the head: `tag` (the paper: P(good) over the {good, bad} logits of the causal LM at each step
  tag) or `value` (a token-classification head with one label, read at the same tag positions);
- the loss: `bce` (the paper's, on the labels), `rank` (pairwise: within one question, a step
  ranked against the steps at the same index, and a final answer line against the other answer
  lines, weighted by the label gap; what a question's difficulty alone explains cancels in every
  pair) or `bce+rank`;
- `extra_layers` new decoder layers stacked on the larger LM (zero-initialised outputs, so
  training starts from the larger LM exactly): a wrong character shows as a token the LM did not
  expect, but the LM's expectation exists only at its last layer, which no later position of the
  same model can read; new layers can.
- `surprise`: the weight of a self-distillation loss that needs no labels. The larger LM's own
  teacher-forced log-prob of every character of a solution (computed once, before training, by
  the frozen larger LM) is a target for two linear probes that exist only during training: one on
  the first new layer's output at each character (how unexpected it is: the comparison of the
  previous position's expectation with the character, which only a later layer can make), one on
  the last layer at each tag (the lowest mean log-prob of the lines so far: the likelihood
  verifier's prefix score, judged per prefix as the rollout labels are).
  The rollout labels then teach the head which of that matters; the probes are dropped at save.
The auxiliary LM loss on correct solutions (`lm_weight`) needs the causal LM's head, so the value
head trains without it.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.testbed import task
from models.testbed.modeling import length_grouped
from models.testbed.tokenizer import CharCodec
from models.testbed.verifiers import line_token_logprobs, prm_input


@dataclass
class PRMBatch:
    """Padded PRM inputs, the tag positions with their labels, and ranking keys per tag."""

    ids: torch.Tensor
    att: torch.Tensor
    tag_mask: torch.Tensor  # [B, T] bool: step tags
    labels: torch.Tensor  # [B, T] label at each tag
    lm_labels: torch.Tensor  # [B, T] next-token targets on correct solutions' lines, else -100
    groups: torch.Tensor  # [n_tags] question index of each tag (row-major order of tag_mask)
    keys: torch.Tensor  # [n_tags] step index of each tag; -1 for the final answer line
    # the larger LM's log-prob of each line character, and each line's mean at its tag (NaN
    # elsewhere); None when the items carry no `surprise`
    char_lp: torch.Tensor | None = None
    line_lp: torch.Tensor | None = None


def deepen(model: torch.nn.Module, extra: int, seed: int) -> torch.nn.Module:
    """The causal LM with `extra` new decoder layers on top; their output projections are zero,
    so the deeper model computes exactly what `model` does until training moves them."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = model.config.to_dict()
    n = cfg["num_hidden_layers"]
    cfg["num_hidden_layers"] = n + extra
    torch.manual_seed(seed)
    deep = LlamaForCausalLM(LlamaConfig(**cfg))
    _, unexpected = deep.load_state_dict(model.state_dict(), strict=False)
    if unexpected:
        raise RuntimeError(f"unexpected weights {unexpected}")
    with torch.no_grad():
        for layer in deep.model.layers[n:]:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    return deep


def value_head_model(model: torch.nn.Module, codec: CharCodec) -> torch.nn.Module:
    """A one-label token-classification model on the causal LM's decoder; its head starts as the
    tag head's good-minus-bad logit, so the two heads start from the same scores."""
    from transformers import LlamaConfig, LlamaForTokenClassification

    cfg = model.config.to_dict()
    cfg.update(num_labels=1, classifier_dropout=0.0, architectures=None)
    cls = LlamaForTokenClassification(LlamaConfig(**cfg))
    cls.model.load_state_dict(model.model.state_dict())
    with torch.no_grad():
        w = model.lm_head.weight
        cls.score.weight.copy_((w[codec.good_id] - w[codec.bad_id])[None])
        if cls.score.bias is not None:
            cls.score.bias.zero_()
    return cls


def with_surprise(large: torch.nn.Module, items: list[dict]) -> list[dict]:
    """Items with the frozen larger LM's log-prob of every character of every line (`surprise`,
    [line][token]: the line's characters, then the newline after it but the last)."""
    lps = line_token_logprobs(
        large.eval(), [it["question"] for it in items], [it["lines"] for it in items]
    )
    return [{**it, "surprise": lp} for it, lp in zip(items, lps, strict=True)]


class Probes(torch.nn.Module):
    """Training-only linear read-outs of the self-distillation targets (see the module doc)."""

    def __init__(self, hidden: int, char_layer: int) -> None:
        super().__init__()
        self.char_layer = char_layer  # index into hidden_states: the first new layer's output
        self.char = torch.nn.Linear(hidden, 1)
        self.line = torch.nn.Linear(hidden, 1)


def hard_labels(items: list[dict]) -> list[dict]:
    """Items whose step labels are 1 when any rollout reached the right answer (the answer line's
    label is its correctness either way)."""
    return [{**it, "labels": [1.0 if y > 0 else 0.0 for y in it["labels"]]} for it in items]


def question_groups(items: list[dict]) -> list[list[int]]:
    """Item indices per question (questions with at least two labelled solutions)."""
    by_q: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        by_q[it["question"]].append(i)
    return [ix for ix in by_q.values() if len(ix) >= 2]


def draw(
    items: list[dict],
    rng: random.Random,
    batch_size: int,
    lengths: list[int] | None,
    groups: list[list[int]] | None,
    per_question: int,
) -> list[int]:
    """Item indices of one batch: `per_question` solutions of each of a few questions (ranking
    needs several solutions of one question together), else length-grouped or uniform draws."""
    if groups:
        chosen: list[int] = []
        while len(chosen) < batch_size:
            g = groups[rng.randrange(len(groups))]
            chosen += rng.sample(g, min(per_question, len(g), batch_size - len(chosen)))
        return chosen
    if lengths is not None:
        return length_grouped(rng, lengths, batch_size)
    return [rng.randrange(len(items)) for _ in range(batch_size)]


def make_batch(
    items: list[dict], chosen: list[int], codec: CharCodec, head: str = "tag"
) -> PRMBatch:
    """Pad the chosen items into one batch (right padding), in the head's input format."""
    picked = [items[i] for i in chosen]
    joiner = task.STEP_DELIMITER if head == "tag" else ""
    encoded = [prm_input(codec, it["question"], it["lines"], joiner) for it in picked]
    b, width = len(picked), max(len(ids) for ids, _ in encoded)
    ids = torch.full((b, width), codec.pad_id, dtype=torch.long)
    att = torch.zeros_like(ids)
    tag_mask = torch.zeros((b, width), dtype=torch.bool)
    labels = torch.zeros((b, width))
    lm_labels = torch.full((b, width), -100, dtype=torch.long)
    surprise = all("surprise" in it for it in picked)
    char_lp = torch.full((b, width), float("nan")) if surprise else None
    line_lp = torch.full((b, width), float("nan")) if surprise else None
    qindex: dict[str, int] = {}
    groups, keys = [], []
    for r, ((seq, tags), it) in enumerate(zip(encoded, picked, strict=True)):
        ids[r, : len(seq)] = torch.tensor(seq)
        att[r, : len(seq)] = 1
        if char_lp is not None and line_lp is not None:
            worst = float("inf")
            for t, line, lp in zip(tags, it["lines"], it["surprise"], strict=True):
                # a line's characters sit right before its tag (one token per character)
                char_lp[r, t - len(line) : t] = torch.tensor(lp[: len(line)])
                # the prefix's weakest line, as the rollout labels judge a prefix
                worst = min(worst, sum(lp) / max(1, len(lp)))
                line_lp[r, t] = worst
        final = task.is_answer_line(it["lines"][-1])
        q = qindex.setdefault(it["question"], len(qindex))
        for j, (t, y) in enumerate(zip(tags, it["labels"], strict=True)):
            tag_mask[r, t] = True
            labels[r, t] = y
            groups.append(q)
            keys.append(-1 if final and j == len(tags) - 1 else j)
        if it["labels"] and it["labels"][-1] == 1.0:
            prompt = len(codec.encode(task.format_prompt(it["question"]))) + 1
            seq_t = torch.tensor(seq)
            keep = seq_t != codec.tag_id
            keep[:prompt] = False
            lm_labels[r, : len(seq)] = torch.where(keep, seq_t, torch.full_like(seq_t, -100))
    return PRMBatch(
        ids,
        att,
        tag_mask,
        labels,
        lm_labels,
        torch.tensor(groups),
        torch.tensor(keys),
        char_lp,
        line_lp,
    )


def rank_loss(z: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, keys: torch.Tensor):
    """Pairwise logistic loss between tags of one question and one key (step index, or the answer
    line), over pairs with different labels, weighted by the label gap; None without pairs."""
    same = (groups[:, None] == groups[None, :]) & (keys[:, None] == keys[None, :])
    gap = (y[:, None] - y[None, :]).clamp(min=0) * same
    if not bool((gap > 0).any()):
        return None
    diff = z[:, None] - z[None, :]
    return (gap * F.softplus(-diff)).sum() / gap.sum()


def prm_loss(
    model: torch.nn.Module,
    batch: PRMBatch,
    codec: CharCodec,
    *,
    head: str = "tag",
    loss: str = "bce",
    lm_weight: float = 0.0,
    surprise: float = 0.0,
) -> tuple[torch.Tensor, int]:
    """The recipe's loss on one batch; (loss, tokens read)."""
    probes = getattr(model, "ttc_probes", None)
    distil = surprise > 0 and probes is not None and batch.char_lp is not None
    res = model(input_ids=batch.ids, attention_mask=batch.att, output_hidden_states=distil)
    out = res.logits
    if head == "tag":
        at = out[batch.tag_mask][:, [codec.good_id, codec.bad_id]].float()
        z = at[:, 0] - at[:, 1]  # the log-odds of good: P(good) = sigmoid(z)
    else:
        z = out[batch.tag_mask][:, 0].float()
    y = batch.labels[batch.tag_mask]
    total = 0.0 * z.sum()  # in the graph even when a batch has no ranking pair and no LM term
    if loss in ("bce", "bce+rank"):
        total = total + F.binary_cross_entropy_with_logits(z, y)
    if loss in ("rank", "bce+rank"):
        r = rank_loss(z, y, batch.groups, batch.keys)
        if r is not None:
            total = total + r
    if distil:
        total = total + surprise * _distil_loss(res.hidden_states, probes, batch)
    lm = batch.lm_labels[:, 1:]
    if head == "tag" and lm_weight > 0 and bool((lm != -100).any()):
        lg = out[:, :-1]
        total = total + lm_weight * F.cross_entropy(
            lg.reshape(-1, lg.shape[-1]), lm.reshape(-1), ignore_index=-100
        )
    return total, int(batch.att.sum())


def _distil_loss(hidden: tuple[torch.Tensor, ...], probes: Probes, batch: PRMBatch) -> torch.Tensor:
    """Mean squared error of the probes against the larger LM's log-probs (scaled to about unit
    size; a character the LM finds very unlikely counts as -10 nats)."""
    assert batch.char_lp is not None and batch.line_lp is not None
    total = hidden[-1].new_zeros(())
    for h, probe, target in (
        (hidden[probes.char_layer], probes.char, batch.char_lp),
        (hidden[-1], probes.line, batch.line_lp),
    ):
        keep = ~torch.isnan(target)
        if bool(keep.any()):
            pred = probe(h[keep].float())[:, 0]
            total = total + F.mse_loss(pred, target[keep].clamp(min=-10.0) / 4.0)
    return total

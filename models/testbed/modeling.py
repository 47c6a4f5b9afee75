"""Tiny Llama-architecture models for the testbed: specs, construction, and the LM training loop.

Training stops at a fixed step count (never a wall-clock limit) and draws each batch from an RNG
seeded by (seed, step), so the same settings always give the same weights, and a run resumed from
a checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from models.testbed.task import DEFAULT_LEVELS, format_prompt, sample_problem
from models.testbed.tokenizer import CharCodec
from planner.progress import progress as report

MAX_POSITIONS = 1024
PACK_EXAMPLES = 4  # examples per row of `packed_batch`


@dataclass(frozen=True)
class LlamaShape:
    """The architecture of one testbed model: a Llama of this shape (SwiGLU MLP of width
    `intermediate`, default 4·hidden; tied embeddings)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int = 0  # 0: 4·hidden

    def __post_init__(self) -> None:
        if self.hidden <= 0 or self.layers <= 0 or self.heads <= 0 or self.intermediate < 0:
            raise ValueError(f"model sizes must be positive, got {self}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} must be divisible by heads {self.heads}")

    @property
    def mlp_width(self) -> int:
        return self.intermediate or 4 * self.hidden

    def config(self, vocab_size: int) -> LlamaConfig:
        codec = CharCodec()
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden,
            intermediate_size=self.mlp_width,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.heads,
            max_position_embeddings=MAX_POSITIONS,
            rope_theta=10000.0,
            tie_word_embeddings=True,
            pad_token_id=codec.pad_id,
            bos_token_id=codec.bos_id,
            eos_token_id=codec.eos_id,
        )


@dataclass(frozen=True)
class TrainSpec:
    """How long and how hard to train: fixed steps, batch size, peak learning rate."""

    steps: int
    batch_size: int
    lr: float
    warmup: int = 50
    weight_decay: float = 0.1

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0 or self.lr <= 0:
            raise ValueError(f"steps, batch_size and lr must be positive, got {self}")


def build_model(spec: LlamaShape, seed: int) -> LlamaForCausalLM:
    codec = CharCodec()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(spec.config(codec.vocab_size))
    model.config.use_cache = True
    return model


def grow_layers(model: LlamaForCausalLM, factor: int) -> LlamaForCausalLM:
    """A copy of `model` with each decoder layer repeated `factor` times (depth up-scaling).

    Each repeat after the first has its attention output and MLP down projections zeroed, so it
    adds nothing to the residual stream: the grown model computes exactly `model`'s function, and
    fine-tuning starts from it with `factor` x the layers (the reviser's capacity experiment)."""
    config = model.config.__class__(**model.config.to_dict())
    config.num_hidden_layers = model.config.num_hidden_layers * factor
    grown = model.__class__(config)
    state = {}
    for key, value in model.state_dict().items():
        if ".layers." not in key:
            state[key] = value
            continue
        head, rest = key.split(".layers.", 1)
        index, tail = rest.split(".", 1)
        for c in range(factor):
            silent = c > 0 and tail.startswith(("self_attn.o_proj", "mlp.down_proj"))
            state[f"{head}.layers.{int(index) * factor + c}.{tail}"] = (
                torch.zeros_like(value) if silent else value.clone()
            )
    grown.load_state_dict(state)
    grown.eval()
    return grown


def count_params(model: torch.nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _lr_at(step: int, spec: TrainSpec) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < spec.warmup:
        return spec.lr * (step + 1) / spec.warmup
    frac = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
    return spec.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def pad_batch(
    seqs: list[list[int]], masks: list[list[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad token lists; labels are -100 where the loss mask is 0 or on padding."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for i, (s, m) in enumerate(zip(seqs, masks, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        att[i, : len(s)] = 1
        labels[i, : len(s)] = torch.tensor([t if k else -100 for t, k in zip(s, m, strict=True)])
    return ids, att, labels


def pretrain_batch(
    seed: int, step: int, batch_size: int, levels: Sequence[int] = DEFAULT_LEVELS
) -> tuple[list[list[int]], list[list[int]]]:
    """The pretraining batch of one step: one level of `levels` per batch (little padding), seeded
    by step.

    The loss covers the completion and <eos>, not the random question digits.
    (Packing several examples per row was tried for pretraining: same tokens and steps, policy
    pass@1 fell from .98/.73/.47 to .84/.55/.41 on levels 1-3 with groups of four, and to
    .75/.15/.12 with length-balanced rows; `packed_batch` serves the reviser's fine-tuning instead.)
    """
    codec = CharCodec()
    rng = random.Random(f"testbed-pretrain:{seed}:{step}")
    level = rng.choice(tuple(levels))
    seqs, masks = [], []
    for _ in range(batch_size):
        p = sample_problem(rng, level)
        prompt = [codec.bos_id, *codec.encode(format_prompt(p.question))]
        completion = [*codec.encode(p.completion), codec.eos_id]
        seqs.append(prompt + completion)
        masks.append([0] * len(prompt) + [1] * len(completion))
    return seqs, masks


def packed_batch(
    seed: int, step: int, batch_size: int, levels: Sequence[int] = DEFAULT_LEVELS
) -> tuple[list[list[int]], list[list[int]]]:
    """`batch_size` examples of random levels of `levels`, `PACK_EXAMPLES` to a row:
    ``<bos>Q: ..\n<completion><eos>Q: ..\n<completion><eos>...``.

    A model pretrained on one example per row solves a question only right after <bos> (pass@1
    .98 -> .00 on level 1 with four earlier attempts in front); rows like these teach it to solve
    the *last* question whatever precedes it, which the reviser's prompt (earlier attempts, then
    the question) needs. The loss covers the completions and <eos>.
    """
    codec = CharCodec()
    rng = random.Random(f"testbed-packed:{seed}:{step}")
    seqs, masks = [], []
    for start in range(0, batch_size, PACK_EXAMPLES):
        seq, mask = [codec.bos_id], [0]
        for _ in range(min(PACK_EXAMPLES, batch_size - start)):
            p = sample_problem(rng, rng.choice(tuple(levels)))
            prompt = codec.encode(format_prompt(p.question))
            completion = [*codec.encode(p.completion), codec.eos_id]
            seq += prompt + completion
            mask += [0] * len(prompt) + [1] * len(completion)
        seqs.append(seq)
        masks.append(mask)
    return seqs, masks


def lm_loss(
    model: torch.nn.Module,
    ids: torch.Tensor,
    att: torch.Tensor,
    labels: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """Next-token cross-entropy over the labelled positions (mean, or "sum")."""
    logits = model(input_ids=ids, attention_mask=att).logits[:, :-1]
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        labels[:, 1:].reshape(-1),
        ignore_index=-100,
        reduction=reduction,
    )


def lm_loss_parts(
    model: torch.nn.Module, parts: list[tuple[list[list[int]], list[list[int]]]]
) -> tuple[torch.Tensor, int]:
    """Mean token loss over several sub-batches, each padded to its own width; (loss, tokens read).

    The same loss as one batch of all the rows, without padding short rows to the longest
    (a revision prompt with four attempts is ten times a plain one, and attention grows with
    the square of the width).
    """
    total, n_loss, n_read = torch.zeros(()), 0, 0
    for seqs, masks in parts:
        if not seqs:
            continue
        ids, att, labels = pad_batch(seqs, masks, CharCodec().pad_id)
        total = total + lm_loss(model, ids, att, labels, reduction="sum")
        n_loss += int((labels[:, 1:] != -100).sum())
        n_read += int(att.sum())
    return total / max(1, n_loss), n_read


def length_grouped(
    rng: random.Random, lengths: list[int], batch_size: int, group: int = 8
) -> list[int]:
    """Indices of one batch of items of similar length: draw `group` batches' worth uniformly,
    sort them by length, take one of the `group` slices at random (each item is as likely to be
    picked as with plain uniform draws; the batch needs far less padding)."""
    pool = sorted(
        (rng.randrange(len(lengths)) for _ in range(group * batch_size)),
        key=lambda i: (lengths[i], i),
    )
    k = rng.randrange(group)
    return pool[k * batch_size : (k + 1) * batch_size]


LossFn = Callable[[torch.nn.Module, int], tuple[torch.Tensor, int]]


def train_loop(
    model: torch.nn.Module,
    spec: TrainSpec,
    loss_fn: LossFn,
    ckpt_path: Path,
    *,
    desc: str,
    progress: bool,
    ckpt_every: int = 100,
    threads_from: tuple[int, int] | None = None,
) -> dict:
    """Run `spec.steps` optimiser steps of `loss_fn(model, step) -> (loss, tokens)`, resumably.

    Every `ckpt_every` steps the model, optimiser and counters are saved to `ckpt_path`
    (atomically); an interrupted run restarts from there and, because batches depend only on the
    step index, ends with the same weights as an uninterrupted one.
    `threads_from = (step, n)`: from that step on, torch uses n intra-op threads (a fixed step, not
    a clock, so the schedule never depends on timing; the weights do not depend on it either).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": spec.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=spec.lr,
        betas=(0.9, 0.95),
    )
    start, tokens, seconds, last_loss = 0, 0, 0.0, float("nan")
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start, tokens, seconds = state["step"], state["tokens"], state["seconds"]
    t0 = time.perf_counter()
    model.train()
    # A bar on a terminal; off one, a line at most every 30 s (steps, elapsed, time left).
    with report(desc, spec.steps, initial=start, enabled=progress, leave=True) as bar:
        for step in range(start, spec.steps):
            if threads_from is not None and step == max(start, threads_from[0]):
                torch.set_num_threads(threads_from[1])
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, spec)
            loss, n_tok = loss_fn(model, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            tokens += n_tok
            last_loss = float(loss.detach())
            bar.set_postfix(loss=f"{last_loss:.3f}", refresh=False)
            bar.update(1)
            done = step + 1
            if done % ckpt_every == 0 and done < spec.steps:
                _save_ckpt(ckpt_path, model, opt, done, tokens, seconds + time.perf_counter() - t0)
    model.eval()
    return {
        "train_steps": spec.steps,
        "tokens": tokens,
        "train_seconds": round(seconds + time.perf_counter() - t0, 2),
        "final_loss": round(last_loss, 4) if not math.isnan(last_loss) else None,
        **{f"train_{k}": v for k, v in asdict(spec).items() if k != "steps"},
    }


def _save_ckpt(
    path: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    step: int,
    tokens: int,
    seconds: float,
) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "step": step,
            "tokens": tokens,
            "seconds": seconds,
        },
        tmp,
    )
    os.replace(tmp, path)


def pretrain(
    spec: LlamaShape,
    train: TrainSpec,
    seed: int,
    ckpt_path: Path,
    *,
    desc: str,
    progress: bool,
    threads_from: tuple[int, int] | None = None,
    levels: Sequence[int] = DEFAULT_LEVELS,
) -> tuple[LlamaForCausalLM, dict]:
    """Train one LM from scratch on the testbed task (questions of `levels`); returns the model
    and its training record."""
    model = build_model(spec, seed)
    codec = CharCodec()

    def loss_fn(m: torch.nn.Module, step: int) -> tuple[torch.Tensor, int]:
        seqs, masks = pretrain_batch(seed, step, train.batch_size, levels)
        ids, att, labels = pad_batch(seqs, masks, codec.pad_id)
        return lm_loss(m, ids, att, labels), sum(len(s) for s in seqs)

    record = train_loop(
        model, train, loss_fn, ckpt_path, desc=desc, progress=progress, threads_from=threads_from
    )
    n = count_params(model)
    record.update(
        {
            **asdict(spec),
            "intermediate": spec.mlp_width,
            "params": n,
            "non_embedding_params": n - model.get_input_embeddings().weight.numel(),
            "d_pretrain_tokens": record["tokens"],
            "pretrain_flops": 6 * n * record["tokens"],
        }
    )
    return model, record

"""The testbed's verifiers: the larger LM's likelihood and the Math-Shepherd-style PRM.

Both score every line of a completion (the step lines and the final answer line):
- `likelihood_line_scores`: teacher-forced mean log-prob of each line's tokens (its characters and
  the newline that ends it) under a language model; a solution's score is the minimum over lines
  (one wrong line is enough to make a chain wrong). This is what worked in the prototype.
- `prm_line_scores`: the PRM reads ``prompt + line_1 <step> \\n line_2 <step> ... line_n <step>``
  and scores line i with P(good) = softmax(logits[<good>, <bad>])[0] at the i-th tag.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from models.testbed.task import STEP_DELIMITER, format_prompt
from models.testbed.tokenizer import CharCodec


def completion_lines(completion: str) -> list[str]:
    """The lines a verifier scores: every non-empty line of the completion."""
    return [line for line in completion.split(STEP_DELIMITER) if line.strip()]


def _likelihood_input(
    codec: CharCodec, question: str, lines: Sequence[str]
) -> tuple[list[int], list[tuple[int, int]]]:
    ids = [codec.bos_id, *codec.encode(format_prompt(question))]
    spans = []
    for i, line in enumerate(lines):
        start = len(ids)
        ids += codec.encode(line + (STEP_DELIMITER if i < len(lines) - 1 else ""))
        spans.append((start, len(ids)))
    return ids, spans


@torch.no_grad()
def line_token_logprobs(
    model: torch.nn.Module,
    questions: Sequence[str],
    lines: Sequence[Sequence[str]],
    *,
    batch_size: int = 64,
) -> list[list[list[float]]]:
    """Teacher-forced log-prob of every token of every line (its characters, then the newline
    that ends it, except after the last line) under `model`: [solution][line][token]."""
    codec = CharCodec()
    inputs = [_likelihood_input(codec, q, ls) for q, ls in zip(questions, lines, strict=True)]
    lps = _token_logprobs(
        model, [ids for ids, _ in inputs], pad_token_id=codec.pad_id, batch_size=batch_size
    )
    # lp[j] is the log-prob of token j + 1.
    return [
        [lp[s - 1 : e - 1] for s, e in spans] for (_, spans), lp in zip(inputs, lps, strict=True)
    ]


def likelihood_line_scores(
    model: torch.nn.Module,
    questions: Sequence[str],
    completions: Sequence[str],
    *,
    batch_size: int = 64,
) -> list[list[float]]:
    """Per-line mean token log-prob of each completion under `model` (empty list if no lines)."""
    lines = [completion_lines(c) for c in completions]
    per_token = line_token_logprobs(model, questions, lines, batch_size=batch_size)
    return [[sum(lp) / max(1, len(lp)) for lp in sol] for sol in per_token]


@torch.no_grad()
def _token_logprobs(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    *,
    pad_token_id: int = 0,
    batch_size: int = 64,
) -> list[list[float]]:
    """Teacher-forced log-prob of every token after the first, per sequence (len(seq) - 1 values).

    Right padding and no position ids. `models.decoding.score_tokens` computes the same maths with
    left padding, but its floats differ in the last bits (up to ~1e-6), which could move the
    testbed's likelihood figures; this is the scorer they were measured with.
    """
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    res: dict[int, list[float]] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        seqs = [sequences[i] for i in idx]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
        att = torch.zeros((len(seqs), width), dtype=torch.long)
        for j, s in enumerate(seqs):
            ids[j, : len(s)] = torch.tensor(list(s), dtype=torch.long)
            att[j, : len(s)] = 1
        logits = model(input_ids=ids, attention_mask=att).logits[:, :-1].float()
        lp = F.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1).tolist()
        for j, i in enumerate(idx):
            res[i] = lp[j][: len(seqs[j]) - 1]
    return [res[i] for i in range(len(sequences))]


def min_score(line_scores: Sequence[float]) -> float:
    return min(line_scores) if line_scores else float("-inf")


def prm_input(
    codec: CharCodec, question: str, lines: Sequence[str], joiner: str = STEP_DELIMITER
) -> tuple[list[int], list[int]]:
    """Token ids of the PRM input and the positions of its step tags (one per line). `joiner`
    goes between a tag and the next line: the step delimiter for the tag head (the paper's
    format), none for the value head (the harness's token-class format: step, separator, step)."""
    ids = [codec.bos_id, *codec.encode(format_prompt(question))]
    tags = []
    for i, line in enumerate(lines):
        ids += codec.encode(line)
        tags.append(len(ids))
        ids.append(codec.tag_id)
        if i < len(lines) - 1 and joiner:
            ids += codec.encode(joiner)
    return ids, tags


def has_value_head(model: torch.nn.Module) -> bool:
    """A one-label token-classification PRM (its score is a sigmoid), not a causal LM's tags."""
    return not hasattr(model, "lm_head")


def prm_logits_to_scores(logits: torch.Tensor, codec: CharCodec) -> torch.Tensor:
    """P(good) from the logits at tag positions (softmax over the two candidate tokens)."""
    pair = logits[..., [codec.good_id, codec.bad_id]].float()
    return F.softmax(pair, dim=-1)[..., 0]


@torch.no_grad()
def prm_line_scores(
    model: torch.nn.Module,
    questions: Sequence[str],
    completions: Sequence[str],
    *,
    batch_size: int = 64,
) -> list[list[float]]:
    """PRM score in [0, 1] of every line of each completion."""
    codec = CharCodec()
    value = has_value_head(model)
    joiner = "" if value else STEP_DELIMITER
    inputs = [
        prm_input(codec, q, completion_lines(c), joiner)
        for q, c in zip(questions, completions, strict=True)
    ]
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i][0]))
    res: dict[int, list[float]] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(inputs[i][0]) for i in idx)
        ids = torch.full((len(idx), width), codec.pad_id, dtype=torch.long)
        att = torch.zeros_like(ids)
        for j, i in enumerate(idx):
            seq = inputs[i][0]
            ids[j, : len(seq)] = torch.tensor(seq)
            att[j, : len(seq)] = 1
        logits = model(input_ids=ids, attention_mask=att).logits
        scores = (
            torch.sigmoid(logits[..., 0].float()) if value else prm_logits_to_scores(logits, codec)
        )
        for j, i in enumerate(idx):
            res[i] = [float(scores[j, t]) for t in inputs[i][1]]
    return [res[i] for i in range(len(inputs))]

"""`score_tokens`: teacher-forced per-token log-probs of given continuations.

With `share_prompts`, sequences that start with the same prompt (many candidates of one problem)
encode it once per batch and teacher-force only their continuations (`DecodeState`: prefill,
copy the KV rows, extend): the same maths with fewer FLOPs, which is what keeps a likelihood
verifier from dominating a batch of requests whose candidates repeat a long prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.decoding._runners import model_device
from models.decoding._state import DecodeState


@torch.no_grad()
def score_tokens(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    prompt_lens: Sequence[int],
    *,
    pad_token_id: int = 0,
    batch_size: int = 32,
    share_prompts: bool = False,
) -> list[list[float]]:
    """Teacher-forced log-probs of sequences[i][prompt_lens[i]:] (one float per token).

    share_prompts: encode each distinct prompt once per batch of `batch_size` rows (see the
    module docstring); the log-probs agree with the unshared ones to float rounding.
    """
    if len(sequences) != len(prompt_lens):
        raise ValueError("sequences and prompt_lens differ in length")
    for i, (s, pl) in enumerate(zip(sequences, prompt_lens, strict=True)):
        if not 1 <= int(pl) <= len(s):
            raise ValueError(f"prompt_lens[{i}]={pl} outside [1, {len(s)}]")
    was_training = model.training
    model.eval()
    try:
        return _score(model, sequences, prompt_lens, pad_token_id, batch_size, share_prompts)
    finally:
        model.train(was_training)


def _score(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    prompt_lens: Sequence[int],
    pad_token_id: int,
    batch_size: int,
    share: bool,
) -> list[list[float]]:
    seqs = [list(s) for s in sequences]
    plens = [int(pl) for pl in prompt_lens]
    if share:
        prompts = [tuple(s[:pl]) for s, pl in zip(seqs, plens, strict=True)]
        # The order that feeds the model fewer tokens (see shared_orders).
        order = min(
            shared_orders(prompts, seqs).values(),
            key=lambda o: _fed_tokens(o, prompts, seqs, batch_size),
        )
    else:
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    result: list[list[float]] = [[] for _ in seqs]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        rows = [seqs[i] for i in chunk]
        if share:
            lps = _chunk_shared(model, rows, [prompts[i] for i in chunk], pad_token_id)
        else:
            lps = _chunk(model, rows, [plens[i] for i in chunk], pad_token_id)
        for i, lp in zip(chunk, lps, strict=True):
            result[i] = lp
    return result


def shared_orders(
    prompts: list[tuple[int, ...]], sequences: Sequence[Sequence[int]]
) -> dict[str, list[int]]:
    """The two row orders of a prompt-sharing pass: `prompt` keeps a prompt's rows together (few
    distinct prompts a batch: the most sharing), `length` sorts by continuation length (the least
    padding: short prompts, long and varied continuations)."""
    n = range(len(sequences))
    return {
        "prompt": sorted(n, key=lambda i: (prompts[i], len(sequences[i]))),
        "length": sorted(n, key=lambda i: (len(sequences[i]) - len(prompts[i]), prompts[i])),
    }


def _fed_tokens(
    order: list[int],
    prompts: list[tuple[int, ...]],
    sequences: Sequence[Sequence[int]],
    batch_size: int,
) -> int:
    """Tokens a prompt-sharing pass in this order feeds, padding included: per batch, its
    distinct prompts at their widest, then every row's continuation at the longest."""
    total = 0
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        distinct = {prompts[i] for i in chunk}
        total += len(distinct) * max(len(p) for p in distinct)
        total += len(chunk) * max(len(sequences[i]) - len(prompts[i]) for i in chunk)
    return total


def _chunk(
    model: torch.nn.Module, seqs: list[list[int]], plens: list[int], pad_token_id: int
) -> list[list[float]]:
    """One padded forward of the whole sequences."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, width - len(s) :] = torch.as_tensor(s, dtype=torch.long)
        mask[r, width - len(s) :] = 1
    device = model_device(model)
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(dim=1) - 1).clamp_min(0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
    lp_rows = torch.log_softmax(logits[:, :-1, :], dim=-1).gather(2, ids[:, 1:, None]).squeeze(2)
    out = []
    for row, s, pl in zip(lp_rows.tolist(), seqs, plens, strict=True):
        # token j of s (j >= 1) sits at padded index width-len(s)+j; its log-prob at index-1
        off = width - len(s)
        out.append(row[off + pl - 1 : off + len(s) - 1])
    return out


def _chunk_shared(
    model: torch.nn.Module,
    seqs: list[list[int]],
    prompts: list[tuple[int, ...]],
    pad_token_id: int,
) -> list[list[float]]:
    """Each distinct prompt encoded once, its KV rows copied, the continuations teacher-forced."""
    keys: dict[tuple[int, ...], int] = {}
    rows = [keys.setdefault(p, len(keys)) for p in prompts]
    state = DecodeState.prefill(model, list(keys), pad_token_id=pad_token_id)
    state.select(rows)
    return state.extend([s[len(p) :] for s, p in zip(seqs, prompts, strict=True)])

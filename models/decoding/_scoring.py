"""`score_tokens`: teacher-forced per-token log-probs of given continuations."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.decoding._runners import model_device


@torch.no_grad()
def score_tokens(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    prompt_lens: Sequence[int],
    *,
    pad_token_id: int = 0,
    batch_size: int = 32,
) -> list[list[float]]:
    """Teacher-forced log-probs of sequences[i][prompt_lens[i]:] (one float per token)."""
    if len(sequences) != len(prompt_lens):
        raise ValueError("sequences and prompt_lens differ in length")
    was_training = model.training
    model.eval()
    try:
        return _score_tokens(model, sequences, prompt_lens, pad_token_id, batch_size)
    finally:
        model.train(was_training)


def _score_tokens(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    prompt_lens: Sequence[int],
    pad_token_id: int,
    batch_size: int,
) -> list[list[float]]:
    device = model_device(model)
    result: list[list[float]] = [[] for _ in sequences]
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(sequences[i]) for i in chunk)
        if width == 0:
            continue
        ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, i in enumerate(chunk):
            s = sequences[i]
            if s:
                ids[r, width - len(s) :] = torch.as_tensor(list(s), dtype=torch.long)
                mask[r, width - len(s) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        pos = (mask.cumsum(dim=1) - 1).clamp_min(0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
        lp = torch.log_softmax(logits[:, :-1, :], dim=-1).gather(2, ids[:, 1:, None]).squeeze(2)
        lp_rows = lp.tolist()
        for r, i in enumerate(chunk):
            s, pl = sequences[i], int(prompt_lens[i])
            if not 1 <= pl <= len(s):
                raise ValueError(f"prompt_lens[{i}]={pl} outside [1, {len(s)}]")
            # token j of s (j >= 1) sits at padded index width-len(s)+j; its log-prob at index-1
            off = width - len(s)
            result[i] = lp_rows[r][off + pl - 1 : off + len(s) - 1]
    return result

"""A minimal batched KV-cache sampler and teacher-forced scorer for the testbed's tiny models.

The testbed needs hundreds of thousands of sampled tokens (Monte-Carlo rollout labels for the PRM,
revision data, quality figures); `generate` ran at ~3.4k tok/s here. This loop left-pads a batch
of prompts, runs one forward with the KV cache per new token, and samples all rows at once with a
seeded `torch.Generator`, so the same prompts and seed give the same tokens.
When `models.decoding.sample_batch` (the project's lean sampler, same API) is importable it does
the sampling, chunk by chunk; this loop is the fallback (or forced with TTC_TESTBED_OWN_SAMPLER=1).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Generation:
    token_ids: list[int]
    logprobs: list[float]
    finish: str  # "stop"/"eos" (the stop token is included in token_ids) or "length"


@torch.no_grad()
def sample_batch(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    stop_token_ids: Collection[int] = (),
    eos_token_id: int | None = None,
    pad_token_id: int = 0,
    seed: int = 0,
    batch_size: int = 256,
) -> list[Generation]:
    """Sample one continuation per prompt (temperature 0 is greedy); rows are independent."""
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"bad temperature {temperature} or top_p {top_p}")
    lean = _lean_sampler()
    # Sort by length so a chunk holds prompts of similar length (less padding), restore order after.
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    gen = torch.Generator().manual_seed(seed)
    results: dict[int, Generation] = {}
    for n_chunk, start in enumerate(range(0, len(order), batch_size)):
        idx = order[start : start + batch_size]
        if lean is not None:
            gens = lean(
                model, [prompts[i] for i in idx], max_new_tokens=max_new_tokens, temperature=temperature,
                top_p=top_p, stop_token_ids=stop_token_ids, eos_token_id=eos_token_id,
                pad_token_id=pad_token_id, seed=seed * 7919 + n_chunk,
            )
            chunk = [Generation(list(g.token_ids), list(g.logprobs), g.finish) for g in gens]
        else:
            chunk = _sample_chunk(
                model,
                [prompts[i] for i in idx],
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                stops=set(stop_token_ids) | ({eos_token_id} if eos_token_id is not None else set()),
                pad_id=pad_token_id,
                gen=gen,
            )
        results.update(zip(idx, chunk, strict=True))
    return [results[i] for i in range(len(prompts))]


def _lean_sampler():
    """`models.decoding.sample_batch` (drops finished rows, dedups prompts) when it is present."""
    if os.environ.get("TTC_TESTBED_OWN_SAMPLER"):
        return None
    try:
        from models.decoding import sample_batch as lean
    except ImportError:
        return None
    return lean


def _sample_chunk(
    model: torch.nn.Module,
    prompts: list[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    stops: set[int],
    pad_id: int,
    gen: torch.Generator,
) -> list[Generation]:
    b = len(prompts)
    width = max(len(p) for p in prompts)
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    att = torch.zeros((b, width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        att[i, width - len(p) :] = 1
    pos = (att.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=att, position_ids=pos, use_cache=True)
    past = out.past_key_values
    logits = out.logits[:, -1]
    next_pos = pos[:, -1] + 1
    stop_t = torch.tensor(sorted(stops), dtype=torch.long) if stops else None
    done = torch.zeros(b, dtype=torch.bool)
    toks, lps = [], []
    finished_at = torch.full((b,), -1, dtype=torch.long)
    for t in range(max_new_tokens):
        logp = F.log_softmax(logits.float(), dim=-1)
        if temperature == 0:
            nxt = logp.argmax(-1)
        else:
            probs = F.softmax(logits.float() / temperature, dim=-1)
            if top_p < 1:
                probs = _top_p(probs, top_p)
            nxt = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        toks.append(nxt)
        lps.append(logp.gather(-1, nxt[:, None]).squeeze(-1))
        if stop_t is not None:
            hit = torch.isin(nxt, stop_t) & ~done
            finished_at = torch.where(hit, torch.full_like(finished_at, t), finished_at)
            done = done | hit
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        # Finished rows keep feeding pad tokens; their outputs are discarded.
        att = torch.cat([att, torch.ones((b, 1), dtype=torch.long)], dim=-1)
        out = model(
            input_ids=nxt[:, None], attention_mask=att, position_ids=next_pos[:, None],
            past_key_values=past, use_cache=True,
        )
        past = out.past_key_values
        logits = out.logits[:, -1]
        next_pos = next_pos + 1
    tok_m = torch.stack(toks, 1).tolist()
    lp_m = torch.stack(lps, 1).tolist()
    res = []
    for i in range(b):
        end = int(finished_at[i])
        if end >= 0:
            res.append(Generation(tok_m[i][: end + 1], lp_m[i][: end + 1], "stop"))
        else:
            res.append(Generation(tok_m[i], lp_m[i], "length"))
    return res


def _top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_p, sorted_i = probs.sort(-1, descending=True)
    keep = sorted_p.cumsum(-1) - sorted_p < top_p
    sorted_p = sorted_p * keep
    return torch.zeros_like(probs).scatter(-1, sorted_i, sorted_p)


@torch.no_grad()
def token_logprobs(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    *,
    pad_token_id: int = 0,
    batch_size: int = 64,
) -> list[list[float]]:
    """Teacher-forced log-prob of every token after the first, per sequence (len(seq) - 1 values)."""
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

"""`sample_batch`: whole completions for a batch of prompts, and `make_generator`.

Left padding, explicit position ids, a KV cache, finished rows dropped from the batch. Sampling
draws from one seeded torch.Generator per call: the same prompts, batch and seed give the same
tokens on the same device.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch

from models.decoding._state import DecodeState, Generation


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on `device` seeded with `seed`: a sampler's one source of randomness."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


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
    lean: bool | None = None,
) -> list[Generation]:
    """One sampled completion per prompt (repeat a prompt to draw several).

    Identical prompts are encoded once and their KV rows copied, which gives the same result as
    encoding each (the maths is per row) at a fraction of the prefill cost.
    """
    if not prompts:
        return []
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    was_training = model.training
    model.eval()  # inference semantics (no dropout); the caller's mode is restored below
    try:
        return _sample_batch(
            model,
            prompts,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop_token_ids=stop_token_ids,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            seed=seed,
            lean=lean,
        )
    finally:
        model.train(was_training)


def _sample_batch(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    stop_token_ids: Collection[int],
    eos_token_id: int | None,
    pad_token_id: int,
    seed: int,
    lean: bool | None,
) -> list[Generation]:
    keys: dict[tuple[int, ...], int] = {}
    row_of: list[int] = []
    for p in prompts:
        row_of.append(keys.setdefault(tuple(int(t) for t in p), len(keys)))
    unique = list(keys)
    state = DecodeState.prefill(model, unique, pad_token_id=pad_token_id, lean=lean)
    if len(unique) != len(prompts):
        state.select(row_of)
    gen = make_generator(seed, state.device)
    return state.decode(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        stop_token_ids=stop_token_ids,
        eos_token_id=eos_token_id,
        generator=gen,
        ingest_last=False,
        compact=True,
    )

"""Sampling the testbed's models: whole completions for many prompts, in seeded chunks.

The testbed needs hundreds of thousands of sampled tokens (Monte-Carlo rollout labels for the PRM,
revision data, quality figures). `sample_chunked` sorts the prompts by length and hands them to
`models.decoding.sample_batch` 256 at a time (similar lengths pad little), each chunk with its own
seed, so the same prompts and seed give the same tokens.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch

from models.decoding import Generation, sample_batch
from models.testbed import task
from models.testbed.task import TestbedProblem
from models.testbed.tokenizer import CharCodec


def sample_chunked(
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
    """Sample one continuation per prompt (temperature 0 is greedy); rows are independent.

    Chunk n (of `batch_size` prompts, shortest first) is sampled with seed `seed * 7919 + n`;
    results come back in the prompts' order.
    """
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"bad temperature {temperature} or top_p {top_p}")
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    results: dict[int, Generation] = {}
    for n_chunk, start in enumerate(range(0, len(order), batch_size)):
        idx = order[start : start + batch_size]
        gens = sample_batch(
            model,
            [prompts[i] for i in idx],
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop_token_ids=stop_token_ids,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            seed=seed * 7919 + n_chunk,
        )
        results.update(zip(idx, gens, strict=True))
    return [results[i] for i in range(len(prompts))]


def max_new_tokens_for(problems: Sequence[TestbedProblem]) -> int:
    """A generation limit with room for a solution half again as long as the longest gold one."""
    return int(1.5 * max(len(p.completion) for p in problems)) + 16


def sample_text_prompts(
    model: torch.nn.Module,
    texts: Sequence[str],
    max_new_tokens: int,
    temperature: float,
    seed: int,
) -> list[Generation]:
    """Sample one completion of each text prompt (the character codec's <bos> in front, its
    <eos> ending a completion): the call every testbed sampler makes."""
    codec = CharCodec()
    return sample_chunked(
        model,
        [[codec.bos_id, *codec.encode(t)] for t in texts],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        eos_token_id=codec.eos_id,
        pad_token_id=codec.pad_id,
        seed=seed,
    )


def sample_completions(
    model: torch.nn.Module,
    problems: Sequence[TestbedProblem],
    n: int,
    seed: int,
    temperature: float = 1.0,
) -> tuple[list[list[str]], list[list[int]]]:
    """n sampled completions per problem (text without <eos>) and their generated token counts."""
    codec = CharCodec()
    # One call for every level: the sampler drops finished rows, so short answers cost nothing.
    prompts = [task.format_prompt(p.question) for p in problems for _ in range(n)]
    gens = sample_text_prompts(model, prompts, max_new_tokens_for(problems), temperature, seed)
    texts: list[list[str]] = [[] for _ in problems]
    ntok: list[list[int]] = [[] for _ in problems]
    for j, g in enumerate(gens):
        texts[j // n].append(codec.decode(g.token_ids))
        ntok[j // n].append(len(g.token_ids))
    return texts, ntok

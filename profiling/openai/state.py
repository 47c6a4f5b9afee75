"""`ServerSearchState`: step-wise search over a server, with the interface of `SearchState`.

A row is a prompt (its owner's) plus the tokens generated on it so far. Each `step` sends one
request per distinct row (prompt + row tokens as ids, `n` = the rows holding that prefix, the
step's stop token ids as stop, a seed drawn from the search's generator), all in flight at once;
the server's prefix cache holds the shared prefixes, so re-sending them costs little. Costs are
those the in-process `SearchState` counts for the same tokens: each sampled token is fed once at
its real context length (the prompt was counted once by `start_batch`), pruned branches and
rollouts included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from models.decoding import Generation
from profiling.backend import OwnerMeter
from profiling.flops import forward_flops

if TYPE_CHECKING:
    from profiling.openai.backend import OpenAIBackend


class ServerSearchState(OwnerMeter):
    """Partial solutions of several prompts (owner = prompt index), metered like SearchState."""

    def __init__(
        self,
        backend: OpenAIBackend,
        prompts: Sequence[Sequence[int]],
        owners: Sequence[int] | None = None,
        tokens: Sequence[Sequence[int]] | None = None,
    ) -> None:
        self.backend = backend
        self.prompts = [list(p) for p in prompts]
        self.owners = list(range(len(prompts)) if owners is None else owners)
        self.tokens = [list(t) for t in tokens] if tokens is not None else [[] for _ in self.owners]
        self._init_meter(range(len(self.prompts)))
        self.children: list[ServerSearchState] = []
        self.device = torch.device("cpu")

    @property
    def rows(self) -> int:
        return len(self.owners)

    def select(self, indices: Sequence[int]) -> None:
        self.tokens = [list(self.tokens[i]) for i in indices]
        self.owners = [self.owners[i] for i in indices]

    def fork(self, indices: Sequence[int]) -> ServerSearchState:
        child = ServerSearchState(
            self.backend,
            self.prompts,
            [self.owners[i] for i in indices],
            [self.tokens[i] for i in indices],
        )
        self.children.append(child)
        return child

    def step(
        self,
        *,
        temperature: float,
        top_p: float = 1.0,
        max_step_tokens: int = 256,
        generator: torch.Generator | None = None,
        rows: Sequence[int] | None = None,
    ) -> list[Generation]:
        """One step (up to and including a stop token, or eos) for every row (or `rows`)."""
        b = self.backend
        todo = list(range(self.rows)) if rows is None else list(rows)
        if generator is not None:
            seeds = torch.randint(0, 2**31 - 1, (max(len(todo), 1),), generator=generator)
            seed_of = [int(s) for s in seeds.tolist()]
        else:
            seed_of = [0] * len(todo)
        # rows with the same prefix (a kept beam copied M ways, a search's first step) go as
        # one request with n = their number: the server reads the prefix once for all of them
        groups: dict[tuple[int, tuple[int, ...]], list[int]] = {}
        for i in todo:
            groups.setdefault((self.owners[i], tuple(self.tokens[i])), []).append(i)
        members = list(groups.values())
        pos = {i: j for j, i in enumerate(todo)}
        bodies = [
            b.body(
                self.prompts[self.owners[g[0]]] + self.tokens[g[0]],
                n=len(g),
                max_new_tokens=max_step_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=seed_of[pos[g[0]]],
                stop_ids=b.step_stop_ids,
            )
            for g in members
        ]
        answers = [
            g for pool in b.complete(bodies, max_step_tokens, "max_step_tokens") for g in pool
        ]
        order = [i for g in members for i in g]
        gens = [Generation([], [], "length") for _ in range(self.rows)]
        counts = dict.fromkeys(set(self.owners), 0)
        for i, g in zip(order, answers, strict=True):
            gens[i] = g
            if not g.token_ids:
                continue
            owner = self.owners[i]
            past = len(self.prompts[owner]) + len(self.tokens[i])
            # each sampled token is fed back (for the next step), as in-process
            self.flops_by[owner] += forward_flops(b.shape, len(g.token_ids), past)
            self.generated_by[owner] += len(g.token_ids)
            self.tokens[i] += g.token_ids
            counts[owner] += 1
        for owner, c in counts.items():
            self.step_rows_by[owner].append(c)
        return gens

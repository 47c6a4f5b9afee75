"""Strategies, registered by name: each is `(problems, backend, verifier, config) -> rows`.

A strategy is a pure function of its inputs (it never mutates them) that returns rows of the
samples table (`planner.tables.schema.SAMPLES`); `verifier` is one verifier, a list of them, or
None. Names and kinds come from the planner's one table (`planner.strategies`); here each
name gets its function and the frozen config class its config parses into (all keys, defaults
and rules).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from planner.strategies import POOL, strategy_kind
from profiling.backend import Backend
from profiling.problems import Problem
from profiling.strategies.common import Verifiers
from profiling.strategies.revisions import RevisionsConfig, revisions
from profiling.strategies.sample import SampleConfig, sample
from profiling.strategies.search import (
    BeamConfig,
    DVTSConfig,
    LookaheadConfig,
    beam,
    dvts,
    lookahead,
)

Strategy = Callable[[Sequence[Problem], Backend, Verifiers, Mapping[str, Any]], list[dict]]


@dataclass(frozen=True)
class RegisteredStrategy:
    """One strategy of the planner's table: its kind, its function and its config class;
    calling it runs the function."""

    name: str
    kind: str
    run: Strategy
    config: type

    def __call__(
        self,
        problems: Sequence[Problem],
        backend: Backend,
        verifier: Verifiers,
        config: Mapping[str, Any],
    ) -> list[dict]:
        return self.run(problems, backend, verifier, config)

    @property
    def keys(self) -> tuple[str, ...]:
        """The config keys the strategy accepts."""
        return tuple(f.name for f in fields(self.config))


_IMPLEMENTATIONS: dict[str, tuple[Strategy, type]] = {
    "sample": (sample, SampleConfig),
    "revisions": (revisions, RevisionsConfig),
    "beam": (beam, BeamConfig),
    "lookahead": (lookahead, LookaheadConfig),
    "dvts": (dvts, DVTSConfig),
}

# strategy_kind raises for a name the planner's table lacks, so the harness cannot run a
# strategy the planner cannot read.
STRATEGIES: dict[str, RegisteredStrategy] = {
    name: RegisteredStrategy(name, strategy_kind(name), fn, cls)
    for name, (fn, cls) in _IMPLEMENTATIONS.items()
}


# Keys a profile's (or a policy's) config holds beyond the strategy's own: how the final answer is
# chosen (`ttc curves`), which run a revisions option was read from (`ttc curves`), and which
# verifier guided a search (the search's rows). A strategy's config class refuses them.
SELECT_KEYS = ("select", "agg", "verifier")
_READ_KEYS = ("run_chains", "run_length")
_ROW_KEYS = ("search_verifier",)


def strategy_config(
    strategy: str,
    config: Mapping[str, Any],
    *,
    seed: int,
    grader: str,
    budget: float | None = None,
) -> dict[str, Any]:
    """The config a strategy function takes, from a run config's strategy spec (the sweep) or a
    profile's option (the gateway, from a policy's decision): the keys the profile adds to the
    strategy's own dropped, the execution keys (`seed`, `grader`) set. A pool option read at
    `budget` k draws k candidates (`n`); other keys are left for the config class to check.
    """
    out = {k: v for k, v in config.items() if k not in (*SELECT_KEYS, *_READ_KEYS, *_ROW_KEYS)}
    if budget is not None and strategy_kind(strategy) == POOL:
        out["n"] = max(1, round(budget))
    out.update(seed=int(seed), grader=grader)
    return out


def run(
    strategy: str,
    problems: Sequence[Problem],
    backend: Backend,
    verifier: Verifiers,
    config: Mapping[str, Any],
) -> list[dict]:
    """Run a registered strategy and return its samples rows (inputs are not mutated)."""
    try:
        entry = STRATEGIES[strategy]
    except KeyError:
        raise ValueError(
            f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})"
        ) from None
    return entry.run(list(problems), backend, verifier, dict(config))


__all__ = [
    "SELECT_KEYS",
    "STRATEGIES",
    "RegisteredStrategy",
    "Strategy",
    "run",
    "strategy_config",
]

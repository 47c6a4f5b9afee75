"""Strategies, registered by name: each is `(problems, backend, verifier, config) -> rows`.

A strategy is a pure function of its inputs (it never mutates them) that returns rows of the
samples table (`planner.schema.SAMPLES`); `verifier` is one verifier, a list of them, or None.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from profiling.problems import Problem
from profiling.strategies.revisions import RevisionsConfig, revisions
from profiling.strategies.sample import SampleConfig, sample
from profiling.strategies.search import SearchConfig, beam, dvts, lookahead

Strategy = Callable[[Sequence[Problem], Any, Any, Mapping[str, Any]], list[dict]]

STRATEGIES: dict[str, Strategy] = {
    "sample": sample,
    "beam": beam,
    "lookahead": lookahead,
    "dvts": dvts,
    "revisions": revisions,
}

# The frozen config dataclass each strategy parses its config with (all keys and defaults).
CONFIGS: dict[str, type] = {
    "sample": SampleConfig,
    "beam": SearchConfig,
    "lookahead": SearchConfig,
    "dvts": SearchConfig,
    "revisions": RevisionsConfig,
}

__all__ = ["CONFIGS", "STRATEGIES", "Strategy"]

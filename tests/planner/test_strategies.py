"""planner.strategies: the strategy table, search budgets and the one step aggregation."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from planner.errors import PlannerError
from planner.strategies import (
    AGGS,
    SEARCH,
    STRATEGY_KINDS,
    aggregate,
    aggregate_steps,
    search_budget,
    strategy_kind,
)


def test_kinds_and_budgets() -> None:
    assert strategy_kind("lookahead") == SEARCH
    with pytest.raises(PlannerError, match="unknown strategy 'mcts'"):
        strategy_kind("mcts")
    assert search_budget("lookahead", {"n": 4, "k": 2}) == 12.0
    assert search_budget("beam", {"n": 4, "k": 2}) == 4.0  # k counts for lookahead only
    with pytest.raises(PlannerError, match="has no 'n'"):
        search_budget("dvts", {"m": 2})
    assert set(STRATEGY_KINDS.values()) == {"pool", "chains", "search"}


def test_aggregate() -> None:
    s = [0.5, 0.25, 0.8]
    assert aggregate(s) == 0.8
    assert aggregate(s, "min") == 0.25
    assert aggregate(s, "prod") == pytest.approx(0.1)
    assert aggregate(s, "mean") == pytest.approx(1.55 / 3)
    assert aggregate([], "min") == 0.0
    assert aggregate(np.array([0.3, 0.6]), "last") == 0.6
    with pytest.raises(ValueError, match="agg must be one of"):
        aggregate(s, "max")


def test_aggregate_is_numpy_reductions_to_the_bit() -> None:
    """The harness's `score` and the curves' re-aggregation are one function: numpy's pairwise
    mean (not Python's left-to-right sum, which differs in the last bits from 8 steps on) and a
    product equal to math.prod."""
    rng = random.Random(0)
    steps = [[rng.random() for _ in range(rng.randint(1, 40))] for _ in range(500)]
    for s in steps:
        arr = np.asarray(s)
        assert aggregate(s, "mean") == float(arr.mean())
        assert aggregate(s, "prod") == float(np.prod(arr)) == math.prod(s)
        assert aggregate(s, "min") == min(s)
    assert any(aggregate(s, "mean") != sum(s) / len(s) for s in steps)


def test_aggregate_steps_falls_back_to_score() -> None:
    fallback = np.array([0.9, 0.1, 0.7])
    steps = [[0.5, 0.25], [], [0.2, 0.4, 0.6]]
    # `last` reads the row's score (written with its verifier's own agg), not the last step
    assert aggregate_steps(steps, fallback, "last").tolist() == fallback.tolist()
    for agg in AGGS[1:]:
        out = aggregate_steps(steps, fallback, agg)
        assert out[1] == 0.1
        assert out[0] == aggregate(steps[0], agg) and out[2] == aggregate(steps[2], agg)

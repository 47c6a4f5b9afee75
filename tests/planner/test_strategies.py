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
    prefilled_prompt_tokens,
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


def test_prefilled_prompt_tokens_read_each_prompt_once() -> None:
    # (run, position, prompt_tokens): rows count their whole prompt; a prompt read once is
    # charged once
    pool = [(0, i, 13) for i in range(4)] + [(1, i, 13) for i in range(4)]
    assert prefilled_prompt_tokens("sample", pool) == 26  # one prompt per run
    assert prefilled_prompt_tokens("beam", [(0, i, 9) for i in range(3)]) == 9
    # chains: every answer its own prompt, the chains' first answers one shared prompt
    chains = [(c, 0, 13) for c in range(3)] + [(c, 1, 30 + c) for c in range(3)]
    assert prefilled_prompt_tokens("revisions", chains) == 13 + 30 + 31 + 32
    assert prefilled_prompt_tokens("dvts", []) == 0
    with pytest.raises(PlannerError, match="unknown strategy"):
        prefilled_prompt_tokens("mcts", pool)

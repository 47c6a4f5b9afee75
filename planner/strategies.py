"""What the planner knows about each strategy: how its samples are read and what budget it spends.

`STRATEGY_KINDS` is the one table of strategy names; the profiling harness registers a function
and a config class for each name in it (`profiling.strategies.STRATEGIES`). The planner only needs
their *kind*:
- pool: independent samples; every budget k <= n is read from one pool (best-of-N, majority,
  weighted majority);
- chains: sequential revision chains; chains are the unit when subsampling, and a budget is
  chains x length;
- search: beam / lookahead / DVTS, run once per budget; the budget in generations is N, or
  N·(k+1) for lookahead with k steps.

Step aggregations (`AGGS`, `aggregate`) live here too: the harness writes a row's `score` with
them and the curves re-read the step scores with them, so both sides agree to the last bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from planner.errors import PlannerError

POOL = "pool"
CHAINS = "chains"
SEARCH = "search"

STRATEGY_KINDS: dict[str, str] = {
    "sample": POOL,
    "revisions": CHAINS,
    "beam": SEARCH,
    "lookahead": SEARCH,
    "dvts": SEARCH,
}

# How the final answer is chosen; `coverage` (pass@k) is an upper bound, never deployable.
DEPLOYABLE_SELECTS = ("majority", "best", "weighted")
# How a candidate's step scores become one score (see `aggregate`).
AGGS = ("last", "min", "prod", "mean")


def strategy_kind(name: str) -> str:
    try:
        return STRATEGY_KINDS[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGY_KINDS))
        raise PlannerError(f"unknown strategy {name!r} (known: {known})") from None


def search_budget(strategy: str, config: Mapping[str, Any]) -> float:
    """Budget in generations of one search run: N for beam and DVTS, N·(k+1) for lookahead."""
    if "n" not in config:
        raise PlannerError(
            f"{strategy} config {dict(config)} has no 'n' (its budget in generations)"
        )
    n = float(config["n"])
    k = float(config.get("k", 0)) if strategy == "lookahead" else 0.0
    if n <= 0 or k < 0:
        raise PlannerError(f"{strategy} config {dict(config)}: n must be > 0 and k >= 0")
    return n * (k + 1.0)


def prefilled_prompt_tokens(strategy: str, rows: Iterable[tuple[int, int, int]]) -> int:
    """Prompt tokens a strategy's rows were generated from, each prompt read once.

    `rows`: (run, position, prompt_tokens) of one problem's samples rows under one config and
    verifier (samples.prompt_tokens counts a shared prompt on every row that read it). A pool's
    candidates and a search run's final candidates share their run's prompt: once per run. A
    revision chain's answers each read their own prompt (it holds the chain's earlier attempts),
    except the chains' first answers, which read the same one: once.
    """
    kind = strategy_kind(strategy)
    first: dict[int, int] = {}
    own = 0
    for run, position, tokens in rows:
        if kind == CHAINS and position > 0:
            own += int(tokens)
            continue
        key = 0 if kind == CHAINS else int(run)
        first[key] = max(first.get(key, 0), int(tokens))
    return own + sum(first.values())


def aggregate(step_scores: Sequence[float], agg: str = "last") -> float:
    """One score from a candidate's step scores; 0.0 for a candidate without steps (never NaN).

    last: the final step's score (a PRM's read of the whole solution); min: the weakest step;
    prod: every step right (independent steps); mean: the average step. numpy's reductions, so
    a score written by the harness equals the one the curves recompute from its step scores.
    """
    if agg not in AGGS:
        raise ValueError(f"agg must be one of {AGGS}, got {agg!r}")
    if len(step_scores) == 0:
        return 0.0
    if agg == "last":
        return float(step_scores[-1])
    arr = np.asarray(step_scores, dtype=float)
    if agg == "min":
        return float(arr.min())
    if agg == "prod":
        return float(np.prod(arr))
    return float(arr.mean())


def aggregate_steps(
    step_scores: Iterable[Sequence[float]], fallback: np.ndarray, agg: str
) -> np.ndarray:
    """`aggregate` of each row's step scores; `last`, and rows without step scores, keep the
    row's `score` column (`fallback`: aggregated by its verifier's own `agg` when written)."""
    if agg == "last":
        return np.asarray(fallback, float)
    out = np.empty(len(fallback))
    for i, steps in enumerate(step_scores):
        out[i] = aggregate(steps, agg) if len(steps) else fallback[i]
    return out

"""What the planner knows about each strategy: how its samples are read and what budget it spends.

The strategies themselves run in `profiling/`; the planner only needs their *kind*:
- pool: independent samples; every budget k <= n is read from one pool (best-of-N, majority,
  weighted majority);
- chains: sequential revision chains; chains are the unit when subsampling, and a budget is
  chains x length;
- search: beam / lookahead / DVTS, run once per budget; the budget in generations is N, or
  N·(k+1) for lookahead with k steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
SELECTS = ("coverage", "majority", "best", "weighted")
DEPLOYABLE_SELECTS = ("majority", "best", "weighted")
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
        raise PlannerError(f"{strategy} config {dict(config)} has no 'n' (its budget in generations)")
    n = float(config["n"])
    k = float(config.get("k", 0)) if strategy == "lookahead" else 0.0
    if n <= 0 or k < 0:
        raise PlannerError(f"{strategy} config {dict(config)}: n must be > 0 and k >= 0")
    return n * (k + 1.0)

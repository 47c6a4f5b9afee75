"""What every finding shares: the `Finding` record, the fixed marking rules and table helpers.

The marks are decided by rules fixed before any data is read (the package docstring states
them); nothing here is tuned to a result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.tables import parse_config

MARKS = ("reproduced", "not reproduced", "inconclusive", "not testable")
CI = 0.95
N_BOOT = 2000
SEED = 0
# The exchange's R values (Snell et al. 2024, section 7): R << 1, R ~ 1, R >> 1.
RATIOS = (0.16, 0.79, 22.0)
# Accuracies are in [0, 1]: a difference within 1e-9 of zero is zero.
EPS = 1e-9


@dataclass(frozen=True)
class Finding:
    key: str  # "a".."e": the paper's claims; "f": the plan's own
    claim: str  # the paper's claim, one sentence
    mark: str  # one of MARKS
    evidence: str  # one or two sentences with the numbers and their intervals
    numbers: dict[str, Any] = field(default_factory=dict)  # the same numbers, for summary.json

    def __post_init__(self) -> None:
        if self.mark not in MARKS:
            raise ValueError(f"mark must be one of {MARKS}, got {self.mark!r}")


def rng_for(key: str) -> np.random.Generator:
    """One generator per finding, so a finding's draws do not depend on which ran before it."""
    return np.random.default_rng([SEED, ord(key)])


def side(lo: float, hi: float) -> str:
    """Where an interval of (claimed − other) lies: "for" (above 0), "against" (below 0), "tie"
    (within EPS of [0, 0]: the two are identical on every problem) or "unclear" (it spans 0).
    EPS absorbs floating-point residue (a bound of −1e-17 is zero, not a loss)."""
    if lo > EPS:
        return "for"
    if hi < -EPS:
        return "against"
    if abs(lo) <= EPS and abs(hi) <= EPS:
        return "tie"
    return "unclear"


def single_mark(s: str) -> str:
    """The mark of one comparison: an exact tie contradicts a claim that one side wins."""
    return {"for": "reproduced", "against": "not reproduced", "tie": "not reproduced"}.get(
        s, "inconclusive"
    )


def across_budgets(sides: list[str]) -> str:
    """The mark of "X beats Y at equal budget" over several budgets: reproduced when X is ahead
    at some budget and behind at none; not reproduced when behind at some budget, or tied at
    every one; otherwise inconclusive. (Ties at tiny budgets, where both are one sample, are
    expected and neither support nor contradict.)"""
    if "against" in sides:
        return "not reproduced"
    if "for" in sides:
        return "reproduced"
    if sides and all(s == "tie" for s in sides):
        return "not reproduced"
    return "inconclusive"


def combine(marks: list[str]) -> str:
    """A claim of several parts holds when every part does and fails when any part fails."""
    if "not reproduced" in marks:
        return "not reproduced"
    if marks and all(m == "reproduced" for m in marks):
        return "reproduced"
    return "inconclusive"


def untestable(key: str, claim: str, why: str) -> Finding:
    return Finding(key, claim, "not testable", why, {"missing": why})


def num(x: float) -> float | str | None:
    """A JSON-safe number: rounded to 6 significant places; infinite is "> max"."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    if math.isinf(x):
        return "> max" if x > 0 else "< min"
    return float(f"{float(x):.6g}")


def pts(d: float, lo: float, hi: float) -> str:
    """A difference of accuracies in points with its interval: "+2.4 pts [+0.8, +4.1]"."""
    return f"{100 * d:+.1f} pts [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def spread(rows: list[tuple[str, float, float, float]]) -> str:
    """A difference at several budgets in one phrase: the surest lead, the surest deficit (when
    there is one) and how many budgets are ahead and behind. rows: (budget label, d, lo, hi)."""
    ahead = sum(r[2] > EPS for r in rows)
    behind = sum(r[3] < -EPS for r in rows)
    best = max(rows, key=lambda r: r[2])
    worst = min(rows, key=lambda r: r[3])
    out = f"{pts(*best[1:])} at {best[0]}"
    if behind and worst is not best:
        out += f", {pts(*worst[1:])} at {worst[0]}"
    return f"{out} (ahead at {ahead}, behind at {behind} of {len(rows)} budgets)"


def interval(d: float, lo: float, hi: float) -> dict[str, Any]:
    return {"difference": num(d), "ci_lo": num(lo), "ci_hi": num(hi)}


def _config(config: str) -> dict[str, Any]:
    try:
        return parse_config(config)
    except (ValueError, PlannerError):
        return {}


def option_table(profile: pd.DataFrame) -> pd.DataFrame:
    """One row per (strategy, config, budget) of a profile with the config's select, agg,
    verifier, chains and length parsed out (absent keys: "" or 0), sorted by key."""
    opts = (
        profile[["strategy", "config", "budget"]]
        .drop_duplicates()
        .sort_values(["strategy", "config", "budget"], kind="mergesort")
        .reset_index(drop=True)
    )
    cfgs = opts["config"].map(_config)
    opts["select"] = cfgs.map(lambda c: str(c.get("select", "")))
    opts["agg"] = cfgs.map(lambda c: str(c.get("agg", "last")))
    opts["verifier"] = cfgs.map(lambda c: str(c.get("verifier", "none")))
    opts["chains"] = cfgs.map(lambda c: int(c.get("chains", 0)))
    opts["length"] = cfgs.map(lambda c: int(c.get("length", 0)))
    return opts


def per_problem(profile: pd.DataFrame, strategy: str, config: str, budget: float) -> pd.Series:
    """The option's accuracy per problem (indexed by sorted problem_id)."""
    rows = profile[
        (profile["strategy"] == strategy)
        & (profile["config"] == config)
        & (np.isclose(profile["budget"].to_numpy(float), budget))
    ]
    return rows.groupby("problem_id", sort=True)["accuracy"].mean()


def oracle_bins(problems: pd.DataFrame | None) -> pd.Series | None:
    """Each problem's oracle difficulty bin (1 = easiest), or None without them."""
    if problems is None or "oracle_bin" not in problems or problems["oracle_bin"].isna().all():
        return None
    p = problems.dropna(subset=["oracle_bin"])
    return p.set_index("problem_id")["oracle_bin"].astype(int).sort_index()


def easy_bins(bins: list[int]) -> list[int]:
    """The easy bins: the two easiest of three or more, else the easiest."""
    return bins[:2] if len(bins) >= 3 else bins[:1]


def reference_verifier(run_summary: dict[str, Any] | None, candidates: list[str]) -> str | None:
    """The plan's reference verifier (`summary.json` reference "weighted[V]") when it is one of
    the candidates, else the first candidate in sorted order."""
    ref = (run_summary or {}).get("reference") or ""
    if ref.startswith("weighted[") and ref[len("weighted[") : -1] in candidates:
        return ref[len("weighted[") : -1]
    return sorted(candidates)[0] if candidates else None

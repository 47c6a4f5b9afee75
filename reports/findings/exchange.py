"""Finding (d): the pretraining vs test-time exchange per difficulty bin, with the planner's own
`planner.costs.exchange_report` on the run's two profiles at R = 0.16, 0.79 and 22.

M (how many times larger the larger model is) is `report.json`'s `model_multiplier`, else the
ratio of the two models' parameter counts (`large_model_params` in `report.json` or the larger
profile's metadata, over the small profile's metadata). The small model's option per bin is
cross-fitted over folds and each bin's interval is the exchange's paired normal interval over the
bin's problems.
"""

from __future__ import annotations

from typing import Any

from planner.costs.exchange import exchange_report, larger_from_profile
from planner.errors import PlannerError
from planner.optimize import bin_options
from reports.findings.base import (
    RATIOS,
    Finding,
    combine,
    easy_bins,
    num,
    side,
    single_mark,
    untestable,
)
from reports.run import RunTables

CLAIM = (
    "The small model with test-time compute beats the larger model on easy bins when R << 1 "
    "(R = 0.16), and loses to it on the hardest bin when R >> 1 (R = 22)."
)
_PARAM_KEYS = ("model_params", "n_params", "param_count", "parameter_count", "num_parameters")


def _params(meta: dict[str, Any] | None) -> float | None:
    for k in _PARAM_KEYS:
        v = (meta or {}).get(k)
        if isinstance(v, int | float) and v > 0:
            return float(v)
    return None


def model_multiplier(run: RunTables) -> float | None:
    """M from the run's context, else from the two models' parameter counts; None if unknown."""
    m = run.context.get("model_multiplier")
    if isinstance(m, int | float) and m >= 1:
        return float(m)
    small = _params(run.profile_meta)
    large = run.context.get("large_model_params") or _params(run.large_profile_meta)
    if small and isinstance(large, int | float) and large >= small:
        return float(large) / small
    return None


def _bin_mark(entry: dict[str, Any], sign: int) -> str:
    """One bin's comparison (test-time minus larger model); sign -1: the claim is a loss. A bin
    where no test-time option fits the allowance is the larger model's by default."""
    if "ci95_points" not in entry:
        return "reproduced" if sign < 0 else "not reproduced"
    lo, hi = entry["ci95_points"]
    return single_mark(side(lo, hi) if sign > 0 else side(-hi, -lo))


def _describe(entry: dict[str, Any]) -> str:
    if "ci95_points" not in entry:
        return f"bin {entry['bin']}: {entry.get('note', 'no comparison')}"
    lo, hi = entry["ci95_points"]
    return f"bin {entry['bin']}: {entry['difference_points']:+.1f} pts [{lo:+.1f}, {hi:+.1f}]"


def finding_d(run: RunTables) -> Finding:
    if run.profile is None or run.problems is None:
        return untestable("d", CLAIM, "no profile and problems (profile/, written by ttc curves)")
    if run.large_profile is None:
        return untestable("d", CLAIM, "no larger model's profile (large/profile/profile.parquet)")
    m = model_multiplier(run)
    if m is None:
        return untestable(
            "d",
            CLAIM,
            "no model multiplier M (report.json model_multiplier, or both models' parameter "
            "counts)",
        )
    try:
        bp = bin_options(run.profile, run.problems, "oracle", "profile", run.profile_meta)
        larger = larger_from_profile(run.large_profile, "large profile", bp)
        rep = exchange_report(bp, larger, m, list(RATIOS))
    except PlannerError as exc:
        return untestable("d", CLAIM, f"the exchange cannot be computed: {exc}")
    if len(bp.bins) < 2:
        return untestable("d", CLAIM, "the run has one difficulty bin: no easy or hardest bin")
    by_r = {float(r["ratio"]): r for r in rep["results"]}
    low, high = by_r[min(RATIOS)], by_r[max(RATIOS)]
    easy = easy_bins(bp.bins)
    hardest = bp.bins[-1]
    easy_entries = [e for e in low["per_bin"] if e["bin"] in easy]
    hard_entry = next(e for e in high["per_bin"] if e["bin"] == hardest)
    easy_mark = combine([_bin_mark(e, +1) for e in easy_entries])
    hard_mark = _bin_mark(hard_entry, -1)
    method = (
        "planner.costs.exchange_report: small model's best option per bin within "
        "X = M + 3(M-1)/R times one generation's FLOPs, cross-fitted over folds; paired normal "
        "95% interval over each bin's problems"
    )
    evidence = (
        f"M = {m:.3g}. R = {min(RATIOS):g} (X = {low['budget_multiplier']:.0f}), test-time minus "
        f"larger model on easy {'; '.join(map(_describe, easy_entries))}. "
        f"R = {max(RATIOS):g} (X = {high['budget_multiplier']:.1f}), hardest "
        f"{_describe(hard_entry)}. Method: {method}."
    )
    numbers = {
        "model_multiplier": num(m),
        "method": method,
        "ci": 0.95,
        "easy_bins": easy,
        "hardest_bin": hardest,
        "easy_mark": easy_mark,
        "hardest_mark": hard_mark,
        "budget_unit": rep.get("budget_unit"),
        "per_ratio": [
            {
                "ratio": num(r["ratio"]),
                "budget_multiplier": num(r["budget_multiplier"]),
                "per_bin": [
                    {
                        "bin": e["bin"],
                        "winner": e["winner"],
                        "difference_points": num(e.get("difference_points")),
                        "ci95_points": [num(x) for x in e.get("ci95_points", [])],
                    }
                    for e in r["per_bin"]
                ],
            }
            for r in rep["results"]
        ],
    }
    return Finding("d", CLAIM, combine([easy_mark, hard_mark]), evidence, numbers)

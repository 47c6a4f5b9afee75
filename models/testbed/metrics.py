"""Estimators behind the testbed's quality figures: pass@k, within-group AUROC, (weighted)
majority votes over k-subsets, and a mean with its 95% half-width; and the groups of levels."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from planner.stats import half_width

GROUPS = {"easy": (1, 2), "medium": (3, 4, 5), "hard": (6, 7, 8)}
# The manifests' "ci95" figures have always used z = 1.96; planner.stats.Z95 (1.95996...) would
# move some of them in their fourth decimal, so the testbed keeps 1.96 and its figures stay put.
_Z_MANIFEST = 1.96


def grouped_auroc(groups: Sequence[Sequence[tuple[float, bool]]]) -> tuple[float | None, int]:
    """AUROC over (positive, negative) pairs taken only within each group; (auc, pairs)."""
    num, pairs = 0.0, 0
    for g in groups:
        pos = [s for s, y in g if y]
        neg = [s for s, y in g if not y]
        if not pos or not neg:
            continue
        neg_a = np.sort(np.asarray(neg, dtype=float))
        for s in pos:
            lo = np.searchsorted(neg_a, s, side="left")
            hi = np.searchsorted(neg_a, s, side="right")
            num += lo + 0.5 * (hi - lo)
        pairs += len(pos) * len(neg)
    return (num / pairs if pairs else None), pairs


def vote(answers: Sequence[str | None], weights: Sequence[float] | None = None) -> list[str]:
    """The answers with the largest (weighted) vote; None answers do not vote."""
    tally: dict[str, float] = defaultdict(float)
    for i, a in enumerate(answers):
        if a is not None:
            tally[a] += 1.0 if weights is None else weights[i]
    if not tally:
        return []
    top = max(tally.values())
    return [a for a, v in tally.items() if v >= top - 1e-12 * max(1.0, abs(top))]


def subset_accuracy(
    answers: Sequence[str | None],
    correct: Sequence[bool],
    k: int,
    rng: random.Random,
    draws: int,
    weights: Sequence[float] | None = None,
) -> float:
    """Expected accuracy of (weighted) majority over random k-subsets (ties split evenly)."""
    n = len(answers)
    right = {a for a, c in zip(answers, correct, strict=True) if c and a is not None}
    total = 0.0
    subsets = [list(range(n))] if k >= n else [rng.sample(range(n), k) for _ in range(draws)]
    for sub in subsets:
        top = vote(
            [answers[i] for i in sub], None if weights is None else [weights[i] for i in sub]
        )
        total += sum(a in right for a in top) / len(top) if top else 0.0
    return total / len(subsets)


def mean_with_ci(values: Sequence[float]) -> dict:
    """``{"mean", "ci95", "n"}`` of paired differences, rounded to 4 decimals as in the manifest:
    the mean and the half-width of its normal 95% interval (None for one value, whose interval is
    unknown, so the manifest stays valid JSON and equal to itself; all None for no values)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return {"mean": None, "ci95": None, "n": 0}
    return {
        "mean": round(float(v.mean()), 4),
        "ci95": round(half_width(v, z=_Z_MANIFEST), 4) if len(v) > 1 else None,
        "n": len(v),
    }

"""Difficulty: oracle bins from each problem's own pool, or from a given label such as MATH level.

The paper's oracle difficulty is the model's pass@1 on the problem, estimated from its pool and cut
into quantile bins. Bin 1 is the easiest (highest pass@1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.strategies import POOL, strategy_kind


def pass1_from_samples(samples: pd.DataFrame) -> pd.Series:
    """Pass@1 per problem: the fraction of correct candidates in its independent pools.

    Only pool strategies count (search and revision outputs are not independent draws). A pool
    scored by several verifiers has one row per candidate and verifier, so candidates are
    de-duplicated on (strategy, config, run, position) first.
    """
    kinds = samples["strategy"].map(strategy_kind)
    pool = samples[kinds == POOL]
    if pool.empty:
        raise PlannerError("no independent-sample pool (strategy 'sample') to estimate pass@1 from")
    cand = pool.drop_duplicates(["problem_id", "strategy", "config", "run", "position"])
    return cand.groupby("problem_id", sort=True)["correct"].mean().astype(float)


def quantile_bins(pass1: pd.Series, n_bins: int = 5) -> pd.Series:
    """Cut pass@1 into `n_bins` quantile bins, 1 = easiest.

    Ties are kept together and never split by an arbitrary order: a group of equal pass@1 gets the
    bin where the group starts (its best rank, highest pass@1 first), so equal pass@1 always gives
    the same bin and the result does not depend on problem ids or row order. With heavy ties (a
    small pool) a bin may come out larger, smaller or empty, which says honestly that the pool
    cannot separate those problems.
    """
    if n_bins < 1:
        raise PlannerError(f"--bins must be >= 1, got {n_bins}")
    if pass1.isna().any():
        bad = pass1.index[pass1.isna()][0]
        raise PlannerError(f"pass@1 is missing for problem {bad!r}")
    n = len(pass1)
    if n == 0:
        return pd.Series([], dtype=np.int64, index=pass1.index)
    rank = (-pass1).rank(method="min").to_numpy()  # 1..n, easy first
    bins = np.floor((rank - 1) / n * n_bins).astype(np.int64) + 1
    return pd.Series(np.clip(bins, 1, n_bins), index=pass1.index, name="oracle_bin")


def _level_key(label: str) -> tuple[int, float, str]:
    m = re.search(r"-?\d+(\.\d+)?", label)
    return (0, float(m.group()), label) if m else (1, 0.0, label)


def label_bins(labels: pd.Series) -> pd.Series:
    """Bins from a given label column (e.g. MATH 'Level 1'..'Level 5'): sorted by the number in the
    label, then by text; bin 1 is the first (lowest level)."""
    if labels.isna().any():
        bad = labels.index[labels.isna()][0]
        raise PlannerError(f"difficulty label is missing for problem {bad!r}")
    order = sorted({str(v) for v in labels}, key=_level_key)
    mapping = {lab: i + 1 for i, lab in enumerate(order)}
    return labels.astype(str).map(mapping).astype(np.int64)


def assign_folds(problem_ids: Sequence[str], bins: Sequence[int], seed: int = 0) -> np.ndarray:
    """Two folds, balanced within each bin, from a seeded permutation of the sorted ids.

    The paper selects on one half of each bin and evaluates on the other; balancing within the
    bin keeps both halves the same size even for small bins.
    """
    ids = np.asarray(problem_ids, dtype=object)
    b = np.asarray(bins)
    folds = np.zeros(len(ids), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for value in sorted(set(b.tolist())):
        idx = np.flatnonzero(b == value)
        idx = idx[np.argsort(ids[idx], kind="stable")]
        perm = idx[rng.permutation(len(idx))]
        folds[perm] = np.arange(len(perm)) % 2
    return folds


def build_problems(
    samples: pd.DataFrame,
    *,
    n_bins: int = 5,
    seed: int = 0,
    levels: pd.Series | None = None,
    bin_by: str = "pass1",
) -> pd.DataFrame:
    """The problems table: pass@1, oracle bin and seeded folds for every problem in `samples`.

    `bin_by="pass1"` (the paper) cuts pass@1 into quantile bins; `bin_by="level"` uses `levels`.
    """
    ids = sorted(samples["problem_id"].unique())
    pass1 = pass1_from_samples(samples).reindex(ids)
    level = None if levels is None else levels.reindex(ids)
    if bin_by == "pass1":
        bins = quantile_bins(pass1, n_bins) if not pass1.isna().any() else None
        if bins is None:
            missing = pass1.index[pass1.isna()][0]
            raise PlannerError(f"problem {missing!r} has no independent-sample pool for pass@1")
    elif bin_by == "level":
        if level is None:
            raise PlannerError("--bin-by level needs a level column (import with --level-field)")
        bins = label_bins(level)
    else:
        raise PlannerError(f"unknown binning {bin_by!r}: use pass1 or level")
    folds = assign_folds(ids, bins.to_numpy(), seed)
    return pd.DataFrame(
        {
            "problem_id": ids,
            "fold": folds,
            "pass1": pass1.to_numpy(dtype=float),
            "oracle_bin": bins.to_numpy(dtype=np.int64),
            "predicted_bin": pd.array([None] * len(ids), dtype="Int64"),
            "level": None if level is None else level.to_numpy(dtype=object),
        }
    )

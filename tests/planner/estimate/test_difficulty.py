"""Oracle difficulty bins and folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from planner.errors import PlannerError
from planner.estimate.difficulty import assign_folds, build_problems, label_bins, quantile_bins


def test_quantile_bins_equal_sizes_without_ties():
    p = pd.Series(np.linspace(1, 0, 10), index=[f"p{i}" for i in range(10)])
    bins = quantile_bins(p, 5)
    assert bins.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_ties_stay_together_and_ignore_order():
    p = pd.Series([1.0, 1.0, 1.0, 0.5, 0.0, 0.0], index=list("abcdef"))
    bins = quantile_bins(p, 3)
    assert bins["a"] == bins["b"] == bins["c"] == 1
    assert bins["e"] == bins["f"]
    shuffled = quantile_bins(p.iloc[::-1], 3)
    assert shuffled.reindex(bins.index).tolist() == bins.tolist()


def test_label_bins_sort_by_number():
    labels = pd.Series(["Level 10", "Level 2", "Level 1"], index=["a", "b", "c"])
    assert label_bins(labels).tolist() == [3, 2, 1]


def test_folds_balanced_within_bins_and_seeded():
    ids = [f"p{i}" for i in range(20)]
    bins = [1] * 10 + [2] * 10
    f1 = assign_folds(ids, bins, seed=1)
    assert f1[:10].sum() == 5 and f1[10:].sum() == 5
    assert (assign_folds(ids, bins, seed=1) == f1).all()
    assert not (assign_folds(ids, bins, seed=2) == f1).all()


def test_build_problems_from_pool():
    rows = []
    for p, ok in (("a", [1, 1, 1, 1]), ("b", [1, 0, 0, 0]), ("c", [0, 0, 0, 0])):
        for i, c in enumerate(ok):
            for verifier in ("v1", "v2"):  # two verifiers score the same pool: counted once
                rows.append(
                    {
                        "problem_id": p,
                        "strategy": "sample",
                        "config": "{}",
                        "run": 0,
                        "position": i,
                        "correct": bool(c),
                        "verifier": verifier,
                    }
                )
    probs = build_problems(pd.DataFrame(rows), n_bins=3)
    assert probs["pass1"].tolist() == [1.0, 0.25, 0.0]
    assert probs["oracle_bin"].tolist() == [1, 2, 3]
    with pytest.raises(PlannerError, match="level"):
        build_problems(pd.DataFrame(rows), bin_by="level")

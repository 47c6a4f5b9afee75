"""Decisions that skip the probes: at a budget where the plan runs one option for every prompt,
the router asks `probes_needed` first and decides without probe scores."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from policy_data import policy_doc

from planner.errors import PlannerError
from planner.policy import Policy


def _unprobed_at(doc: dict, budget: float) -> dict:
    """The policy with every bin's decision at `budget` replaced by bin 1's, without probes."""
    out = copy.deepcopy(doc)
    at = [d for d in out["decisions"] if d["budget"] == budget]
    first = {k: v for k, v in at[0].items() if k not in ("bin", "budget")}
    for d in at:
        d.update(first)
        d["probe"] = False
    return out


def test_probes_needed_and_decisions_without_scores() -> None:
    doc = policy_doc()
    budgets = doc["budgets"]
    t = budgets[len(budgets) // 2]
    pol = Policy.from_dict(_unprobed_at(doc, t))
    need = pol.probes_needed([budgets[0], t, budgets[-1]])
    assert need.tolist() == [True, False, t != budgets[-1]]
    # No probe scores at all: allowed where nothing needs them, refused where something does.
    d = pol.decide_many(None, [t, t])
    assert d.bin.tolist() == [-1, -1]
    assert not d.probe.any()
    one = pol.decide(None, t)
    assert one.bin is None and one.probe is False and one.budget == t
    assert one.strategy == d.decision(0).strategy
    with pytest.raises(PlannerError, match="needs k=4 probe scores"):
        pol.decide_many(None, [t, budgets[0]])
    # With scores, rows at the unprobed budget still predict nothing; the others do.
    scores = np.tile(np.linspace(0.1, 0.9, pol.k), (2, 1))
    answers = np.array([["A", "A", "B", "C"]] * 2, dtype=object)
    tokens = np.full((2, pol.k), 50.0)
    mixed = pol.decide_many(scores, [t, budgets[0]], answers, tokens)
    assert mixed.bin[0] == -1 and mixed.bin[1] in set(pol.bins.tolist())
    assert mixed.probe.tolist() == [False, True]
    # The original policy probes at every budget (a file without the field probes).
    assert Policy.from_dict(doc).probes_needed(budgets).all()


def test_unprobed_decisions_must_agree_across_bins() -> None:
    doc = policy_doc()
    t = doc["budgets"][0]
    bad = copy.deepcopy(doc)
    first = next(d for d in bad["decisions"] if d["budget"] == t)
    first["probe"] = False
    with pytest.raises(PlannerError, match="same option in every bin"):
        Policy.from_dict(bad)

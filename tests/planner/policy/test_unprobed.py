"""Decisions that skip the probes: at a budget where the plan runs one option for every prompt,
the router asks `probes_needed` first and decides without probe scores. The policy is the one
`ttc plan` + `ttc policy export` make from a profile where per-bin choices repay the probes at
some budgets and not at others."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from policy_data import built_policy_dirs, policy_doc

from planner.errors import PlannerError
from planner.policy import Policy


def _budgets(doc: dict) -> tuple[list[float], list[float]]:
    """The policy's budgets with and without probes."""
    probed = sorted({d["budget"] for d in doc["decisions"] if d.get("probe", True)})
    return probed, [t for t in doc["budgets"] if t not in probed]


def test_the_exported_policy_probes_only_where_the_plan_says_so() -> None:
    doc = policy_doc()
    probed, unprobed = _budgets(doc)
    assert probed and unprobed  # the fixture's profile makes both kinds
    summary = json.loads((built_policy_dirs()["plan"] / "summary.json").read_text())
    for e in summary["per_budget"]:
        assert (e["budget"] in probed) == e["deployed"]["probe"]
        if not e["deployed"]["probe"]:
            at = [d for d in doc["decisions"] if d["budget"] == e["budget"]]
            # One option, one promise (over all problems) and one cost in every bin.
            assert len({json.dumps({k: v for k, v in d.items() if k != "bin"}) for d in at}) == 1
            assert at[0]["accuracy"] == pytest.approx(e["promise"]["accuracy"], rel=1e-10)
            assert at[0]["n_problems"] == summary["problems"]
    # Below the k = 4 probes' cost nothing can probe.
    assert all(t >= 4 for t in probed) and min(unprobed) < 4
    assert not doc["fallback"]["probe"]


def test_probes_needed_and_decisions_without_scores() -> None:
    doc = policy_doc()
    probed, unprobed = _budgets(doc)
    pol = Policy.from_dict(doc)
    t, tp = unprobed[0], probed[0]
    need = pol.probes_needed([t, tp, min(doc["budgets"]) / 2])
    assert need.tolist() == [False, True, False]  # the last: the fallback
    # No probe scores at all: allowed where nothing needs them, refused where something does.
    d = pol.decide_many(None, [t, t])
    assert d.bin.tolist() == [-1, -1]
    assert not d.probe.any()
    one = pol.decide(None, t)
    assert one.bin is None and one.probe is False and one.budget == t
    assert one.strategy == d.decision(0).strategy
    with pytest.raises(PlannerError, match="needs k=4 probe scores"):
        pol.decide_many(None, [t, tp])
    # With scores, rows at the unprobed budget still predict nothing; the others do.
    scores = np.tile(np.linspace(0.1, 0.9, pol.k), (2, 1))
    answers = np.array([["A", "A", "B", "C"]] * 2, dtype=object)
    tokens = np.full((2, pol.k), 50.0)
    mixed = pol.decide_many(scores, [t, tp], answers, tokens)
    assert mixed.bin[0] == -1 and mixed.bin[1] in set(pol.bins.tolist())
    assert mixed.probe.tolist() == [False, True]
    # A file written before decisions could skip the probes has no field: it probes everywhere.
    old = copy.deepcopy(doc)
    for dec in old["decisions"]:
        dec.pop("probe")
    old["fallback"].pop("probe")
    assert Policy.from_dict(old).probes_needed(doc["budgets"]).all()


def test_unprobed_decisions_must_agree_across_bins() -> None:
    doc = policy_doc()
    probed, unprobed = _budgets(doc)
    bad = copy.deepcopy(doc)
    first = next(d for d in bad["decisions"] if d["budget"] == probed[-1])
    first["probe"] = False
    with pytest.raises(PlannerError, match="same option in every bin"):
        Policy.from_dict(bad)
    bad = copy.deepcopy(doc)
    at = [d for d in bad["decisions"] if d["budget"] == unprobed[0]]
    at[-1]["probe"] = True
    with pytest.raises(PlannerError, match="same option in every bin"):
        Policy.from_dict(bad)


def test_the_plan_summary_is_strict_json() -> None:
    """Below the probes' cost the paper's two-fold figure has no option: null, never NaN (a
    strict JSON writer, as `ttc demo` uses, refused the summary)."""
    from planner.optimize import PlanInputs, make_plan, options_from_summary, read_plan_inputs

    dirs = built_policy_dirs()
    summary = json.loads((dirs["plan"] / "summary.json").read_text())
    inputs: PlanInputs = read_plan_inputs(dirs["profile"], "predicted")
    plan = make_plan(inputs.profile, inputs.problems, options_from_summary(summary))
    text = json.dumps(plan.summary, allow_nan=False)
    low = next(e for e in json.loads(text)["per_budget"] if e["budget"] < 4)
    assert all(c["accuracy"] is None and c["probe"] is False for c in low["choices"])

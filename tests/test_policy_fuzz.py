"""Fuzz: mutated policy files either load as a valid policy or raise PlannerError, nothing else."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_policy_data import policy_doc

from planner.errors import PlannerError
from planner.policy import Policy

_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
)
_json_value = st.recursive(_json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=6)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: dict, path: tuple, op: str, value: Any) -> dict:
    doc = copy.deepcopy(doc)
    if not path:
        return value if op == "replace" else doc
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if op == "replace":
        parent[last] = value
    elif op == "delete":
        del parent[last]
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    elif op == "extra" and isinstance(parent[last], dict):
        parent[last]["zz_extra"] = value
    elif op == "negate" and isinstance(parent[last], int | float) and not isinstance(parent[last], bool):
        parent[last] = -parent[last] - 1
    return doc


_BASE = policy_doc()
_PATHS = _paths(_BASE)


def _exercise(text: str, tmp_path) -> None:
    path = tmp_path / "fuzz.json"
    path.write_text(text, encoding="utf-8")
    try:
        pol = Policy.load(path)
    except PlannerError:
        return
    # A policy that loads must also decide (or refuse the request with a PlannerError).
    k = pol.k
    try:
        d = pol.decide(np.linspace(0.1, 0.9, k), float(pol.budgets[-1]), answers=["a"] * k, gen_tokens=[50] * k)
    except PlannerError:
        return
    assert d.bin in pol.bins.tolist() and 0 <= d.accuracy <= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(i=st.integers(0, len(_PATHS) - 1), op=st.sampled_from(["replace", "delete", "duplicate", "extra", "negate"]),
       value=_json_value)
def test_mutated_policies_load_or_raise_planner_error(i: int, op: str, value: Any, tmp_path) -> None:
    doc = _mutate(_BASE, _PATHS[i], op, value)
    _exercise(json.dumps(doc, sort_keys=True, indent=2), tmp_path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, len(json.dumps(_BASE))), junk=st.text(max_size=4))
def test_truncated_or_garbled_files_raise_planner_error(cut: int, junk: str, tmp_path) -> None:
    text = json.dumps(_BASE, sort_keys=True)
    _exercise(text[:cut] + junk, tmp_path)

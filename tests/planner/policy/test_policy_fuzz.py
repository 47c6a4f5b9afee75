"""Fuzz: a mutated policy file is either rejected with one PlannerError that names the file and the
field, or loads as a policy that round-trips and decides every budget as its document says.
Nothing else may escape: any other exception fails the test."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_data import policy_doc

from planner.errors import PlannerError
from planner.policy import Policy, policy_schema
from planner.strategies import STRATEGY_KINDS

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


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
    elif (
        op == "negate"
        and isinstance(parent[last], int | float)
        and not isinstance(parent[last], bool)
    ):
        parent[last] = -parent[last] - 1
    return doc


_BASE = policy_doc()
_PATHS = _paths(_BASE)
# The fields a message may name: the schema's top-level properties, or the document itself.
_FIELDS = {*policy_schema()["properties"], "(top level)"}


def _is_strict_json(text: str) -> bool:
    """Whether the text is strict JSON (the loader rejects NaN and Infinity)."""

    def reject(name: str) -> float:
        raise ValueError(name)

    try:
        json.loads(text, parse_constant=reject)
    except (ValueError, RecursionError):
        return False
    return True


def _load(text: str, tmp_path: Path) -> tuple[Path, Policy | PlannerError]:
    path = tmp_path / "fuzz.json"
    path.write_text(text, encoding="utf-8")
    try:
        return path, Policy.load(path)
    except PlannerError as exc:  # the only exception allowed out of load
        return path, exc


def _check_rejection(exc: PlannerError, path: Path, text: str) -> None:
    msg = str(exc)
    assert msg.startswith(f"{path}: "), msg
    if not _is_strict_json(text):
        assert "not valid JSON" in msg, msg
        return
    m = re.match(rf"{re.escape(str(path))}: field '([^']*)': \S", msg)
    assert m, f"the error names no field: {msg}"
    assert m.group(1).split("/")[0] in _FIELDS, msg
    assert "\n" not in msg


def _expected(pol: Policy, requested: float) -> tuple[dict, bool, float]:
    """The document's answer for a requested budget: (decision by bin or the fallback, fallback?,
    policy budget used)."""
    below = [float(t) for t in pol.doc["budgets"] if float(t) <= requested * (1 + 1e-9)]
    if not below:
        return pol.doc["fallback"], True, float("nan")
    return {}, False, below[-1]


def _check_decides(pol: Policy) -> None:
    # The one byte spelling survives a round trip through text.
    again = Policy.from_dict(json.loads(pol.dumps()), "round trip")
    assert again.dumps() == pol.dumps() and again.doc == pol.doc
    by_key = {(d["bin"], float(d["budget"])): d for d in pol.doc["decisions"]}
    assert len(by_key) == len(pol.doc["bins"]) * len(pol.doc["budgets"])
    k = pol.k
    probes = [np.linspace(0.1, 0.9, k), np.zeros(k), np.ones(k), np.full(k, 0.5)]
    budgets = [float(t) for t in pol.doc["budgets"]]
    for requested in [budgets[0] / 2, *budgets, budgets[-1] * 10]:
        want, fallback, used = _expected(pol, requested)
        for scores in probes:
            d = pol.decide(scores, requested, answers=["a"] * k, gen_tokens=[50] * k)
            assert d.fallback is fallback
            # A decision without probes predicts no bin: it is the same in every bin.
            assert d.bin in pol.doc["bins"] if d.probe else d.bin is None
            doc_dec = want if fallback else by_key[(d.bin or pol.doc["bins"][0], used)]
            assert d.probe == doc_dec.get("probe", True)
            if not fallback:
                assert d.budget == used
            assert (d.strategy, d.config) == (doc_dec["strategy"], doc_dec["config"])
            assert d.accuracy == doc_dec["accuracy"] and 0.0 <= d.accuracy <= 1.0
            assert d.ci_lo - 1e-9 <= d.accuracy <= d.ci_hi + 1e-9
            assert d.strategy in STRATEGY_KINDS and d.total_flops >= 0


def test_the_base_policy_round_trips_and_decides_every_budget(tmp_path) -> None:
    _, pol = _load(json.dumps(_BASE, sort_keys=True, indent=2), tmp_path)
    assert isinstance(pol, Policy), pol
    _check_decides(pol)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    i=st.integers(0, len(_PATHS) - 1),
    op=st.sampled_from(["replace", "delete", "duplicate", "extra", "negate"]),
    value=_json_value,
)
def test_mutated_policies_load_or_name_the_bad_field(i: int, op: str, value: Any, tmp_path) -> None:
    doc = _mutate(_BASE, _PATHS[i], op, value)
    text = json.dumps(doc, sort_keys=True, indent=2)
    path, res = _load(text, tmp_path)
    if isinstance(res, PlannerError):
        _check_rejection(res, path, text)
    else:
        _check_decides(res)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    i=st.integers(0, len(_BASE["decisions"]) - 1),
    field=st.sampled_from(["accuracy", "ci_lo", "ci_hi"]),
    value=st.floats(-2, 3),
)
def test_a_promise_outside_its_interval_or_the_unit_range_is_rejected(
    i: int, field: str, value: float, tmp_path
) -> None:
    doc = copy.deepcopy(_BASE)
    dec = doc["decisions"][i]
    dec[field] = value
    path, res = _load(json.dumps(doc), tmp_path)
    valid = 0 <= value <= 1 and dec["ci_lo"] - 1e-9 <= dec["accuracy"] <= dec["ci_hi"] + 1e-9
    if valid:
        assert isinstance(res, Policy), res
        _check_decides(res)
    else:
        assert isinstance(res, PlannerError)
        assert re.match(
            rf"{re.escape(str(path))}: field 'decisions/{i}(/[a-z_]+)?': \S", str(res)
        ), str(res)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(0, len(json.dumps(_BASE))), junk=st.text(max_size=4))
def test_truncated_or_garbled_files_raise_planner_error(cut: int, junk: str, tmp_path) -> None:
    text = json.dumps(_BASE, sort_keys=True)[:cut] + junk
    path, res = _load(text, tmp_path)
    if isinstance(res, PlannerError):
        _check_rejection(res, path, text)
    else:  # only the untouched document (junk that is whitespace) may load
        assert res.doc == _BASE
        _check_decides(res)

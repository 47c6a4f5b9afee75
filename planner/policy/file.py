"""The policy file format: schema version, the one byte spelling, reading and validation.

A policy is plain JSON (never pickle), so loading executes no code. `validate_policy` checks
everything once, so that deciding can stay fast: the JSON Schema shipped as
`planner/policy/schema.json` (unknown fields are rejected, not ignored: a field this version does
not understand may change what a decision means), then the cross-field rules (every bin x budget
present once, known strategies and selections, CI around the accuracy, predictor shapes matching
its feature list, increasing thresholds). Any violation is one `PlannerError` naming the file and
the field.
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from planner.errors import PlannerError
from planner.strategies import DEPLOYABLE_SELECTS, STRATEGY_KINDS

POLICY_SCHEMA_VERSION = 1
POLICY_KIND = "ttc-policy"


@cache
def policy_schema() -> dict[str, Any]:
    text = resources.files("planner.policy").joinpath("schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} (NaN and Infinity are not allowed)")


def dumps_policy(policy: dict[str, Any]) -> str:
    """The one byte spelling of a policy: sorted keys, two-space indent, trailing newline."""
    return json.dumps(policy, sort_keys=True, indent=2, allow_nan=False, ensure_ascii=True) + "\n"


def _fmt_path(path: Any) -> str:
    return "/".join(str(p) for p in path) or "(top level)"


def validate_policy(doc: Any, source: str = "policy") -> None:
    """Raise PlannerError unless `doc` is a valid policy document (schema + cross-field rules)."""
    validator = jsonschema.Draft202012Validator(policy_schema())
    errors = sorted(
        validator.iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.message)
    )
    if errors:
        e = errors[0]
        if (
            isinstance(doc, dict)
            and "schema_version" in doc
            and doc.get("schema_version") != POLICY_SCHEMA_VERSION
        ):
            raise PlannerError(
                f"{source}: field 'schema_version': unsupported version "
                f"{doc.get('schema_version')!r} (this ttc reads version {POLICY_SCHEMA_VERSION})"
            )
        raise PlannerError(f"{source}: field '{_fmt_path(e.absolute_path)}': {e.message[:300]}")
    _check_semantics(doc, source)


def _check_decision(d: dict[str, Any], where: str, source: str) -> None:
    if d["strategy"] not in STRATEGY_KINDS:
        raise PlannerError(
            f"{source}: field '{where}/strategy': unknown strategy {d['strategy']!r} "
            f"(known: {', '.join(sorted(STRATEGY_KINDS))})"
        )
    try:
        cfg = json.loads(d["config"], parse_constant=_reject_constant)
    except ValueError as exc:
        raise PlannerError(f"{source}: field '{where}/config': not JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise PlannerError(f"{source}: field '{where}/config': must be a JSON object")
    if cfg.get("select", "weighted") not in DEPLOYABLE_SELECTS:
        raise PlannerError(
            f"{source}: field '{where}/config': select {cfg.get('select')!r} is not deployable "
            f"(use one of {', '.join(DEPLOYABLE_SELECTS)})"
        )
    if not d["ci_lo"] - 1e-9 <= d["accuracy"] <= d["ci_hi"] + 1e-9:
        raise PlannerError(
            f"{source}: field '{where}/accuracy': {d['accuracy']} outside its interval "
            f"[{d['ci_lo']}, {d['ci_hi']}]"
        )


def _check_semantics(doc: dict[str, Any], source: str) -> None:
    pred = doc["predictor"]
    d = len(pred["features"])
    for name in ("mean", "scale"):
        if len(pred[name]) != d:
            raise PlannerError(
                f"{source}: field 'predictor/{name}': {len(pred[name])} values for {d} features"
            )
    k = len(pred["classes"])
    coef = pred["coef"]
    if pred["model"] == "ordinal":
        if any(isinstance(c, list) for c in coef) or len(coef) != d:
            raise PlannerError(
                f"{source}: field 'predictor/coef': the ordinal model needs {d} "
                "numbers (one per feature)"
            )
        if len(pred["intercept"]) != max(k - 1, 0):
            raise PlannerError(
                f"{source}: field 'predictor/intercept': {len(pred['intercept'])} "
                f"thresholds for {k} classes"
            )
        if any(b <= a for a, b in zip(pred["intercept"], pred["intercept"][1:], strict=False)):
            raise PlannerError(f"{source}: field 'predictor/intercept': thresholds must increase")
    else:
        if len(coef) != k or any(not isinstance(row, list) or len(row) != d for row in coef):
            raise PlannerError(
                f"{source}: field 'predictor/coef': the multinomial model needs "
                f"{k} rows of {d} numbers"
            )
        if len(pred["intercept"]) != k:
            raise PlannerError(
                f"{source}: field 'predictor/intercept': {len(pred['intercept'])} "
                f"values for {k} classes"
            )
    if sorted(pred["classes"]) != sorted(doc["bins"]):
        raise PlannerError(
            f"{source}: field 'bins': {doc['bins']} differ from the predictor's "
            f"classes {pred['classes']}"
        )
    if list(doc["bins"]) != sorted(doc["bins"]) or list(doc["budgets"]) != sorted(doc["budgets"]):
        raise PlannerError(f"{source}: fields 'bins' and 'budgets' must be sorted ascending")
    seen: dict[tuple[int, float], int] = {}
    for i, dec in enumerate(doc["decisions"]):
        key = (dec["bin"], float(dec["budget"]))
        if key[0] not in doc["bins"] or key[1] not in doc["budgets"]:
            raise PlannerError(
                f"{source}: field 'decisions/{i}': bin {key[0]} / budget {key[1]:g} "
                "not in 'bins'/'budgets'"
            )
        if key in seen:
            raise PlannerError(
                f"{source}: field 'decisions/{i}': bin {key[0]} budget {key[1]:g} given twice"
            )
        seen[key] = i
        _check_decision(dec, f"decisions/{i}", source)
    for b in doc["bins"]:
        for t in doc["budgets"]:
            if (b, float(t)) not in seen:
                raise PlannerError(
                    f"{source}: field 'decisions': no decision for bin {b} at budget {t:g}"
                )
    for t in doc["budgets"]:
        at = [doc["decisions"][seen[(b, float(t))]] for b in doc["bins"]]
        unprobed = [d for d in at if not d.get("probe", True)]
        if unprobed and (
            len(unprobed) != len(at) or len({(d["strategy"], d["config"]) for d in at}) != 1
        ):
            raise PlannerError(
                f"{source}: field 'decisions': at budget {t:g} a decision without probes must "
                "be the same option in every bin, and every bin's decision must skip the probes"
            )
    _check_decision(doc["fallback"], "fallback", source)


def read_policy(path: str | os.PathLike[str]) -> Any:
    """The JSON document of a policy file, not yet validated (`validate_policy` does that)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise PlannerError(f"{p}: policy file not found") from None
    except OSError as exc:
        raise PlannerError(f"{p}: cannot read the policy ({exc.strerror or exc})") from None
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise PlannerError(f"{p}: not a UTF-8 JSON policy file") from None
    except (ValueError, RecursionError) as exc:
        raise PlannerError(
            f"{p}: not valid JSON (truncated or corrupt?): {str(exc)[:200]}"
        ) from None

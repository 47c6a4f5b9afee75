"""The CI gate: compare a run's summary with a blessed baseline, and the history line.

A baseline is an earlier report's `summary.json` (compute-optimal accuracy per budget and the
promise per bin and budget) or a policy file (its promise per bin and budget). The gate fails when
any compared accuracy falls more than `tolerance` below the baseline's; a budget or bin that the
baseline has and the run lacks fails too, since a gate that skipped it would pass silently.
Bad or vacuous input (a baseline of another schema version or budget unit, nothing to compare)
raises PlannerError: that is exit 1, distinct from a regression.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.errors import PlannerError
from planner.policy import POLICY_KIND, POLICY_SCHEMA_VERSION, Policy
from planner.tables import file_sha256
from reports.summary import (
    SUMMARY_KIND,
    SUMMARY_SCHEMA_VERSION,
    budget_text,
    jsonable,
    md_escape,
    with_ci,
)

# The comparison ignores float noise below this (accuracies are stored to 6 digits).
_EPS = 1e-9


@dataclass(frozen=True)
class CheckResult:
    """The diff: one row per compared quantity, and whether any regressed."""

    baseline: str
    baseline_kind: str
    baseline_sha256: str
    tolerance: float
    unit: str
    rows: list[dict[str, Any]]

    @property
    def regressed(self) -> bool:
        return any(r["status"] != "ok" for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "baseline": self.baseline,
                "baseline_kind": self.baseline_kind,
                "baseline_sha256": self.baseline_sha256,
                "tolerance": self.tolerance,
                "unit": self.unit,
                "regressed": self.regressed,
                "rows": self.rows,
            }
        )

    def markdown(self) -> str:
        verdict = (
            f"**REGRESSED**: {sum(r['status'] != 'ok' for r in self.rows)} of {len(self.rows)} "
            f"compared accuracies fell more than {100 * self.tolerance:.1f} points below the "
            f"baseline, or are missing"
            if self.regressed
            else f"**OK**: no compared accuracy fell more than {100 * self.tolerance:.1f} points "
            f"below the baseline ({len(self.rows)} compared)"
        )
        lines = [
            "### CI check",
            "",
            f"Baseline `{md_escape(self.baseline)}` ({self.baseline_kind}, sha256 "
            f"`{self.baseline_sha256[:12]}`), budgets in {self.unit}.",
            "",
            verdict,
            "",
            f"| quantity | budget ({self.unit}) | bin | baseline [CI] | run [CI] | change "
            "(points) | status |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            change = "n/a" if r["change"] is None else f"{100 * r['change']:+.1f}"
            lines.append(
                f"| {r['quantity']} | {budget_text(r['budget'], self.unit)} | "
                f"{'all' if r['bin'] is None else r['bin']} | "
                f"{with_ci(r['baseline'], r['baseline_ci_lo'], r['baseline_ci_hi'])} | "
                f"{with_ci(r['run'], r['run_ci_lo'], r['run_ci_hi'])} | {change} | "
                f"{r['status']} |"
            )
        return "\n".join(lines) + "\n"


def _key(budget: float, bin_: int | None) -> tuple[float, int]:
    return (float(f"{float(budget):.6g}"), -1 if bin_ is None else int(bin_))


def load_baseline(baseline: str | Path) -> dict[str, Any]:
    """The baseline's unit and its compared accuracies, whichever file it is: read first, so that
    a bad baseline fails before any work."""
    path = Path(baseline)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlannerError(f"{path}: baseline not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PlannerError(f"{path}: not a readable JSON baseline ({str(exc)[:200]})") from None
    if not isinstance(doc, dict):
        raise PlannerError(f"{path}: a baseline must be a JSON object")
    if doc.get("kind") == POLICY_KIND:
        if doc.get("schema_version") != POLICY_SCHEMA_VERSION:
            raise PlannerError(
                f"{path}: a policy of schema_version {doc.get('schema_version')!r}; this ttc "
                f"checks against version {POLICY_SCHEMA_VERSION}"
            )
        pol = Policy.from_dict(doc, str(path)).doc
        return {
            "kind": "policy",
            "unit": pol["budget_unit"],
            "compute_optimal": [],
            "promise": pol["decisions"],
        }
    if doc.get("kind") == SUMMARY_KIND:
        if doc.get("schema_version") != SUMMARY_SCHEMA_VERSION:
            raise PlannerError(
                f"{path}: a report summary of schema_version {doc.get('schema_version')!r}; this "
                f"ttc checks against version {SUMMARY_SCHEMA_VERSION}"
            )
        for field in ("unit", "compute_optimal", "promise"):
            if field not in doc:
                raise PlannerError(f"{path}: field '{field}' is missing (a report summary)")
        return {"kind": "summary", **{k: doc[k] for k in ("unit", "compute_optimal", "promise")}}
    if "per_budget" in doc:
        raise PlannerError(
            f"{path}: this is a plan's summary.json; pass the summary.json of `ttc report` "
            f"(or a policy file) as the baseline"
        )
    raise PlannerError(f"{path}: not a report summary.json or a policy file (no known 'kind')")


def _compare(
    quantity: str,
    base: list[dict[str, Any]],
    run: list[dict[str, Any]],
    tolerance: float,
    with_bin: bool,
) -> list[dict[str, Any]]:
    now = {_key(r["budget"], r["bin"] if with_bin else None): r for r in run}
    rows = []
    for b in sorted(base, key=lambda r: _key(r["budget"], r["bin"] if with_bin else None)):
        key = _key(b["budget"], b["bin"] if with_bin else None)
        r = now.get(key)
        change = None if r is None else r["accuracy"] - b["accuracy"]
        status = (
            "MISSING in run" if r is None else ("REGRESSED" if change < -tolerance - _EPS else "ok")
        )
        rows.append(
            {
                "quantity": quantity,
                "budget": key[0],
                "bin": b["bin"] if with_bin else None,
                "baseline": b["accuracy"],
                "baseline_ci_lo": b.get("ci_lo"),
                "baseline_ci_hi": b.get("ci_hi"),
                "run": None if r is None else r["accuracy"],
                "run_ci_lo": None if r is None else r.get("ci_lo"),
                "run_ci_hi": None if r is None else r.get("ci_hi"),
                "change": change,
                "status": status,
            }
        )
    return rows


def check_tolerance(tolerance: float) -> float:
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise PlannerError(f"--tolerance must be a non-negative number, got {tolerance:g}")
    return tolerance


def check_summary(
    doc: Mapping[str, Any], baseline: str | Path, tolerance: float = 0.01
) -> CheckResult:
    """Compare the summary document `doc` of a run with the baseline file."""
    check_tolerance(tolerance)
    path = Path(baseline)
    base = load_baseline(path)
    if base["unit"] != doc["unit"]:
        raise PlannerError(
            f"{path}: the baseline counts budgets in {base['unit']}, this run in {doc['unit']}; "
            f"compare runs planned in the same unit"
        )
    if not base["compute_optimal"] and not base["promise"]:
        raise PlannerError(f"{path}: the baseline has no budgets (nothing to compare)")
    if not doc["compute_optimal"] and not doc["promise"]:
        raise PlannerError(
            "nothing to check: the run has neither a plan (compute-optimal accuracy per budget) "
            "nor a promise per bin"
        )
    co = "compute-optimal accuracy"
    rows = _compare(co, base["compute_optimal"], doc["compute_optimal"], tolerance, False)
    rows += _compare("promised accuracy", base["promise"], doc["promise"], tolerance, True)
    return CheckResult(
        baseline=str(baseline),
        baseline_kind=base["kind"],
        baseline_sha256=file_sha256(path),
        tolerance=tolerance,
        unit=str(doc["unit"]),
        rows=rows,
    )


def history_line(doc: Mapping[str, Any], check: CheckResult | None = None) -> str:
    """One JSON line for `--history`: the gated figures and the input hashes, sorted keys, no
    time stamp (a pipeline knows when it ran; the same inputs give the same line)."""
    entry: dict[str, Any] = {
        "kind": "ttc-report-history",
        "schema_version": doc["schema_version"],
        "unit": doc["unit"],
        "inputs": doc["inputs"],
        "metadata": doc["metadata"],
        "compute_optimal": doc["compute_optimal"],
        "promise": doc["promise"],
        "findings": {f["key"]: f["mark"] for f in doc["findings"]},
    }
    if check is not None:
        entry["check"] = {
            "baseline_sha256": check.baseline_sha256,
            "regressed": check.regressed,
            "tolerance": check.tolerance,
        }
    return json.dumps(jsonable(entry), sort_keys=True, separators=(",", ":"), allow_nan=False)

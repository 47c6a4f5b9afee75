"""The report's numbers, once: `summary.json` for machines and `summary.md` for people.

`summarize` reads the key tables out of a run (the plan's curves per budget, the compute-optimal
choice per bin, the policy's promise per bin and, where the run evaluated it, what was realised)
into one plain document; the HTML, the markdown, the CI check and the history line all read that
document, so they can never disagree. Every accuracy travels with its interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from reports.run import RunTables

if TYPE_CHECKING:  # the findings are computed by the caller; only their fields are read here
    from reports.findings import Finding

SUMMARY_KIND = "ttc-report-summary"
SUMMARY_SCHEMA_VERSION = 1
# GitHub refuses a job summary or a comment over 65,536 characters; keep a margin for the
# check's table, which CI appends after it.
MARKDOWN_LIMIT = 60_000
# Metadata shown in the provenance, in this order, from the first table that records it.
META_KEYS = (
    "model_id",
    "model_params",
    "verifier_id",
    "dataset_id",
    "dataset_sha256",
    "source_file",
    "source_sha256",
    "device",
    "dtype",
    "seed",
    "package_version",
)


def jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, floats to 6 significant digits (so that the
    files do not carry the last bits of a bootstrap), NaN and infinities as null."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, list | tuple | np.ndarray):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return None if not math.isfinite(f) else float(f"{f:.6g}")
    return obj


def _method_order(method: str) -> tuple[int, str]:
    return (0 if method == "compute_optimal" else 1, method)


def _plan_rows(run: RunTables) -> list[dict[str, Any]]:
    if run.plan_curves is None:
        return []
    rows = [
        {
            "budget": r.budget,
            "method": r.method,
            "accuracy": r.accuracy,
            "ci_lo": r.ci_lo,
            "ci_hi": r.ci_hi,
            "efficiency_multiple": r.efficiency_multiple,
            "generations": r.generations,
            "flops": r.flops,
        }
        for r in run.plan_curves.itertuples(index=False)
    ]
    return sorted(rows, key=lambda r: (r["budget"], _method_order(r["method"])))


def _choice_rows(run: RunTables) -> list[dict[str, Any]]:
    if run.choices is None:
        return []
    keep = ("bin", "budget", "strategy", "config", "option_budget", "accuracy", "ci_lo", "ci_hi")
    rows = [{k: r[k] for k in (*keep, "n_problems")} for r in run.choices.to_dict("records")]
    return sorted(rows, key=lambda r: (r["budget"], r["bin"]))


def _promise_rows(run: RunTables) -> list[dict[str, Any]]:
    """The accuracy promised per bin and budget: the policy file's where the run exported one,
    else the plan's estimate of each deployed choice (what `ttc policy export` would write)."""
    rows: list[dict[str, Any]] = []
    if run.policy is not None:
        for d in run.policy["decisions"]:
            rows.append(
                {
                    "bin": d["bin"],
                    "budget": d["budget"],
                    "accuracy": d["accuracy"],
                    "ci_lo": d["ci_lo"],
                    "ci_hi": d["ci_hi"],
                    "source": "policy",
                }
            )
    elif run.choices is not None and "expected_accuracy" in run.choices.columns:
        for r in run.choices.to_dict("records"):
            rows.append(
                {
                    "bin": r["bin"],
                    "budget": r["budget"],
                    "accuracy": r["expected_accuracy"],
                    "ci_lo": r["expected_ci_lo"],
                    "ci_hi": r["expected_ci_hi"],
                    "source": "plan",
                }
            )
    realised = _realised(run)
    for r in rows:
        r.update(realised.get((int(r["bin"]), float(r["budget"])), {}))
    return sorted(rows, key=lambda r: (r["budget"], r["bin"]))


def _realised(run: RunTables) -> dict[tuple[int, float], dict[str, Any]]:
    out: dict[tuple[int, float], dict[str, Any]] = {}
    for entry in (run.evaluation or {}).get("budgets", []):
        for b in entry.get("bins", []):
            out[(int(b["bin"]), float(entry["budget"]))] = {
                "realised_accuracy": b.get("realised_accuracy"),
                "realised_ci_lo": b.get("realised_ci_lo"),
                "realised_ci_hi": b.get("realised_ci_hi"),
                "realised_n": b.get("n"),
            }
    return out


def budget_unit(run: RunTables) -> str:
    """The plan's budget unit; a run without a plan counts generations (the profile's unit)."""
    if run.plan_summary is not None:
        return str(run.plan_summary["unit"])
    if run.policy is not None:
        return str(run.policy["budget_unit"])
    return "generations"


def metadata(run: RunTables) -> list[dict[str, Any]]:
    """Provenance from the tables themselves (never the clock): key, value and the file."""
    sources = [
        ("plan_curves", run.plan_meta),
        ("plan_summary", run.plan_summary or {}),
        ("profile", run.profile_meta),
        ("samples", run.samples_meta),
        ("policy", run.policy or {}),
        ("large_profile", run.large_profile_meta),
    ]
    rows = []
    for key in META_KEYS:
        for field_name, meta in sources:
            if meta.get(key) not in (None, ""):
                rows.append({"key": key, "value": meta[key], "file": run.found[field_name]})
                break
    return rows


def summarize(
    run: RunTables,
    inputs: Mapping[str, str],
    found_findings: Sequence[Finding],
    figures: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The summary document: what `summary.json` holds and every other output renders.

    `inputs` maps each input file (relative to the run directory) to its SHA-256; `figures` lists
    each figure's name, title and either `drawn: true` or the `missing` line that says why not.
    """
    left_out = []
    if run.plan_curves is None:
        left_out.append("plan curves and choices: no plan (curves.parquet); run `ttc plan`")
    elif run.choices is None:
        left_out.append("choices per bin: the plan has no choices.parquet")
    promise = _promise_rows(run)
    if not promise:
        left_out.append("policy promise: neither a policy.json nor a plan with expected accuracies")
    if run.evaluation is None:
        left_out.append("realised accuracy: no evaluation.json (`ttc policy evaluate --json`)")
    plan = _plan_rows(run)
    doc = {
        "kind": SUMMARY_KIND,
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "unit": budget_unit(run),
        "ci": (run.plan_summary or {}).get("ci", (run.policy or {}).get("ci", 0.95)),
        "bin_column": (run.plan_summary or {}).get("bin_column"),
        "reference": (run.plan_summary or {}).get("reference"),
        "inputs": [{"file": f, "sha256": h} for f, h in sorted(inputs.items())],
        "metadata": metadata(run),
        "findings": [
            {
                "key": f.key,
                "claim": f.claim,
                "mark": f.mark,
                "evidence": f.evidence,
                "numbers": f.numbers,
            }
            for f in found_findings
        ],
        "figures": list(figures),
        "plan": plan,
        "compute_optimal": [
            {k: r[k] for k in ("budget", "accuracy", "ci_lo", "ci_hi")}
            for r in plan
            if r["method"] == "compute_optimal"
        ],
        "choices": _choice_rows(run),
        "promise": promise,
        "left_out": left_out,
        "measured": measured_inputs(run),
    }
    return jsonable(doc)


def measured_inputs(run: RunTables) -> list[str]:
    """Lines naming the inputs measured on the machine that made the run, not derived from the
    problems and the seed: two runs of the same inputs differ in them, and in what they draw."""
    cpu = run.context.get("cpu_hardware")
    if not cpu:
        return []
    return [
        f"{cpu} was measured on the machine that made this run (ttc calibrate, which ttc demo "
        "runs): its figures, its points in the cost figure, and so the bytes of this page and of "
        "the cost figure's files differ between two runs of the same inputs and seed. Every other "
        "figure and table follows from the tables and the seed alone; summary.json and "
        "summary.md (what ttc report --check compares) do not depend on it."
    ]


# -- markdown ------------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def with_ci(x: float | None, lo: float | None, hi: float | None) -> str:
    """An accuracy and its interval, as every table of the report states it."""
    if x is None:
        return "n/a"
    if lo is None or hi is None:
        return f"{pct(x)} (no interval)"
    return f"{pct(x)} [{100 * lo:.1f}, {100 * hi:.1f}]"


def budget_text(b: float, unit: str) -> str:
    return f"{b:g}" if unit == "generations" else f"{b:.3g}"


def md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(head: Sequence[str], rows: list[list[str]], cap: int | None, what: str) -> list[str]:
    shown = rows if cap is None else rows[:cap]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in shown]
    if len(shown) < len(rows):
        lines.append(
            f"\n*{len(rows) - len(shown)} more {what} rows left out to fit GitHub's "
            f"65,536-character limit; summary.json has them all.*"
        )
    return lines


def table_rows(doc: Mapping[str, Any]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The key tables as header + text cells, shared by the markdown and the HTML."""
    unit = doc["unit"]
    level = f"{100 * doc['ci']:.0f}%"
    plan_rows = [
        [
            budget_text(r["budget"], unit),
            r["method"],
            with_ci(r["accuracy"], r["ci_lo"], r["ci_hi"]),
            "> max budget"
            if r["efficiency_multiple"] is None and r["method"] == "compute_optimal"
            else ("" if r["method"] != "compute_optimal" else f"{r['efficiency_multiple']:.2f}x"),
        ]
        for r in doc["plan"]
    ]
    choice_rows = [
        [
            budget_text(r["budget"], unit),
            str(r["bin"]),
            f"{r['strategy']} {r['config']}",
            f"{r['option_budget']:g}",
            with_ci(r["accuracy"], r["ci_lo"], r["ci_hi"]),
            str(r["n_problems"]),
        ]
        for r in doc["choices"]
    ]
    promise_rows = [
        [
            budget_text(r["budget"], unit),
            str(r["bin"]),
            with_ci(r["accuracy"], r["ci_lo"], r["ci_hi"]),
            with_ci(r.get("realised_accuracy"), r.get("realised_ci_lo"), r.get("realised_ci_hi"))
            if "realised_accuracy" in r
            else "not evaluated",
            r["source"],
        ]
        for r in doc["promise"]
    ]
    return {
        "plan": (
            [
                f"budget ({unit})",
                "method",
                f"accuracy [{level} CI]",
                "compute-efficiency multiple against "
                + (doc.get("reference") or "the reference")
                + " (point estimate)",
            ],
            plan_rows,
        ),
        "choices": (
            [
                f"budget ({unit})",
                "bin (1 = easiest)",
                "strategy and config",
                "option budget (generations)",
                f"accuracy, cross-validated [{level} CI]",
                "problems",
            ],
            choice_rows,
        ),
        "promise": (
            [
                f"budget ({unit})",
                "bin (1 = easiest)",
                f"promised accuracy [{level} CI]",
                f"realised on held-out problems [{level} CI]",
                "source",
            ],
            promise_rows,
        ),
    }


def render_markdown(doc: Mapping[str, Any], limit: int = MARKDOWN_LIMIT) -> str:
    """`summary.md`: findings, then the key tables, cut (with a note) to stay under `limit`."""
    for cap in (None, 200, 100, 50, 20, 10, 5):
        text = _markdown(doc, cap)
        if len(text) <= limit:
            return text
    note = "\n\n*Cut to fit GitHub's 65,536-character limit; summary.json has everything.*\n"
    return text[: limit - len(note)] + note


def _markdown(doc: Mapping[str, Any], cap: int | None) -> str:
    meta = {m["key"]: m["value"] for m in doc["metadata"]}
    lines = [
        "## Test-time compute report",
        "",
        f"Model `{meta.get('model_id', 'unknown')}`, dataset `{meta.get('dataset_id', 'unknown')}`"
        f", budgets in {doc['unit']}, {100 * doc['ci']:.0f}% intervals.",
        "",
        "### Findings",
        "",
    ]
    if doc["findings"]:
        rows = [[f["key"], f["claim"], f["mark"], f["evidence"]] for f in doc["findings"]]
        lines += _md_table(["", "claim", "mark", "evidence"], rows, None, "finding")
    else:
        lines.append("*No findings were tested on this run.*")
    tables = table_rows(doc)
    titles = {
        "plan": "Accuracy per budget: compute-optimal against the baselines",
        "choices": "Compute-optimal choice per difficulty bin",
        "promise": "Policy promise per bin",
    }
    for key, title in titles.items():
        head, rows = tables[key]
        lines += ["", f"### {title}", ""]
        lines += _md_table(head, rows, cap, key) if rows else ["*Not in this run.*"]
    missing = [f for f in doc["figures"] if not f.get("drawn")]
    if missing or doc["left_out"]:
        lines += ["", "### Left out", ""]
        lines += [f"- figure {f['title']}: {f['missing']}" for f in missing]
        lines += [f"- {line}" for line in doc["left_out"]]
    return "\n".join(lines) + "\n"

"""A run directory as the report reads it: every table the project writes, each one optional.

`ttc report RUN_DIR` works on any directory the project writes. `load_run` looks for each table
in RUN_DIR itself and in its stage folders, and records where each came from:

| field | file (in RUN_DIR, else in the folder named) | written by |
| --- | --- | --- |
| samples | `samples.parquet` (+ `run.json`), `samples/` | `ttc profile`, `ttc samples import` |
| profile | `profile.parquet`, `profile/` | `ttc curves` |
| plan_curves, selection, choices, plan_summary | `curves.parquet`, `selection.parquet`, \
`choices.parquet`, `summary.json`, `plan/` | `ttc plan` |
| problems | `problems.parquet`: the plan's, else the profile's, else the samples' | every stage |
| policy | `policy.json` (RUN_DIR only) | `ttc policy export` |
| evaluation | `evaluation.json`, the JSON of `ttc policy evaluate` (RUN_DIR only) | `ttc demo` |
| large_profile | `large/profile/profile.parquet`: the larger model's own profile | `ttc demo` |
| context | `report.json`: settings the tables do not hold (M, R values, the user's load, \
hardware profiles, SLO) | `ttc demo` |

A figure needs some of these; where one is missing the figure is left out with a line that says
which file would draw it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from planner.errors import PlannerError
from planner.policy import Policy
from planner.tables import (
    CHOICES,
    CHOICES_FILE,
    PLAN_CURVES,
    PLAN_CURVES_FILE,
    PROBLEMS,
    PROBLEMS_FILE,
    PROFILE_FILE,
    SAMPLES_FILE,
    SELECTION,
    SELECTION_FILE,
    SUMMARY_FILE,
    read_profile,
    read_samples,
    read_table,
)


@dataclass(frozen=True)
class RunTables:
    """Everything `load_run` found; `None` where a table is absent. `found` maps each present
    field to the file it was read from (relative to `root`), for the report's provenance."""

    root: Path
    samples: pd.DataFrame | None = None
    samples_meta: dict[str, Any] = field(default_factory=dict)
    problems: pd.DataFrame | None = None
    profile: pd.DataFrame | None = None
    profile_meta: dict[str, Any] = field(default_factory=dict)
    plan_curves: pd.DataFrame | None = None
    plan_meta: dict[str, Any] = field(default_factory=dict)
    selection: pd.DataFrame | None = None
    choices: pd.DataFrame | None = None
    plan_summary: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    large_profile: pd.DataFrame | None = None
    large_profile_meta: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    found: dict[str, str] = field(default_factory=dict)


# Where each stage's tables may lie: RUN_DIR itself (a stage's own output directory) or the
# stage folder a full run (`ttc demo`) writes.
_STAGE_DIRS = {"samples": "samples", "profile": "profile", "plan": "plan"}
_STAGE_FILE = {"samples": SAMPLES_FILE, "profile": PROFILE_FILE, "plan": PLAN_CURVES_FILE}
POLICY_FILE = "policy.json"
EVALUATION_FILE = "evaluation.json"
CONTEXT_FILE = "report.json"
LARGE_PROFILE = Path("large") / "profile" / PROFILE_FILE


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _stage_dir(root: Path, stage: str) -> Path | None:
    """The directory holding a stage's main table: RUN_DIR itself first, then its stage folder."""
    for d in (root, root / _STAGE_DIRS[stage]):
        if (d / _STAGE_FILE[stage]).is_file():
            return d
    return None


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise PlannerError(f"{path}: not a UTF-8 JSON file ({what})") from None
    except ValueError as exc:
        raise PlannerError(f"{path}: not valid JSON ({what}): {str(exc)[:200]}") from None
    except OSError as exc:
        raise PlannerError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _json_object(path: Path, what: str, needs: tuple[str, ...] = ()) -> dict[str, Any]:
    doc = _read_json(path, what)
    if not isinstance(doc, dict):
        raise PlannerError(f"{path}: expected a JSON object ({what})")
    for key in needs:
        if key not in doc:
            raise PlannerError(f"{path}: field '{key}' is missing ({what})")
    return doc


def _not_vacuous(run: dict[str, Any]) -> None:
    """A report of nothing would pass every check: refuse tables that hold no evidence."""
    if run.get("profile") is not None and run["profile"].empty:
        raise PlannerError(f"{run['found']['profile']}: empty profile (no rows)")
    if run.get("samples") is not None and run["samples"].empty:
        raise PlannerError(f"{run['found']['samples']}: empty samples table (no rows)")
    if run.get("problems") is not None and run["problems"].empty:
        raise PlannerError(f"{run['found']['problems']}: zero problems")
    if run.get("plan_curves") is not None and run["plan_curves"].empty:
        raise PlannerError(f"{run['found']['plan_curves']}: a plan with no budgets")
    summary = run.get("plan_summary")
    if summary is not None and not summary.get("budgets"):
        raise PlannerError(f"{run['found']['plan_summary']}: a plan with no budgets")
    if summary is not None and summary.get("problems") == 0:
        raise PlannerError(f"{run['found']['plan_summary']}: zero problems")


def load_run(path: str | os.PathLike[str]) -> RunTables:
    """Read every table of the run directory `path` (see the module docstring for where each is
    looked for), each validated by the planner's readers.

    Raises PlannerError (naming the file, the column and the row where a table is bad) when the
    directory is missing, holds none of the tables, or holds vacuous ones: an empty profile, a
    plan with no budgets, zero problems.
    """
    root = Path(path)
    if not root.is_dir():
        raise PlannerError(f"{root}: no such run directory")
    got: dict[str, Any] = {"found": {}}

    def note(name: str, file: Path) -> None:
        got["found"][name] = _rel(root, file)

    samples_dir = _stage_dir(root, "samples")
    if samples_dir is not None:
        got["samples"], got["samples_meta"] = read_samples(samples_dir)
        note("samples", samples_dir / SAMPLES_FILE)
    profile_dir = _stage_dir(root, "profile")
    if profile_dir is not None:
        got["profile"], got["profile_meta"] = read_profile(profile_dir)
        note("profile", profile_dir / PROFILE_FILE)
    plan_dir = _stage_dir(root, "plan")
    if plan_dir is not None:
        got["plan_curves"], got["plan_meta"] = read_table(plan_dir / PLAN_CURVES_FILE, PLAN_CURVES)
        note("plan_curves", plan_dir / PLAN_CURVES_FILE)
        for name, file, spec in (
            ("selection", SELECTION_FILE, SELECTION),
            ("choices", CHOICES_FILE, CHOICES),
        ):
            if (plan_dir / file).is_file():
                got[name] = read_table(plan_dir / file, spec)[0]
                note(name, plan_dir / file)
        if (plan_dir / SUMMARY_FILE).is_file():
            got["plan_summary"] = _json_object(
                plan_dir / SUMMARY_FILE, "a plan summary", ("unit", "budgets")
            )
            note("plan_summary", plan_dir / SUMMARY_FILE)
    for d in (plan_dir, profile_dir, samples_dir):  # the plan's bins, else the profile's, ...
        if d is not None and (d / PROBLEMS_FILE).is_file():
            got["problems"] = read_table(d / PROBLEMS_FILE, PROBLEMS)[0]
            note("problems", d / PROBLEMS_FILE)
            break
    if (root / POLICY_FILE).is_file():
        got["policy"] = Policy.load(root / POLICY_FILE).doc
        note("policy", root / POLICY_FILE)
    if (root / EVALUATION_FILE).is_file():
        got["evaluation"] = _json_object(
            root / EVALUATION_FILE, "the JSON of `ttc policy evaluate`", ("budgets",)
        )
        note("evaluation", root / EVALUATION_FILE)
    if (root / LARGE_PROFILE).is_file():
        got["large_profile"], got["large_profile_meta"] = read_profile(root / LARGE_PROFILE)
        note("large_profile", root / LARGE_PROFILE)
    if (root / CONTEXT_FILE).is_file():
        got["context"] = _json_object(root / CONTEXT_FILE, "the run's report settings")
        note("context", root / CONTEXT_FILE)
    tables = set(got["found"]) - {"context"}
    if not tables:
        raise PlannerError(
            f"{root}: no run tables found; looked for {SAMPLES_FILE} (in . or samples/), "
            f"{PROFILE_FILE} (in . or profile/), {PLAN_CURVES_FILE} (in . or plan/), "
            f"{POLICY_FILE}, {EVALUATION_FILE} and {LARGE_PROFILE.as_posix()}"
        )
    _not_vacuous(got)
    found = dict(sorted(got.pop("found").items()))
    return RunTables(root=root, found=found, **got)

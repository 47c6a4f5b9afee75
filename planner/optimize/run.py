"""The optimize stage end to end: from a profile directory to the tables `ttc plan` writes.

`read_plan_inputs` reads the profile and its problems and prepares the bins the plan uses (oracle
pass@1 quantiles, a given level, or predicted bins) and the probes it charges; `plan_tables` makes
the plan and its metadata. The command builds `PlanOptions` between the two (its errors are
option errors) and writes the result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from planner.errors import PlannerError
from planner.estimate import assign_folds, label_bins, quantile_bins
from planner.optimize.options import PlanOptions
from planner.optimize.plan import Plan, make_plan
from planner.tables import (
    PROFILE_FILE,
    file_sha256,
    read_problems,
    read_profile,
    resolve_table_path,
)

# --bin-by -> the problems column that holds the bins.
BIN_BY = {"oracle": "oracle_bin", "level": "level_bin", "predicted": "predicted_bin"}


@dataclass(frozen=True)
class PlanInputs:
    """A profile ready to plan: its rows, its problems with the bins and folds to use, the
    profile's metadata and file, and the probes to charge (k = 0: none)."""

    profile: pd.DataFrame
    problems: pd.DataFrame
    metadata: dict[str, Any]
    source: Path
    bin_column: str
    probe_k: int
    probe_verifier: str | None


def read_plan_inputs(
    profile_dir: str | os.PathLike[str],
    bin_by: str = "oracle",
    n_bins: int | None = None,
    seed: int = 0,
    probe_k: int | None = None,
) -> PlanInputs:
    """Read PROFILE/profile.parquet and the problems beside it, and prepare the bins.

    bin_by "level" bins the problems' level labels; `n_bins` re-cuts oracle pass@1 into that many
    quantile bins; either draws new seeded folds within the new bins. `probe_k` None charges the
    profile's own probes with predicted bins and none otherwise; a k the profile has no probe
    costs for is an error.
    """
    profile, meta = read_profile(profile_dir)
    source = resolve_table_path(profile_dir, PROFILE_FILE)
    found = read_problems(source)
    if found is None:
        raise PlannerError(
            f"{profile_dir}: no problems.parquet beside the profile (run ttc curves to make one)"
        )
    problems = found[0].copy()
    column = BIN_BY[bin_by]
    if bin_by == "level":
        if problems["level"].isna().all():
            raise PlannerError("--bin-by level: the problems table has no level labels")
        problems["level_bin"] = label_bins(problems.set_index("problem_id")["level"]).to_numpy()
    if n_bins is not None:
        if bin_by != "oracle":
            raise PlannerError(
                "--bins re-bins oracle pass@1; it cannot be combined with --bin-by " + bin_by
            )
        problems["oracle_bin"] = quantile_bins(
            problems.set_index("problem_id")["pass1"], n_bins
        ).to_numpy()
    if n_bins is not None or bin_by == "level":
        problems["fold"] = assign_folds(
            problems["problem_id"].tolist(), problems[column].to_numpy(), seed
        )
    probe = meta.get("probe") or {}
    if probe_k is None:
        probe_k = int(probe.get("k", 0)) if bin_by == "predicted" else 0
    if probe_k and probe_k != probe.get("k"):
        raise PlannerError(
            f"--probe-k {probe_k}: the profile's probe costs are for k={probe.get('k')} "
            "(make it with ttc curves --probe-k)"
        )
    return PlanInputs(profile, problems, meta, source, column, probe_k, probe.get("verifier"))


@dataclass(frozen=True)
class PlanTables:
    """A plan with what is written beside it: the problems it used (as the problems table) and
    the metadata; `summary` is the plan's summary with that metadata."""

    plan: Plan
    problems: pd.DataFrame
    metadata: dict[str, Any]
    summary: dict[str, Any]


def plan_tables(inputs: PlanInputs, opts: PlanOptions) -> PlanTables:
    """Make the plan; its metadata is the profile's, with the profile file's sha256."""
    plan = make_plan(inputs.profile, inputs.problems, opts)
    meta = {k: v for k, v in inputs.metadata.items() if k not in ("table", "schema_version")}
    meta["source_profile_sha256"] = file_sha256(inputs.source)
    problems = inputs.problems.drop(columns=[c for c in ("level_bin",) if c in inputs.problems])
    return PlanTables(plan, problems, meta, {**plan.summary, "metadata": meta})

"""A profile joined to its problems' difficulty bins: the per-bin option table.

`load_binned_profile` turns a profile directory into the table of options per bin (accuracy with
its standard error and mean costs) that the allocation, the exchange and the what-if analyses
share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.estimate import label_bins
from planner.tables import parse_config, read_problems, read_profile

OPTION_KEY = ("strategy", "config", "budget")
BIN_COLUMNS = {"oracle": "oracle_bin", "predicted": "predicted_bin", "level": "level"}


@dataclass(frozen=True)
class BinnedProfile:
    """A profile joined to its problems' difficulty bins.

    rows: profile rows (deployable options only) with a `bin` column.
    options: one row per bin × option: acc, acc_se, flops, tokens, prompt_tokens, wall_s (bin means
        over problems), n (problems).
    weights: share of problems per bin (sums to 1).
    """

    rows: pd.DataFrame
    options: pd.DataFrame
    weights: dict[int, float]
    bin_column: str
    source: str
    metadata: dict[str, Any]
    folds: dict[str, int]

    @property
    def bins(self) -> list[int]:
        return sorted(self.weights)


def _select(config: str) -> str:
    try:
        return str(parse_config(config).get("select", ""))
    except (ValueError, PlannerError):
        return ""


def bin_options(
    profile: pd.DataFrame,
    problems: pd.DataFrame,
    bins: str = "oracle",
    source: str = "profile",
    metadata: dict[str, Any] | None = None,
) -> BinnedProfile:
    """Join the profile to the problems' bins and average every option within each bin.

    `select=coverage` rows (pass@k, an upper bound) are dropped: no deployable option reaches them.
    The bin accuracy's standard error combines the spread over problems and the Monte Carlo error:
    se = sqrt(var(acc)/n + mean(accuracy_se²)/n).
    """
    if bins not in BIN_COLUMNS:
        raise PlannerError(f"unknown bins {bins!r}; choose one of {', '.join(BIN_COLUMNS)}")
    col = BIN_COLUMNS[bins]
    probs = problems[["problem_id", "fold", col]].dropna(subset=[col])
    if bins == "level" and not probs.empty:
        probs = probs.assign(level=label_bins(probs["level"]).to_numpy())
    if probs.empty:
        raise PlannerError(
            f"{source}: problems table has no {col} values (run the difficulty step first)"
        )
    df = profile[profile["config"].map(_select) != "coverage"]
    df = df.merge(probs.rename(columns={col: "bin"}), on="problem_id", how="inner")
    if df.empty:
        raise PlannerError(f"{source}: no profile rows match a binned problem")
    df["bin"] = df["bin"].astype(int)
    df = df.sort_values(["bin", *OPTION_KEY, "problem_id"], kind="mergesort").reset_index(drop=True)
    g = df.groupby(["bin", *OPTION_KEY], sort=True)
    opts = g.agg(
        acc=("accuracy", "mean"),
        acc_sd=("accuracy", "std"),
        mc_var=("accuracy_se", lambda s: float(np.mean(np.square(s)))),
        flops=("flops", "mean"),
        tokens=("tokens", "mean"),
        prompt_tokens=("prompt_tokens", "mean"),
        wall_s=("wall_s", "mean"),
        n=("problem_id", "nunique"),
    ).reset_index()
    opts["acc_se"] = np.sqrt(
        opts["acc_sd"].fillna(0.0) ** 2 / opts["n"] + opts["mc_var"] / opts["n"]
    )
    opts = opts.drop(columns=["acc_sd", "mc_var"])
    counts = df.groupby("bin")["problem_id"].nunique()
    weights = {int(b): float(c) / float(counts.sum()) for b, c in counts.items()}
    folds = dict(zip(probs["problem_id"], probs["fold"].astype(int), strict=True))
    return BinnedProfile(df, opts, weights, col, source, dict(metadata or {}), folds)


def load_binned_profile(path: str | os.PathLike[str], bins: str = "oracle") -> BinnedProfile:
    """Read PROFILE/profile.parquet and PROFILE/problems.parquet and bin the options."""
    profile, meta = read_profile(path)
    probs = read_problems(path)
    if probs is None:
        raise PlannerError(
            f"{path}: problems.parquet not found beside the profile (needed for difficulty bins)"
        )
    return bin_options(profile, probs[0], bins, str(path), meta)


def require_bins(bp: BinnedProfile, needed: list[int]) -> None:
    """Raise when the profile lacks a bin the caller needs."""
    missing = [b for b in needed if b not in bp.weights]
    if missing:
        raise PlannerError(
            f"{bp.source}: profile has no problems in {bp.bin_column} "
            f"{', '.join(map(str, missing))} (it has {', '.join(map(str, bp.bins))})"
        )

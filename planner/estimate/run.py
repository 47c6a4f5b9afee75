"""The estimate stage end to end: the tables `ttc samples import` and `ttc curves` write.

`import_samples`: a JSONL dump -> samples and problems (pass@1, oracle bins, folds).
`profile_samples`: a samples directory -> profile (every option at every budget) and problems,
with probe features and cross-fitted predicted bins when probes are asked for.
Each returns the tables and their metadata; the command writes them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from planner.estimate.curves import profile_from_samples
from planner.estimate.difficulty import add_predicted_bins, build_problems
from planner.estimate.pools import CurveOptions
from planner.estimate.probes import probe_cost, probe_verifiers
from planner.features import PREDICTOR_MODELS
from planner.tables import ImportOptions, import_jsonl, read_problems, read_samples


@dataclass(frozen=True)
class SamplesTables:
    """An imported dump: the samples table, its problems table and their metadata."""

    samples: pd.DataFrame
    problems: pd.DataFrame
    metadata: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {
            "problems": self.metadata["n_problems"],
            "samples": self.metadata["n_samples"],
            "pool_sizes": self.metadata["pool_sizes"],
            "source_sha256": self.metadata["source_sha256"],
            "mean_pass1": float(self.problems["pass1"].mean()),
        }


def import_samples(
    path: str | Path, opts: ImportOptions, n_bins: int = 5, seed: int = 0
) -> SamplesTables:
    """Read a JSONL dump into the samples table and bin its problems (`n_bins` oracle bins,
    seeded folds)."""
    samples, levels, meta = import_jsonl(path, opts)
    problems = build_problems(samples, n_bins=n_bins, seed=seed, levels=levels)
    return SamplesTables(samples, problems, {**meta, "seed": seed, "bins": n_bins})


@dataclass(frozen=True)
class ProbeOptions:
    """Probes for predicted difficulty (`ttc curves --probe-k`).

    k: probe samples per problem; verifier: the one that scores them (None = the first verifier
    of the probe pool); predictor: the predictor's model; features: the probe features to use
    (None = all of `planner.features.FEATURES`).
    """

    k: int
    verifier: str | None = None
    predictor: str = "ordinal"
    features: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"probe k must be >= 1, got {self.k}")
        if self.predictor not in PREDICTOR_MODELS:
            raise ValueError(f"predictor must be one of {PREDICTOR_MODELS}, got {self.predictor!r}")


@dataclass(frozen=True)
class ProfileTables:
    """A profile: its table, the problems table beside it and their metadata."""

    profile: pd.DataFrame
    problems: pd.DataFrame
    metadata: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        p = self.profile
        return {
            "rows": len(p),
            "problems": int(p["problem_id"].nunique()),
            "options": int(p.groupby(["strategy", "config"]).ngroups),
            "budgets": sorted(float(b) for b in p["budget"].unique()),
        }


def profile_samples(
    samples_dir: str | os.PathLike[str], opts: CurveOptions, probe: ProbeOptions | None = None
) -> ProfileTables:
    """The profile of the samples in `samples_dir`, and its problems table.

    The problems table is the one beside the samples (or built from them, seeded by
    `opts.seed`); with `probe`, it gains the probe features, a cross-fitted `predicted_bin` and
    the probes' cost (`probe_flops`, `probe_tokens`), and the metadata records the probe settings.
    """
    samples, meta = read_samples(samples_dir)
    found = read_problems(samples_dir)
    problems = found[0] if found is not None else build_problems(samples, seed=opts.seed)
    profile = profile_from_samples(samples, opts)
    if probe is not None:
        verifier = probe.verifier or (probe_verifiers(samples) or [None])[0]
        names = None if probe.features is None else list(probe.features)
        problems = add_predicted_bins(
            problems,
            samples,
            probe.k,
            verifier,
            model=probe.predictor,
            seed=opts.seed,
            features=names,
        )
        problems = problems.drop(
            columns=[c for c in ("probe_flops", "probe_tokens") if c in problems]
        )
        problems = problems.merge(
            probe_cost(samples, probe.k, verifier), on="problem_id", how="left"
        )
        meta = {
            **meta,
            "probe": {
                "k": probe.k,
                "verifier": verifier,
                "predictor": probe.predictor,
                "seed": opts.seed,
            },
        }
    budgets = None if opts.budgets is None else list(opts.budgets)
    meta = {
        **meta,
        "curves": {
            "mc_samples": opts.mc_samples,
            "seed": opts.seed,
            "aggs": list(opts.aggs),
            "budgets": budgets,
        },
    }
    return ProfileTables(profile, problems, meta)

"""The plan's grid: a profile as dense arrays over problems x options, with costs and baselines.

`build_grid` checks a profile against its problems table, keeps the options measured on every
problem, prices them in the plan's unit (probes charged when asked: `planner.optimize.charge`),
orders them so that ties go to the cheaper option, and marks the deployable options and the
baseline methods (coverage, majority, best-of-N and weighted best-of-N of the independent-sample
pool). It is separate from `planner.optimize.plan` because every later step (the cross-fit, the
promise, the rows of `planner.optimize.rows`) reads this one structure and none of them changes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.optimize.charge import ProbeCharge, charge_probes
from planner.optimize.options import PlanOptions
from planner.strategies import DEPLOYABLE_SELECTS
from planner.tables import parse_config


def _options(profile: pd.DataFrame) -> pd.DataFrame:
    opts = profile[["strategy", "config", "budget"]].drop_duplicates().reset_index(drop=True)
    cfgs = opts["config"].map(parse_config)
    opts["select"] = cfgs.map(lambda c: c.get("select", "weighted"))
    opts["verifier"] = cfgs.map(lambda c: c.get("verifier", "none"))
    opts["agg"] = cfgs.map(lambda c: c.get("agg", "none"))
    return opts


def _baseline_methods(
    opts: pd.DataFrame, verifier: str | None
) -> tuple[dict[str, np.ndarray], str | None]:
    """Masks over options for each baseline method, and the verifier of the reference curve."""
    pool = opts["strategy"] == "sample"
    methods: dict[str, np.ndarray] = {
        "coverage": (pool & (opts["select"] == "coverage")).to_numpy(),
        "majority": (pool & (opts["select"] == "majority")).to_numpy(),
    }
    verifiers = sorted(v for v in opts.loc[pool, "verifier"].unique() if v != "none")
    if verifier is not None:
        if verifier not in verifiers:
            raise PlannerError(
                f"verifier {verifier!r} not in the profile (known: "
                f"{', '.join(verifiers) or 'none'})"
            )
        verifiers = [verifier]
    for v in verifiers:
        for sel in ("best", "weighted"):
            mask = (
                pool & (opts["select"] == sel) & (opts["verifier"] == v) & (opts["agg"] == "last")
            )
            methods[f"{sel}[{v}]"] = mask.to_numpy()
    return methods, (verifiers[0] if verifiers else None)


@dataclass(frozen=True)
class Grid:
    """The profile as dense arrays over problems (sorted ids) x complete options, the options
    ordered by (cost, strategy, config) so that ties go to the cheaper option."""

    pids: list[str]
    bin_labels: list[int]
    bins: np.ndarray  # [problems] bin index 0..B-1
    folds: np.ndarray  # [problems] two-fold label
    options: pd.DataFrame  # strategy, config, budget, select, verifier, agg
    acc: np.ndarray  # [problems, options]
    flops: np.ndarray  # [problems, options]
    tokens: np.ndarray  # [problems, options]
    gen_cost: np.ndarray  # [options] generations
    flop_cost: np.ndarray  # [options] mean FLOPs
    cost: np.ndarray  # [options] in the plan's unit, probes included when charged
    charged: ProbeCharge | None
    deployable: np.ndarray  # [options]
    methods: dict[str, np.ndarray]  # baseline name -> mask over options
    ref_verifier: str | None
    dropped: int  # options not measured on every problem
    # Per strategy of the dropped options: how many, and on how many problems the most measured
    # of them was (an adaptive profile stops options that cannot win after a first slice).
    dropped_by_strategy: dict[str, dict[str, int]] | None = None


def build_grid(profile: pd.DataFrame, problems: pd.DataFrame, opts: PlanOptions) -> Grid:
    """The grid of a profile over the problems of `problems` (bins and folds), priced per `opts`."""
    if opts.bin_column not in problems.columns:
        raise PlannerError(f"problems table has no column '{opts.bin_column}'")
    prob = problems.set_index("problem_id")
    pids = sorted(set(profile["problem_id"]))
    missing = [p for p in pids if p not in prob.index]
    if missing:
        raise PlannerError(f"problem {missing[0]!r} of the profile is not in the problems table")
    bins_raw = prob.loc[pids, opts.bin_column]
    if bins_raw.isna().any():
        raise PlannerError(
            f"problems table: column '{opts.bin_column}' is empty for problem "
            f"{bins_raw.index[bins_raw.isna()][0]!r}"
        )
    bin_labels = sorted(int(b) for b in bins_raw.unique())
    bin_index = {b: i for i, b in enumerate(bin_labels)}
    bins = np.array([bin_index[int(b)] for b in bins_raw], dtype=np.int64)
    folds = prob.loc[pids, "fold"].to_numpy(np.int64) % 2

    options = _options(profile)
    key = pd.MultiIndex.from_frame(options[["strategy", "config", "budget"]])
    prow = pd.Index(pids).get_indexer(profile["problem_id"])
    ocol = key.get_indexer(pd.MultiIndex.from_frame(profile[["strategy", "config", "budget"]]))
    acc = np.full((len(pids), len(options)), np.nan)
    acc[prow, ocol] = profile["accuracy"].to_numpy(float)
    flops = np.full_like(acc, np.nan)
    flops[prow, ocol] = profile["flops"].to_numpy(float)
    tokens = np.full_like(acc, np.nan)
    tokens[prow, ocol] = profile["tokens"].to_numpy(float)

    complete = ~np.isnan(acc).any(axis=0)
    measured = (~np.isnan(acc)).sum(axis=0)
    dropped_by: dict[str, dict[str, int]] = {}
    for j in np.flatnonzero(~complete):
        entry = dropped_by.setdefault(str(options.at[j, "strategy"]), {"options": 0, "problems": 0})
        entry["options"] += 1
        entry["problems"] = max(entry["problems"], int(measured[j]))
    options = options[complete].reset_index(drop=True)
    acc, flops, tokens = acc[:, complete], flops[:, complete], tokens[:, complete]
    if options.empty:
        raise PlannerError("no strategy config was measured on every problem of the profile")
    gen_cost = options["budget"].to_numpy(float)
    flop_cost = flops.mean(axis=0)
    if opts.unit == "flops" and not (flop_cost > 0).all():
        raise PlannerError(
            "the profile records no FLOPs (e.g. an imported dump): plan with --unit generations"
        )
    cost = gen_cost if opts.unit == "generations" else flop_cost
    charged = None
    if opts.probe_k:
        charged = charge_probes(
            options,
            flops,
            tokens,
            prob.loc[pids],
            opts.probe_k,
            opts.probe_verifier,
            opts.probe_reuse,
        )
        cost = charged.generations if opts.unit == "generations" else charged.flops.mean(axis=0)

    # Prefer the cheaper option on equal accuracy, then a fixed order by name.
    order = np.lexsort((options["config"].to_numpy(), options["strategy"].to_numpy(), cost))
    options = options.iloc[order].reset_index(drop=True)
    methods, ref_verifier = _baseline_methods(options, opts.verifier)
    return Grid(
        pids=pids,
        bin_labels=bin_labels,
        bins=bins,
        folds=folds,
        options=options,
        acc=acc[:, order],
        flops=flops[:, order],
        tokens=tokens[:, order],
        gen_cost=gen_cost[order],
        flop_cost=flop_cost[order],
        cost=cost[order],
        charged=None if charged is None else charged.reorder(order),
        deployable=options["select"].isin(DEPLOYABLE_SELECTS).to_numpy(),
        methods=methods,
        ref_verifier=ref_verifier,
        dropped=int((~complete).sum()),
        dropped_by_strategy=dict(sorted(dropped_by.items())),
    )

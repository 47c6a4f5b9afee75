"""Adaptive profiling: profile every strategy config on a first slice of problems, then spend the
rest only on the configs that can still win somewhere.

A run config's `[adaptive]` table (or `ttc profile --adaptive-first N ...`) turns it on. The
problems are profiled in rounds: the first `first` problems by every strategy config, then each
round `growth` times the problems done so far, by the configs still in the race. Between rounds
the samples so far are read into a profile (`planner.estimate.profile_from_samples`), the
problems are cut into `bins` pass@1 quantile bins, and a config stays only if one of its options
can still win in some bin or over all problems at its own cost
(`planner.optimize.contenders`: its upper confidence bound reaches the best lower bound of the
options that cost no more). A config that stops keeps the rows of the problems it was run on;
the run's metadata (`adaptive`) records, for each stopped config, after how many problems and
why, so the planner can say which options it leaves out (it compares options only on the
problems all of them were profiled on). Round boundaries are whole checkpoint shards, and every
decision is recomputed from the checkpoints, so an interrupted run resumes to the same result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from planner.errors import PlannerError
from planner.tables import parse_config


@dataclass(frozen=True)
class AdaptiveSpec:
    """[adaptive]: successive elimination of strategy configs between rounds of problems."""

    first: int = field(
        default=0,
        metadata={
            "flag": "--adaptive-first",
            "help": "Adaptive profiling: every strategy config runs on this many problems first, "
            "then only the configs with an option that can still win (0 = off).",
        },
    )
    growth: float = field(
        default=2.0,
        metadata={
            "flag": "--adaptive-growth",
            "help": "Adaptive profiling: each round runs on this many times the problems done.",
        },
    )
    z: float = field(
        default=2.0,
        metadata={
            "flag": "--adaptive-z",
            "help": "Adaptive profiling: confidence bounds in standard errors; a config stops "
            "when no option of it can reach a no-dearer option's lower bound in any bin.",
        },
    )
    bins: int = field(
        default=3,
        metadata={
            "flag": "--adaptive-bins",
            "help": "Adaptive profiling: pass@1 quantile bins in which an option may win.",
        },
    )
    mc_samples: int = field(
        default=64,
        metadata={
            "flag": "--adaptive-mc-samples",
            "help": "Adaptive profiling: Monte Carlo subsets of the votes read between rounds.",
        },
    )

    def __post_init__(self) -> None:
        if self.first < 0:
            raise ValueError(f"adaptive first must be >= 0, got {self.first}")
        if self.growth <= 1:
            raise ValueError(f"adaptive growth must be > 1, got {self.growth}")
        if self.z < 0:
            raise ValueError(f"adaptive z must be >= 0, got {self.z}")
        if self.bins < 1:
            raise ValueError(f"adaptive bins must be >= 1, got {self.bins}")
        if self.mc_samples < 1:
            raise ValueError(f"adaptive mc_samples must be >= 1, got {self.mc_samples}")

    @property
    def on(self) -> bool:
        return self.first > 0


def round_ends(n_problems: int, spec: AdaptiveSpec, shard_size: int) -> list[int]:
    """The problem counts at which each round ends (whole shards; the last is every problem)."""
    if not spec.on:
        return [n_problems]
    ends: list[int] = []
    done = 0
    target = float(spec.first)
    while done < n_problems:
        end = min(n_problems, math.ceil(target / shard_size) * shard_size)
        end = max(end, done + shard_size) if end <= done else end
        end = min(end, n_problems)
        ends.append(end)
        done = end
        target = done * spec.growth
    return ends


def _unit_options(profile: pd.DataFrame, strategy: str, config: str) -> pd.Series:
    """Mask of the profile's options that a samples (strategy, config) produced: the same
    strategy, and a config holding every key of the samples' config."""
    base = parse_config(config).items()
    own = profile["strategy"] == strategy
    return own & profile["config"].map(lambda c: base <= parse_config(c).items())


def still_in_race(
    samples: pd.DataFrame, units: dict[str, tuple[str, str]], spec: AdaptiveSpec, seed: int
) -> dict[str, str]:
    """For each unit key (a strategy config), where one of its options can still win ("all",
    "bin B"), or "" when none can. units: key -> the (strategy, config) of its sample rows.

    Only the problems every unit in `units` was run on are read, so options are compared on one
    set of problems.
    """
    from planner.estimate import CurveOptions, profile_from_samples
    from planner.estimate.difficulty import build_problems
    from planner.optimize.contenders import contenders

    pairs = pd.MultiIndex.from_tuples(list(units.values()))
    rows = samples[pd.MultiIndex.from_frame(samples[["strategy", "config"]]).isin(pairs)]
    per = rows.groupby(["strategy", "config"])["problem_id"].agg(lambda s: set(s))
    common = set.intersection(*per.tolist()) if len(per) else set()
    if not common:
        raise PlannerError("adaptive profiling: no problem was run by every strategy config")
    rows = rows[rows["problem_id"].isin(common)]
    profile = profile_from_samples(rows, CurveOptions(mc_samples=spec.mc_samples, seed=seed))
    problems = build_problems(rows, n_bins=spec.bins, seed=seed)
    found = contenders(profile, problems, spec.z)
    out = {}
    for key, (strategy, config) in units.items():
        mine = found[_unit_options(found, strategy, config)]
        wins = mine[mine["can_win"]]
        out[key] = (
            "" if wins.empty else f"{wins.iloc[0]['where']} at budget {wins.iloc[0]['budget']:g}"
        )
    return out


def adaptive_metadata(
    spec: AdaptiveSpec, ends: Sequence[int], stopped: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """What the run's metadata records of adaptive profiling."""
    return {
        "first": spec.first,
        "growth": spec.growth,
        "z": spec.z,
        "bins": spec.bins,
        "rounds": list(ends),
        "stopped": stopped,
    }


class _Unit(Protocol):
    """What the rounds read of a sweep unit (`profiling.sweep.units.Unit`)."""

    @property
    def name(self) -> str: ...

    shard: int
    problems: tuple[Any, ...]
    strategy: Any


@dataclass
class Rounds:
    """The outcome of running a sweep in rounds: the units that ran (or were resumed), in the
    sweep's order, and for each stopped strategy config (by key) when and why it stopped."""

    units: list[Any]
    ends: list[int]
    stopped: dict[str, dict[str, Any]]


def run_rounds(
    units: Sequence[_Unit],
    spec: AdaptiveSpec,
    shard_size: int,
    seed: int,
    is_done: Callable[[_Unit], bool],
    run: Callable[[list[_Unit]], None],
    read: Callable[[_Unit], pd.DataFrame],
) -> Rounds:
    """Run `units` in rounds of problems, dropping the strategy configs that can no longer win.

    is_done: whether a unit's checkpoint is on disk; run: runs units (writing checkpoints);
    read: a finished unit's sample rows. Decisions read only checkpoints, so a resumed run takes
    the same ones.
    """
    n_shards = max((u.shard for u in units), default=-1) + 1
    first_key = units[0].strategy.key if units else None
    n_problems = sum(len(u.problems) for u in units if u.strategy.key == first_key)
    ends = round_ends(n_problems, spec, shard_size)
    stopped: dict[str, dict[str, Any]] = {}
    ran: list[Any] = []
    cache: dict[str, pd.DataFrame] = {}
    start = 0
    for r, end in enumerate(ends):
        lo, hi = start // shard_size, min(math.ceil(end / shard_size), n_shards)
        todo = [u for u in units if lo <= u.shard < hi and u.strategy.key not in stopped]
        run([u for u in todo if not is_done(u)])
        ran += todo
        start = end
        if r == len(ends) - 1:
            break
        for u in ran:
            if u.name not in cache:
                cache[u.name] = read(u)
        # Each strategy config's (strategy, config) as its sample rows spell it.
        pairs: dict[str, tuple[str, str]] = {}
        for u in ran:
            own = cache[u.name]
            if u.strategy.key not in stopped and u.strategy.key not in pairs and len(own):
                pairs[u.strategy.key] = (str(own["strategy"].iloc[0]), str(own["config"].iloc[0]))
        rows = pd.concat([cache[u.name] for u in ran], ignore_index=True)
        for k, where in still_in_race(rows, pairs, spec, seed).items():
            if not where:
                stopped[k] = {"after_problems": end, "round": r + 1}
    order = {id(u): i for i, u in enumerate(units)}
    return Rounds(sorted(ran, key=lambda u: order[id(u)]), ends, stopped)

"""Run configuration of `ttc profile`: a TOML file (or the same as flags) as frozen dataclasses.

Each key is declared once, as a dataclass field whose metadata holds its help text and its
`ttc profile` flag (`profiling.sweep.flags` turns them into options); the TOML keys each table
accepts are its dataclass's fields.

Format (every key optional unless marked; see data/configs/*.toml)::

    seed = 0                 # run seed; per-problem seeds derive from it (units.unit_seed)
    shard_size = 8           # problems per checkpoint shard
    timing = true            # record wall_s; false writes NaN so tables are byte-identical
    testbed = "quick"        # quick | default | paper | a directory: resolves "testbed:<m>" paths
    executor = "local"       # local | pool | ray
    workers = 2              # pool or ray workers
    address = ""             # ray cluster address ("" = start a local cluster)
    threads = 1              # torch CPU threads per worker (small models run fastest on one)

    [data]                   # see profiling.sweep.datasets.DataSpec
    source = "testbed"       # testbed | math500 | math | gsm8k | jsonl
    n = 200

    [model]                  # the policy (required)
    path = "testbed:policy"
    device = "cpu"
    dtype = "float32"

    [reviser]                # the revision model (needed by the revisions strategy)
    path = "testbed:reviser"

    [[verifiers]]            # zero or more scorers; each pool is scored by every one
    kind = "prm"             # prm | likelihood | self
    path = "testbed:prm"

    [[strategies]]           # one or more; a list value sweeps that key (a grid over all lists)
    name = "beam"
    n = [4, 16]
    m = 4

    [adaptive]               # optional: see profiling.sweep.adaptive
    first = 32               # every config on the first 32 problems, then only those that can win

Unknown sections, keys or strategies raise `PlannerError` naming the file and listing what is known
(a strategy's keys are its config class's fields, `profiling.strategies.STRATEGIES`).
"""

from __future__ import annotations

import itertools
import json
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from planner.errors import PlannerError
from planner.strategies import CHAINS, SEARCH
from profiling.sweep.adaptive import AdaptiveSpec
from profiling.sweep.datasets import DataSpec
from profiling.sweep.specs import (  # noqa: F401 (the run config's tables, re-exported)
    BACKENDS,
    DTYPES,
    VERIFIER_KINDS,
    ModelConfig,
    VerifierSpec,
    _doc,
)

EXECUTORS = ("local", "pool", "ray")
# Keys the sweep sets itself (never the user): per-problem seeds and the data set's grader.
SWEEP_KEYS = ("seed", "grader")


@dataclass(frozen=True)
class StrategySpec:
    """One strategy at one point of its grid: `params` is a sorted tuple of (key, value)."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def key(self) -> str:
        return f"{self.name}:{json.dumps(self.config, sort_keys=True, separators=(',', ':'))}"


@dataclass(frozen=True)
class RunConfig:
    """A whole run. [model] and [data] are tables whose keys each have a flag of their own."""

    model: ModelConfig = field(metadata=_doc("The policy ([model])."))
    strategies: tuple[StrategySpec, ...] = field(
        metadata={
            "flag": "--strategy",
            "help": "NAME[:k=v,...]; v1|v2 sweeps a key. Repeatable; replaces "
            "the config's strategies.",
        }
    )
    data: DataSpec = field(default_factory=DataSpec, metadata=_doc("The problems ([data])."))
    verifiers: tuple[VerifierSpec, ...] = field(
        default=(),
        metadata={
            "flag": "--verifier",
            "help": "KIND[:k=v,...] with KIND prm|likelihood|self (e.g. prm:path=DIR); keys as in "
            "[[verifiers]]. Repeatable; replaces the config's verifiers.",
        },
    )
    reviser: ModelConfig | None = field(
        default=None,
        metadata={
            "flag": "--reviser",
            "key": "path",
            "help": "Reviser model directory (for the revisions strategy).",
        },
    )
    seed: int = field(
        default=0,
        metadata={"flag": "--seed", "help": "Run seed (per-problem seeds derive from it)."},
    )
    shard_size: int = field(
        default=8, metadata={"flag": "--shard-size", "help": "Problems per checkpoint shard."}
    )
    timing: bool = field(
        default=True,
        metadata={"flag": "--timing", "help": "Record wall seconds (off: byte-identical tables)."},
    )
    testbed: str | None = field(
        default=None,
        metadata={
            "flag": "--testbed",
            "help": "quick | default | paper | DIR: resolves testbed:<name> paths.",
        },
    )
    executor: str = field(
        default="local",
        metadata={"flag": "--executor", "choices": EXECUTORS, "help": "Where units run."},
    )
    workers: int = field(
        default=2,
        metadata={"flag": "--workers", "help": "Pool or Ray workers (each loads the models once)."},
    )
    address: str | None = field(
        default=None,
        metadata={
            "flag": "--address",
            "help": "Ray cluster address (default: start a local cluster).",
        },
    )
    threads: int = field(
        default=1,
        metadata={"flag": "--threads", "help": "torch CPU threads per worker (default 1)."},
    )
    adaptive: AdaptiveSpec = field(
        default_factory=AdaptiveSpec,
        metadata=_doc("Adaptive profiling ([adaptive]; off unless first > 0)."),
    )

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if not self.strategies:
            raise ValueError("a run needs at least one strategy")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.executor not in EXECUTORS:
            raise ValueError(
                f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}"
            )
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        from profiling.strategies import STRATEGIES  # loads torch: only when a config is built

        keys = [s.key for s in self.strategies]
        dup = next((k for k in keys if keys.count(k) > 1), None)
        if dup:
            raise ValueError(f"strategy config listed twice: {dup}")
        unknown = sorted({s.name for s in self.strategies} - set(STRATEGIES))
        if unknown:
            raise ValueError(
                f"unknown strategy {unknown[0]!r} (known: {', '.join(sorted(STRATEGIES))})"
            )
        # chains are sampled by the reviser model
        if self.reviser is None and any(STRATEGIES[s.name].kind == CHAINS for s in self.strategies):
            raise ValueError("the revisions strategy needs a [reviser] model")
        ids = [v.name or "" for v in self.verifiers if v.name]
        if len(set(ids)) != len(ids):
            raise ValueError(f"verifier names must be unique, got {ids}")

    def fingerprint(self) -> dict[str, Any]:
        """What decides the samples (not how they are executed): checkpoints must match it."""
        d = asdict(self)
        for k in ("executor", "workers", "address", "shard_size", "threads"):
            d.pop(k)
        d["strategies"] = [s.key for s in self.strategies]
        if not self.adaptive.on:
            # Runs made before adaptive profiling existed keep their fingerprint (and resume).
            d.pop("adaptive")
        # where a server runs and how hard it is driven do not change what it samples, so a run
        # resumes against a restarted server on another port
        for table in (d["model"], d["reviser"], *d["verifiers"]):
            for k in _EXECUTION_MODEL_KEYS:
                (table or {}).pop(k, None)
        return d


_EXECUTION_MODEL_KEYS = ("base_url", "max_concurrency", "request_timeout")


# The top-level keys of a run config: RunConfig's fields; all but these tables are scalars.
TOP_KEYS = tuple(f.name for f in fields(RunConfig))
TABLES = ("model", "reviser", "data", "verifiers", "strategies", "adaptive")


# ----------------------------------------------------------------------------------------------
# Strategies: the keys each accepts are its config class's fields (one source of truth).


def strategy_keys() -> dict[str, tuple[str, ...]]:
    """Known strategy names and the config keys a run config may set for each."""
    from profiling.strategies import STRATEGIES

    return {
        name: tuple(k for k in s.keys if k not in SWEEP_KEYS)
        for name, s in sorted(STRATEGIES.items())
    }


def check_strategy(spec: StrategySpec, n_verifiers: int) -> None:
    """Build the strategy's config once, so a bad value fails before any model loads; and the
    check a strategy makes at call time (a search needs a verifier to guide it)."""
    from profiling.strategies import STRATEGIES

    entry = STRATEGIES[spec.name]
    entry.config(**{**spec.config, "seed": 0})
    if entry.kind == SEARCH and n_verifiers == 0:
        raise ValueError(f"{spec.name} needs a verifier to guide the search (add [[verifiers]])")


def expand_strategy(name: str, raw: Mapping[str, Any], where: str) -> list[StrategySpec]:
    """The grid of one [[strategies]] table: list values are swept, scalars are fixed."""
    known = strategy_keys()
    if name not in known:
        raise PlannerError(
            f"{where}: unknown strategy {name!r} (known: {', '.join(sorted(known))})"
        )
    allowed = known[name]
    for k in raw:
        if k not in allowed:
            raise PlannerError(
                f"{where}: unknown key {k!r} for strategy {name!r} "
                f"(known: {', '.join(sorted(allowed))})"
            )
    axes = []
    for k in sorted(raw):
        v = raw[k]
        values = list(v) if isinstance(v, list) else [v]
        if not values:
            raise PlannerError(f"{where}: key {k!r} of strategy {name!r} has an empty list")
        for x in values:
            if isinstance(x, dict | list):
                raise PlannerError(
                    f"{where}: key {k!r} of strategy {name!r}: values must be "
                    f"numbers, strings or booleans, got {x!r}"
                )
        axes.append([(k, x) for x in values])
    return [StrategySpec(name, tuple(combo)) for combo in itertools.product(*axes)]


# ----------------------------------------------------------------------------------------------
# Parsing


def _known(cls: type) -> list[str]:
    return [f.name for f in fields(cls) if f.init]


def _build(cls: type, raw: Mapping[str, Any], section: str, where: str) -> Any:
    if not isinstance(raw, Mapping):
        raise PlannerError(f"{where}: [{section}] must be a table, got {type(raw).__name__}")
    allowed = _known(cls)
    kwargs = {}
    for k, v in raw.items():
        if k not in allowed:
            raise PlannerError(
                f"{where}: unknown key {k!r} in [{section}] (known: {', '.join(sorted(allowed))})"
            )
        kwargs[k] = tuple(v) if isinstance(v, list) else v
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise PlannerError(f"{where}: [{section}]: {exc}") from None


def config_from_dict(raw: Mapping[str, Any], where: str = "<config>") -> RunConfig:
    """Build a RunConfig from a parsed TOML document; errors name `where` and the bad key."""
    for k in raw:
        if k not in TOP_KEYS:
            raise PlannerError(f"{where}: unknown key {k!r} (known: {', '.join(sorted(TOP_KEYS))})")
    if "model" not in raw:
        raise PlannerError(f'{where}: missing [model] section (the policy: path = "DIR")')
    model = _build(ModelConfig, raw["model"], "model", where)
    reviser = _build(ModelConfig, raw["reviser"], "reviser", where) if "reviser" in raw else None
    data = _build(DataSpec, raw.get("data", {}), "data", where)
    adaptive = _build(AdaptiveSpec, raw.get("adaptive", {}), "adaptive", where)
    vraw = raw.get("verifiers", [])
    if not isinstance(vraw, list):
        raise PlannerError(f"{where}: verifiers must be an array of tables ([[verifiers]])")
    verifiers = tuple(
        _build(VerifierSpec, v, f"verifiers #{i + 1}", where) for i, v in enumerate(vraw)
    )
    sraw = raw.get("strategies", [])
    if not isinstance(sraw, list) or not sraw:
        raise PlannerError(f"{where}: no strategies (add [[strategies]] tables with a name)")
    strategies: list[StrategySpec] = []
    for i, s in enumerate(sraw):
        if not isinstance(s, Mapping) or "name" not in s:
            raise PlannerError(
                f"{where}: strategies #{i + 1} has no name "
                f"(known: {', '.join(sorted(strategy_keys()))})"
            )
        params = {k: v for k, v in s.items() if k != "name"}
        strategies += expand_strategy(str(s["name"]), params, f"{where}: strategies #{i + 1}")
    top = {k: raw[k] for k in TOP_KEYS if k in raw and k not in TABLES}
    if top.get("address") == "":
        top["address"] = None
    try:
        return RunConfig(
            model=model,
            strategies=tuple(strategies),
            data=data,
            verifiers=verifiers,
            reviser=reviser,
            adaptive=adaptive,
            **top,
        )
    except (TypeError, ValueError) as exc:
        raise PlannerError(f"{where}: {exc}") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """The run.toml as a dict; a syntax error names the file, line and column."""
    p = Path(path)
    if not p.is_file():
        raise PlannerError(f"{p}: run config not found")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PlannerError(f"{p}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise PlannerError(f"{p}: not a UTF-8 text file") from None


def load_config(path: str | Path) -> RunConfig:
    """Parse a run.toml into a RunConfig."""
    return config_from_dict(read_toml(path), str(Path(path)))

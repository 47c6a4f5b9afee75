"""Run configuration of `ttc profile`: a TOML file (or the same as flags) parsed into frozen dataclasses.

Format (every key optional unless marked; see data/configs/*.toml)::

    seed = 0                 # run seed; per-problem seeds derive from it (see runner.unit_seed)
    shard_size = 8           # problems per checkpoint shard
    timing = true            # record wall_s; false writes NaN so tables are byte-identical
    testbed = "quick"        # quick | default | paper | a directory: resolves "testbed:<model>" paths
    executor = "local"       # local | ray
    workers = 2              # ray workers
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

Unknown sections, keys or strategies raise `PlannerError` naming the file and listing what is known.
"""

from __future__ import annotations

import itertools
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from planner.errors import PlannerError
from profiling.sweep.datasets import DataSpec

EXECUTORS = ("local", "ray")
VERIFIER_KINDS = ("prm", "likelihood", "self")
TESTBED_SCALES = ("quick", "default", "paper")
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ModelSpec:
    """A causal LM loaded from a local directory (or `testbed:<name>`)."""

    path: str
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 64
    step_delimiter: str = "\n"
    template: str = "{prompt}"
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("model.path must not be empty")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps"):
            raise ValueError(f"model.device must be cpu, cuda[:i] or mps, got {self.device!r}")
        if self.batch_size < 1:
            raise ValueError(f"model.batch_size must be >= 1, got {self.batch_size}")
        if "{prompt}" not in self.template:
            raise ValueError("model.template must contain '{prompt}'")
        if not self.step_delimiter:
            raise ValueError("model.step_delimiter must not be empty")


@dataclass(frozen=True)
class VerifierSpec:
    """One scorer: a PRM (tag or token-classification), a local LM's likelihood, or self-likelihood."""

    kind: str
    path: str | None = None
    name: str | None = None
    agg: str = "last"
    mode: str = "process"
    stat: str = "mean"
    # PRM format: step_tag (Math-Shepherd), rlhflow (chat turns) or token_class; None = from the
    # model's verifier.json, else from its architecture.
    format: str | None = None
    step_tag: str | None = None
    good_token: str | None = None
    bad_token: str | None = None
    separator: str | None = None
    template: str | None = None
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.kind not in VERIFIER_KINDS:
            raise ValueError(f"verifiers.kind must be one of {', '.join(VERIFIER_KINDS)}, got {self.kind!r}")
        if self.kind != "self" and not self.path:
            raise ValueError(f"a {self.kind} verifier needs a path")
        if self.agg not in ("last", "min", "prod", "mean"):
            raise ValueError(f"verifiers.agg must be last, min, prod or mean, got {self.agg!r}")
        if self.mode not in ("process", "outcome"):
            raise ValueError(f"verifiers.mode must be process or outcome, got {self.mode!r}")
        if self.stat not in ("mean", "min"):
            raise ValueError(f"verifiers.stat must be mean or min, got {self.stat!r}")
        if self.batch_size < 1:
            raise ValueError(f"verifiers.batch_size must be >= 1, got {self.batch_size}")
        if self.format is not None and self.format not in ("step_tag", "rlhflow", "token_class"):
            raise ValueError(f"verifiers.format must be step_tag, rlhflow or token_class, got {self.format!r}")


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
    model: ModelSpec
    strategies: tuple[StrategySpec, ...]
    data: DataSpec = field(default_factory=DataSpec)
    verifiers: tuple[VerifierSpec, ...] = ()
    reviser: ModelSpec | None = None
    seed: int = 0
    shard_size: int = 8
    timing: bool = True
    testbed: str | None = None
    executor: str = "local"
    workers: int = 2
    address: str | None = None
    threads: int = 1

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
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        keys = [s.key for s in self.strategies]
        dup = next((k for k in keys if keys.count(k) > 1), None)
        if dup:
            raise ValueError(f"strategy config listed twice: {dup}")
        if any(s.name == "revisions" for s in self.strategies) and self.reviser is None:
            raise ValueError("the revisions strategy needs a [reviser] model")
        ids = [v.name or "" for v in self.verifiers if v.name]
        if len(set(ids)) != len(ids):
            raise ValueError(f"verifier names must be unique, got {ids}")

    def fingerprint(self) -> dict[str, Any]:
        """What decides the samples (not how they are executed): checkpoints must match it."""
        from dataclasses import asdict

        d = asdict(self)
        for k in ("executor", "workers", "address", "shard_size", "threads"):
            d.pop(k)
        d["strategies"] = [s.key for s in self.strategies]
        return d


# ----------------------------------------------------------------------------------------------
# Strategies: the keys each accepts come from the profiling registry (one source of truth).


def strategy_keys() -> dict[str, tuple[str, ...]]:
    """Known strategy names and the config keys each accepts."""
    from profiling.sweep._compat import strategy_keys as keys

    return keys()


def expand_strategy(name: str, raw: Mapping[str, Any], where: str) -> list[StrategySpec]:
    """The grid of one [[strategies]] table: list values are swept, scalars are fixed."""
    known = strategy_keys()
    if name not in known:
        raise PlannerError(f"{where}: unknown strategy {name!r} (known: {', '.join(sorted(known))})")
    allowed = known[name]
    for k in raw:
        if k not in allowed:
            raise PlannerError(f"{where}: unknown key {k!r} for strategy {name!r} "
                               f"(known: {', '.join(sorted(allowed))})")
    axes = []
    for k in sorted(raw):
        v = raw[k]
        values = list(v) if isinstance(v, list) else [v]
        if not values:
            raise PlannerError(f"{where}: key {k!r} of strategy {name!r} has an empty list")
        for x in values:
            if isinstance(x, dict | list):
                raise PlannerError(f"{where}: key {k!r} of strategy {name!r}: values must be "
                                   f"numbers, strings or booleans, got {x!r}")
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
            raise PlannerError(f"{where}: unknown key {k!r} in [{section}] (known: {', '.join(sorted(allowed))})")
        kwargs[k] = tuple(v) if isinstance(v, list) else v
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise PlannerError(f"{where}: [{section}]: {exc}") from None


TOP_KEYS = ("seed", "shard_size", "timing", "testbed", "executor", "workers", "address", "threads",
            "data", "model", "reviser", "verifiers", "strategies")


def config_from_dict(raw: Mapping[str, Any], where: str = "<config>") -> RunConfig:
    """Build a RunConfig from a parsed TOML document; errors name `where` and the bad key."""
    for k in raw:
        if k not in TOP_KEYS:
            raise PlannerError(f"{where}: unknown key {k!r} (known: {', '.join(sorted(TOP_KEYS))})")
    if "model" not in raw:
        raise PlannerError(f"{where}: missing [model] section (the policy: path = \"DIR\")")
    model = _build(ModelSpec, raw["model"], "model", where)
    reviser = _build(ModelSpec, raw["reviser"], "reviser", where) if "reviser" in raw else None
    data = _build(DataSpec, raw.get("data", {}), "data", where)
    vraw = raw.get("verifiers", [])
    if not isinstance(vraw, list):
        raise PlannerError(f"{where}: verifiers must be an array of tables ([[verifiers]])")
    verifiers = tuple(_build(VerifierSpec, v, f"verifiers #{i + 1}", where) for i, v in enumerate(vraw))
    sraw = raw.get("strategies", [])
    if not isinstance(sraw, list) or not sraw:
        raise PlannerError(f"{where}: no strategies (add [[strategies]] tables with a name)")
    strategies: list[StrategySpec] = []
    for i, s in enumerate(sraw):
        if not isinstance(s, Mapping) or "name" not in s:
            raise PlannerError(f"{where}: strategies #{i + 1} has no name "
                               f"(known: {', '.join(sorted(strategy_keys()))})")
        params = {k: v for k, v in s.items() if k != "name"}
        strategies += expand_strategy(str(s["name"]), params, f"{where}: strategies #{i + 1}")
    top = {k: raw[k] for k in ("seed", "shard_size", "timing", "testbed", "executor", "workers", "address",
                               "threads")
           if k in raw}
    if top.get("address") == "":
        top["address"] = None
    try:
        return RunConfig(model=model, strategies=tuple(strategies), data=data, verifiers=verifiers,
                         reviser=reviser, **top)
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


def parse_strategy_flag(text: str) -> tuple[str, dict[str, Any]]:
    """`beam:n=4|16,m=4` -> ("beam", {"n": [4, 16], "m": 4}); values are TOML scalars, `|` sweeps."""
    name, _, rest = text.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        if "=" not in item:
            raise PlannerError(f"--strategy {text!r}: expected key=value, got {item!r}")
        k, v = (s.strip() for s in item.split("=", 1))
        vals = [_scalar(x.strip()) for x in v.split("|")]
        params[k] = vals if len(vals) > 1 else vals[0]
    return name.strip(), params


def _scalar(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_kv_list(items: Sequence[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise PlannerError(f"{what}: expected key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = _scalar(v.strip())
    return out

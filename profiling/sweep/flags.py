"""The flags of `ttc profile`, generated from the run config's field metadata.

Each run-config key is declared once, as a dataclass field of `profiling.sweep.config` (or of
`DataSpec`) whose metadata holds its flag and help text; `run_config_flags` lists them and
`apply_flags` writes flag values into the TOML-shaped dict, so a flag and its TOML key build the
same `RunConfig`. The fields of [model] and [data] each have a flag; `--reviser DIR` sets
[reviser].path; `--device` moves every model; `--strategy` and `--verifier` replace the arrays of
tables with their `NAME[:k=v,...]` texts.
"""

from __future__ import annotations

import copy
import dataclasses
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from planner.errors import PlannerError
from profiling.sweep.config import RunConfig

# Tables of RunConfig whose fields each have a flag of their own.
_FLAG_TABLES = ("model", "data", "adaptive")


@dataclass(frozen=True)
class RunFlag:
    """One `ttc profile` option and the run-config key it sets.

    section: the TOML table of the key (None: top level); value_type: int, float, str or bool
    (a `--x/--no-x` switch); is_list: comma-separated values (a TOML array); multiple: a repeatable
    flag whose texts replace an array of tables; every_model: also set in [reviser] when present.
    """

    flag: str
    section: str | None
    key: str
    help: str
    value_type: type
    choices: tuple[str, ...] = ()
    is_list: bool = False
    multiple: bool = False
    every_model: bool = False

    @property
    def dest(self) -> str:
        """The option's parameter name (`--shard-size` -> `shard_size`)."""
        return self.flag.removeprefix("--").replace("-", "_")


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(the type without None, whether it is a tuple of it) of a field's annotation."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0], True
    return hint, False


def _flags_of(cls: type, section: str | None) -> Iterator[RunFlag]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if section is None and f.name in _FLAG_TABLES:
            yield from _flags_of(hints[f.name], f.name)
            continue
        base, is_tuple = _base_type(hints[f.name])
        table = dataclasses.is_dataclass(base)
        yield RunFlag(
            flag=meta["flag"],
            section=f.name if table and not is_tuple else section,
            key=meta.get("key", f.name),
            help=meta["help"],
            value_type=str if table else base,
            choices=tuple(meta.get("choices", ())),
            is_list=is_tuple and not table,
            multiple=is_tuple and table,
            every_model=bool(meta.get("every_model")),
        )


def run_config_flags() -> list[RunFlag]:
    """Every run-config flag, in the order of the run config's fields."""
    return list(_flags_of(RunConfig, None))


def _scalar(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_strategy_flag(text: str) -> tuple[str, dict[str, Any]]:
    """`beam:n=4|16,m=4` -> ("beam", {"n": [4, 16], "m": 4}): TOML scalars, `|` sweeps a key."""
    name, _, rest = text.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        if "=" not in item:
            raise PlannerError(f"--strategy {text!r}: expected key=value, got {item!r}")
        k, v = (s.strip() for s in item.split("=", 1))
        vals = [_scalar(x.strip()) for x in v.split("|")]
        params[k] = vals if len(vals) > 1 else vals[0]
    return name.strip(), params


def parse_kv_list(items: Sequence[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise PlannerError(f"{what}: expected key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = _scalar(v.strip())
    return out


def _strategy_table(text: str) -> dict[str, Any]:
    name, params = parse_strategy_flag(text)
    return {"name": name, **params}


def _verifier_table(text: str) -> dict[str, Any]:
    kind, _, rest = text.partition(":")
    params = parse_kv_list([x for x in rest.split(",") if x.strip()], f"--verifier {text!r}")
    return {"kind": kind.strip(), **params}


# How a repeatable flag's text becomes one table of its array.
_TABLE_PARSERS = {"strategies": _strategy_table, "verifiers": _verifier_table}


def _table(raw: dict[str, Any], section: str, where: str) -> dict[str, Any]:
    table = raw.setdefault(section, {})
    if not isinstance(table, dict):
        raise PlannerError(f"{where}: [{section}] must be a table")
    return table


def _value(flag: RunFlag, value: Any) -> Any:
    if flag.is_list:
        return [_scalar(x.strip()) for x in str(value).split(",") if x.strip()]
    return value


def apply_flags(
    raw: Mapping[str, Any], values: Mapping[str, Any], where: str = "flags"
) -> dict[str, Any]:
    """`raw` (a parsed run.toml) with the given flag values on top, keyed by `RunFlag.dest`;
    None (or an empty tuple for a repeatable flag) leaves a key as the file has it."""
    out = copy.deepcopy(dict(raw))
    flags = [f for f in run_config_flags() if values.get(f.dest) not in (None, ())]
    # --device moves every model, so it goes last, after --reviser may have added one
    for f in sorted(flags, key=lambda f: f.every_model):
        value = values[f.dest]
        if f.multiple:
            out[f.key] = [_TABLE_PARSERS[f.key](text) for text in value]
        elif f.section is None:
            out[f.key] = _value(f, value)
        else:
            _table(out, f.section, where)[f.key] = _value(f, value)
            if f.every_model and "reviser" in out:
                _table(out, "reviser", where)[f.key] = value
    return out

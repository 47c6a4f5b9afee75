"""Table contracts: samples, problems, profile (and plan outputs), with validation and parquet I/O.

Every stage reads and writes these tables through `read_table` / `write_table`, so a bad file is
caught at the boundary with one `SchemaError` naming the file, the column and the first bad row
(0-based), and nothing is written when validation fails.

Metadata travels inside the parquet file as one JSON document under the key `ttc_planner`
(model and verifier ids, dataset id and hash, device, dtype, seed, package version, ...). No time
stamps are stored, so the same inputs and seed give byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from planner import __version__
from planner.errors import PlannerError, SchemaError
from planner.fsutil import atomic_path

SCHEMA_VERSION = 1
META_KEY = b"ttc_planner"

Kind = Literal["str", "int", "float", "bool", "list_float"]


@dataclass(frozen=True)
class Column:
    """One column of a table contract.

    `nullable` admits missing values (None / NaN for floats); `nonneg` rejects negatives;
    `unit` requires values in [0, 1].
    """

    name: str
    kind: Kind
    nullable: bool = False
    nonneg: bool = False
    unit: bool = False
    doc: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    # Columns with this prefix are admitted as extra float features (problems: `feat_*`).
    feature_prefix: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


SAMPLES = TableSpec(
    name="samples",
    columns=(
        Column("problem_id", "str", doc="problem identifier"),
        Column("strategy", "str", doc="strategy name (sample, beam, lookahead, dvts, revisions, ...)"),
        Column("config", "str", doc="canonical JSON of the strategy's hyper-parameters"),
        Column("run", "int", nonneg=True, doc="independent repetition, or chain index for revisions"),
        Column("position", "int", nonneg=True, doc="index in the pool, or step in a revision chain"),
        Column("answer", "str", nullable=True, doc="normalised final answer; null when none was found"),
        Column("correct", "bool", doc="whether the answer is right"),
        Column("verifier", "str", doc="id of the scorer ('none' when unscored)"),
        Column("score", "float", doc="aggregated verifier score (never NaN)"),
        Column("step_scores", "list_float", doc="per-step verifier scores (may be empty)"),
        Column("prompt_tokens", "int", nonneg=True, doc="prompt tokens of this candidate"),
        Column("gen_tokens", "int", nonneg=True, doc="generated tokens attributed to this candidate"),
        Column("gen_flops", "float", nonneg=True, doc="generation FLOPs attributed to this candidate"),
        Column("verifier_flops", "float", nonneg=True, doc="verifier FLOPs attributed to this row"),
        Column("wall_s", "float", nonneg=True, nullable=True, doc="wall seconds; NaN when not measured"),
    ),
    key=("problem_id", "strategy", "config", "verifier", "run", "position"),
)

PROBLEMS = TableSpec(
    name="problems",
    columns=(
        Column("problem_id", "str"),
        Column("fold", "int", nonneg=True, doc="cross-validation fold (0/1), seeded"),
        Column("pass1", "float", unit=True, nullable=True, doc="oracle pass@1 from the pool"),
        Column("oracle_bin", "int", nullable=True, doc="oracle difficulty bin, 1 = easiest"),
        Column("predicted_bin", "int", nullable=True, doc="predicted difficulty bin, 1 = easiest"),
        Column("level", "str", nullable=True, doc="a given difficulty label (e.g. MATH level)"),
    ),
    key=("problem_id",),
    feature_prefix="feat_",
)

PROFILE = TableSpec(
    name="profile",
    columns=(
        Column("problem_id", "str"),
        Column("strategy", "str"),
        Column("config", "str", doc="canonical JSON; includes select, agg and verifier"),
        Column("budget", "float", nonneg=True, doc="budget in generations"),
        Column("accuracy", "float", unit=True, doc="expected accuracy over k-subsets of the pool"),
        Column("accuracy_se", "float", nonneg=True, doc="Monte Carlo standard error (0 when exact)"),
        Column("flops", "float", nonneg=True, doc="expected FLOPs (generation + verifier)"),
        Column("tokens", "float", nonneg=True, doc="expected generated tokens"),
        Column("prompt_tokens", "float", nonneg=True, doc="expected prompt tokens processed"),
        Column("wall_s", "float", nonneg=True, nullable=True, doc="expected wall seconds; NaN if unmeasured"),
    ),
    key=("problem_id", "strategy", "config", "budget"),
)

# Plan outputs (written by `ttc plan`, read by `ttc policy export` and the reports).
PLAN_CURVES = TableSpec(
    name="plan_curves",
    columns=(
        Column("budget", "float", nonneg=True, doc="budget in the plan's unit"),
        Column("method", "str", doc="compute_optimal, majority, coverage, best[verifier], weighted[verifier]"),
        Column("accuracy", "float", unit=True),
        Column("ci_lo", "float", unit=True),
        Column("ci_hi", "float", unit=True),
        Column("generations", "float", nonneg=True, doc="mean generations actually spent"),
        Column("flops", "float", nonneg=True, doc="mean FLOPs per query actually spent"),
        Column("tokens", "float", nonneg=True, doc="mean generated tokens per query"),
        Column("efficiency_multiple", "float", nullable=True, doc="reference budget / budget; NaN = > max"),
    ),
    key=("budget", "method"),
)

SELECTION = TableSpec(
    name="selection",
    columns=(
        Column("budget", "float", nonneg=True),
        Column("bin", "int"),
        Column("fold", "int", doc="fold selected on (0/1), or -1 for the whole bin"),
        Column("strategy", "str"),
        Column("config", "str"),
        Column("option_budget", "float", nonneg=True, doc="the option's own budget in generations"),
        Column("select_accuracy", "float", unit=True, nullable=True),
        Column("eval_accuracy", "float", unit=True, nullable=True),
        Column("n_select", "int", nonneg=True),
        Column("n_eval", "int", nonneg=True),
        Column("flops", "float", nonneg=True),
        Column("tokens", "float", nonneg=True),
    ),
    key=("budget", "bin", "fold"),
)

CHOICES = TableSpec(
    name="choices",
    columns=(
        Column("bin", "int"),
        Column("budget", "float", nonneg=True),
        Column("strategy", "str"),
        Column("config", "str"),
        Column("option_budget", "float", nonneg=True),
        Column("accuracy", "float", unit=True, doc="cross-validated accuracy of the procedure in this bin"),
        Column("ci_lo", "float", unit=True),
        Column("ci_hi", "float", unit=True),
        Column("in_sample_accuracy", "float", unit=True),
        Column("flops", "float", nonneg=True),
        Column("tokens", "float", nonneg=True),
        Column("n_problems", "int", nonneg=True),
    ),
    key=("bin", "budget"),
)

SPECS: dict[str, TableSpec] = {
    s.name: s for s in (SAMPLES, PROBLEMS, PROFILE, PLAN_CURVES, SELECTION, CHOICES)
}


def canonical_config(config: Mapping[str, Any]) -> str:
    """The one JSON spelling of a config: sorted keys, no spaces, so equal configs compare equal."""
    try:
        return json.dumps(dict(config), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PlannerError(f"config is not JSON-serialisable: {exc}") from None


def parse_config(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise PlannerError(f"config must be a JSON object, got {text!r}")
    return value


# ----------------------------------------------------------------------------------------------
# Validation


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _check_column(df: pd.DataFrame, col: Column, source: str) -> pd.Series:
    s = df[col.name]
    values = s.to_numpy(dtype=object) if s.dtype == object or str(s.dtype) in ("string", "str") else None
    def fail(row: int | None, problem: str) -> SchemaError:
        return SchemaError(source, col.name, row, problem)

    if col.kind == "str":
        vals = s.to_numpy(dtype=object)
        missing = np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in vals], bool)
        if missing.any() and not col.nullable:
            raise fail(_first(missing), "missing value (null) where a string is required")
        bad = np.array([not m and not _is_str(v) for v, m in zip(vals, missing, strict=True)], bool)
        if bad.any():
            i = _first(bad)
            raise fail(i, f"expected a string, got {type(vals[i]).__name__} {vals[i]!r}")
        out = pd.Series([None if m else v for v, m in zip(vals, missing, strict=True)], dtype=object)
        return out

    if col.kind == "bool":
        if s.dtype == bool:
            return s.astype(bool).reset_index(drop=True)
        vals = s.to_numpy(dtype=object) if values is None else values
        bad = np.array([not isinstance(v, bool | np.bool_) for v in vals], bool)
        if bad.any():
            i = _first(bad)
            raise fail(i, f"expected a boolean (true/false), got {vals[i]!r}")
        return pd.Series(vals.astype(bool), dtype=bool)

    if col.kind == "int":
        if pd.api.types.is_bool_dtype(s.dtype) or not (
            pd.api.types.is_integer_dtype(s.dtype) or pd.api.types.is_float_dtype(s.dtype)
        ):
            vals = s.to_numpy(dtype=object)
            bad = np.array(
                [not (isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)) and v is not None
                 for v in vals], bool)
            if bad.any():
                i = _first(bad)
                raise fail(i, f"expected an integer, got {type(vals[i]).__name__} {vals[i]!r}")
        arr = pd.to_numeric(s, errors="coerce")
        nulls = arr.isna().to_numpy()
        if nulls.any() and not col.nullable:
            raise fail(_first(nulls), "missing value where an integer is required")
        fl = arr.to_numpy(dtype=float, na_value=np.nan)
        frac = ~nulls & (fl != np.round(fl))
        if frac.any():
            i = _first(frac)
            raise fail(i, f"expected an integer, got {float(fl[i])!r}")
        if col.nonneg:
            neg = ~nulls & (fl < 0)
            if neg.any():
                i = _first(neg)
                raise fail(i, f"negative value {int(fl[i])} (must be >= 0)")
        if col.nullable:
            return arr.astype("Int64").reset_index(drop=True)
        return arr.astype(np.int64).reset_index(drop=True)

    if col.kind == "float":
        if not (pd.api.types.is_numeric_dtype(s.dtype)) or pd.api.types.is_bool_dtype(s.dtype):
            vals = s.to_numpy(dtype=object)
            bad = np.array(
                [v is not None and (isinstance(v, bool | np.bool_) or not isinstance(v, int | float | np.number))
                 for v in vals], bool)
            if bad.any():
                i = _first(bad)
                raise fail(i, f"expected a number, got {type(vals[i]).__name__} {vals[i]!r}")
        fl = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        nan = np.isnan(fl)
        if nan.any() and not col.nullable:
            raise fail(_first(nan), "NaN or missing value where a number is required")
        inf = np.isinf(fl)
        if inf.any():
            raise fail(_first(inf), "infinite value")
        if col.nonneg:
            neg = ~nan & (fl < 0)
            if neg.any():
                i = _first(neg)
                raise fail(i, f"negative value {float(fl[i])!r} (must be >= 0)")
        if col.unit:
            out = ~nan & ((fl < 0) | (fl > 1))
            if out.any():
                i = _first(out)
                raise fail(i, f"value {float(fl[i])!r} outside [0, 1]")
        return pd.Series(fl, dtype=float)

    if col.kind == "list_float":
        vals = s.to_numpy(dtype=object)
        out_lists: list[list[float]] = []
        for i, v in enumerate(vals):
            if v is None:
                out_lists.append([])
                continue
            if isinstance(v, str) or not hasattr(v, "__len__"):
                raise fail(i, f"expected a list of numbers, got {type(v).__name__} {v!r}")
            try:
                arr = np.asarray(v, dtype=float)
            except (TypeError, ValueError):
                raise fail(i, f"expected a list of numbers, got {v!r}") from None
            if arr.ndim != 1:
                raise fail(i, "expected a flat list of numbers")
            if np.isnan(arr).any() or np.isinf(arr).any():
                raise fail(i, "NaN or infinite step score")
            out_lists.append(arr.tolist())
        return pd.Series(out_lists, dtype=object)

    raise AssertionError(col.kind)  # pragma: no cover


def validate(df: pd.DataFrame, spec: TableSpec, source: str) -> pd.DataFrame:
    """Check `df` against `spec` and return it with canonical dtypes and column order.

    Raises SchemaError at the first violation: a missing column, a wrong type, a NaN or infinite
    number, a negative count, a value outside [0, 1], a non-boolean correctness, a duplicate key.
    Extra columns are kept after the contract's columns (problems: only `feat_*` floats and
    free-form extras).
    """
    df = df.reset_index(drop=True)
    missing = [c.name for c in spec.columns if c.name not in df.columns]
    if missing:
        raise SchemaError(
            source, missing[0], None,
            f"missing column (a {spec.name} table needs: {', '.join(spec.names)})",
        )
    out = {}
    for col in spec.columns:
        out[col.name] = _check_column(df, col, source)
    extras = [c for c in df.columns if c not in spec.names]
    for name in extras:
        if spec.feature_prefix and str(name).startswith(spec.feature_prefix):
            out[name] = _check_column(df, Column(str(name), "float", nullable=True), source)
        else:
            out[name] = df[name].reset_index(drop=True)
    result = pd.DataFrame(out)
    if len(result):
        dup = result.duplicated(list(spec.key), keep="first").to_numpy()
        if dup.any():
            i = _first(dup)
            keyval = ", ".join(f"{k}={result.at[i, k]!r}" for k in spec.key)
            raise SchemaError(source, spec.key[0], i, f"duplicate key ({keyval})")
    return result


# ----------------------------------------------------------------------------------------------
# Parquet I/O with metadata


def _arrow_schema(df: pd.DataFrame, spec: TableSpec) -> pa.Schema:
    fields = []
    for name in df.columns:
        try:
            col = spec.column(str(name))
        except KeyError:
            col = None
        if col is None:
            if spec.feature_prefix and str(name).startswith(spec.feature_prefix):
                fields.append(pa.field(name, pa.float64()))
            else:
                fields.append(pa.field(name, pa.Schema.from_pandas(df[[name]], preserve_index=False).field(0).type))
            continue
        typ = {
            "str": pa.string(),
            "int": pa.int64(),
            "float": pa.float64(),
            "bool": pa.bool_(),
            "list_float": pa.list_(pa.float64()),
        }[col.kind]
        fields.append(pa.field(name, typ, nullable=True))
    return pa.schema(fields)


def write_table(
    df: pd.DataFrame,
    path: str | os.PathLike[str],
    spec: TableSpec,
    metadata: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Validate and write `df` atomically to `path` as parquet with the project's metadata."""
    df = validate(df, spec, str(path))
    meta = dict(metadata or {})
    meta.update({"table": spec.name, "schema_version": SCHEMA_VERSION})
    meta.setdefault("package_version", __version__)
    schema = _arrow_schema(df, spec)
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True, default=str).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return df


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        md = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid) as exc:
        raise PlannerError(f"{path}: not a readable parquet file ({exc})") from None
    raw = md.get(META_KEY)
    return json.loads(raw) if raw else {}


def read_table(path: str | os.PathLike[str], spec: TableSpec) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read and validate a table; returns (dataframe, metadata)."""
    p = Path(path)
    if not p.exists():
        raise PlannerError(f"{p}: file not found (expected a {spec.name} table)")
    try:
        table = pq.read_table(p)
    except (OSError, pa.ArrowInvalid) as exc:
        raise PlannerError(f"{p}: not a readable parquet file ({exc})") from None
    meta = read_metadata(p)
    if meta.get("table") not in (None, spec.name):
        raise PlannerError(f"{p}: holds a '{meta.get('table')}' table, expected '{spec.name}'")
    df = table.to_pandas()
    return validate(df, spec, str(p)), meta


# Canonical file names inside the directories the stages exchange.
SAMPLES_FILE = "samples.parquet"
PROBLEMS_FILE = "problems.parquet"
PROFILE_FILE = "profile.parquet"
PLAN_CURVES_FILE = "curves.parquet"
SELECTION_FILE = "selection.parquet"
CHOICES_FILE = "choices.parquet"
SUMMARY_FILE = "summary.json"


def resolve_table_path(path: str | os.PathLike[str], filename: str) -> Path:
    """Accept either a directory holding `filename` or the file itself."""
    p = Path(path)
    if p.is_dir():
        return p / filename
    if p.exists():
        return p
    raise PlannerError(f"{p}: no such file or directory")


def read_samples(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    return read_table(resolve_table_path(path, SAMPLES_FILE), SAMPLES)


def read_problems(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """Problems table beside a samples/profile table, or None when the directory has none."""
    p = Path(path)
    f = p / PROBLEMS_FILE if p.is_dir() else p.parent / PROBLEMS_FILE
    if not f.exists():
        return None
    return read_table(f, PROBLEMS)


def read_profile(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    return read_table(resolve_table_path(path, PROFILE_FILE), PROFILE)


def empty_frame(spec: TableSpec) -> pd.DataFrame:
    dtypes = {"str": object, "int": np.int64, "float": float, "bool": bool, "list_float": object}
    return pd.DataFrame({c.name: pd.Series([], dtype=dtypes[c.kind]) for c in spec.columns})

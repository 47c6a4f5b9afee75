"""Parquet I/O of the contract tables, with the project's metadata.

Every stage reads and writes its tables through `read_table` / `write_table`: the table is
validated at the boundary and nothing is written when validation fails (atomic writes).

Metadata travels inside the parquet file as one JSON document under the key `ttc_planner`
(model and verifier ids, dataset id and hash, device, dtype, seed, package version, ...). No time
stamps are stored, so the same inputs and seed give byte-identical files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from planner import __version__
from planner.errors import PlannerError
from planner.tables.fsutil import atomic_path
from planner.tables.schema import (
    PROBLEMS,
    PROBLEMS_FILE,
    PROFILE,
    PROFILE_FILE,
    SAMPLES,
    SAMPLES_FILE,
    SCHEMA_VERSION,
    TableSpec,
)
from planner.tables.validation import validate

META_KEY = b"ttc_planner"


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
                fields.append(
                    pa.field(
                        name, pa.Schema.from_pandas(df[[name]], preserve_index=False).field(0).type
                    )
                )
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
    table = table.replace_schema_metadata(
        {META_KEY: json.dumps(meta, sort_keys=True, default=str).encode()}
    )
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


def read_table(
    path: str | os.PathLike[str], spec: TableSpec
) -> tuple[pd.DataFrame, dict[str, Any]]:
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

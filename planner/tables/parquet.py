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
from planner.strategies import POOL, SEARCH, STRATEGY_KINDS
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
    df = validate(table.to_pandas(), spec, str(p))
    return _from_version(df, spec, p, meta.get("schema_version", SCHEMA_VERSION)), meta


def _from_version(df: pd.DataFrame, spec: TableSpec, path: Path, version: Any) -> pd.DataFrame:
    """A table written under another contract version, read under this one (or refused).

    Version 1 split a prompt shared by several samples rows (a pool's candidates, a search run's
    final candidates) among them in integer parts summing to its length; its samples are read
    with each such row's prompt made whole again (revision rows held their own prompt already),
    and its profiles, whose prompt tokens cannot be made whole, are refused.
    """
    if version == SCHEMA_VERSION or spec.name not in (SAMPLES.name, PROFILE.name):
        return df
    if version != 1:
        raise PlannerError(
            f"{path}: field 'schema_version': a {spec.name} table of version {version!r}; this "
            f"ttc reads versions 1 and {SCHEMA_VERSION} (upgrade ttc-planner)"
        )
    if spec.name == PROFILE.name:
        raise PlannerError(
            f"{path}: field 'schema_version': a profile table of version 1, whose prompt_tokens "
            "split a prompt shared by several candidates; make it again from its samples "
            "(ttc curves SAMPLES_DIR --out DIR)"
        )
    shared = df["strategy"].map(STRATEGY_KINDS).isin([POOL, SEARCH])
    key = ["problem_id", "strategy", "config", "verifier", "run"]
    whole = df.groupby(key, sort=False)["prompt_tokens"].transform("sum")
    return df.assign(prompt_tokens=df["prompt_tokens"].where(~shared, whole).astype("int64"))


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

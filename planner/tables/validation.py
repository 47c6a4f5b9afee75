"""Validation of a dataframe against its table contract (`planner.tables.schema`).

`validate` raises one `SchemaError` at the first violation, naming the file, the column and the
first bad row (0-based), and returns the table with canonical dtypes and column order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from planner.errors import SchemaError
from planner.tables.schema import Column, TableSpec


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _check_column(df: pd.DataFrame, col: Column, source: str) -> pd.Series:
    s = df[col.name]
    values = (
        s.to_numpy(dtype=object) if s.dtype == object or str(s.dtype) in ("string", "str") else None
    )

    def fail(row: int | None, problem: str) -> SchemaError:
        return SchemaError(source, col.name, row, problem)

    if col.kind == "str":
        vals = s.to_numpy(dtype=object)
        missing = np.array(
            [v is None or (isinstance(v, float) and math.isnan(v)) for v in vals], bool
        )
        if missing.any() and not col.nullable:
            raise fail(_first(missing), "missing value (null) where a string is required")
        bad = np.array([not m and not _is_str(v) for v, m in zip(vals, missing, strict=True)], bool)
        if bad.any():
            i = _first(bad)
            raise fail(i, f"expected a string, got {type(vals[i]).__name__} {vals[i]!r}")
        out = pd.Series(
            [None if m else v for v, m in zip(vals, missing, strict=True)], dtype=object
        )
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
                [
                    not (isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_))
                    and v is not None
                    for v in vals
                ],
                bool,
            )
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
                [
                    v is not None
                    and (
                        isinstance(v, bool | np.bool_) or not isinstance(v, int | float | np.number)
                    )
                    for v in vals
                ],
                bool,
            )
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
            source,
            missing[0],
            None,
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

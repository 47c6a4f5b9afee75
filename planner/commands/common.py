"""Helpers shared by the CLI commands: error translation and JSON output."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
import numpy as np

from planner.errors import PlannerError

if TYPE_CHECKING:  # the library loads inside the commands, so that `ttc --help` stays fast
    from planner.costs import HardwareSpec

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn library errors into one-line click errors (exit code 1, no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PlannerError as exc:
            raise click.ClickException(str(exc)) from None
        except PermissionError as exc:
            raise click.ClickException(f"permission denied: {exc.filename or exc}") from None
        except OSError as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None

    return wrapper  # type: ignore[return-value]


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating | float):
        f = float(obj)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def dumps_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, NaN written as null."""
    return json.dumps(_jsonable(obj), sort_keys=True, indent=2, allow_nan=False)


def echo_json(obj: Any) -> None:
    click.echo(dumps_json(obj))


def parse_float_list(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated numbers, got {text!r}") from None


def positive(flag: str, value: float | None) -> float | None:
    """An optional option value that must be a positive number when given."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise PlannerError(f"{flag} must be a positive number, got {value:g}")
    return value


def hardware_option(name: str | None, usd_per_hour: float | None) -> HardwareSpec | None:
    """The `--hardware` profile (None when not given), with `--usd-per-hour` applied."""
    if not name:
        return None
    from planner.costs import load_hardware

    hw = load_hardware(name)
    return hw.with_overrides(usd_per_hour=usd_per_hour) if usd_per_hour is not None else hw


bins_option = click.option(
    "--bins",
    type=click.Choice(["oracle", "predicted", "level"]),
    default="oracle",
    show_default=True,
    help="Difficulty bins of the problems table.",
)

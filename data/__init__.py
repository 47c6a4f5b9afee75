"""Shipped data, installed as the package `planner.data`: hardware profiles (`hardware/`), model
specs (`models/`) and reference run configs (`configs/`).

The folder is the repository's top-level `data/`; pyproject.toml maps it into the wheel as
`planner.data`. Code reads it through `shipped_dir`, never by a path relative to the source tree,
so the same call works from a checkout, an editable install and an installed wheel.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from planner.errors import PlannerError

KINDS = ("hardware", "models", "configs")


def shipped_dir(kind: str) -> Path:
    """The folder of one kind of shipped data (an installed wheel unpacks to real files)."""
    if kind not in KINDS:
        raise PlannerError(f"unknown kind of shipped data {kind!r} (known: {', '.join(KINDS)})")
    d = Path(str(resources.files(__name__).joinpath(kind)))
    if not d.is_dir():
        raise PlannerError(
            f"shipped data folder {kind}/ not found at {d}: the installation is incomplete"
        )
    return d


def shipped_names(kind: str, suffix: str) -> list[str]:
    """Stems of the shipped files of one kind, sorted."""
    return sorted(p.stem for p in shipped_dir(kind).glob(f"*{suffix}"))

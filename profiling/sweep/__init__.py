"""Sweeps at scale: problem sets, run configs (TOML keys and `ttc profile` flags from one
declaration), the checkpointed runner, its units and the Ray executor.

`run_sweep(load_config("run.toml"), "runs/x", resume=True)` is what `ttc profile` calls.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from profiling.sweep.config import RunConfig, load_config
    from profiling.sweep.datasets import DataSpec, load_problems
    from profiling.sweep.runner import run_sweep

# Loaded on first use (PEP 562): `ttc profile --help` reads the run config's declaration
# (`profiling.sweep.flags`) without loading the runner and the models behind it.
_LAZY = {
    "RunConfig": "profiling.sweep.config",
    "load_config": "profiling.sweep.config",
    "DataSpec": "profiling.sweep.datasets",
    "load_problems": "profiling.sweep.datasets",
    "run_sweep": "profiling.sweep.runner",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = ["DataSpec", "RunConfig", "load_config", "load_problems", "run_sweep"]

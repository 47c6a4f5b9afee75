"""Sweeps at scale: problem sets, run configs (TOML keys and `ttc profile` flags from one
declaration), the checkpointed runner, its units and the Ray executor.

`run_sweep(load_config("run.toml"), "runs/x", resume=True)` is what `ttc profile` calls.
"""

from profiling.sweep.config import RunConfig, load_config
from profiling.sweep.datasets import DataSpec, load_problems
from profiling.sweep.runner import run_sweep

__all__ = ["DataSpec", "RunConfig", "load_config", "load_problems", "run_sweep"]

"""The process-pool executor: 2 spawned workers give the same tables as the local executor."""

from __future__ import annotations

from pathlib import Path

import profiling_tiny as tiny

from profiling.sweep.config import config_from_dict
from profiling.sweep.runner import run_sweep


def test_pool_executor_equals_local(tmp_path: Path) -> None:
    tiny.save_policy(tmp_path / "policy")
    raw = {
        "seed": 5,
        "shard_size": 2,
        "timing": False,
        "data": {"source": "testbed", "n": 5},
        "model": {"path": str(tmp_path / "policy")},
        "strategies": [{"name": "sample", "n": [2, 3], "max_new_tokens": 12}],
    }
    local = run_sweep(config_from_dict(raw), tmp_path / "local", progress=False)
    pool_cfg = config_from_dict({**raw, "executor": "pool", "workers": 2})
    pooled = run_sweep(pool_cfg, tmp_path / "pool", progress=False)
    assert pooled.units_run == local.units_run == 6
    for name in ("samples.parquet", "problems.parquet"):
        assert (tmp_path / "pool" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()

"""The Ray executor: 2 workers on a local Ray cluster give the same tables as the local executor.

One module for everything Ray (its start-up is slow): a local cluster with num_cpus=2 and no
dashboard, a handful of problems on tiny real models.
"""

from __future__ import annotations

from pathlib import Path

import profiling_tiny as tiny
import pytest

from profiling.sweep.config import config_from_dict
from profiling.sweep.runner import run_sweep

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_executor_equals_local(tmp_path: Path, ray_cluster: None) -> None:
    tiny.save_policy(tmp_path / "policy")
    tiny.save_lm_prm(tmp_path / "prm")
    raw = {
        "seed": 11,
        "shard_size": 2,
        "timing": False,
        "data": {"source": "testbed", "n": 5},
        "model": {"path": str(tmp_path / "policy")},
        "verifiers": [
            {
                "kind": "prm",
                "path": str(tmp_path / "prm"),
                "step_tag": "<step>",
                "good_token": "<good>",
                "bad_token": "<bad>",
            }
        ],
        "strategies": [
            {"name": "sample", "n": 3, "max_new_tokens": 12},
            {
                "name": "dvts",
                "n": 2,
                "m": 1,
                "max_new_tokens": 12,
                "max_step_tokens": 6,
                "max_rounds": 2,
            },
        ],
    }
    local = run_sweep(config_from_dict(raw), tmp_path / "local", progress=False)
    ray_cfg = config_from_dict({**raw, "executor": "ray", "workers": 2})
    remote = run_sweep(ray_cfg, tmp_path / "ray", progress=False)
    assert remote.units_run == local.units_run == 6
    for name in ("samples.parquet", "problems.parquet"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), (
            name
        )

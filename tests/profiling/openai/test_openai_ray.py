"""`--executor ray` with the openai backend: Ray workers share the served model, each worker on its
own server of a `--base-url` list (here two proxies in front of one vLLM server, as two replicas
would be), and the tables come out complete."""

from __future__ import annotations

from pathlib import Path

import pytest
from tcp_proxy import TCPProxy
from vllm_servers import Served

from planner.tables import SAMPLES, read_table
from profiling.sweep.config import config_from_dict
from profiling.sweep.runner import run_sweep

pytestmark = pytest.mark.slow
pytest.importorskip("ray")
KEY = ["problem_id", "strategy", "config", "verifier", "run", "position"]


def test_ray_workers_spread_over_the_servers_of_a_url_list(
    vllm_policy: Served, quick_testbed: Path, tmp_path: Path
) -> None:
    import ray

    port = int(vllm_policy.url.rsplit(":", 1)[1])
    replicas = [TCPProxy(port), TCPProxy(port)]
    raw = {
        "seed": 5,
        "shard_size": 2,
        "timing": False,
        "testbed": str(quick_testbed),
        "data": {"source": "testbed", "n": 8},
        "model": {
            "path": "testbed:policy",
            "backend": "openai",
            "base_url": ",".join(r.url for r in replicas),
            "served_model": "policy",
        },
        "verifiers": [{"kind": "self"}],
        "strategies": [
            {"name": "sample", "n": 4, "max_new_tokens": 48},
            {"name": "beam", "n": 4, "m": 2, "max_rounds": 4, "max_new_tokens": 48},
        ],
        "executor": "ray",
        "workers": 2,
    }
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        res = run_sweep(config_from_dict(raw), tmp_path / "run", progress=False)
    finally:
        ray.shutdown()
        for r in replicas:
            r.stop()
    assert res.units_run == 8 and res.problems == 8
    samples, _ = read_table(tmp_path / "run" / "samples.parquet", SAMPLES)
    assert samples.problem_id.nunique() == 8 and not samples.duplicated(KEY).any()
    sizes = samples.groupby(["problem_id", "strategy", "run"]).size()
    assert sizes.xs("sample", level="strategy").eq(4).all()
    assert sizes.xs("beam", level="strategy").le(4).all()
    # worker 0 talked to the first server of the list, worker 1 to the second
    assert all(r.forwarded > 0 for r in replicas), [r.forwarded for r in replicas]

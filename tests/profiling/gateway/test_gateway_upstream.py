"""The gateway in front of a real vLLM server (the quick testbed's policy served on CPU): every
decision of the quick demo's policy and of the every-strategy policies served through it (as in
process, see test_gateway_every_decision), answers consistent with the policy, and the
upstream's failures as 502 (unreachable) and 504 (time-out), each followed by a good request
once the upstream is back.

vLLM lives in its own virtual environment (`.venv-vllm`, see tests/support/vllm_servers.py);
without it the test skips with the reason, except in CI (CI=true), where it fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_support import (
    EVERY_BUDGETS,
    EVERY_VERIFIERS,
    VERIFIER,
    ServerThread,
    decision_keys,
    fresh_prompts,
    serve_every_decision,
    shared_policies,
)
from tcp_proxy import TCPProxy
from vllm_servers import VLLM_PYTHON, require_vllm

from planner.policy import Policy
from profiling.gateway.app import Gateway

pytestmark = pytest.mark.slow

PROMPT = "Q: 3+4\n"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def vllm_url(quick_testbed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_vllm()
    from profiling.openai.launch import VLLMServer

    log = tmp_path_factory.mktemp("gateway-vllm") / "policy.log"
    with VLLMServer(VLLM_PYTHON, quick_testbed / "policy", "policy", log_path=log) as server:
        yield server.url


def test_upstream_answers_then_502_then_504_then_answers(
    vllm_url: str, quick_testbed: Path, policy_file: Path, tmp_path: Path
) -> None:
    from profiling.gateway.loading import load_engine

    proxy = TCPProxy(int(vllm_url.rsplit(":", 1)[1].split("/")[0]))
    flags = {
        "backend": "openai",
        "base_url": proxy.url,
        "served_model": "policy",
        "model_config": str(quick_testbed / "policy"),
        "request_timeout": 2.0,
        "verifier": (VERIFIER.replace("testbed:large", str(quick_testbed / "large")),),
    }
    engine = load_engine(None, flags, threads=1)
    policy = Policy.load(policy_file)
    gw = Gateway(engine, str(policy_file))
    try:
        with ServerThread(gw) as s, httpx.Client(base_url=s.url, timeout=300) as c:

            def good() -> None:
                r = c.post("/v1/completions", json={"model": "policy", "prompt": PROMPT})
                assert r.status_code == 200, r.text
                ttc = r.json()["ttc"]
                d = policy.decide(
                    ttc["probe"]["scores"], ttc["requested_budget"],
                    ttc["probe"]["answers"], ttc["probe"]["gen_tokens"],
                )  # fmt: skip
                assert (int(r.headers["x-ttc-bin"]), r.headers["x-ttc-strategy"]) == (
                    d.bin,
                    d.strategy,
                )
                assert ttc["usage"]["probe_flops"] > 0

            good()
            proxy.switch("refuse")
            r = c.post("/v1/completions", json={"model": "policy", "prompt": PROMPT})
            assert r.status_code == 502, r.text
            assert r.json()["error"]["code"] == "upstream_unreachable"
            proxy.switch("forward")
            good()
            proxy.switch("hang")
            r = c.post("/v1/completions", json={"model": "policy", "prompt": PROMPT})
            assert r.status_code == 504, r.text
            assert r.json()["error"]["code"] == "upstream_timeout"
            proxy.switch("forward")
            good()
            metrics = c.get("/metrics").text
        assert 'status="502"' in metrics and 'status="504"' in metrics
    finally:
        proxy.stop()


def test_upstream_serves_every_decision(vllm_url: str, quick_testbed: Path) -> None:
    """The quick demo's policy and the every-strategy policies through the vLLM server: pools,
    beam, lookahead and DVTS sample there (search steps included); the verifiers and the
    reviser run in the gateway's process."""
    from profiling.gateway.loading import load_engine

    policies = shared_policies(quick_testbed)
    upstream = {
        "backend": "openai",
        "base_url": vllm_url,
        "served_model": "policy",
        "model_config": str(quick_testbed / "policy"),
        "testbed": str(quick_testbed),
    }
    demo = load_engine(str(ROOT / "data" / "configs" / "demo.toml"), upstream, threads=1)
    models = {"model": "testbed:policy", "reviser": "testbed:reviser", "verifier": EVERY_VERIFIERS}
    every = load_engine(None, {**upstream, **models}, threads=1)
    strategies: set[str] = set()
    for name, engine in [("demo", demo)] + [(n, every) for n in EVERY_BUDGETS]:
        policy = Policy.load(policies[name])
        with (
            ServerThread(Gateway(engine, str(policies[name]))) as s,
            httpx.Client(base_url=s.url, timeout=600) as c,
        ):
            served = serve_every_decision(c, policy, fresh_prompts(48))
            metrics = c.get("/metrics").text
        missing = decision_keys(policy) - set(served)
        assert not missing, f"{name}: decisions never served: {sorted(missing, key=str)}"
        assert 'status="5' not in metrics
        strategies |= {t["strategy"] for t in served.values()}
    assert {"sample", "beam", "lookahead", "dvts"} <= strategies

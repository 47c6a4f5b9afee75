"""Every route of a real gateway on the quick testbed, with the openai package and httpx as clients:
decisions consistent with `Policy.decide`, token and FLOPs accounting, budgets, metrics."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from openai import OpenAI

from planner.policy import Policy
from profiling import problems as problem_sets

pytestmark = pytest.mark.slow


def _prompts(n: int, seed: int = 5) -> list[str]:
    from models.testbed.task import generate_problems

    return [p.prompt for p in problem_sets.testbed_problems(generate_problems(n, seed, (1, 2, 3)))]


def _check_consistent(policy: Policy, body: dict, headers: httpx.Headers) -> None:
    """The response's decision is Policy.decide on the response's own probes."""
    ttc = body["ttc"]
    probe = ttc["probe"]
    answers = [a if a is not None else None for a in probe["answers"]]
    d = policy.decide(probe["scores"], ttc["requested_budget"], answers, probe["gen_tokens"])
    assert (ttc["bin"], ttc["strategy"], ttc["config"]) == (d.bin, d.strategy, d.config)
    assert ttc["budget"] == d.budget and ttc["expected_accuracy"] == d.accuracy
    assert headers["x-ttc-bin"] == str(d.bin)
    assert headers["x-ttc-strategy"] == d.strategy
    assert headers["x-ttc-config"] == d.config
    assert float(headers["x-ttc-budget"]) == d.budget
    assert float(headers["x-ttc-flops"]) == pytest.approx(ttc["flops"], rel=1e-6)
    assert headers["x-ttc-policy"] == ttc["policy"]["label"]


def _check_usage(body: dict) -> None:
    u, parts = body["usage"], body["ttc"]["usage"]
    assert u["completion_tokens"] == parts["probe_tokens"] + parts["candidate_tokens"]
    assert u["prompt_tokens"] == parts["prompt_tokens"] + parts["verifier_tokens"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert parts["probe_tokens"] == sum(body["ttc"]["probe"]["gen_tokens"])
    assert parts["total_flops"] == pytest.approx(
        parts["probe_flops"] + parts["candidate_flops"] + parts["verifier_flops"]
    )
    assert body["ttc"]["flops"] == parts["total_flops"] and parts["probe_flops"] > 0
    # the verifier scored every probe: it read each probe's prompt and tokens
    assert parts["verifier_tokens"] >= parts["probe_tokens"]


def test_health_models_and_metrics(server, policy_file) -> None:
    policy = Policy.load(policy_file)
    with httpx.Client(base_url=server.url) as c:
        h = c.get("/healthz").json()
        assert h["status"] == "ok" and h["policy"].endswith("/v1")
        ids = [m["id"] for m in c.get("/v1/models").json()["data"]]
        assert ids == ["policy"] + [f"policy@{b:g}" for b in policy.budgets]
        r = c.post("/v1/completions", json={"model": "policy", "prompt": _prompts(1)[0]})
        assert r.status_code == 200
        text = c.get("/metrics").text
    for name in (
        "ttc_requests_total",
        "ttc_tokens_total",
        "ttc_flops_total",
        "ttc_request_latency_seconds_bucket",
        "ttc_probe_flops_share_bucket",
        "ttc_batch_requests_bucket",
        "ttc_policy_info",
    ):
        assert name in text, name
    ttc = r.json()["ttc"]
    assert f'bin="{ttc["bin"]}"' in text and f'strategy="{ttc["strategy"]}"' in text
    assert 'status="200"' in text


def test_completions_follow_the_policy_and_count_every_token(server, policy_file) -> None:
    policy = Policy.load(policy_file)
    prompts = _prompts(12)
    budgets = [float(policy.budgets[0]), float(policy.budgets[-1])]
    with httpx.Client(base_url=server.url, timeout=120) as c:

        def one(i: int) -> httpx.Response:
            # budget by model suffix and by ttc_budget in turn
            b = budgets[i % 2]
            body = (
                {"model": f"policy@{b:g}", "prompt": prompts[i]}
                if i % 3
                else {"model": "policy", "prompt": prompts[i], "ttc_budget": b}
            )
            return c.post("/v1/completions", json=body)

        with ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(one, range(len(prompts))))
    for i, r in enumerate(responses):
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "text_completion" and len(body["choices"]) == 1
        assert body["ttc"]["requested_budget"] == budgets[i % 2]
        _check_consistent(policy, body, r.headers)
        _check_usage(body)
    # concurrent requests were batched together
    with httpx.Client(base_url=server.url) as c:
        text = c.get("/metrics").text
    counts = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith('ttc_batch_requests_bucket{le="1.0"}')
    ]
    total = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("ttc_batch_requests_count")
    ]
    assert counts and total and counts[0] < total[0]


def test_chat_with_the_openai_client(server, policy_file) -> None:
    policy = Policy.load(policy_file)
    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    raw = client.chat.completions.with_raw_response.create(
        model="policy",
        messages=[{"role": "user", "content": _prompts(1, seed=9)[0]}],
        extra_body={"ttc_budget": float(policy.budgets[0])},
    )
    chat = raw.parse()
    assert chat.choices[0].message.role == "assistant"
    assert isinstance(chat.choices[0].message.content, str)
    body = json.loads(raw.content)
    _check_consistent(policy, body, raw.headers)
    _check_usage(body)
    assert chat.usage.total_tokens == body["usage"]["total_tokens"] > 0
    models = [m.id for m in client.models.list()]
    assert models[0] == "policy"
    comp = client.completions.create(model=models[-1], prompt=_prompts(1, seed=10)[0])
    assert comp.choices[0].finish_reason in ("stop", "length")


def test_the_default_budget_is_the_largest(server, policy_file) -> None:
    policy = Policy.load(policy_file)
    with httpx.Client(base_url=server.url, timeout=120) as c:
        r = c.post("/v1/completions", json={"model": "policy", "prompt": _prompts(1)[0]})
    assert r.json()["ttc"]["requested_budget"] == float(np.max(policy.budgets))

"""Each refusal in the OpenAI error shape, each followed by a good request (no error leaves the
server in a bad state); the API key; the upstream failure mapping."""

from __future__ import annotations

import httpx
import pytest
from gateway_support import ServerThread, metric
from openai import AuthenticationError, OpenAI

from planner.policy import Policy
from profiling.gateway.app import Gateway, Limits
from profiling.gateway.upstream import upstream_error

pytestmark = pytest.mark.slow

PROMPT = "Q: 2+3\n"


def _good(c: httpx.Client) -> None:
    r = c.post("/v1/completions", json={"model": "policy", "prompt": PROMPT})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] is not None


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return err


def test_each_error_then_a_good_request(server, policy_file) -> None:
    top = Policy.load(policy_file).budgets[-1]
    with httpx.Client(base_url=server.url, timeout=120) as c:
        post = c.post
        _error(post("/v1/completions", content=b'{"model": "policy", "prompt": '), 400)
        _good(c)
        _error(post("/v1/completions", content=b"\xff\xfe"), 400)
        _good(c)
        err = _error(post("/v1/completions", json={"model": "policy", "prompt": "x", "k": 1}), 400)
        assert err["param"] == "k" and "unknown field" in err["message"]
        _good(c)
        err = _error(post("/v1/chat/completions", json={"model": "policy", "prompt": "x"}), 400)
        assert err["param"] == "prompt"
        _good(c)
        err = _error(post("/v1/completions", json={"model": "gpt-4", "prompt": "x"}), 404)
        assert err["code"] == "model_not_found"
        _error(post("/v1/completions", json={"model": "policy@lots", "prompt": "x"}), 404)
        _good(c)
        err = _error(
            post("/v1/completions", json={"model": f"policy@{top * 2:g}", "prompt": "x"}), 400
        )
        assert err["code"] == "budget_out_of_range"
        assert all(f"{b:g}" in err["message"] for b in Policy.load(policy_file).budgets)
        body = {"model": "policy", "prompt": "x", "ttc_budget": top + 1}
        _error(post("/v1/completions", json=body), 400)
        _good(c)
        _error(
            post("/v1/completions", json={"model": "policy", "prompt": "x", "stream": True}), 400
        )
        _error(post("/v1/completions", json={"model": "policy", "prompt": "x", "n": 2}), 400)
        _error(
            post("/v1/completions", json={"model": "policy", "prompt": "x", "max_tokens": 10**6}),
            400,
        )
        _error(post("/v1/completions", json={"model": "policy", "prompt": "x" * 5000}), 413)
        _error(post("/v1/completions", json=[1, 2]), 400)
        _good(c)
        # budgets must be finite numbers
        for model in ("policy@nan", "policy@inf", "policy@-inf"):
            assert _error(post("/v1/completions", json={"model": model, "prompt": "x"}), 400)
        raw = b'{"model": "policy", "prompt": "x", "ttc_budget": NaN}'
        assert _error(post("/v1/completions", content=raw), 400)["param"] == "ttc_budget"
        _good(c)
        # a prompt the model's context cannot hold with what the policy generates after it
        before = c.get("/metrics").text
        err = _error(post("/v1/completions", json={"model": "policy", "prompt": "1+" * 1200}), 400)
        assert err["code"] == "context_length_exceeded" and err["param"] == "prompt"
        chat = {"model": "policy", "messages": [{"role": "user", "content": "1+" * 1200}]}
        assert _error(post("/v1/chat/completions", json=chat), 400)["param"] == "messages"
        after = c.get("/metrics").text
        assert _tokens(after) == _tokens(before)  # refused before any forward
        _good(c)
        # unknown routes, in the OpenAI shape
        assert _error(c.get("/v1/engines"), 404)["message"].startswith("Invalid URL")
        assert _error(post("/healthz"), 405)
        # a cap below the policy's max_new_tokens: served, marked, without a promise
        r = post("/v1/completions", json={"model": "policy", "prompt": PROMPT, "max_tokens": 3})
        ttc = r.json()["ttc"]
        assert r.status_code == 200 and ttc["usage"]["probe_tokens"] <= 3 * 4
        assert ttc["off_policy"] and r.headers["x-ttc-off-policy"] == ttc["off_policy"]
        assert ttc["expected_accuracy"] is None and ttc["ci"] is None
        r = post("/v1/completions", json={"model": "policy", "prompt": PROMPT, "max_tokens": 512})
        assert r.json()["ttc"]["off_policy"] is None and "x-ttc-off-policy" not in r.headers
        metrics = c.get("/metrics").text
    assert 'status="400"' in metrics and 'status="404"' in metrics and 'status="413"' in metrics


def _tokens(metrics: str) -> float:
    return metric(metrics, "ttc_tokens_total")


def test_the_api_key_guards_every_route_but_healthz(engine, served_policy) -> None:
    gw = Gateway(engine, str(served_policy), api_key="s3cret", limits=Limits())
    with ServerThread(gw) as s, httpx.Client(base_url=s.url, timeout=120) as c:
        assert c.get("/healthz").status_code == 200
        for method, path in (("GET", "/v1/models"), ("GET", "/metrics"),
                             ("POST", "/v1/completions"), ("POST", "/admin/reload")):  # fmt: skip
            err = _error(c.request(method, path), 401)
            assert err["type"] == "authentication_error"
            wrong = c.request(method, path, headers={"Authorization": "Bearer nope"})
            _error(wrong, 401)
        ok = {"Authorization": "Bearer s3cret"}
        assert c.get("/v1/models", headers=ok).status_code == 200
        client = OpenAI(base_url=f"{s.url}/v1", api_key="s3cret")
        assert client.completions.create(model="policy", prompt=PROMPT).choices
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=f"{s.url}/v1", api_key="wrong").models.list()


def test_upstream_failures_map_to_502_and_504_without_internals() -> None:
    req = httpx.Request("POST", "http://127.0.0.1:9/v1/completions")
    try:
        raise RuntimeError("sampling failed") from httpx.ConnectError("refused", request=req)
    except RuntimeError as exc:
        err = upstream_error(exc, "req-1", "probe")
        assert err.status == 502 and "req-1" in err.message and "127.0.0.1" not in err.message
    try:
        raise RuntimeError("sampling failed") from httpx.ReadTimeout("slow", request=req)
    except RuntimeError as exc:
        assert upstream_error(exc, "req-2").status == 504
    assert upstream_error(ConnectionRefusedError(), "r").status == 502
    assert upstream_error(TimeoutError(), "r").status == 504
    bug = upstream_error(ValueError("beam: unknown config keys ['x']"), "req-3", "strategy")
    assert (
        bug.status == 500
        and bug.message == "running the decided strategy failed (request id req-3)"
    )


def test_a_huge_prompt_is_refused_before_it_is_tokenised(engine, served_policy) -> None:
    """0.9 MB within the 1 MiB body limit: refused from its length alone (no tokenizer call,
    no forward), as too long for the context."""
    gw = Gateway(engine, str(served_policy), limits=Limits())
    prompt = "Q: " + "1+" * 450_000 + "1\n"
    with ServerThread(gw) as s, httpx.Client(base_url=s.url, timeout=120) as c:
        r = c.post("/v1/completions", json={"model": "policy", "prompt": prompt})
        err = _error(r, 400)
        assert err["code"] == "context_length_exceeded" and "at least" in err["message"]
        assert _tokens(c.get("/metrics").text) == 0
        _good(c)

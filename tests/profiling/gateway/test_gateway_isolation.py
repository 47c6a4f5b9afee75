"""A failure stays with its request (its batch-mates are answered), and a request with a seed
gets the same answer whatever it is batched with; both in the engine and through the app."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from gateway_support import ServerThread, failing_engine, metric

from planner.policy import Policy
from profiling.gateway.app import Gateway, Limits
from profiling.gateway.asks import Ask, Failure, Reply

pytestmark = pytest.mark.slow

GOOD = [f"Q: {a}+{b}\n" for a in range(1, 4) for b in range(2, 5)][:7]
BAD = "Q: 7*7+1\n"  # the verifier fails on it (see gateway_support.FailOn)


def test_the_engine_fails_only_the_failing_request(engine, policy_file) -> None:
    policy = Policy.load(policy_file)
    top = float(policy.budgets[-1])
    eng = failing_engine(engine, "7*7")
    asks = [Ask(p, top) for p in GOOD[:3]] + [Ask(BAD, top)] + [Ask(p, top) for p in GOOD[3:]]
    got = eng.run(policy, asks)
    assert [type(r) for r in got] == [Reply] * 3 + [Failure] + [Reply] * 4
    bad = got[3]
    assert bad.stage == "probe" and "7*7" in str(bad.error)
    # the probes were drawn before their scoring failed: their cost is the request's
    assert bad.spend.probe_tokens > 0 and bad.spend.probe_flops > 0 and bad.decision is None
    assert all(r.spend.candidate_flops + r.spend.probe_flops > 0 for r in got if r is not bad)


def test_a_seeded_request_gets_the_same_answer_alone_and_in_a_batch(engine, policy_file) -> None:
    policy = Policy.load(policy_file)
    top = float(policy.budgets[-1])
    me = Ask("Q: 8-3*2\n", top, seed=1234)
    others = [Ask(f"Q: {a}*{a}-1\n", top, seed=None if a % 2 else a) for a in range(1, 17)]
    alone = engine.run(policy, [me])[0]
    for batch in ([*others[:8], me, *others[8:]], [me, *others]):
        inside = engine.run(policy, batch)[batch.index(me)]
        assert (inside.text, inside.answer, inside.probe_scores, inside.probe_answers) == (
            alone.text, alone.answer, alone.probe_scores, alone.probe_answers)  # fmt: skip
        assert inside.decision == alone.decision
        assert inside.spend.as_dict() == alone.spend.as_dict()


def test_through_the_app_a_failure_fails_its_request_only(engine, served_policy, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ttc.serve")
    gw = Gateway(failing_engine(engine, "7*7"), str(served_policy), limits=Limits(window_s=0.3))
    with ServerThread(gw) as s, httpx.Client(base_url=s.url, timeout=300) as c:

        def ask(p: str) -> httpx.Response:
            return c.post("/v1/completions", json={"model": "policy", "prompt": p})

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(ask, p) for p in GOOD]
            time.sleep(0.05)  # the bad one joins the batch the others gathered into
            bad = pool.submit(ask, BAD).result()
            good = [f.result() for f in futures]
        metrics = c.get("/metrics").text
    assert [r.status_code for r in good] == [200] * 7, [r.text for r in good]
    assert bad.status_code == 500
    rid = bad.headers["x-request-id"]
    err = bad.json()["error"]
    assert err["type"] == "server_error" and rid in err["message"]
    assert "7*7" not in err["message"] and "RuntimeError" not in err["message"]  # no internals
    assert metric(metrics, "ttc_batch_requests_bucket", le="1.0") < metric(
        metrics, "ttc_batch_requests_count")  # a batch of several requests ran  # fmt: skip
    assert metric(metrics, "ttc_requests_total", route="/v1/completions", status="500") == 1
    assert metric(metrics, "ttc_requests_total", route="/v1/completions", status="200") == 7
    # the failed request's probes are counted, under its status
    assert metric(metrics, "ttc_tokens_total", kind="probe", status="500") > 0
    errors = [r for r in caplog.records if getattr(r, "event", "") == "error"]
    assert len(errors) == 1 and errors[0].fields["request_id"] == rid
    assert errors[0].exc_info and "7*7" in str(errors[0].exc_info[1])


def test_through_the_app_a_seeded_answer_does_not_depend_on_its_batch(engine, server) -> None:
    body = {"model": "policy", "prompt": "Q: 9-2*3\n", "seed": 99}
    with httpx.Client(base_url=server.url, timeout=300) as c:
        alone = c.post("/v1/completions", json=body).json()

        def other(i: int) -> int:
            b = {"model": "policy", "prompt": f"Q: {i}+{i}*2\n"}
            return c.post("/v1/completions", json=b).status_code

        with ThreadPoolExecutor(17) as pool:
            futures = [pool.submit(other, i) for i in range(1, 17)]
            time.sleep(0.02)
            inside = pool.submit(lambda: c.post("/v1/completions", json=body).json()).result()
            assert [f.result() for f in futures] == [200] * 16
    keys = ("bin", "strategy", "config", "answer", "probe", "flops")
    assert {k: inside["ttc"][k] for k in keys} == {k: alone["ttc"][k] for k in keys}
    assert inside["choices"][0]["text"] == alone["choices"][0]["text"]

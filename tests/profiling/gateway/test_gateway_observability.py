"""What operators see: a request id on every response, one access line per request, JSON lines
on demand, a line per reload, and metrics whose counts equal what the clients received."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest
from gateway_support import metric

from profiling.gateway import logs

pytestmark = pytest.mark.slow

PROMPT = "Q: 4+5\n"


def _access(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [r.fields for r in caplog.records if getattr(r, "event", "") == "access"]


def test_request_ids_and_one_access_line_per_request(server, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ttc.serve")
    with httpx.Client(base_url=server.url, timeout=120) as c:
        mine = c.post("/v1/completions", json={"model": "policy", "prompt": PROMPT},
                      headers={"x-request-id": "client-7"})  # fmt: skip
        theirs = c.post("/v1/completions", json={"model": "policy", "prompt": PROMPT})
        odd = c.get("/healthz", headers={"x-request-id": "bad id with spaces"})
        lost = c.get("/v1/nothing-here")
    assert mine.status_code == 200 and mine.headers["x-request-id"] == "client-7"
    made = theirs.headers["x-request-id"]
    assert len(made) == 32 and made != "client-7"
    assert odd.headers["x-request-id"] != "bad id with spaces"  # not echoed: one of ours
    assert lost.status_code == 404 and lost.headers["x-request-id"]
    err = lost.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and "/v1/nothing-here" in err["message"]
    ids = ["client-7", made, odd.headers["x-request-id"], lost.headers["x-request-id"]]
    # (another test's server may still be writing its own lines: keep this test's)
    lines = [ln for ln in _access(caplog) if ln["request_id"] in ids]
    assert [ln["request_id"] for ln in lines] == ids  # one line per request, in order
    first = lines[0]
    ttc = mine.json()["ttc"]
    assert (first["route"], first["status"], first["bin"], first["strategy"]) == (
        "/v1/completions", 200, str(ttc["bin"]), ttc["strategy"])  # fmt: skip
    assert first["budget"] == ttc["requested_budget"] and first["latency_ms"] > 0
    assert first["tokens"] == mine.json()["usage"]["total_tokens"]
    assert lines[3]["status"] == 404


def test_json_log_lines(server) -> None:
    buf = io.StringIO()
    logs.configure(json_lines=True, stream=buf)
    try:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            for i, body in enumerate(({"model": "policy", "prompt": PROMPT},
                                      {"model": "nope", "prompt": PROMPT})):  # fmt: skip
                c.post("/v1/completions", json=body, headers={"x-request-id": f"json-{i}"})
            c.post("/admin/reload", headers={"x-request-id": "json-2"})
    finally:
        logging.getLogger("ttc.serve").handlers.clear()
        logging.getLogger("uvicorn.error").handlers.clear()
    docs = [json.loads(ln) for ln in buf.getvalue().splitlines()]
    ours = [d for d in docs if d["event"] == "reload" or d.get("request_id", "")[:5] == "json-"]
    assert [d["event"] for d in ours] == ["access", "access", "reload", "access"]
    assert [d.get("status") for d in ours if d["event"] == "access"] == [200, 404, 200]
    assert ours[2]["source"] == "http" and ours[2]["result"] == "ok"
    assert all(d["ts"].endswith("Z") and d["level"] == "info" for d in ours)


def test_metrics_count_what_the_clients_got(server) -> None:
    sent: dict[tuple[str, int], int] = {}
    usage = {"probe": 0, "candidate": 0}
    flops = 0.0
    bodies = [
        {"model": "policy", "prompt": PROMPT},
        {"model": "policy", "prompt": "Q: 3*3\n", "max_tokens": 2},
        {"model": "policy@nan", "prompt": PROMPT},
        {"model": "gpt-4", "prompt": PROMPT},
        {"model": "policy", "prompt": "1+" * 1200},
        {"model": "policy", "prompt": PROMPT, "stream": True},
    ]
    with httpx.Client(base_url=server.url, timeout=120) as c:
        before = c.get("/metrics").text
        for body in bodies * 2:
            r = c.post("/v1/completions", json=body)
            sent[("/v1/completions", r.status_code)] = (
                sent.get(("/v1/completions", r.status_code), 0) + 1
            )
            if r.status_code == 200:
                u = r.json()["ttc"]["usage"]
                usage["probe"] += u["probe_tokens"]
                usage["candidate"] += u["candidate_tokens"]
                flops += u["total_flops"]
        for path in ("/v1/models", "/nowhere"):
            r = c.get(path)
            route = path if path == "/v1/models" else "other"
            sent[(route, r.status_code)] = sent.get((route, r.status_code), 0) + 1
        after = c.get("/metrics").text
    assert sent[("/v1/completions", 200)] == 4 and sent[("/v1/completions", 400)] == 6
    for (route, status), n in sent.items():
        got = metric(after, "ttc_requests_total", route=route, status=str(status))
        assert got - metric(before, "ttc_requests_total", route=route, status=str(status)) == n
    for kind, n in usage.items():
        d = metric(after, "ttc_tokens_total", kind=kind, status="200") - metric(
            before, "ttc_tokens_total", kind=kind, status="200")  # fmt: skip
        assert d == n
    spent = metric(after, "ttc_flops_total", status="200") - metric(
        before, "ttc_flops_total", status="200")  # fmt: skip
    assert spent == pytest.approx(flops, rel=1e-9)
    # the refused requests spent nothing: no work is counted under 4xx
    assert metric(after, "ttc_tokens_total", status="400") == 0

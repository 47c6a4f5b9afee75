"""Reloading the policy (valid, invalid, during requests), SIGHUP, graceful shutdown with
requests in flight, and a bad policy at start, on real servers."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from gateway_support import VERIFIER, free_port

from planner.cli import main

pytestmark = pytest.mark.slow

PROMPTS = [f"Q: {a}+{b}\n" for a in range(1, 5) for b in range(1, 5)]


def _fewer_budgets(src: Path, dst: Path) -> list[float]:
    """The same policy restricted to its smallest budget (a valid, different file)."""
    doc = json.loads(src.read_text())
    keep = doc["budgets"][:1]
    doc["budgets"] = keep
    doc["decisions"] = [d for d in doc["decisions"] if d["budget"] in keep]
    tmp = dst.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, sort_keys=True, indent=2) + "\n")
    tmp.replace(dst)
    return keep


def test_reload_valid_invalid_and_during_requests(server, served_policy) -> None:
    original = served_policy.read_bytes()
    with httpx.Client(base_url=server.url, timeout=120) as c:
        v1 = c.get("/healthz").json()["policy"]
        # invalid: refused, the old policy keeps serving
        served_policy.write_text('{"schema_version": 1, "kind": "ttc-policy"')
        r = c.post("/admin/reload")
        assert r.status_code == 400 and "reload refused" in r.json()["error"]["message"]
        assert c.get("/healthz").json()["policy"] == v1
        r = c.post("/v1/completions", json={"model": "policy", "prompt": PROMPTS[0]})
        assert r.status_code == 200 and r.headers["x-ttc-policy"] == v1
        # valid: version 2 with one budget
        keep = _fewer_budgets_from(original, served_policy)
        r = c.post("/admin/reload")
        assert r.status_code == 200 and r.json()["policy"]["version"] == 2
        v2 = r.json()["policy"]["label"]
        ids = [m["id"] for m in c.get("/v1/models").json()["data"]]
        assert ids == ["policy", f"policy@{keep[0]:g}"]

        # during requests: each request finishes on the policy it started with
        served_policy.write_bytes(original)

        def ask(p: str) -> httpx.Response:
            return c.post("/v1/completions", json={"model": "policy", "prompt": p})

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(ask, p) for p in PROMPTS]
            time.sleep(0.05)
            reloaded = c.post("/admin/reload")
            results = [f.result() for f in futures]
        assert reloaded.status_code == 200 and reloaded.json()["policy"]["version"] == 3
        labels = {r.headers["x-ttc-policy"] for r in results}
        assert all(r.status_code == 200 for r in results)
        assert labels <= {v2, reloaded.json()["policy"]["label"]}
        metrics = c.get("/metrics").text
    assert 'ttc_policy_reloads_total{result="refused"} 1.0' in metrics
    assert 'ttc_policy_reloads_total{result="ok"} 2.0' in metrics


def _fewer_budgets_from(original: bytes, path: Path) -> list[float]:
    path.write_bytes(original)
    return _fewer_budgets(path, path)


def _in_flight(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("ttc_in_flight_requests "):
            return float(line.split()[-1])
    return 0.0


def _start(policy: Path, testbed: Path, port: int) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "planner.cli", "serve", "--policy", str(policy),
        "--testbed", str(testbed), "--model", "testbed:policy", "--verifier", VERIFIER,
        "--port", str(port), "--batch-window-ms", "500",
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_up(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ttc serve exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("ttc serve did not start")


def test_sighup_reloads_and_sigterm_drains_requests_in_flight(
    policy_file: Path, quick_testbed: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.json"
    shutil.copyfile(policy_file, policy)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(policy, quick_testbed, port)
    try:
        _wait_up(url, proc)
        keep = _fewer_budgets(policy, policy)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/healthz").json()["policy"].endswith("/v1"):
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.05)
        models = httpx.get(f"{url}/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["policy", f"policy@{keep[0]:g}"]
        # a bad file on SIGHUP: refused, still serving version 2
        policy.write_text("not json")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert httpx.get(f"{url}/healthz").json()["policy"].endswith("/v2")

        results: list[int] = []

        def ask(p: str) -> None:
            body = {"model": "policy", "prompt": p, "max_tokens": 64}
            try:
                r = httpx.post(f"{url}/v1/completions", json=body, timeout=120)
                results.append(r.status_code)
            except httpx.TransportError:
                results.append(-1)  # not yet connected when the server stopped listening

        threads = [threading.Thread(target=ask, args=(p,)) for p in PROMPTS[:8]]
        for t in threads:
            t.start()
        # the first request runs at once, the others gather in the 500 ms batching window:
        # several requests are in flight when SIGTERM comes
        deadline = time.monotonic() + 30
        while (in_flight := _in_flight(url)) < 4:
            assert time.monotonic() < deadline, "the requests did not arrive"
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        # draining: still listening, /healthz answers 503 while the requests finish
        health = httpx.get(f"{url}/healthz")
        assert health.status_code == 503 and health.json()["status"] == "draining"
        for t in threads:
            t.join(120)
        assert proc.wait(120) == 0  # then a clean exit
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # every request in flight at SIGTERM was answered, none failed half-way; one that came
    # during the drain was refused with 503 (or found the port closed once it was over)
    assert len(results) == 8 and set(results) <= {200, 503, -1}, results
    assert results.count(200) >= in_flight
    stderr = proc.stderr.read() if proc.stderr else ""
    lines = stderr.splitlines()
    assert "reload refused" in stderr
    assert sum("reloaded" in ln and "source=signal" in ln for ln in lines) == 1
    assert any("SIGTERM: draining" in ln for ln in lines)
    assert lines[-1].startswith("ttc serve: stopped")


def test_a_bad_policy_fails_at_start_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "policy.json"
    bad.write_text('{"schema_version": 1}')
    res = CliRunner().invoke(main, ["serve", "--policy", str(bad), "--model", "x"])
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "policy.json" in lines[0]
    res = CliRunner().invoke(main, ["serve", "--policy", str(tmp_path / "missing.json")])
    assert res.exit_code != 0 and "not found" in res.output


def test_serve_help_has_an_example() -> None:
    res = CliRunner().invoke(main, ["serve", "--help"], env={"COLUMNS": "100"})
    assert res.exit_code == 0 and "ttc serve --policy" in res.output

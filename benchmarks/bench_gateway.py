"""The policy gateway under load on loopback: throughput, the promise in serving, and a chaos run.

1. A policy for the quick testbed through the real chain (`ttc profile` with sample n=16 and beam
   n=6 on --fit-problems problems, `ttc curves --probe-k 4`, `ttc plan --bin-by predicted
   --select-rule best`, `ttc policy export`), or --policy FILE (with --verifier naming the
   verifier it was made with). Printed: what its decisions spend at the served budget beyond the
   probes (the policy must spend its budget, not only the probes, for the throughput figures
   to measure the strategies).
2. `ttc serve` in a subprocess (in-process backend on --threads torch threads, --window-ms
   micro-batching window, 256 rows per forward batch), then --problems fresh testbed problems
   (another seed than the policy's) at each --concurrency level with httpx (async, closed loop).
   Printed per level: errors, p50 / p99 latency, throughput, mean requests per micro-batch.
3. The batching gain without HTTP, in the same run: the engine alone, 64 requests one at a time
   vs 32 at once; goal: the HTTP ratio (concurrency 32 / 1) >= 0.9 of the engine's.
4. The promise under load (the concurrency-32 answers graded by the testbed's grader): realised
   accuracy within the decisions' promised interval overall and in each bin with >= 50
   requests (95% bootstrap CIs printed), realised FLOPs within 5% of the expected.
5. A seeded chaos run at concurrency 32 (--chaos requests): good requests at every budget (and
   between, below the smallest, the default, chat and completions, seeded or not, capped
   max_tokens), bad requests of every kind the gateway refuses, and the search decisions the
   policy makes for hard prompts. Goal: every good request 200, every bad one its own 4xx and
   code, no 5xx, and the client's counts by route and status equal to /metrics' exactly.

Run:  nice -n 10 .venv/bin/python benchmarks/bench_gateway.py [--problems 1000] [--chaos 2000]
Figures are ratios and rates measured in one run on this machine, never asserted by tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402
from gateway_support import VERIFIER, free_port, make_policy, metric  # noqa: E402

from planner.stats import mean_ci  # noqa: E402

MAX_BYTES = 65536  # the served --max-request-bytes
# The policy's profile: a pool large enough that the plan spends budgets beyond the k = 4 probes,
# and a beam search the plan chooses in some bins.
STRATEGIES = (
    "sample:n=16,max_new_tokens=64",
    "beam:n=6,m=2,max_step_tokens=32,max_new_tokens=64",
)


def _problems(n: int, seed: int, levels: tuple[int, ...] = (1, 2, 3)) -> list[Any]:
    from models.testbed.task import generate_problems
    from profiling.problems import testbed_problems

    return testbed_problems(generate_problems(n, seed, levels))


async def _send(c: aiohttp.ClientSession, req: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    method, path = req.get("method", "POST"), req["path"]
    kw: dict[str, Any] = {}
    if "raw" in req:
        kw = {"data": req["raw"], "headers": {"content-type": "application/json"}}
    elif "body" in req:
        kw = {"json": req["body"]}
    try:
        async with c.request(method, path, **kw) as r:
            raw = await r.read()
            data = json.loads(raw) if r.content_type == "application/json" else {}
            return {**req, "status": r.status, "data": data, "s": time.perf_counter() - t0}
    except aiohttp.ClientError as exc:
        return {**req, "status": -1, "data": {"error": str(exc)}, "s": time.perf_counter() - t0}


async def _run(url: str, reqs: list[dict[str, Any]], conc: int) -> tuple[list[dict], float]:
    """Closed loop: `conc` clients, each sending its next request once answered (aiohttp: its
    client costs a fraction of httpx's CPU per request, which a 2-core machine shares with the
    gateway)."""
    sem = asyncio.Semaphore(conc)
    timeout = aiohttp.ClientTimeout(total=600)
    connector = aiohttp.TCPConnector(limit=conc + 4)
    async with aiohttp.ClientSession(url, timeout=timeout, connector=connector) as c:

        async def one(req: dict[str, Any]) -> dict[str, Any]:
            async with sem:
                return await _send(c, req)

        t = time.perf_counter()
        out = await asyncio.gather(*(one(r) for r in reqs))
        return list(out), time.perf_counter() - t


def _good(p: Any, budget: float | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "policy", "prompt": p.prompt}
    if budget is not None:
        body["ttc_budget"] = budget
    return {"kind": "good", "path": "/v1/completions", "body": body, "problem": p, "want": 200}


def _engine_ratio(
    policy: Path, testbed: Path, verifier: str, problems: list, threads: int
) -> float:
    """The same batching without HTTP: the engine alone, one request at a time vs 32 at once."""
    from profiling.gateway.asks import Ask
    from profiling.gateway.loading import load_engine, load_policy

    flags = {"model": "testbed:policy", "testbed": str(testbed), "verifier": (verifier,),
             "batch_size": 256}  # fmt: skip
    engine = load_engine(None, flags, threads=threads)
    pol = load_policy(policy, 1, engine).policy
    budget = float(pol.budgets[-1])
    engine.run(pol, [Ask(p.prompt, budget) for p in problems[:8]])  # warm-up
    t = time.perf_counter()
    for p in problems[:64]:
        engine.run(pol, [Ask(p.prompt, budget)])
    one = 64 / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(0, 64, 32):
        engine.run(pol, [Ask(p.prompt, budget) for p in problems[i : i + 32]])
    many = 64 / (time.perf_counter() - t)
    print(f"engine alone (no HTTP), 64 requests: {one:.1f} req/s one at a time, {many:.1f} req/s "
          f"in batches of 32: {many / one:.2f}x")  # fmt: skip
    return many / one


def _batches(url: str) -> tuple[float, float]:
    text = httpx.get(f"{url}/metrics").text
    return metric(text, "ttc_batch_requests_sum"), metric(text, "ttc_batch_requests_count")


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def _spending(policy: Path, budget: float | None) -> None:
    doc = json.loads(policy.read_text())
    b = budget if budget is not None else max(doc["budgets"])
    at = [d for d in doc["decisions"] if d["budget"] == max(x for x in doc["budgets"] if x <= b)]
    k = doc["probe"]["k"]
    beyond = [d for d in at if not d["probe_reused"] or d["option_budget"] > k]
    print(f"policy {policy}: at budget {b:g}, {len(beyond)} of {len(at)} bins' decisions draw "
          f"candidates beyond the k={k} probes: "
          + ", ".join(f"bin {d['bin']} {d['strategy']}@{d['option_budget']:g}"
                      for d in at))  # fmt: skip


def _promise(results: list[dict[str, Any]], ci: float) -> None:
    from profiling.grading import get_grader

    g = get_grader("testbed")
    rows = [r for r in results if r["status"] == 200 and not r["data"]["ttc"]["off_policy"]]
    ttc = [r["data"]["ttc"] for r in rows]
    correct = np.array([float(g.is_correct(r["data"]["choices"][0]["text"], r["problem"].answer))
                        for r in rows])  # fmt: skip
    promised = np.array([t["expected_accuracy"] for t in ttc])
    lo, hi = np.array([t["ci"][0] for t in ttc]), np.array([t["ci"][1] for t in ttc])
    flops, exp_flops = (
        np.array([t["flops"] for t in ttc]),
        np.array([t["expected_flops"] for t in ttc]),
    )
    bins = np.array([-1 if t["bin"] is None else t["bin"] for t in ttc])
    rng = np.random.default_rng(0)
    print("\nthe promise under load (concurrency-32 answers, testbed grader, 95% bootstrap CIs):")
    print(f"  {'group':>8} {'n':>5} {'promised [interval]':>24} {'realised [95% CI]':>24} "
          f"{'within':>6} {'FLOPs real/exp':>14}")  # fmt: skip
    groups = [("overall", np.ones(len(rows), bool))]
    groups += [(f"bin {b}" if b >= 0 else "no bin", bins == b) for b in sorted(set(bins.tolist()))]
    for name, m in groups:
        r_m, r_lo, r_hi = mean_ci(correct[m], ci, 2000, rng)
        p_lo, p_hi = lo[m].mean(), hi[m].mean()
        inside = p_lo <= r_m <= p_hi
        judged = "yes" if inside else "NO"
        if name != "overall" and m.sum() < 50:
            judged = f"({judged})"  # fewer than 50 requests: not judged
        ratio = flops[m].mean() / exp_flops[m].mean()
        print(f"  {name:>8} {int(m.sum()):>5} {100 * promised[m].mean():6.1f}% [{100 * p_lo:5.1f},"
              f"{100 * p_hi:5.1f}]    {100 * r_m:6.1f}% [{100 * r_lo:5.1f},{100 * r_hi:5.1f}]   "
              f"{judged:>6} {ratio:13.3f}x")  # fmt: skip
    ratio = flops.mean() / exp_flops.mean()
    print(f"  goal: realised within the promised interval overall and in each bin with >= 50 "
          f"requests; FLOPs within 5%: {ratio:.3f}x "
          f"({'met' if abs(ratio - 1) <= 0.05 else 'not met'})")  # fmt: skip


def _chaos(problems: list[Any], budgets: list[float], n: int, seed: int) -> list[dict[str, Any]]:
    """A seeded mix: 60% good requests of every shape, 40% bad ones of every kind."""
    rng = random.Random(seed)
    top = max(budgets)
    pick_budget = [*budgets, budgets[0] / 2, (budgets[0] + budgets[-1]) / 2, None]

    def good() -> dict[str, Any]:
        p = rng.choice(problems)
        b = rng.choice(pick_budget)
        req = _good(p)
        body = req["body"]
        if b is not None:
            if rng.random() < 0.5:
                body["model"] = f"policy@{b:g}"
            else:
                body["ttc_budget"] = b
        if rng.random() < 0.3:
            body.pop("prompt")
            body["messages"] = [{"role": "user", "content": p.prompt}]
            req["path"] = "/v1/chat/completions"
        if rng.random() < 0.2:
            body["seed"] = rng.randrange(1000)
        if rng.random() < 0.1:
            body["max_tokens"] = rng.choice([4, 16])  # served, marked off-policy
        return req

    p0 = problems[0].prompt
    bad: list[tuple[str, dict[str, Any], int, str | None]] = [
        ("malformed_json", {"raw": b'{"model": "policy", "prompt": '}, 400, None),
        ("not_an_object", {"body": [1, 2]}, 400, None),
        ("unknown_field", {"body": {"model": "policy", "prompt": p0, "k": 1}}, 400, None),
        ("unknown_model", {"body": {"model": "gpt-4", "prompt": p0}}, 404, "model_not_found"),
        ("budget_not_a_number", {"body": {"model": "policy@lots", "prompt": p0}}, 404,
         "model_not_found"),
        ("nan_budget", {"body": {"model": "policy@nan", "prompt": p0}}, 400, "invalid_budget"),
        ("inf_budget", {"body": {"model": "policy@inf", "prompt": p0}}, 400, "invalid_budget"),
        ("nan_in_body", {"raw": b'{"model": "policy", "prompt": "Q: 1+1\\n", "ttc_budget": NaN}'},
         400, None),
        ("above_largest", {"body": {"model": f"policy@{top * 2:g}", "prompt": p0}}, 400,
         "budget_out_of_range"),
        ("negative", {"body": {"model": "policy", "prompt": p0, "ttc_budget": -1}}, 400,
         "budget_out_of_range"),
        ("contradiction", {"body": {"model": f"policy@{top:g}", "prompt": p0,
                                    "ttc_budget": budgets[0] / 2}}, 400, None),
        ("stream", {"body": {"model": "policy", "prompt": p0, "stream": True}}, 400, None),
        ("n_2", {"body": {"model": "policy", "prompt": p0, "n": 2}}, 400, None),
        ("max_tokens_huge", {"body": {"model": "policy", "prompt": p0, "max_tokens": 10**6}},
         400, None),
        ("max_tokens_zero", {"body": {"model": "policy", "prompt": p0, "max_tokens": 0}}, 400,
         None),
        ("too_large", {"body": {"model": "policy", "prompt": "1+" * MAX_BYTES}}, 413, None),
        ("context", {"body": {"model": "policy", "prompt": "Q: " + "1+" * 2000 + "1\n"}}, 400,
         "context_length_exceeded"),
        ("empty_prompt", {"body": {"model": "policy", "prompt": ""}}, 400, None),
        ("bad_messages", {"path": "/v1/chat/completions", "body": {"model": "policy",
                                                                  "messages": "hi"}}, 400, None),
        ("bad_role", {"path": "/v1/chat/completions", "body": {"model": "policy", "messages": [
            {"role": "robot", "content": p0}]}}, 400, None),
        ("unknown_route", {"path": "/v1/engines", "body": {}}, 404, None),
        ("wrong_method", {"method": "GET", "path": "/v1/completions"}, 405, None),
    ]  # fmt: skip
    out = []
    for i in range(n):
        if rng.random() < 0.6:
            out.append(good())
            continue
        name, req, status, code = bad[i % len(bad)] if i < 2 * len(bad) else rng.choice(bad)
        out.append({"kind": name, "path": "/v1/completions", **req, "want": status, "code": code})
    return out


def _check_chaos(results: list[dict[str, Any]], before: str, after: str) -> None:
    wrong = [r for r in results if r["status"] != r["want"] or (
        r.get("code") and r["data"].get("error", {}).get("code") != r["code"])]  # fmt: skip
    kinds = Counter(r["kind"] for r in results)
    good = [r for r in results if r["kind"] == "good"]
    strategies = Counter(r["data"]["ttc"]["strategy"] for r in good if r["status"] == 200)
    off = sum(bool(r["data"]["ttc"]["off_policy"]) for r in good if r["status"] == 200)
    print(f"\nchaos run: {len(results)} requests at concurrency 32, {len(good)} good "
          f"({dict(strategies)}; {off} off-policy), {len(kinds) - 1} kinds of bad "
          "request")  # fmt: skip
    print(f"  good requests not answered 200: {sum(r['status'] != 200 for r in good)} (goal 0)")
    print(f"  bad requests without their own 4xx and code: "
          f"{sum(1 for r in wrong if r['kind'] != 'good')} (goal 0); 5xx: "
          f"{sum(r['status'] >= 500 for r in results)} (goal 0)")  # fmt: skip
    for r in wrong[:5]:
        print(f"    {r['kind']}: got {r['status']} {str(r['data'])[:160]}, wanted {r['want']}")
    sent = Counter(
        (r["path"] if r["path"] != "/v1/engines" else "other", r["status"]) for r in results
    )
    off_by = {
        k: v - (metric(after, "ttc_requests_total", route=k[0], status=str(k[1]))
                - metric(before, "ttc_requests_total", route=k[0], status=str(k[1])))
        for k, v in sent.items()
    }  # fmt: skip
    bad_counts = {k: v for k, v in off_by.items() if v}
    print(f"  client counts by (route, status) equal /metrics' exactly: "
          f"{'yes' if not bad_counts else f'NO {bad_counts}'} ({dict(sent)})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--fit-problems", type=int, default=400)
    ap.add_argument("--concurrency", default="1,32")
    ap.add_argument("--chaos", type=int, default=2000, help="requests of the chaos run (0: none)")
    ap.add_argument("--seed", type=int, default=0, help="the chaos run's mix")
    ap.add_argument("--budget", type=float, default=None, help="default: the policy's largest")
    ap.add_argument("--policy", default=None)
    ap.add_argument("--verifier", default=VERIFIER)
    ap.add_argument("--window-ms", type=float, default=50.0, help="micro-batching window")
    ap.add_argument("--threads", type=int, default=1, help="the gateway's torch threads")
    ap.add_argument("--workers", type=int, default=1, help="the gateway's batcher threads")
    ap.add_argument("--work", default=None, help="directory for the policy (default: a temp dir)")
    args = ap.parse_args()

    from models.testbed import ensure_testbed

    testbed = ensure_testbed(quick=True, scale="default", seed=0, progress=False)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-gateway-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.policy:
        policy = Path(args.policy)
    elif (work / "policy.json").is_file():
        policy = work / "policy.json"
    else:
        t = time.perf_counter()
        policy = make_policy(testbed, work, args.fit_problems, STRATEGIES, select_rule="best")
        print(f"policy: {policy} ({time.perf_counter() - t:.0f} s to profile, plan and export)")
    _spending(policy, args.budget)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "planner.cli", "serve", "--policy", str(policy),
           "--testbed", str(testbed), "--model", "testbed:policy", "--verifier", args.verifier,
           "--port", str(port), "--max-batch", "64", "--batch-size", "256",
           "--batch-window-ms", str(args.window_ms), "--threads", str(args.threads),
           "--workers", str(args.workers), "--max-request-bytes", str(MAX_BYTES)]  # fmt: skip
    log = open(work / "serve.log", "w")  # noqa: SIM115 (the server's life is this block)
    proc = subprocess.Popen(cmd, stderr=log, text=True, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"ttc serve did not start: see {work / 'serve.log'}")
            time.sleep(0.2)
        problems = _problems(args.problems, seed=7_000)
        asyncio.run(_run(url, [_good(p, args.budget) for p in problems[:8]], 8))  # warm-up
        print(f"\n{len(problems)} testbed problems (levels 1-3) per level, {os.cpu_count()} cores")
        print(
            f"  {'conc':>4} {'errors':>6} {'p50 s':>7} {'p99 s':>7} {'req/s':>7} {'mean batch':>10}"
        )
        rates: dict[int, float] = {}
        last: list[dict[str, Any]] = []
        for conc in [int(c) for c in args.concurrency.split(",")]:
            before = _batches(url)
            res, wall = asyncio.run(_run(url, [_good(p, args.budget) for p in problems], conc))
            after = _batches(url)
            mean_batch = (after[0] - before[0]) / max(after[1] - before[1], 1)
            lat = [r["s"] for r in res if r["status"] == 200]
            rates[conc] = len(lat) / wall
            print(f"  {conc:>4} {len(res) - len(lat):>6} {_pct(lat, 50):7.3f} {_pct(lat, 99):7.3f} "
                  f"{rates[conc]:7.2f} {mean_batch:10.1f}")  # fmt: skip
            last = res
        lo, hi = min(rates), max(rates)
        http_ratio = rates[hi] / rates[lo]
        metrics = httpx.get(f"{url}/metrics").text
        share = metric(metrics, "ttc_probe_flops_share_sum") / max(
            metric(metrics, "ttc_probe_flops_share_count"), 1)  # fmt: skip
        print(f"  throughput at concurrency {hi} / concurrency {lo}: {http_ratio:.2f}x; "
              f"probe share of FLOPs (mean per request): {share:.2f}")  # fmt: skip
        _promise(last, 0.95)
        if args.chaos:
            chaos_problems = _problems(400, seed=9_000, levels=tuple(range(1, 9)))
            budgets = [float(b) for b in json.loads(policy.read_text())["budgets"]]
            reqs = _chaos(chaos_problems, budgets, args.chaos, args.seed)
            before = httpx.get(f"{url}/metrics").text
            res, wall = asyncio.run(_run(url, reqs, 32))
            after = httpx.get(f"{url}/metrics").text
            _check_chaos(res, before, after)
            lat = [r["s"] for r in res if r["kind"] == "good" and r["status"] == 200]
            print(f"  {len(res) / wall:.1f} req/s; good requests' p50 / p99 "
                  f"{_pct(lat, 50):.3f} / {_pct(lat, 99):.3f} s")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(120)
            print(f"\nttc serve exited {rc} after SIGTERM (server log: {work / 'serve.log'})")
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    engine = _engine_ratio(policy, testbed, args.verifier, problems, args.threads)
    print(f"HTTP ratio / engine-alone ratio: {http_ratio / engine:.2f} (goal >= 0.9)")


if __name__ == "__main__":
    main()

"""The policy gateway under load on loopback, and its promise in serving.

1. A policy for the quick testbed through the real chain (`ttc profile` with sample n=8 and beam
   n=4 on --fit-problems problems, `ttc curves --probe-k 4`, `ttc plan --bin-by predicted`,
   `ttc policy export`), or --policy FILE (with --verifier naming the verifier it was made with).
2. `ttc serve` in a subprocess (in-process backend on --threads torch threads, 20 ms adaptive
   micro-batching window, 256 rows per forward batch), then the same --problems fresh testbed
   problems (another seed than the policy's) sent at concurrency 1, 8 and 32 with httpx (async;
   each level runs every problem once, then stops).
3. Printed per level: errors (goal 0), p50 / p99 latency, throughput, mean requests per
   micro-batch, and throughput at concurrency 32 / concurrency 1 (goal >= 4x on 2 cores, from
   batching across requests).
4. The promise: the answers of the concurrency-32 run graded by the testbed's grader, overall and
   per predicted bin (from x-ttc-bin), against the policy's promised accuracy of the decisions
   made (mean over requests), with 95% bootstrap intervals (goal: within 2 points overall); the
   realised FLOPs per request (x-ttc-flops) against the decisions' expected FLOPs (goal: 5%).
5. The batching gain without HTTP: the engine alone, 64 requests one at a time vs 32 at once
   (what the micro-batcher can gain at most; the load run shows what HTTP leaves of it).

Run:  .venv/bin/python benchmarks/bench_gateway.py [--problems 1000] [--budget B] [--threads 2]
Figures are ratios and rates measured in one run on this machine, never asserted by tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from gateway_support import VERIFIER, free_port, make_policy  # noqa: E402

from planner.stats import mean_ci  # noqa: E402


def _problems(n: int, seed: int) -> list[Any]:
    from models.testbed.task import generate_problems
    from profiling.problems import testbed_problems

    return testbed_problems(generate_problems(n, seed, (1, 2, 3)))


async def _load(url: str, problems: list[Any], budget: float | None, conc: int) -> dict[str, Any]:
    sem = asyncio.Semaphore(conc)
    out: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(
        max_connections=conc + 4, max_keepalive_connections=conc + 4)) as c:  # fmt: skip

        async def one(p: Any) -> None:
            body: dict[str, Any] = {"model": "policy", "prompt": p.prompt}
            if budget is not None:
                body["ttc_budget"] = budget
            async with sem:
                t0 = time.perf_counter()
                try:
                    r = await c.post("/v1/completions", json=body)
                    ok = r.status_code == 200
                    data = r.json() if ok else None
                except httpx.HTTPError:
                    ok, data = False, None
                out.append({"problem": p, "ok": ok, "s": time.perf_counter() - t0, "data": data})

        t = time.perf_counter()
        await asyncio.gather(*(one(p) for p in problems))
        wall = time.perf_counter() - t
    return {"results": out, "wall": wall}


def _engine_ratio(
    policy: Path, testbed: Path, verifier: str, problems: list[Any], threads: int
) -> None:
    """The same batching without HTTP: the engine alone, one request at a time vs 32 at once."""
    from profiling.gateway.engine import Ask
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
    print(f"\nengine alone (no HTTP), 64 requests: {one:.1f} req/s one at a time, {many:.1f} req/s "
          f"in batches of 32: {many / one:.2f}x")  # fmt: skip


def _batches(url: str) -> tuple[float, float]:
    """(requests, batches) run so far, from the gateway's batch-size histogram."""
    text = httpx.get(f"{url}/metrics").text
    get = {ln.split()[0]: float(ln.split()[-1]) for ln in text.splitlines() if ln[:1] != "#"}
    return get.get("ttc_batch_requests_sum", 0.0), get.get("ttc_batch_requests_count", 0.0)


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def _promise(results: list[dict[str, Any]], ci: float) -> None:
    from profiling.grading import get_grader

    g = get_grader("testbed")
    rows = [r for r in results if r["ok"]]
    correct = np.array([float(g.is_correct(r["data"]["choices"][0]["text"], r["problem"].answer))
                        for r in rows])  # fmt: skip
    promised = np.array([r["data"]["ttc"]["expected_accuracy"] for r in rows])
    lo = np.array([r["data"]["ttc"]["ci"][0] for r in rows])
    hi = np.array([r["data"]["ttc"]["ci"][1] for r in rows])
    flops = np.array([r["data"]["ttc"]["flops"] for r in rows])
    exp_flops = np.array([r["data"]["ttc"]["expected_flops"] for r in rows])
    bins = np.array([r["data"]["ttc"]["bin"] for r in rows])
    rng = np.random.default_rng(0)
    print("\nthe promise in serving (concurrency-32 run, testbed grader, 95% bootstrap CIs):")
    print(f"  {'group':>8} {'n':>5} {'promised':>22} {'realised':>22} {'diff':>7} "
          f"{'FLOPs real/expected':>20}")  # fmt: skip
    groups = [("overall", np.ones(len(rows), bool))]
    groups += [(f"bin {b}", bins == b) for b in sorted(set(bins.tolist()))]
    for name, m in groups:
        r_m, r_lo, r_hi = mean_ci(correct[m], ci, 2000, rng)
        p_m = promised[m].mean()
        ratio = flops[m].mean() / exp_flops[m].mean()
        print(
            f"  {name:>8} {int(m.sum()):>5} {100 * p_m:6.1f}% [{100 * lo[m].mean():5.1f},"
            f"{100 * hi[m].mean():5.1f}] {100 * r_m:6.1f}% [{100 * r_lo:5.1f},{100 * r_hi:5.1f}]"
            f" {100 * (r_m - p_m):+6.1f} {ratio:19.3f}x"
        )
    diff = abs(correct.mean() - promised.mean())
    ratio = flops.mean() / exp_flops.mean()
    print(f"  goal: |realised - promised| <= 2 points overall: {100 * diff:.1f} points "
          f"({'met' if diff <= 0.02 else 'not met'}); realised FLOPs within 5% of expected: "
          f"{ratio:.3f}x ({'met' if abs(ratio - 1) <= 0.05 else 'not met'})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--fit-problems", type=int, default=400)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--budget", type=float, default=None, help="default: the policy's largest")
    ap.add_argument("--policy", default=None)
    ap.add_argument("--verifier", default=VERIFIER)
    ap.add_argument("--window-ms", type=float, default=20.0, help="micro-batching window")
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
        policy = make_policy(testbed, work, n=args.fit_problems)
        print(f"policy: {policy} ({time.perf_counter() - t:.0f} s to profile, plan and export)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "planner.cli", "serve", "--policy", str(policy),
           "--testbed", str(testbed), "--model", "testbed:policy", "--verifier", args.verifier,
           "--port", str(port), "--max-batch", "64", "--batch-size", "256",
           "--batch-window-ms", str(args.window_ms), "--threads", str(args.threads),
           "--workers", str(args.workers)]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"ttc serve did not start: {proc.stderr.read()}")
            time.sleep(0.2)
        problems = _problems(args.problems, seed=7_000)
        asyncio.run(_load(url, problems[:8], args.budget, 8))  # warm-up
        print(f"\n{len(problems)} testbed problems (levels 1-3) per level, {os.cpu_count()} cores")
        print(
            f"  {'conc':>4} {'errors':>6} {'p50 s':>7} {'p99 s':>7} {'req/s':>7} {'mean batch':>10}"
        )
        rates: dict[int, float] = {}
        last: list[dict[str, Any]] = []
        for conc in [int(c) for c in args.concurrency.split(",")]:
            before = _batches(url)
            run = asyncio.run(_load(url, problems, args.budget, conc))
            after = _batches(url)
            mean_batch = (after[0] - before[0]) / max(after[1] - before[1], 1)
            res = run["results"]
            lat = [r["s"] for r in res if r["ok"]]
            errors = sum(not r["ok"] for r in res)
            rates[conc] = len(lat) / run["wall"]
            print(f"  {conc:>4} {errors:>6} {_pct(lat, 50):7.3f} {_pct(lat, 99):7.3f} "
                  f"{rates[conc]:7.2f} {mean_batch:10.1f}")  # fmt: skip
            last = res
        lo, hi = min(rates), max(rates)
        print(f"  throughput at concurrency {hi} / concurrency {lo}: {rates[hi] / rates[lo]:.2f}x "
              f"(goal >= 4x)")  # fmt: skip
        metrics = httpx.get(f"{url}/metrics").text
        share = [ln for ln in metrics.splitlines() if ln.startswith("ttc_probe_flops_share_")]
        s_sum = float(next(x for x in share if "_sum" in x).split()[-1])
        s_n = float(next(x for x in share if "_count" in x).split()[-1])
        print(f"  probe share of FLOPs (mean per request): {s_sum / max(s_n, 1):.2f}")
        _promise(last, 0.95)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    _engine_ratio(policy, testbed, args.verifier, problems, args.threads)


if __name__ == "__main__":
    main()

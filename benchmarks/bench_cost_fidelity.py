"""Cost-simulator fidelity on this machine: predicted vs measured wall time of harness runs.

1. Calibrate this CPU (`profiling.calibrate.calibrate` with the policy's shape: matmul FLOP/s,
   memory bandwidth, and the harness loops' overheads outside the roofline: per step, layer, row,
   prefill token and attention score), or read a profile (--hardware). Calibration is
   micro-benchmarks on random weights and tokens; nothing is fitted on the runs reported.
2. Run each strategy of the profiling harness (`profiling.strategies.STRATEGIES`) on a few testbed
   problems with the testbed policy (a `LikelihoodVerifier` over the same model scores and guides
   search), timing every call (process CPU time with one torch thread, best of --repeats).
3. Predict the run from the rows it wrote (tokens, prompt tokens, step scores) and the harness's
   batching, with `planner.costs.roofline`'s formulas: sample and revisions decode `batch_size // n`
   problems together, rows dropping out by the decode loop's compaction rule
   (`compacted_decode_s`); search runs lock-step rounds over the rows still active
   (`live_rows`), each lasting the expected longest step among them (`cost.expected_max` over
   step lengths from a separate sampling run), with a verifier pass per round.
4. Print predicted vs measured per strategy and the median absolute error.

Run:  .venv/bin/python benchmarks/bench_cost_fidelity.py [--model-dir DIR] [--problems 8]
The testbed comes from --model-dir (a Hugging Face folder), else the quick testbed in the cache
(`ttc testbed train --quick` or models.testbed.ensure_testbed(quick=True); --train trains it).
The goal of the issue is a median absolute error within ±10%; the script reports what it gets.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planner.costs.hardware import hardware_from_json, load_hardware
from planner.costs.modelspec import read_hf_config
from planner.costs.simulator import Workload, simulate

SCORE_BATCH = 16  # LikelihoodVerifier's default batch_size: sequences per scoring call


def find_testbed(model_dir: str | None, train: bool) -> tuple[Path, Path | None]:
    """(policy dir, reviser dir or None)."""
    if model_dir:
        return Path(model_dir), None
    from models.testbed import cache_root, ensure_testbed
    from models.testbed.settings import TestbedSettings

    run_dir = (
        cache_root()
        / "testbed"
        / "runs"
        / TestbedSettings(quick=True, scale="default", seed=0).run_key()
    )
    if train or (run_dir / "manifest.json").exists():
        run_dir = ensure_testbed(quick=True, progress=False)
        rev = run_dir / "reviser"
        return run_dir / "policy", rev if (rev / "config.json").exists() else None
    stages = sorted((cache_root() / "testbed" / "stages").glob("policy-*/model"))
    if stages:
        return stages[-1], None
    raise SystemExit("no testbed found: pass --model-dir, or --train (trains the quick testbed)")


def ceil_div(a: float, b: float) -> int:
    return math.ceil(a / b) if a > 0 else 0


def compacted_decode_s(gens: list[int], prompt_len: float, spec: Any, hw: Any) -> float:
    """Decode latency of rows sampled together by `models.decoding.sample_batch` (compact=True):
    one step per token of the longest row; the step's batch keeps finished rows as holes until
    they are a quarter of it, then drops them (the harness's compaction rule). Each step costs
    `cost.decode_step_time_s(batch, context)`, context = prompt + tokens so far."""
    from planner.costs.roofline import decode_step_time_s

    if not gens:
        return 0.0
    lens = sorted(gens)
    total, removed, batch, j = 0.0, 0, len(lens), 0
    for t in range(max(lens)):
        total += decode_step_time_s(spec, hw, batch, prompt_len + t)
        while j < len(lens) and lens[j] <= t + 1:
            j += 1  # rows finished after this step
        if (j - removed) * 4 >= batch:
            removed, batch = j, len(lens) - j
    return total


def _prefill_s(prompt_tokens: float, seqs: int, spec: Any, hw: Any) -> float:
    from planner.costs.roofline import prefill_time_s

    return prefill_time_s(spec, hw, prompt_tokens, 0.0, 1, max(seqs, 1))


def _scoring(seq_tokens: list[float], spec: Any, hw: Any) -> float:
    """Latency of scoring these full sequences, SCORE_BATCH per call."""
    total = 0.0
    for i in range(0, len(seq_tokens), SCORE_BATCH):
        part = seq_tokens[i : i + SCORE_BATCH]
        total += simulate(
            Workload(0.0, 0.0, 1, 1, float(sum(part)), 1, verifier_seqs=len(part)),
            spec,
            hw,
            batch=1,
        ).verifier_s
    return total


def predict_sample(rows: list[dict], n: int, batch_size: int, spec: Any, hw: Any) -> float:
    """Chunks of batch_size // n problems decode together; each problem's pool is then scored in
    ceil(n / 16) calls over its n full sequences."""
    by_problem: dict[str, list[dict]] = {}
    for r in rows:
        by_problem.setdefault(r["problem_id"], []).append(r)
    pids = list(by_problem)
    per = max(1, batch_size // n) if n < batch_size else 1
    total = 0.0
    for start in range(0, len(pids), per):
        chunk = pids[start : start + per]
        # every row of a pool holds the pool's whole prompt
        plens = [max(r["prompt_tokens"] for r in by_problem[p]) for p in chunk]
        gens = [r["gen_tokens"] for p in chunk for r in by_problem[p]]
        # unique prompts are prefilled in one padded batch: rows x longest prompt
        total += _prefill_s(len(chunk) * max(plens), len(chunk), spec, hw)
        total += compacted_decode_s(gens, max(plens), spec, hw)
        for p, plen in zip(chunk, plens, strict=True):
            total += _scoring([plen + r["gen_tokens"] for r in by_problem[p]], spec, hw)
    return total


def predict_revisions(rows: list[dict], batch_size: int, spec: Any, hw: Any) -> float:
    """One decode batch per chain step (all problems x chains, batch_size rows at a time), then one
    scoring of that step's answers."""
    steps: dict[int, list[dict]] = {}
    for r in rows:
        steps.setdefault(r["position"], []).append(r)
    total = 0.0
    for _, rs in sorted(steps.items()):
        for start in range(0, len(rs), batch_size):
            part = rs[start : start + batch_size]
            gens = [r["gen_tokens"] for r in part]
            plen_max = max(r["prompt_tokens"] for r in part)
            total += _prefill_s(len(part) * plen_max, len(part), spec, hw)
            total += compacted_decode_s(gens, plen_max, spec, hw)
        total += _scoring([r["prompt_tokens"] + r["gen_tokens"] for r in rs], spec, hw)
    return total


def step_lengths(
    backend: Any, problems: list, n: int, max_new_tokens: int = 256, max_step_tokens: int = 128
) -> tuple[list[int], float]:
    """(tokens per search step, search rounds per verifier step) of the policy: sample n solutions
    per problem (a separate sampling run, seed 7; tokens, not timings), split them into steps, and
    keep the steps a search would decode: a search path ends at the first step with an extractable
    answer, and a step stops at `max_step_tokens` (profiling/strategies/search.py defaults). The
    empirical distribution whose expected maximum over the active rows gives a lock-step round's
    decode steps. A line longer than `max_step_tokens` takes several rounds but is one verifier step
    (one step score): the second value converts step scores to rounds.
    """
    from profiling.strategies.common import grader_for

    grader = grader_for("testbed")
    pools = backend.sample(
        [backend.prompt_ids(p) for p in problems],
        n,
        max_new_tokens=max_new_tokens,
        temperature=0.8,
        seed=7,
    )
    out: list[int] = []
    segments = 0
    for pool in pools:
        for g in pool:
            for step in backend.split_steps(g.token_ids):
                segments += 1
                for i in range(0, len(step), max_step_tokens):
                    part = step[i : i + max_step_tokens]
                    out.append(len(part))
                    if grader.extract_answer(backend.decode(part)) is not None:
                        break
                else:
                    continue
                break
    return (out or [1]), len(out) / max(segments, 1)


def live_rows(strategy: str, n: int, m: int, final_rounds: list[int]) -> list[int]:
    """Rows a search decodes in each round, from the round each final candidate ended in (the
    length of its step scores), following the harness's rules (profiling/strategies/search.py):
    beam/lookahead keep max(1, remaining // m) · min(m, remaining) rows while remaining = n −
    finished > 0 (a finished solution frees its slot); dvts keeps m rows per subtree until the
    subtree's final."""
    depth = max(final_rounds, default=1)
    if strategy == "dvts":
        return [m * sum(1 for f in final_rounds if f >= r) for r in range(1, depth + 1)]
    out = []
    for r in range(1, depth + 1):
        rem = n - sum(1 for f in final_rounds if f < r)
        out.append(n if r == 1 else (max(1, rem // m) * min(m, rem) if rem > 0 else 0))
    return out


def predict_search(
    rows: list[dict],
    cfg: dict,
    strategy: str,
    batch_size: int,
    spec: Any,
    hw: Any,
    lengths: list[int],
    rounds_per_step: float = 1.0,
    max_step_tokens: int = 128,
) -> float:
    """batch_size // n problems are searched together on one KV cache: their prompts prefilled
    once; then rounds, each decoding the rows still active (`live_rows`, summed over the group)
    in lock step for E[max step length over those rows] steps (`cost.expected_max`), plus k
    greedy rollout steps for lookahead; every round the verifier scores each active row's
    partial solution once (full sequences, 16 per call; lookahead scores its rollouts and the
    finished rows in two calls)."""
    from planner.costs.roofline import decode_step_time_s, expected_max, prefill_time_s

    by_problem: dict[str, list[dict]] = {}
    for r in rows:
        by_problem.setdefault(r["problem_id"], []).append(r)
    n, m, k = int(cfg["n"]), int(cfg.get("m", 4)), int(cfg.get("k", 0))
    per = max(1, batch_size // n)
    pids = list(by_problem)
    total = 0.0
    for start in range(0, len(pids), per):
        group = [by_problem[p] for p in pids[start : start + per]]
        plens = [max(r["prompt_tokens"] for r in rs) for rs in group]  # each final: the prompt
        # a final's rounds: its step scores, times the rounds a verifier step takes (step_lengths)
        ends = [
            [max(1, round(len(r["step_scores"]) * rounds_per_step)) for r in rs] for rs in group
        ]
        per_problem = [live_rows(strategy, n, m, e) for e in ends]
        depth = max(len(a) for a in per_problem)
        active = [sum(a[i] for a in per_problem if i < len(a)) for i in range(depth)]
        gen = float(sum(r["gen_tokens"] for rs in group for r in rs))
        mean_step = gen / max((1 + k) * sum(active), 1)  # tokens per row-step, rollouts apart
        plen = max(plens)  # left-padded prompts: every row attends over the longest
        # the sampled shape of step lengths, rescaled to the mean step of this run's own tokens
        # (rows finishing late ramble in long steps: a sample of whole solutions undercounts them)
        scale = mean_step / statistics.mean(lengths)
        run_lengths = [min(x * scale, float(max_step_tokens)) for x in lengths]
        total += prefill_time_s(spec, hw, float(len(group) * plen), 0.0, 1, len(group))
        finals = [f for e in ends for f in e]
        for i, a in enumerate(active):
            ctx = plen + (i + 0.5) * mean_step
            total += expected_max(run_lengths, a) * decode_step_time_s(spec, hw, a, ctx)
            direct = a
            if k and i < depth - 1:
                # rows that did not finish this round roll out k greedy steps on a copy of their
                # cache and are scored on the rollout; the finished ones are scored directly
                going = a - sum(1 for f in finals if f == i + 1) if strategy != "dvts" else a
                direct = a - going
                ctx_k = ctx + (0.5 + 0.5 * k) * mean_step
                total += (
                    k
                    * expected_max(run_lengths, going)
                    * decode_step_time_s(spec, hw, going, ctx_k)
                )
                total += _scoring([plen + (i + 1 + k) * mean_step] * going, spec, hw)
            total += _scoring([plen + (i + 1) * mean_step] * direct, spec, hw)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--model-dir", default=None, help="Hugging Face folder of the policy (default: testbed)"
    )
    ap.add_argument("--train", action="store_true", help="Train the quick testbed if it is missing")
    ap.add_argument(
        "--hardware", default=None, help="Hardware profile JSON (default: calibrate now)"
    )
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument(
        "--problem-seed",
        type=int,
        default=123,
        help="seed of the testbed problems (another "
        "seed: problems not looked at while the simulator was developed)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads for calibration and runs")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="timed repeats per run; the best is kept "
        "(same seeds, same rows), as the calibration keeps its best",
    )
    ap.add_argument("--strategies", default="sample,beam,lookahead,dvts,revisions")
    ap.add_argument(
        "--calibrate-once",
        action="store_true",
        help="calibrate once at the start (default: again right before each run, so a "
        "machine shared with other jobs is measured under the load the run sees)",
    )
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from models.testbed.task import generate_problems
    from profiling.backend import TransformersBackend
    from profiling.calibrate import calibrate
    from profiling.problems import testbed_problems
    from profiling.strategies import STRATEGIES
    from profiling.verifiers import LikelihoodVerifier

    policy_dir, reviser_dir = find_testbed(args.model_dir, args.train)
    if args.hardware:
        hw = load_hardware(args.hardware)
    else:
        t0 = time.perf_counter()
        hw = hardware_from_json(
            calibrate(
                name="this-cpu",
                repeats=5,
                threads=args.threads,
                rows=args.batch_size,
                model_dir=str(policy_dir),
            ),
            "calibration",
        )
        print(
            f"calibrated in {time.perf_counter() - t0:.1f}s: {hw.peak_flops_per_s / 1e9:.1f} "
            f"GFLOP/s, {hw.hbm_bytes_per_s / 1e9:.2f} GB/s, step {hw.step_overhead_s * 1e3:.3f} ms "
            f"+ {hw.layer_overhead_s * 1e3:.3f} ms/layer + {hw.seq_overhead_s * 1e3:.4f} ms/row, "
            f"{hw.token_overhead_s * 1e6:.2f} us/token/layer (prefill), attention "
            f"{hw.attn_overhead_s * 1e9:.1f} ns (decode), {hw.prefill_attn_overhead_s * 1e9:.1f} "
            "ns (prefill) per score per layer"
        )
    spec = read_hf_config(policy_dir)
    if reviser_dir:
        rs = read_hf_config(reviser_dir)
        print(
            f"reviser {reviser_dir} : {rs.n_params:.0f} params, {rs.n_layers} layers, "
            f"hidden {rs.hidden_size}"
        )
    print(
        f"policy {policy_dir} : {spec.n_params:.0f} params, {spec.n_layers} layers, "
        f"hidden {spec.hidden_size}, {spec.bytes_per_param:g} bytes/param; "
        f"torch threads {args.threads}"
    )
    backend = TransformersBackend.load(policy_dir, batch_size=args.batch_size)
    verifier = LikelihoodVerifier(
        backend.model, backend.tokenizer, name="policy", batch_size=SCORE_BATCH
    )
    reviser = (
        TransformersBackend.load(reviser_dir, batch_size=args.batch_size)
        if reviser_dir
        else backend
    )
    problems = testbed_problems(generate_problems(args.problems, seed=args.problem_seed))

    plans = {
        "sample": [("sample", {"n": 4}), ("sample", {"n": 16})],
        "beam": [("beam", {"n": 4, "m": 2})],
        "lookahead": [("lookahead", {"n": 4, "m": 2, "k": 1})],
        "dvts": [("dvts", {"n": 4, "m": 2})],
        "revisions": [("revisions", {"chains": 2, "length": 3})],
    }
    wanted = [s.strip() for s in args.strategies.split(",") if s.strip()]
    step_len: list[int] = []
    rounds_per_step = 1.0
    results = []
    for name in wanted:
        for strat, cfg in plans[name]:
            be = reviser if strat == "revisions" else backend
            STRATEGIES[strat](problems[:1], be, verifier, cfg)  # warm-up (allocator, caches)
            if not (args.hardware or args.calibrate_once):
                hw = hardware_from_json(
                    calibrate(
                        name="this-cpu",
                        repeats=5,
                        threads=args.threads,
                        rows=args.batch_size,
                        model_dir=str(policy_dir),
                    ),
                    "calibration",
                )
            times, walls = [], []
            for _ in range(max(args.repeats, 1)):
                t0, c0 = time.perf_counter(), time.process_time()
                rows = STRATEGIES[strat](problems, be, verifier, cfg)
                walls.append(time.perf_counter() - t0)
                times.append(time.process_time() - c0)
            # one torch thread: the run is single-threaded, so its CPU time is its wall time on
            # an idle machine, without the other jobs' interference
            if args.threads != 1:
                times = walls
            measured = min(times)
            spread = max(times) / measured - 1  # run-to-run noise of this shared machine
            if strat == "sample":
                pred = predict_sample(rows, cfg["n"], args.batch_size, spec, hw)
            elif strat == "revisions":
                pred = predict_revisions(
                    rows, args.batch_size, read_hf_config(reviser_dir) if reviser_dir else spec, hw
                )
            else:
                if not step_len:
                    step_len, rounds_per_step = step_lengths(backend, problems, cfg["n"])
                    print(
                        f"step lengths: mean {statistics.mean(step_len):.1f}, max {max(step_len)} "
                        f"tokens ({len(step_len)} steps, {rounds_per_step:.2f} rounds per verifier "
                        "step; separate sampling run)"
                    )
                pred = predict_search(
                    rows, cfg, strat, args.batch_size, spec, hw, step_len, rounds_per_step
                )
            toks = sum(r["gen_tokens"] for r in rows)
            err = (pred - measured) / measured
            results.append((strat, cfg, measured, pred, err, toks))
            print(
                f"{strat:<10} {cfg!s:<30} wall {min(walls):7.3f}s  measured {measured:8.3f}s  "
                f"predicted {pred:8.3f}s  error {100 * err:+6.1f}%  (repeats spread "
                f"{100 * spread:.0f}%; {toks} tokens; step overhead "
                f"{1e3 * (hw.step_overhead_s + spec.n_layers * hw.layer_overhead_s):.2f} ms)",
                flush=True,
            )
    errs = [abs(r[4]) for r in results]
    print(
        f"median absolute error over {len(results)} runs: {100 * statistics.median(errs):.1f}% "
        f"(max {100 * max(errs):.1f}%); goal: within 10%"
    )


if __name__ == "__main__":
    main()

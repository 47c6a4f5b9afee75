"""Curve estimation speed and variance: 500 problems x n=256, every power-of-two budget.

Prints (1) the wall time of `profile_from_samples` for all budgets (target <= 1 s), and (2) the
standard deviation, across 20 seeds, of the mean accuracy estimated by our all-subsets estimators
against prefix subsampling (the first k of one random order, as search-and-learn reads its curves),
on the same pools (target ratio <= 0.3). Run: `.venv/bin/python benchmarks/bench_curves.py`.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd

from planner.estimate.curves import profile_from_samples
from planner.estimate.pools import CurveOptions
from planner.estimate.votes import answer_classes, resolve_votes
from planner.tables import canonical_config

P, N, SEEDS = 500, 256, 20


def make_pools(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    cfg = canonical_config({"n": N})
    for p in range(P):
        n_ans = rng.integers(2, 30)
        probs = rng.dirichlet(np.full(n_ans, 0.5))
        right = int(rng.integers(0, n_ans))
        ans = rng.choice(n_ans, size=N, p=probs)
        ok = ans == right
        score = np.clip(rng.normal(0.5 + 0.25 * ok, 0.2), 0.0, 1.0)
        for i in range(N):
            rows.append((f"p{p:04d}", int(i), str(ans[i]), bool(ok[i]), float(score[i])))
    df = pd.DataFrame(rows, columns=["problem_id", "position", "answer", "correct", "score"])
    df["strategy"], df["config"], df["run"], df["verifier"] = "sample", cfg, 0, "prm"
    df["step_scores"] = [[] for _ in range(len(df))]
    df["prompt_tokens"], df["gen_tokens"], df["gen_flops"], df["verifier_flops"], df["wall_s"] = (
        10,
        50,
        1e6,
        2e5,
        np.nan,
    )
    return df


def prefix_estimates(
    df: pd.DataFrame, budgets: list[int], seed: int
) -> dict[tuple[str, int], float]:
    """search-and-learn style: shuffle each pool once and read budget k from its first k samples."""
    rng = np.random.default_rng(seed)
    out: dict[tuple[str, int], list[float]] = {}
    for _, g in df.groupby("problem_id", sort=True):
        order = rng.permutation(len(g))
        ans = g["answer"].to_numpy()[order]
        ok = g["correct"].to_numpy()[order]
        sc = g["score"].to_numpy()[order]
        cls, cls_ok = answer_classes(ans.tolist(), ok)
        for k in budgets:
            c = cls[:k]
            out.setdefault(("coverage", k), []).append(float(ok[:k].any()))
            counts = np.bincount(c, minlength=len(cls_ok)).astype(float)[None, :]
            out.setdefault(("majority", k), []).append(float(resolve_votes(counts, cls_ok)[0]))
            w = np.bincount(c, weights=sc[:k], minlength=len(cls_ok))[None, :]
            out.setdefault(("weighted", k), []).append(float(resolve_votes(w, cls_ok)[0]))
            out.setdefault(("best", k), []).append(float(ok[:k][np.argmax(sc[:k])]))
    return {key: float(np.mean(v)) for key, v in out.items()}


def ours(df: pd.DataFrame, seed: int) -> tuple[dict[tuple[str, int], float], tuple[float, float]]:
    t0, c0 = time.perf_counter(), time.process_time()
    prof = profile_from_samples(df, CurveOptions(aggs=("last",), seed=seed))
    dt = (time.perf_counter() - t0, time.process_time() - c0)
    sel = prof["config"].str.extract(r'"select":"(\w+)"')[0]
    means = prof.assign(select=sel).groupby(["select", "budget"])["accuracy"].mean()
    return {(s, int(b)): float(v) for (s, b), v in means.items()}, dt


def main() -> None:
    df = make_pools()
    budgets = [2**i for i in range(9)]
    ours(df, 0)  # warm-up
    _, dt = ours(df, 0)
    print(
        f"profile_from_samples: {P} problems x n={N}, budgets {budgets}, coverage + best + "
        f"majority + weighted majority ({CurveOptions().mc_samples} Monte Carlo "
        "subsets where not exact):"
    )
    print(
        f"  wall {dt[0]:.2f} s, CPU {dt[1]:.2f} s (target <= 1 s); load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    runs_ours = [ours(df, s)[0] for s in range(SEEDS)]
    runs_prefix = [prefix_estimates(df, budgets, s) for s in range(SEEDS)]
    print(
        f"\nstd of the mean accuracy across {SEEDS} seeds (ours / prefix subsampling; "
        "target ratio <= 0.3)"
    )
    print(f"{'method':>10} {'k':>4} {'ours':>10} {'prefix':>10} {'ratio':>7}")
    worst = 0.0
    for method in ("coverage", "best", "majority", "weighted"):
        for k in budgets[1:-1]:
            a = np.std([r[(method, k)] for r in runs_ours], ddof=1)
            b = np.std([r[(method, k)] for r in runs_prefix], ddof=1)
            ratio = a / b if b > 0 else float("nan")
            worst = max(worst, ratio if np.isfinite(ratio) else 0.0)
            print(f"{method:>10} {k:>4} {a:10.2e} {b:10.2e} {ratio:7.3f}")
    print(f"\nworst ratio: {worst:.3f}")


if __name__ == "__main__":
    main()

"""Policy runtime speed and difficulty-predictor quality, measured in one run.

    .venv/bin/python benchmarks/bench_policy.py              # decide throughput and latency
    .venv/bin/python benchmarks/bench_policy.py --report     # + predictor comparison (CV figures)

Speed: a policy built from the synthetic samples of tests/support/policy_data.py (5 bins, 4 budgets,
ordinal predictor on six probe features); `decide_many` on batches (target >= 200k decisions/s)
and the latency of one `decide` call.

Report: for each predictor (ordinal / multinomial) and feature set (the paper's mean score; the
four score statistics; all six features), on the synthetic table and on the real Qwen2.5-Math
dump (100 problems x 8 samples): cross-fitted (10-fold) agreement with the oracle bins, Spearman
correlation of the predicted difficulty with oracle pass@1, and compute-optimal accuracy per
budget with predicted bins vs oracle bins (probes free as in the paper, and charged).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

from policy_data import built_policy_dirs, make_samples  # noqa: E402

from planner.policy import Policy  # noqa: E402


def bench_speed() -> None:
    dirs = built_policy_dirs()
    t0 = time.perf_counter()
    pol = Policy.load(dirs["policy"])
    load_ms = 1e3 * (time.perf_counter() - t0)
    print(
        f"policy: {len(pol.bins)} bins x {len(pol.budgets)} budgets, features "
        f"{', '.join(pol.features)}; load + validate {load_ms:.1f} ms"
    )
    rng = np.random.default_rng(0)
    k = pol.k
    for n in (10_000, 200_000, 1_000_000):
        scores = rng.random((n, k))
        answers = rng.integers(0, 5, (n, k)).astype(str).astype(object)
        tokens = rng.integers(30, 200, (n, k)).astype(float)
        budgets = rng.choice(np.concatenate([pol.budgets, [1e9]]), n)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            d = pol.decide_many(scores, budgets, answers, tokens)
            _ = d.column("accuracy"), d.column("strategy")
            best = min(best, time.perf_counter() - t0)
        print(
            f"decide_many n={n:>9,}: {n / best:>12,.0f} decisions/s (best of 3, "
            f"{best * 1e3:.1f} ms)"
        )
    s1, a1, t1 = scores[0], ["1", "1", "2", "1"][:k], [80.0] * k
    for _ in range(200):
        pol.decide(s1, 16.0, a1, t1)
    lat = []
    for _ in range(3000):
        t0 = time.perf_counter()
        pol.decide(s1, 16.0, a1, t1)
        lat.append(time.perf_counter() - t0)
    lat.sort()
    print(
        f"decide (one request): median {1e6 * statistics.median(lat):.1f} us, "
        f"p90 {1e6 * lat[int(0.90 * len(lat))]:.1f} us, p99 {1e6 * lat[int(0.99 * len(lat))]:.1f} "
        "us (the machine is shared: the tail is other processes)"
    )


def _report_on(name: str, samples, k: int) -> None:
    from scipy.stats import spearmanr

    from planner.estimate.curves import profile_from_samples
    from planner.estimate.difficulty import DifficultyPredictor, build_problems, predictor_folds
    from planner.estimate.pools import CurveOptions
    from planner.estimate.probes import probe_cost, probe_features
    from planner.features import feature_columns
    from planner.optimize import PlanOptions, make_plan

    problems = build_problems(samples, seed=0)
    feats = probe_features(samples, k)
    prob = problems.merge(feats, on="problem_id").merge(probe_cost(samples, k), on="problem_id")
    profile = profile_from_samples(samples, CurveOptions(mc_samples=300))
    bins = prob["oracle_bin"].to_numpy()
    folds = predictor_folds(prob["problem_id"].tolist(), bins, 10, seed=0)
    oracle = make_plan(profile, prob, PlanOptions(n_boot=0)).curves
    oracle = oracle[oracle.method == "compute_optimal"].set_index("budget")["accuracy"]
    print(
        f"\n== {name}: {len(prob)} problems, k={k} probes, oracle bins {sorted(set(bins.tolist()))}"
    )
    print(
        "compute-optimal accuracy with oracle bins: "
        + ", ".join(f"{b:g}: {100 * a:.1f}%" for b, a in oracle.items())
    )
    sets = {
        "paper (score_mean)": ["score_mean"],
        "scores (4)": ["score_mean", "score_max", "score_min", "score_std"],
        "all (6)": ["score_mean", "score_max", "score_min", "score_std", "agreement", "gen_tokens"],
    }
    for model in ("ordinal", "multinomial"):
        for label, names in sets.items():
            x = prob[feature_columns(names)].to_numpy()
            pred = np.zeros(len(bins), dtype=np.int64)
            latent = np.zeros(len(bins))
            for f in range(10):
                tr, te = folds != f, folds == f
                est = DifficultyPredictor(model=model, random_state=0).fit(x[tr], bins[tr])
                pred[te] = est.predict(x[te])
                p = est.predict_proba(x[te])
                latent[te] = p @ est.classes_.astype(float)
            rho = spearmanr(latent, prob["pass1"]).statistic
            exact = float((pred == bins).mean())
            near = float((np.abs(pred - bins) <= 1).mean())
            pp = prob.assign(predicted_bin=pred)
            free = make_plan(profile, pp, PlanOptions(bin_column="predicted_bin", n_boot=0)).curves
            free = free[free.method == "compute_optimal"].set_index("budget")["accuracy"]
            paid = make_plan(
                profile,
                pp,
                PlanOptions(
                    bin_column="predicted_bin",
                    n_boot=0,
                    probe_k=k,
                    probe_verifier=sorted(set(samples["verifier"]) - {"none"})[0],
                ),
            ).curves
            paid = paid[paid.method == "compute_optimal"].set_index("budget")["accuracy"]
            print(
                f"{model:<11} {label:<18} exact {100 * exact:5.1f}%  within-1 {100 * near:5.1f}%  "
                f"spearman(-latent, pass1) {-rho:+.3f}"
            )
            print(
                "    predicted bins, probes free: "
                + ", ".join(f"{b:g}: {100 * a:.1f}%" for b, a in free.items())
            )
            print(
                "    predicted bins, probes charged (budget incl. probes): "
                + ", ".join(f"{b:g}: {100 * a:.1f}%" for b, a in paid.items())
            )
            if model == "ordinal" and label == "all (6)":
                import pandas as pd

                print("    confusion (rows oracle, cols predicted):")
                print(
                    "    "
                    + pd.crosstab(pd.Series(bins, name="oracle"), pd.Series(pred, name="pred"))
                    .to_string()
                    .replace("\n", "\n    ")
                )


def report() -> None:
    _report_on(
        "synthetic (tests/support/policy_data.py, 600 problems x 16)", make_samples(600, seed=1), 4
    )
    src = ROOT.parent / "shared" / "data" / "samples" / "qwen25math_rm8" / "math_cot_100.jsonl"
    if src.exists():
        from planner.tables.importer import ImportOptions, import_jsonl

        df, _, _ = import_jsonl(src, ImportOptions(level_field="level", score_transform="sigmoid"))
        _report_on("Qwen2.5-Math + RM-72B dump (100 problems x 8)", df, 4)
    else:
        print(f"\n(skipped the Qwen dump: {src} not found)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--report", action="store_true", help="Also print the predictor comparison.")
    args = ap.parse_args()
    bench_speed()
    if args.report:
        report()

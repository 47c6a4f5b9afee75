"""Does the plan beat one fixed option with the few problems users profile? And do its promises
hold? The chain `ttc demo` runs (curves with k = 4 probes -> plan on predicted bins -> policy ->
evaluation on the held-out half), on subsets of one large samples table, for each selection rule.

For each size n and seed s: n problems drawn from the table (seeded, within levels; seed 0 with
n equal to the table's size is the whole table), split in a fit and a held-out half as
`ttc demo` splits them (`profiling.demo.split_problems`), then:

- cross-fitted, on the fit half: compute-optimal minus single_best at every budget (the plan's
  own curves; the pooled rule only, the per-bin rules have no single_best curve);
- held out: the deployed policy's realised accuracy at every policy budget minus the held-out
  accuracy of the best single option chosen on the fit half within the same budget (in
  generations, no probes);
- calibration: whether each promise interval covers the held-out accuracy (per predicted bin at
  budgets where the policy probes, over all problems where it does not);
- the per-bin oracle: on all problems of the subset, in sample, the best option per oracle bin
  (probes not charged) against the best single option, and whether the plan chose per bin.

The profile of every problem is computed once (its rows do not depend on the split) and cached
in WORK. Goals (issue: plans worth following): at 120 and 240 problems on 4 seeds, cross-fitted
compute-optimal >= single_best at every budget, and held-out policy >= held-out single - 1 point
at every budget; on >= 1,000 problems, 90% coverage of the 95% intervals over 50 splits.

Run:
  .venv/bin/python benchmarks/bench_selection.py SAMPLES_DIR --sizes 120,240 --seeds 0,1,2,3
  .venv/bin/python benchmarks/bench_selection.py SAMPLES_DIR --sizes 0 --splits 50   # calibration
(SAMPLES_DIR: e.g. `ttc profile --config data/configs/demo.toml --n 1000 --out DIR`; size 0 =
every problem of it.)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from planner.estimate import CurveOptions, profile_from_samples
from planner.estimate.difficulty import add_predicted_bins, build_problems
from planner.estimate.probes import probe_cost, probe_verifiers
from planner.optimize import PlanOptions, make_plan, options_from_summary
from planner.optimize.grid import build_grid
from planner.policy import Policy
from planner.policy.build import build_policy
from planner.policy.evaluate import evaluate_policy
from planner.stats import half_width
from planner.tables import (
    CHOICES,
    CHOICES_FILE,
    PLAN_CURVES,
    PLAN_CURVES_FILE,
    PROBLEMS,
    PROBLEMS_FILE,
    SELECTION,
    SELECTION_FILE,
    SUMMARY_FILE,
    parse_config,
    read_samples,
    read_table,
    write_table,
)
from profiling.demo import split_problems

PROBE_K = 4


def _profile_all(samples: pd.DataFrame, work: Path, mc: int) -> pd.DataFrame:
    path = work / f"profile-all-mc{mc}.parquet"
    if path.is_file():
        return pd.read_parquet(path)
    prof = profile_from_samples(samples, CurveOptions(mc_samples=mc, seed=0))
    work.mkdir(parents=True, exist_ok=True)
    prof.to_parquet(path)
    return prof


def _subset(problems: pd.DataFrame, n: int, seed: int) -> list[str]:
    """n problem ids drawn within levels (seeded); n = 0 or all: every problem."""
    ids = sorted(problems["problem_id"])
    if n <= 0 or n >= len(ids):
        return ids
    rng = np.random.default_rng([seed, 25])
    lv = problems.set_index("problem_id")["level"].astype(str)
    out: list[str] = []
    for level in sorted(set(lv)):
        members = sorted(lv.index[lv == level])
        take = round(n * len(members) / len(ids))
        out += [members[i] for i in rng.permutation(len(members))[:take]]
    return sorted(out)


def _plan_dir(prof: pd.DataFrame, problems: pd.DataFrame, opts: PlanOptions, meta: dict) -> Path:
    plan = make_plan(prof, problems, opts)
    d = Path(tempfile.mkdtemp(prefix="bench-selection-"))
    write_table(plan.curves, d / PLAN_CURVES_FILE, PLAN_CURVES, meta)
    write_table(plan.selection, d / SELECTION_FILE, SELECTION, meta)
    write_table(plan.choices, d / CHOICES_FILE, CHOICES, meta)
    write_table(problems, d / PROBLEMS_FILE, PROBLEMS, meta)
    (d / SUMMARY_FILE).write_text(json.dumps({**plan.summary, "metadata": meta}, default=float))
    return d


def _single_heldout(
    prof_fit: pd.DataFrame, prof_held: pd.DataFrame, budget: float
) -> tuple[float, str]:
    """The held-out accuracy of the deployable option most accurate on the fit half among those
    costing at most `budget` generations (no probes), and its name."""
    sel = prof_fit["config"].map(lambda c: parse_config(c).get("select", "weighted"))
    fit = prof_fit[(sel != "coverage").to_numpy() & (prof_fit["budget"] <= budget + 1e-9)]
    means = fit.groupby(["strategy", "config", "budget"])["accuracy"].mean()
    # Ties to the cheaper option, then by name (as the plan orders options).
    best = sorted(means.items(), key=lambda kv: (-kv[1], kv[0][2], kv[0][0], kv[0][1]))[0][0]
    held = prof_held.set_index(["strategy", "config", "budget"]).loc[best, "accuracy"]
    return float(held.mean()), f"{best[0]}@{best[2]:g} {best[1]}"


def _oracle_gain(prof: pd.DataFrame, problems: pd.DataFrame, plan_dir: Path) -> dict:
    """Per plan budget, in sample on the fit half: the best option per predicted bin (the
    probes charged as the plan charges them) minus the best single option (no probes): what a
    per-bin choice could gain at most."""
    summary = json.loads((plan_dir / SUMMARY_FILE).read_text())
    g = build_grid(prof, problems, options_from_summary(summary))
    out = {}
    for t in summary["budgets"]:
        per_bin = 0.0
        for b in range(len(g.bin_labels)):
            rows = g.bins == b
            ok = g.deployable & (g.cost <= t * (1 + 1e-9))
            if ok.any():
                per_bin += rows.sum() * g.acc[rows][:, ok].mean(axis=0).max()
            else:
                per_bin = float("nan")
        ok = g.deployable & (g.gen_cost <= t * (1 + 1e-9))
        single = g.acc[:, ok].mean(axis=0).max()
        out[float(t)] = per_bin / len(g.pids) - single
    return out


def run_one(
    samples: pd.DataFrame,
    prof_all: pd.DataFrame,
    levels: pd.Series,
    ids: list[str],
    seed: int,
    rule: str,
    n_boot: int,
) -> dict:
    sub = samples[samples["problem_id"].isin(ids)]
    problems = build_problems(sub, seed=seed, levels=levels.reindex(ids))
    fit_ids, held_ids = split_problems(problems, seed)
    fit_s = sub[sub["problem_id"].isin(fit_ids)]
    verifier = probe_verifiers(fit_s)[0]
    pf = problems[problems["problem_id"].isin(fit_ids)].reset_index(drop=True)
    pf = add_predicted_bins(pf, fit_s, PROBE_K, verifier, seed=seed)
    pf = pf.merge(probe_cost(fit_s, PROBE_K, verifier), on="problem_id", how="left")
    prof_fit = prof_all[prof_all["problem_id"].isin(fit_ids)]
    prof_held = prof_all[prof_all["problem_id"].isin(held_ids)]
    opts = PlanOptions(
        bin_column="predicted_bin",
        n_boot=n_boot,
        seed=seed,
        probe_k=PROBE_K,
        probe_verifier=verifier,
        select_rule=rule,
    )
    meta = {"probe": {"k": PROBE_K, "verifier": verifier, "predictor": "ordinal", "seed": seed}}
    plan_dir = _plan_dir(prof_fit, pf, opts, meta)
    summary = json.loads((plan_dir / SUMMARY_FILE).read_text())
    policy = Policy.from_dict(build_policy(plan_dir))
    ev = evaluate_policy(
        policy, samples[samples["problem_id"].isin(held_ids)], n_boot=n_boot, seed=seed
    )
    out = {"n": len(ids), "seed": seed, "rule": rule, "budgets": []}
    oracle = _oracle_gain(prof_fit, pf, plan_dir)
    curves, _ = read_table(plan_dir / PLAN_CURVES_FILE, PLAN_CURVES)
    cv = curves.pivot(index="budget", columns="method", values="accuracy")
    for e in ev["budgets"]:
        t = float(e["budget"])
        single, name = _single_heldout(prof_fit, prof_held, t)
        dec = next(x for x in summary["per_budget"] if x["budget"] == t)
        probed = bool(dec.get("deployed", {}).get("probe", True))
        cover = []
        if probed:
            for b in e["bins"]:
                if b["n"] >= 1:
                    cover.append(
                        b["predicted_ci_lo"] - 1e-9
                        <= b["realised_accuracy"]
                        <= b["predicted_ci_hi"] + 1e-9
                    )
        else:
            p = dec["promise"]
            cover.append(
                p["ci_lo"] - 1e-9 <= e["overall"]["realised_accuracy"] <= p["ci_hi"] + 1e-9
            )
        out["budgets"].append(
            {
                "budget": t,
                "cv_co": float(cv.loc[t, "compute_optimal"]),
                "cv_single": float(cv.loc[t, "single_best"]) if "single_best" in cv else None,
                "held_policy": float(e["overall"]["realised_accuracy"]),
                "promise": float(e["overall"]["predicted_accuracy"]),
                "held_single": single,
                "single": name,
                "probe": probed,
                "covered": cover,
                "oracle_gain": oracle.get(t),
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("samples", type=Path)
    ap.add_argument("--sizes", default="120,240")
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--splits", type=int, default=0, help="calibration: this many split seeds")
    ap.add_argument("--rules", default="pooled")
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--mc-samples", type=int, default=200)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-selection"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    samples, _ = read_samples(args.samples)
    prof_all = _profile_all(samples, args.work, args.mc_samples)
    problems, _ = read_table(args.samples / PROBLEMS_FILE, PROBLEMS)
    levels = problems.set_index("problem_id")["level"]
    sizes = [int(x) for x in args.sizes.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")] if not args.splits else list(range(args.splits))
    results = []
    for rule in args.rules.split(","):
        for n in sizes:
            for s in seeds:
                ids = _subset(problems, n, s)
                r = run_one(samples, prof_all, levels, ids, s, rule, args.n_boot)
                results.append(r)
                _print(r)
    _summary(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def _print(r: dict) -> None:
    print(f"rule {r['rule']}, {r['n']} problems, seed {r['seed']}:")
    for b in r["budgets"]:
        cv = (
            ""
            if b["cv_single"] is None
            else f"cv co-single {100 * (b['cv_co'] - b['cv_single']):+5.1f}"
        )
        print(
            f"  budget {b['budget']:5g} {'probe' if b['probe'] else 'one  '} {cv}  held policy "
            f"{100 * b['held_policy']:5.1f} single {100 * b['held_single']:5.1f} "
            f"({100 * (b['held_policy'] - b['held_single']):+5.1f}) "
            f"promise {100 * b['promise']:5.1f} "
            f"covered {sum(b['covered'])}/{len(b['covered'])}"
        )


def _summary(results: list[dict]) -> None:
    for rule in sorted({r["rule"] for r in results}):
        for n in sorted({r["n"] for r in results if r["rule"] == rule}):
            rs = [r for r in results if r["rule"] == rule and r["n"] == n]
            bs = [b for r in rs for b in r["budgets"]]
            held = [b["held_policy"] - b["held_single"] for b in bs]
            cvd = [b["cv_co"] - b["cv_single"] for b in bs if b["cv_single"] is not None]
            cov = [c for b in bs for c in b["covered"]]
            print(
                f"== rule {rule}, {n} problems, {len(rs)} runs, {len(bs)} budgets: held-out policy "
                f"- single {100 * np.mean(held):+.2f} ± {100 * half_width(held):.2f} points, worst "
                f"{100 * min(held):+.1f}, {sum(h < -0.01 for h in held)} budgets below -1 point; "
                + (
                    f"cross-fitted co - single worst {100 * min(cvd):+.2f}, "
                    f"{sum(d < -1e-12 for d in cvd)} below 0; "
                    if cvd
                    else ""
                )
                + f"coverage {100 * np.mean(cov):.1f}% of {len(cov)} intervals"
            )
            big = [b for b in bs if (b["oracle_gain"] or 0) > 0.03]
            if big:
                print(
                    f"   per-bin oracle gains > 3 points at {len(big)} budgets; the plan chose "
                    f"per-bin options at {sum(b['probe'] for b in big)} of them"
                )


if __name__ == "__main__":
    main()

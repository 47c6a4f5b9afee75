"""Quality of the CPU testbed: prints every figure issue 3 asks for, measured in one run.

Per level: policy pass@1, pass@n, fully-correct-chain ceiling@n and the share of lucky correct
answers; the larger LM's pass@1; for each verifier (larger-LM likelihood, PRM) the step AUROC
within the same question and step index and the solution AUROC within the same question; weighted
best-of-k vs majority@k (paired per question, 95% CI) and the larger LM's majority at matched
FLOPs; the reviser's first attempt vs after 4 revisions (paired per question), its right-to-wrong
and wrong-to-right rates per step beside those of attempts drawn afresh, its chains' majority vs
as many parallel samples, and its accuracy with 4 earlier attempts in context by how many of them
are right (why revisions help or not). Then the targets, checked (for the reviser: the last of 5
attempts >= 5 points above the first on easy levels, not below it on medium ones, more wrong
attempts revised into right ones than the reverse).

    .venv/bin/python benchmarks/testbed_quality.py                 # default-scale testbed (cached)
    .venv/bin/python benchmarks/testbed_quality.py --quick --problems-per-level 4 --samples 8
    .venv/bin/python benchmarks/testbed_quality.py --testbed runs/testbed --json out.json
    .venv/bin/python benchmarks/testbed_quality.py --reviser-only --samples 16   # levels 1-5 only
    .venv/bin/python benchmarks/testbed_quality.py --reviser-only --reviser /tmp/rv/fix-.../model
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _f(x: object, width: int = 6) -> str:
    return f"{x:{width}.3f}" if isinstance(x, int | float) else f"{'-':>{width}s}"


def _header(tb: Path, manifest: dict) -> None:
    m = manifest["models"]
    print(
        f"\ntestbed {tb}  run {manifest['run_key']}  seed {manifest['seed']}  scale "
        f"{manifest['scale']}{'  QUICK' if manifest['quick'] else ''}"
    )
    print(
        f"policy {m['policy']['params']:,} params, large {m['large']['params']:,} "
        f"({manifest['size_ratio_large_to_policy']}x), D_pretrain "
        f"{m['policy']['d_pretrain_tokens']:,} tokens; training total "
        f"{manifest['train_seconds_total']:.0f} s (stages {manifest['stage_seconds_total']:.0f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--testbed", type=Path, help="a testbed directory (default: the cached one)")
    ap.add_argument("--quick", action="store_true", help="use the quick testbed")
    ap.add_argument("--scale", default="default", choices=["default", "paper"])
    ap.add_argument("--seed", type=int, default=0, help="testbed seed (and evaluation seed)")
    ap.add_argument("--problems-per-level", type=int, default=40)
    ap.add_argument("--samples", type=int, default=32, help="samples per question (pass@n pool)")
    ap.add_argument("--k", type=int, default=16, help="budget of best-of-k / majority@k")
    ap.add_argument("--no-reviser", action="store_true", help="skip the reviser's chains")
    ap.add_argument("--no-prm", action="store_true", help="skip the PRM verifier")
    ap.add_argument(
        "--reviser-temperature",
        type=float,
        default=1.0,
        help="sampling temperature of the revision chains (the harness samples at 0.8)",
    )
    ap.add_argument(
        "--reviser-only",
        action="store_true",
        help="only the reviser's figures (chains and context table) on the easy and medium levels",
    )
    ap.add_argument(
        "--reviser", type=Path, help="a reviser model directory (default: the testbed's reviser)"
    )
    ap.add_argument(
        "--chains", type=int, help="revision chains per question (default: samples / 4)"
    )
    ap.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = ap.parse_args(argv)

    import os

    import torch

    from models.testbed import ensure_testbed
    from models.testbed.quality import evaluate_run

    torch.set_num_threads(
        int(os.environ.get("TTC_TESTBED_THREADS", "1"))
    )  # see models/testbed/train.py
    tb = args.testbed or ensure_testbed(
        quick=args.quick, scale=args.scale, seed=args.seed, progress=True
    )
    man_path = tb / "manifest.json"
    manifest = json.loads(man_path.read_text()) if man_path.exists() else None
    names = ["policy", "large"] + ([] if args.no_prm else ["prm"])
    reviser_dir = args.reviser or tb / "reviser"
    t0 = time.perf_counter()
    res = (
        {}
        if args.reviser_only
        else evaluate_run(
            {n: tb / n for n in names},
            args.problems_per_level,
            args.samples,
            args.k,
            seed=args.seed,
            progress=True,
        )
    )
    if not args.no_reviser:
        res["reviser"] = _reviser_chains(args, reviser_dir)
    took = time.perf_counter() - t0
    if manifest is None:
        print(f"\ntestbed {tb} (no manifest.json: models only)")
    else:
        _header(tb, manifest)
    print(
        f"evaluation: {args.problems_per_level} questions/level, {args.samples} samples each, "
        f"k={args.k}, {took:.0f} s\n"
    )
    checks = [] if args.reviser_only else _policy_figures(res, args.k)
    rev = res.get("reviser")
    if rev:
        res["reviser_context"] = _print_reviser(rev, reviser_dir, args)
        checks += _reviser_checks(rev)
    print("\ntargets")
    for text, ok in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {text}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, sort_keys=True))
    return 0


def _policy_figures(res: dict, k: int) -> list[tuple[str, bool]]:
    """Print the policy's, the larger LM's and the verifiers' tables; return their targets."""
    pol, big, mf = res["policy"], res["large"], res["matched_flops"]
    verifiers = [v for v in ("large_likelihood", "prm_last") if v in pol["levels"]["1"]]
    print(
        "level | policy pass@1 pass@n chain@n lucky | large pass@1 pass@n | "
        + " | ".join(f"{v}: stepAUC solAUC" for v in verifiers)
    )
    for lv, f in pol["levels"].items():
        b = big["levels"][lv]
        cells = " | ".join(
            f"{_f(f[v]['step_auroc_within_question_step'])} "
            f"{_f(f[v]['solution_auroc_within_question'])}"
            for v in verifiers
        )
        print(
            f"{lv:>5s} | {_f(f['pass1'], 13)} {_f(f['pass_n'])} {_f(f['chain_ceiling_n'])} "
            f"{_f(f['lucky_share_of_correct'])} | {_f(b['pass1'], 12)} {_f(b['pass_n'])} | {cells}"
        )

    print(
        f"\nselection at k={k} (policy pool; mean over random k-subsets; diff = "
        "paired mean ± 95% CI)"
    )
    print(
        "group/level | majority | "
        + " | ".join(f"{v} weighted (diff)" for v in verifiers)
        + " | large majority @ matched FLOPs (k_large)"
    )
    rows = [(g, pol["groups"][g], mf["groups"].get(g, {})) for g in pol["groups"]]
    rows += [(f"L{lv}", pol["levels"][lv], mf["levels"].get(lv, {})) for lv in pol["levels"]]
    for name, f, mfr in rows:
        cells = []
        for v in verifiers:
            d = f[v][f"weighted_minus_majority@{k}"]
            cells.append(f"{_f(f[v][f'weighted@{k}'])} ({d['mean']:+.3f} ± {d['ci95']:.3f})")
        print(
            f"{name:>11s} | {_f(f[f'majority@{k}'], 8)} | "
            + " | ".join(cells)
            + f" | {_f(mfr.get('large_majority_at_matched_flops'))} ({mfr.get('k_large', '-')})"
        )

    lv = sorted(pol["levels"], key=int)
    best = max(
        verifiers,
        key=lambda v: (
            pol["groups"].get("medium", pol["groups"][next(iter(pol["groups"]))])[v][
                "step_auroc_within_question_step"
            ]
            or 0
        ),
    )
    med = pol["groups"].get("medium")
    checks = [
        ("policy pass@1 >= 0.8 on the easiest level", pol["levels"][lv[0]]["pass1"] >= 0.8),
        ("policy pass@1 <= 0.2 on the hardest level", pol["levels"][lv[-1]]["pass1"] <= 0.2),
        (
            "pass@n clearly above pass@1 on hard levels (>= +0.1)",
            all(pol["levels"][x]["pass_n"] - pol["levels"][x]["pass1"] >= 0.1 for x in lv[-3:]),
        ),
        (
            "larger LM pass@1 above the policy's at every level",
            all(big["levels"][x]["pass1"] > pol["levels"][x]["pass1"] for x in lv),
        ),
        (
            f"best verifier ({best}) step AUROC >= 0.75 on every level",
            all(
                (pol["levels"][x][best]["step_auroc_within_question_step"] or 0) >= 0.75 for x in lv
            ),
        ),
    ]
    if med:
        d = med[best][f"weighted_minus_majority@{k}"]
        checks.append(
            (
                f"weighted best-of-{k} >= majority@{k} + 0.05 on medium levels ({d['mean']:+.3f})",
                d["mean"] >= 0.05,
            )
        )
    return checks


def _easy_and_medium(problems: list) -> list:
    from models.testbed.metrics import GROUPS

    return [p for p in problems if p.level in GROUPS["easy"] + GROUPS["medium"]]


def _reviser_chains(args: argparse.Namespace, reviser_dir: Path) -> dict:
    """Revision chains of 5 attempts on the evaluation questions (easy and medium levels only
    with --reviser-only: the same questions as a full run's, fewer levels)."""
    from models.testbed.checkpoints import load_hf_model
    from models.testbed.quality import eval_problems
    from models.testbed.reviser_eval import evaluate_reviser

    problems = eval_problems(args.seed, args.problems_per_level)
    if args.reviser_only:
        problems = _easy_and_medium(problems)
    print(f"[quality] revision chains ({reviser_dir})", flush=True)
    return evaluate_reviser(
        load_hf_model(reviser_dir),
        problems,
        chains=args.chains or max(1, args.samples // 4),
        seed=args.seed,
        temperature=args.reviser_temperature,
    )


def _rate(r: dict) -> str:
    if r["rate"] is None:
        return "   -  "
    return f"{r['rate']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"


def _print_reviser(rev: dict, reviser_dir: Path, args: argparse.Namespace) -> dict:
    """Print the chains' figures and the context table; return the context table's figures."""
    from models.testbed.checkpoints import load_hf_model
    from models.testbed.quality import eval_problems
    from models.testbed.reviser_eval import context_effect

    print(
        f"\nreviser: accuracy by position in a chain of {rev['length']} (first attempt, then "
        f"revisions), temperature {rev['temperature']}; last - first and chain - parallel "
        "majority paired per question, ± 95% CI"
    )
    named = [*rev["groups"].items(), *[(f"L{lv}", f) for lv, f in rev["levels"].items()]]
    for name, f in named:
        d, m = f["last_minus_first"], f["m"]
        cp = f["chain_minus_parallel"]
        print(
            f"{name:>11s} | first {f['first']:.3f}  last {f['last']:.3f} ({d['mean']:+.3f} ± "
            f"{_f(d['ci95'], 5)}, {f['questions']} q x {f['chains'] // f['questions']} chains)  "
            f"by position {f['by_position']}  chain majority@{m} {f[f'chain_majority@{m}']:.3f} "
            f"vs parallel {f[f'parallel_majority@{m}']:.3f} ({cp['mean']:+.3f} ± "
            f"{_f(cp['ci95'], 5)})"
        )
    print(
        "\nreviser: per step, the share of right attempts revised into wrong ones and of wrong "
        "ones revised into right ones (95% bootstrap CI over questions), and the same shares if "
        "each attempt were drawn afresh at its question's accuracy"
    )
    for name, f in named:
        t = f["transitions"]
        steps = "  ".join(
            f"{i + 1}: {_rate(s['right_to_wrong'])[:5]}/{_rate(s['wrong_to_right'])[:5]}"
            for i, s in enumerate(t["by_step"])
        )
        ref = t["if_resampled"]
        print(
            f"{name:>11s} | right->wrong {_rate(t['all_steps']['right_to_wrong'])} (resampling "
            f"{_f(ref['right_to_wrong'], 5)})  wrong->right "
            f"{_rate(t['all_steps']['wrong_to_right'])} (resampling "
            f"{_f(ref['wrong_to_right'], 5)}) | by step (r->w/w->r) " + steps
        )
    print(
        "\nreviser: accuracy with 4 of its own first attempts in context, by how many are "
        "right, against no context on the same questions (paired, ± 95% CI)"
    )
    ctx = context_effect(
        load_hf_model(reviser_dir),
        _easy_and_medium(eval_problems(args.seed, args.problems_per_level)),
        seed=args.seed,
        temperature=args.reviser_temperature,
    )
    for g, f in ctx["groups"].items():
        cells = [
            f"{k} right: {r['accuracy']:.3f} ({r['minus_none']['mean']:+.3f} ± "
            f"{r['minus_none']['ci95']:.3f}, {r['questions']} q)"
            for k, r in f["by_right_in_context"].items()
            if r["questions"] > 1
        ]
        print(f"{g:>11s} | none {f['none']:.3f} | " + " | ".join(cells))
    return ctx


def _reviser_checks(rev: dict) -> list[tuple[str, bool]]:
    """The revision goals, on the issue's grouping (easy = levels 1-3, medium = 4-5): the last of
    5 attempts >= 5 points above the first on easy levels and not below it on medium; more wrong
    attempts revised into right ones than the reverse (every level together, then per group); the
    answer picked within a chain against the same number of parallel samples."""
    g = rev["groups"]
    checks = []
    if "levels 1-3" in g:
        d = g["levels 1-3"]["last_minus_first"]["mean"]
        checks.append((f"reviser: last - first >= +0.05 on levels 1-3 ({d:+.3f})", d >= 0.05))
    if "levels 4-5" in g:
        d = g["levels 4-5"]["last_minus_first"]["mean"]
        checks.append((f"reviser: last - first >= 0 on levels 4-5 ({d:+.3f})", d >= 0))
    for name in ("levels 1-5", "levels 1-3", "levels 4-5"):
        if name in g:
            t = g[name]["transitions"]["all_steps"]
            r2w, w2r = t["right_to_wrong"]["rate"], t["wrong_to_right"]["rate"]
            if r2w is not None and w2r is not None:
                checks.append(
                    (
                        f"reviser: wrong->right rate above right->wrong on {name} "
                        f"({w2r:.3f} vs {r2w:.3f})",
                        w2r > r2w,
                    )
                )
    groups = [g[n] for n in ("levels 1-3", "levels 4-5") if n in g]
    if groups:
        m = groups[0]["m"]
        checks.append(
            (
                f"reviser: chain majority@{m} >= parallel majority@{m} (same samples) on levels "
                "1-3 and 4-5",
                all(f[f"chain_majority@{m}"] >= f[f"parallel_majority@{m}"] for f in groups),
            )
        )
    return checks


if __name__ == "__main__":
    sys.exit(main())

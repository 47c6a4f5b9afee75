"""Which PRM recipe checks steps? Recipes on the same rollout labels, on new questions.

Every recipe fine-tunes the testbed's larger LM on the Monte-Carlo rollout labels of the policy
(the step checker only evaluates), then scores a pool of the policy's solutions to fresh questions
(levels 1-8, `--samples` each). Printed per recipe, with 95% intervals (bootstrap over questions
for AUROCs, paired normal intervals for differences):
- step AUROC within the same question and step index, per level and pooled over levels 2-6;
- the PRM's top-1 of the pool (the last line's score) against pass@1, per level;
- PRM-weighted best-of-N (weighted majority) against majority@N, per level and on levels 3-5.
`--analyse` first prints what the shipped PRM's top-scored wrong solutions share, against the
right solutions of the same questions.

    .venv/bin/python benchmarks/prm_recipes.py --analyse              # every recipe (~15 min)
    .venv/bin/python benchmarks/prm_recipes.py --analyse --recipes none
    .venv/bin/python benchmarks/prm_recipes.py --recipes paper,hard,surprise+deep2,deep2 \
        --questions 640 --steps 800                                     # 4x the labels
    .venv/bin/python benchmarks/prm_recipes.py --scale paper --testbed runs/testbed-paper \
        --analyse --recipes none                      # the paper scale's shipped PRM
    .venv/bin/python benchmarks/prm_recipes.py --scale paper --testbed runs/testbed-paper \
        --recipes surprise+deep2 --seed 1             # its recipe on other labels and questions
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

LEVELS_AUC = (2, 3, 4, 5, 6)
MEDIUM = (3, 4, 5)


def _policy_key(tb: Path) -> str:
    """The testbed policy's cache key (pools and labels depend on the policy alone)."""
    return str(json.loads((tb / "manifest.json").read_text())["stage_keys"]["policy"])


def _pool(tb: Path, per_level: int, samples: int, seed: int, cache: Path) -> dict:
    """The policy's solutions to fresh questions (cached: sampling is the slow part)."""
    from models.testbed import task
    from models.testbed.checkpoints import load_hf_model
    from models.testbed.generation import sample_completions
    from models.testbed.quality import eval_problems

    path = cache / f"pool-{_policy_key(tb)}-{per_level}-{samples}-{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    problems = eval_problems(seed, per_level)
    comps, _ = sample_completions(load_hf_model(tb / "policy"), problems, samples, seed + 17)
    rows = []
    for p, cs in zip(problems, comps, strict=True):
        rows.append(
            {
                "question": p.question,
                "answer": p.answer,
                "level": p.level,
                "completions": cs,
                "correct": [task.is_correct(c, p.answer) for c in cs],
                "answers": [task.extract_answer(c) for c in cs],
                "steps_ok": [task.check_steps(p, c) for c in cs],
            }
        )
    pool = {"rows": rows}
    path.write_text(json.dumps(pool))
    return pool


def _labels(tb: Path, questions: int, seed: int, cache: Path, scale: str) -> list[dict]:
    """The default recipe's rollout labels for `questions` training questions (cached)."""
    from models.testbed.checkpoints import load_hf_model
    from models.testbed.prm import rollout_labels
    from models.testbed.settings import TestbedSettings

    path = cache / f"labels-{_policy_key(tb)}-{questions}-{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    settings = TestbedSettings(quick=False, scale=scale, seed=seed)
    object.__setattr__(settings, "prm", replace(settings.prm, questions=questions))
    items, stats = rollout_labels(load_hf_model(tb / "policy"), settings, progress=True)
    print(
        f"[labels] {stats['prm_solutions']} solutions, {stats['prm_rollouts']:,} rollouts "
        f"in {stats['prm_rollout_seconds']:.0f} s",
        flush=True,
    )
    path.write_text(json.dumps(items))
    return items


def _scores(model, pool: dict) -> list[list[list[float]]]:
    from models.testbed.verifiers import prm_line_scores

    rows = pool["rows"]
    flat = prm_line_scores(
        model.eval(),
        [r["question"] for r in rows for _ in r["completions"]],
        [c for r in rows for c in r["completions"]],
    )
    out, i = [], 0
    for r in rows:
        out.append(flat[i : i + len(r["completions"])])
        i += len(r["completions"])
    return out


def _per_question(pool: dict, scores: list) -> list[dict]:
    """Per question: pass@1, the top-1's expected accuracy, weighted and plain majority over the
    whole pool, and the step groups (score, step right) per step index."""
    import random

    from models.testbed.metrics import subset_accuracy

    out = []
    for r, sc in zip(pool["rows"], scores, strict=True):
        last = [s[-1] if s else 0.0 for s in sc]
        top = max(last)
        tops = [c for c, s in zip(r["correct"], last, strict=True) if s >= top]
        n = len(last)
        rng = random.Random(0)
        groups: dict[int, list] = {}
        for s, ok in zip(sc, r["steps_ok"], strict=True):
            for j, y in enumerate(ok[: len(s)]):
                groups.setdefault(j, []).append((s[j], y))
        out.append(
            {
                "level": r["level"],
                "pass1": sum(r["correct"]) / n,
                "top1": sum(tops) / len(tops),
                "majority": subset_accuracy(r["answers"], r["correct"], n, rng, 1),
                "weighted": subset_accuracy(r["answers"], r["correct"], n, rng, 1, last),
                "groups": list(groups.values()),
            }
        )
    return out


def _auc_ci(qs: list[dict], draws: int = 200) -> tuple[float | None, float, float]:
    """Within-question step AUROC and its bootstrap 95% interval (questions resampled)."""
    import random

    from models.testbed.metrics import grouped_auroc

    auc, _ = grouped_auroc([g for q in qs for g in q["groups"]])
    if auc is None:
        return None, float("nan"), float("nan")
    rng = random.Random(1)
    boot = []
    for _ in range(draws):
        pick = [qs[rng.randrange(len(qs))] for _ in qs]
        a, _ = grouped_auroc([g for q in pick for g in q["groups"]])
        if a is not None:
            boot.append(a)
    boot.sort()
    return auc, boot[int(0.025 * len(boot))], boot[int(0.975 * len(boot)) - 1]


def _diff(qs: list[dict], a: str, b: str) -> str:
    import numpy as np

    from planner.stats import half_width

    d = np.array([q[a] - q[b] for q in qs])
    return f"{100 * d.mean():+5.1f} ±{100 * half_width(d):4.1f}"


def report(name: str, qs: list[dict]) -> dict:
    """Print one recipe's figures; return the headline ones."""
    import numpy as np

    def lv(levels):
        return [q for q in qs if q["level"] in levels]

    print(f"\n== {name}")
    print("level | stepAUC [95% CI]     | pass@1 top-1  top1-pass1  | maj@N  wtd@N  wtd-maj")
    for level in sorted({q["level"] for q in qs}):
        sub = lv((level,))
        auc, lo, hi = _auc_ci(sub)
        auc_s = "   -" if auc is None else f"{auc:.3f} [{lo:.3f},{hi:.3f}]"
        print(
            f"{level:>5d} | {auc_s:20s} | {np.mean([q['pass1'] for q in sub]):.3f}  "
            f"{np.mean([q['top1'] for q in sub]):.3f}  {_diff(sub, 'top1', 'pass1')} | "
            f"{np.mean([q['majority'] for q in sub]):.3f}  "
            f"{np.mean([q['weighted'] for q in sub]):.3f}  {_diff(sub, 'weighted', 'majority')}"
        )
    auc, lo, hi = _auc_ci(lv(LEVELS_AUC))
    med = lv(MEDIUM)
    print(
        f"levels 2-6 step AUROC {auc:.3f} [{lo:.3f}, {hi:.3f}] (goal >= .75); levels 3-5 weighted "
        f"minus majority {_diff(med, 'weighted', 'majority')} points (goal >= +3); all levels "
        f"top-1 minus pass@1 {_diff(qs, 'top1', 'pass1')} points"
    )
    return {
        "step_auroc_2_6": auc,
        "ci": [lo, hi],
        "weighted_minus_majority_3_5": float(np.mean([q["weighted"] - q["majority"] for q in med])),
        "top1_minus_pass1": float(np.mean([q["top1"] - q["pass1"] for q in qs])),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--testbed", type=Path, help="a testbed directory (default: the cached one)")
    ap.add_argument(
        "--recipes",
        default="all",
        help="comma-separated names of models/testbed/settings.py's PRM_RECIPES; 'all' (the "
        "default) for every one, 'none' to train nothing",
    )
    ap.add_argument("--analyse", action="store_true", help="what the shipped PRM's top picks share")
    ap.add_argument("--questions", type=int, default=0, help="training questions (0: the scale's)")
    ap.add_argument("--steps", type=int, default=0, help="training steps (0: the scale's)")
    ap.add_argument("--per-level", type=int, default=40, help="fresh questions per level")
    ap.add_argument("--samples", type=int, default=16, help="solutions per fresh question")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--scale", choices=("default", "paper"), default="default", help="the testbed's scale"
    )
    ap.add_argument("--cache", type=Path, default=Path("runs/prm-recipes"))
    ap.add_argument("--json", type=Path, help="also write the headline figures here")
    args = ap.parse_args(argv)

    import torch

    from models.testbed import ensure_testbed
    from models.testbed.checkpoints import load_hf_model
    from models.testbed.prm import fit_prm
    from models.testbed.settings import PRM_RECIPES, TestbedSettings

    names = {"none": [], "all": list(PRM_RECIPES)}.get(args.recipes, args.recipes.split(","))
    unknown = [n for n in names if n not in PRM_RECIPES]
    if unknown:
        ap.error(f"unknown recipe {unknown[0]!r}; choose from {', '.join(PRM_RECIPES)}")
    torch.set_num_threads(2)
    tb = args.testbed or ensure_testbed(quick=False, scale=args.scale, seed=args.seed)
    args.cache.mkdir(parents=True, exist_ok=True)
    pool = _pool(tb, args.per_level, args.samples, args.seed, args.cache)
    headline = {}
    if args.analyse:
        from prm_shortcut import analyse  # benchmarks/prm_shortcut.py, beside this script

        shipped = _scores(load_hf_model(tb / "prm"), pool)
        analyse(pool, shipped)
        headline["shipped"] = report("shipped PRM", _per_question(pool, shipped))
    base = TestbedSettings(quick=False, scale=args.scale, seed=args.seed).prm
    args.questions = args.questions or base.questions
    if names:
        items = _labels(tb, args.questions, args.seed, args.cache, args.scale)
    for name in names:
        spec = replace(base, **PRM_RECIPES[name])
        if args.steps:
            spec = replace(spec, train=replace(spec.train, steps=args.steps))
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            model, _, _ = fit_prm(
                load_hf_model(tb / "large"), items, spec, args.seed, Path(tmp) / "c.pt", False
            )
        took = time.perf_counter() - t0
        fig = report(
            f"{name} ({spec.recipe()}, {spec.train.steps} steps, {args.questions} "
            f"questions, trained in {took:.0f} s)",
            _per_question(pool, _scores(model, pool)),
        )
        headline[name] = {**fig, "train_seconds": round(took, 1)}
    if args.json:
        args.json.write_text(json.dumps(headline, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Which reviser recipe revises? Recipes trained from the same policy, chains on fresh questions.

Each recipe (`ReviserSpec.context`: `wrong`, the paper's; `sampled`; `fix`, contrast pairs whose
targets fix the attempt in front or keep it; `feedback`, `fix` with each earlier attempt's first
flagged line marked, by the larger LM's likelihood at test time) fine-tunes the testbed's policy
into a reviser under `--out` (reused when there), then runs `--chains` revision chains of 5
attempts on `--problems-per-level` fresh questions of levels 1-5. Printed per recipe, with 95%
intervals over questions: the last attempt minus the first (paired per question), the
right-to-wrong and wrong-to-right rates per step, the chain's majority against the same number of
parallel samples, and the first attempt against the testbed policy's own pass@1 (a recipe whose
fine-tuning erodes plain solving makes its first attempt, and so last - first, look better).
`--recipes shipped` evaluates the testbed's own reviser.

    .venv/bin/python benchmarks/reviser_recipes.py --recipes shipped,fix --out /tmp/revisers
    .venv/bin/python benchmarks/reviser_recipes.py --recipes wrong --lr 5e-4 --replay 0.5 \
        --out /tmp/revisers --eval-seed 8             # the paper's recipe, the former settings
    .venv/bin/python benchmarks/reviser_recipes.py --recipes feedback --steps 600 --out /tmp/rv
    .venv/bin/python benchmarks/reviser_recipes.py --recipes fix --grow-layers 2 --out /tmp/rv
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

LEVELS = (1, 2, 3, 4, 5)


def _train(tb: Path, context: str, args: argparse.Namespace, out: Path) -> Path:
    """The recipe's reviser under `out` (trained unless already there); returns its model dir."""
    from models.testbed.reviser import train_reviser
    from models.testbed.settings import TestbedSettings

    if (out / "model" / "config.json").exists():
        return out / "model"
    manifest = json.loads((tb / "manifest.json").read_text())
    settings = TestbedSettings(quick=manifest["quick"], scale=manifest["scale"], seed=args.seed)
    spec = settings.reviser
    spec = replace(
        spec,
        context=context,
        questions=args.questions or spec.questions,
        replay=spec.replay if args.replay is None else args.replay,
        train=replace(
            spec.train, steps=args.steps or spec.train.steps, lr=args.lr or spec.train.lr
        ),
    )
    object.__setattr__(settings, "reviser", spec)
    # train_reviser reads the policy from <dir>/model; the run directory holds it as policy/
    stage = out / "policy-link"
    stage.mkdir(parents=True, exist_ok=True)
    if not (stage / "model").exists():
        if args.grow_layers:
            _grown(tb / "policy", args.grow_layers, stage / "model")
        else:
            (stage / "model").symlink_to((tb / "policy").resolve())
    (out / "work").mkdir(exist_ok=True)
    t0 = time.perf_counter()
    record = train_reviser(settings, out / "work", out, {"policy": stage}, progress=True)
    record["wall_seconds"] = round(time.perf_counter() - t0, 1)
    (out / "record.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    return out / "model"


def _grown(policy: Path, factor: int, out: Path) -> None:
    """The policy with each layer repeated `factor` times (`grow_layers`), written to `out`."""
    from models.testbed.checkpoints import load_hf_model, save_model
    from models.testbed.modeling import grow_layers

    save_model(grow_layers(load_hf_model(policy), factor), out)


def _ci(d: dict) -> str:
    return "-" if d["ci95"] is None else f"{d['mean']:+.3f} ± {d['ci95']:.3f}"


def _rate(r: dict) -> str:
    return "-" if r["rate"] is None else f"{r['rate']:.3f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--testbed", type=Path, help="a testbed directory (default: the cached one)")
    ap.add_argument("--scale", default="default", choices=["default", "paper"])
    ap.add_argument("--seed", type=int, default=0, help="testbed seed")
    ap.add_argument("--recipes", default="shipped,wrong,fix,feedback")
    ap.add_argument("--out", type=Path, required=True, help="where the recipes' revisers go")
    ap.add_argument("--steps", type=int, help="fine-tuning steps (default: the scale's)")
    ap.add_argument("--questions", type=int, help="revision questions (default: the scale's)")
    ap.add_argument("--lr", type=float, help="peak learning rate (default: the scale's)")
    ap.add_argument("--replay", type=float, help="replay share of a batch (default: the scale's)")
    ap.add_argument(
        "--grow-layers",
        type=int,
        default=0,
        help="fine-tune a reviser with each of the policy's layers repeated this many times "
        "(depth up-scaling; copies start as identity): more capacity at the policy's width",
    )
    ap.add_argument("--problems-per-level", type=int, default=40)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--eval-seed", type=int, default=7, help="seed of the fresh questions")
    ap.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from models.testbed import ensure_testbed, task
    from models.testbed.checkpoints import load_hf_model
    from models.testbed.generation import sample_completions
    from models.testbed.quality import eval_problems
    from models.testbed.reviser_eval import evaluate_reviser, likelihood_flagger

    torch.set_num_threads(1)
    tb = args.testbed or ensure_testbed(scale=args.scale, seed=args.seed, progress=True)
    problems = eval_problems(args.eval_seed, args.problems_per_level, LEVELS)
    first, _ = sample_completions(
        load_hf_model(tb / "policy"), problems, args.chains, args.eval_seed, args.temperature
    )
    pass1 = {
        g: float(
            np.mean(
                [
                    task.is_correct(c, p.answer)
                    for p, cs in zip(problems, first, strict=True)
                    for c in cs
                    if p.level in lv
                ]
            )
        )
        for g, lv in (("easy", (1, 2)), ("medium", (3, 4, 5)))
    }
    print(
        f"testbed {tb}; {args.problems_per_level} fresh questions/level (levels 1-5, seed "
        f"{args.eval_seed}) x {args.chains} chains of 5, temperature {args.temperature}; policy "
        f"pass@1 easy {pass1['easy']:.3f}, medium {pass1['medium']:.3f}"
    )
    results = {"policy_pass1": pass1, "recipes": {}}
    for name in args.recipes.split(","):
        tag = f"{name}-steps{args.steps}-q{args.questions}-lr{args.lr}-replay{args.replay}"
        tag += f"-grow{args.grow_layers}" if args.grow_layers else ""
        model_dir = tb / "reviser" if name == "shipped" else _train(tb, name, args, args.out / tag)
        flagger = likelihood_flagger(load_hf_model(tb / "large")) if name == "feedback" else None
        t0 = time.perf_counter()
        res = evaluate_reviser(
            load_hf_model(model_dir),
            problems,
            chains=args.chains,
            seed=args.eval_seed,
            temperature=args.temperature,
            flagger=flagger,
        )
        results["recipes"][name] = res
        print(f"\n{name} ({time.perf_counter() - t0:.0f} s of chains)")
        for g, f in [*res["groups"].items(), *[(f"L{k}", v) for k, v in res["levels"].items()]]:
            t, m = f["transitions"]["all_steps"], f["m"]
            ref = f["transitions"]["if_resampled"]
            print(
                f"{g:>10s} | first {f['first']:.3f} last {f['last']:.3f} "
                f"({_ci(f['last_minus_first'])})"
                f" | right->wrong {_rate(t['right_to_wrong'])} (resampling {ref['right_to_wrong']})"
                f" wrong->right {_rate(t['wrong_to_right'])} (resampling {ref['wrong_to_right']})"
                f" | chain maj@{m} - parallel "
                f"{_ci(f['chain_minus_parallel'])} | by position {f['by_position']}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

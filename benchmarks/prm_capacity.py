"""Can the testbed's PRM learn to check steps at all? A diagnostic, not the shipped recipe.

The shipped PRM (models/testbed/prm.py) learns from Monte-Carlo rollout labels and ranks steps at
chance on new questions. This script asks whether the labels are to blame: it trains the same PRM
(initialised from the testbed's larger LM, the same input format, BCE at the step tags plus the
auxiliary LM loss) on *perfect* labels, prefix correctness from the programmatic step checker, for
the policy's own solutions to many fresh questions; then it reports the within-question,
same-step-index step AUROC on the training solutions and on new questions. The step checker trains
only this throwaway model, never a shipped verifier.

`--extra-layers N` stacks N new decoder layers on the larger LM (their output projections zeroed,
so training starts from the larger LM exactly). Why: a wrong line shows as a token the LM did not
expect, but the LM's expectation exists only at its last layer, which no later position of the
same model can read; new layers on top can.

    .venv/bin/python benchmarks/prm_capacity.py --testbed DIR --questions 1200 --steps 1000
    .venv/bin/python benchmarks/prm_capacity.py --testbed DIR --extra-layers 2
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path


def _labelled(policy, problems, samples: int, seed: int, balanced: bool) -> list[dict]:
    """The policy's solutions with step-checker labels (prefix correctness, and the answer line's
    correctness last); `balanced`: outcome-balanced as the shipped PRM's (`_select`), else all."""
    from models.testbed import task
    from models.testbed.generation import sample_completions
    from models.testbed.prm import _select, solution_item

    comps, _ = sample_completions(policy, problems, samples, seed)
    items = []
    for p, cs in zip(problems, comps, strict=True):
        for c in _select(p, cs, 4) if balanced else cs:
            it = solution_item(p, c)
            if it is None:
                continue
            ok = task.check_steps(p, c)
            for j in range(it.pop("n_steps")):
                it["labels"][j] = float(j < len(ok) and ok[j])
            it.update(level=p.level, steps_ok=ok)
            items.append(it)
    return items


def _rollout_labelled(policy, questions: int, seed: int) -> list[dict]:
    """The shipped PRM's Monte-Carlo labels (`rollout_labels`, its default settings) for more
    questions; the step checker's verdicts ride along for the training-fit figure only."""
    from dataclasses import replace

    from models.testbed import task
    from models.testbed.prm import rollout_labels
    from models.testbed.settings import TestbedSettings

    settings = TestbedSettings(quick=False, scale="default", seed=seed)
    object.__setattr__(settings, "prm", replace(settings.prm, questions=questions))
    items, stats = rollout_labels(policy, settings, progress=True)
    print(f"{stats['prm_rollouts']:,} rollouts in {stats['prm_rollout_seconds']:.0f} s")
    for it in items:
        p = task.make_problem("x", it["question"])
        it["level"], it["steps_ok"] = p.level, task.check_steps(p, "\n".join(it["lines"]))
    return items


def _step_auroc(model, items: list[dict]) -> dict[int, tuple[float | None, int]]:
    """Within-question, same-step-index step AUROC per level (and 0: all levels)."""
    from models.testbed.metrics import grouped_auroc
    from models.testbed.verifiers import prm_line_scores

    scores = prm_line_scores(
        model.eval(), [it["question"] for it in items], ["\n".join(it["lines"]) for it in items]
    )
    groups: dict[tuple, list] = {}
    for it, s in zip(items, scores, strict=True):
        for j, y in enumerate(it["steps_ok"][: len(s)]):
            groups.setdefault((it["level"], it["question"], j), []).append((s[j], y))
    out = {
        lv: grouped_auroc([g for k, g in groups.items() if k[0] == lv])
        for lv in sorted({k[0] for k in groups})
    }
    out[0] = grouped_auroc(list(groups.values()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--testbed", type=Path, help="a testbed directory (default: the cached default one)"
    )
    ap.add_argument(
        "--questions", type=int, default=1200, help="fresh training questions (16 samples each)"
    )
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--lm-weight", type=float, default=0.5)
    ap.add_argument("--extra-layers", type=int, default=0)
    ap.add_argument(
        "--labels",
        default="checker",
        choices=["checker", "rollouts"],
        help="checker: perfect prefix labels; rollouts: the shipped Monte-Carlo labels "
        "(6 rollouts per step) for the same number of questions",
    )
    ap.add_argument("--eval-per-level", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    from models.testbed import ensure_testbed, task
    from models.testbed.checkpoints import load_hf_model
    from models.testbed.modeling import TrainSpec, train_loop
    from models.testbed.prm_train import deepen, draw, make_batch, prm_loss
    from models.testbed.quality import eval_problems
    from models.testbed.tokenizer import CharCodec

    torch.set_num_threads(1)
    tb = args.testbed or ensure_testbed(quick=False, scale="default", seed=args.seed, progress=True)
    policy = load_hf_model(tb / "policy")
    t0 = time.perf_counter()
    if args.labels == "checker":
        problems = task.generate_problems(
            args.questions, 7_000_003 + args.seed, task.DEFAULT_LEVELS
        )
        train_items = _labelled(policy, problems, 16, 7_000_003 + args.seed, balanced=True)
    else:
        train_items = _rollout_labelled(policy, args.questions, args.seed)
    ev = eval_problems(args.seed, args.eval_per_level)
    # held-out: the evaluation questions, disjoint from the training stream by seed
    test_items = _labelled(policy, ev, 8, args.seed + 5, balanced=False)
    n_labels = sum(len(it["labels"]) for it in train_items)
    print(
        f"labelled {len(train_items)} training solutions ({args.questions} questions) in "
        f"{time.perf_counter() - t0:.0f} s; mean step label "
        f"{sum(y for it in train_items for y in it['labels']) / n_labels:.3f}"
    )

    model = load_hf_model(tb / "large")
    if args.extra_layers:
        model = deepen(model, args.extra_layers, args.seed)
    codec = CharCodec()
    lengths = [
        sum(len(line) + 2 for line in it["lines"]) + len(it["question"]) for it in train_items
    ]

    def loss_fn(m: torch.nn.Module, step: int) -> tuple[torch.Tensor, int]:
        rng = random.Random(f"prm-capacity:{args.seed}:{step}")
        batch = make_batch(train_items, draw(train_items, rng, 16, lengths, None, 0), codec)
        return prm_loss(m, batch, codec, lm_weight=args.lm_weight)

    model.train()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        spec = TrainSpec(steps=args.steps, batch_size=16, lr=args.lr, warmup=20)
        train_loop(model, spec, loss_fn, Path(tmp) / "ckpt.pt", desc="prm-capacity", progress=True)
    print(
        f"trained {args.steps} steps in {time.perf_counter() - t0:.0f} s "
        f"({model.config.num_hidden_layers} layers, lr {args.lr}, LM weight {args.lm_weight})"
    )

    fit = _step_auroc(model, train_items[: 4 * len(test_items)])
    held = _step_auroc(model, test_items)
    print("\nstep AUROC within question and step index (pairs)")
    print("level | training solutions | new questions")
    for lv in sorted(held):
        name = "all" if lv == 0 else str(lv)
        a, n = fit.get(lv, (None, 0))
        b, m = held[lv]
        print(
            f"{name:>5s} | {'-' if a is None else f'{a:.3f}':>6s} ({n:>5d}) | "
            f"{'-' if b is None else f'{b:.3f}':>6s} ({m:>5d})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

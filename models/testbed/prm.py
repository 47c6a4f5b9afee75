"""The testbed PRM (Math-Shepherd style), initialised from the larger LM and trained from
Monte-Carlo rollout labels of the policy; the recipe is a setting (`prm_train`, `PRM_RECIPES`).

Labels: the policy samples solutions to training questions; from every step prefix it rolls out
`rollouts` completions, and the step's soft label is the fraction that reach the right answer; the
final answer line is labelled by its own correctness. The step checker is never used here.
The paper's recipe (the default): binary cross-entropy between P(good) =
softmax(logits[<good>, <bad>])[0] at each step tag and the soft label, plus an auxiliary LM loss
on the correct solutions' lines. Which solutions get labels (`wrong_per_question`) and where
rollouts stop (`stop_dead`) are choices of cost, not of the label: see `_select` and
`rollout_labels`.

What it learns (`benchmarks/prm_recipes.py`, 40 fresh questions per level x 16 samples; the
README's testbed section has the figures and the commands). At the default scale, with the paper's
recipe (that scale's default), it fits its training questions but ranks the steps of new ones at
chance (step AUROC .54 on levels 2-6), and its top-scored samples are worse than a random one
(top-1 of 16 is 15 points below pass@1): it judges a solution by how its question and shape usually
end, not by its lines. No recipe (hard labels, a ranking loss within a question and step index, a
value head, two added decoder layers, self-distillation of the larger LM's per-character log-probs,
4x the labels, the paper scale's 13x larger LM) moved that out of .46-.56 alone. The 13x LM with
two added layers and the self-distilled log-probs (surprise+deep2) on 8x the labelled questions
(1,280) and 1,600 steps did: the paper scale's default (`settings.DEFAULT_PRM_RECIPE`) ranks new
steps at .79 [.76, .82], and its top-1 of 16 is above pass@1. The larger LM's own likelihood ranks
the same steps at .996: the knowledge is in the LM, and it takes that scale of labels to bring it
to the tag.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch

from models.testbed import task
from models.testbed.checkpoints import load_model, save_model
from models.testbed.generation import max_new_tokens_for, sample_chunked, sample_completions
from models.testbed.modeling import count_params, train_loop
from models.testbed.prm_train import (
    Probes,
    deepen,
    draw,
    hard_labels,
    make_batch,
    prm_loss,
    question_groups,
    value_head_model,
    with_surprise,
)
from models.testbed.settings import PRMSpec, TestbedSettings
from models.testbed.tokenizer import STEP_TAG, CharCodec
from models.testbed.verifiers import completion_lines, prm_line_scores
from planner.progress import progress as report

PRM_SEED_OFFSET = 2_000_003


def _trim(completion: str) -> list[str]:
    """Lines up to and including the first answer line."""
    lines = completion_lines(completion)
    for i, line in enumerate(lines):
        if task.is_answer_line(line):
            return lines[: i + 1]
    return lines


def _select(problem: task.TestbedProblem, completions: list[str], wrong_cap: int) -> list[str]:
    """The solutions of one question to label: with `wrong_cap` 0 all of them, otherwise up to
    `wrong_cap` whose final answer is wrong and as many (at least one) whose answer is right, in
    sample order.

    Why: this policy rarely slips, so solutions labelled at random hold few wrong steps, and hardly
    any question has a right and a wrong step at the same index. A PRM trained on those learned
    question difficulty and step position only (within-question step AUROC .41-.67 on its own
    training lines). Choosing by the final answer uses the outcome alone, as the rollout labels
    do; the step checker stays out of training.
    """
    if wrong_cap <= 0:
        return list(completions)
    ok = [task.is_correct(c, problem.answer) for c in completions]
    wrong = [i for i, good in enumerate(ok) if not good][:wrong_cap]
    right = [i for i, good in enumerate(ok) if good][: max(1, len(wrong))]
    keep = set(wrong) | set(right)
    return [c for i, c in enumerate(completions) if i in keep]


def solution_item(problem: task.TestbedProblem, completion: str) -> dict | None:
    """A solution to label: its lines up to the answer line, a label per line (0 for now; the
    answer line's is its correctness) and `n_steps`, the lines before the answer line. None for an
    empty completion."""
    lines = _trim(completion)
    if not lines:
        return None
    has_answer = task.is_answer_line(lines[-1])
    item = {
        "question": problem.question,
        "answer": problem.answer,
        "lines": lines,
        "labels": [0.0] * len(lines),
        "n_steps": len(lines) - 1 if has_answer else len(lines),
    }
    if has_answer:
        item["labels"][-1] = float(task.is_correct(lines[-1], problem.answer))
    return item


def rollout_labels(
    policy: torch.nn.Module, settings: TestbedSettings, progress: bool
) -> tuple[list[dict], dict]:
    """Solutions with a Monte-Carlo soft label per line, and counts for the manifest.

    Rollouts go one step index at a time. With `stop_dead`, once no rollout from a prefix reaches
    the answer, the solution's later steps get label 0 without rollouts of their own: a prefix
    the policy cannot finish stays one it cannot finish (OmegaPRM labels every step after the
    first failing one negative the same way). That spends the rollouts on the steps still in
    doubt.
    """
    spec = settings.prm
    codec = CharCodec()
    seed = settings.seed + PRM_SEED_OFFSET
    problems = task.generate_problems(spec.questions, seed, settings.levels)
    comps, _ = sample_completions(policy, problems, spec.samples_per_question, seed)
    items = []
    for p, cs in zip(problems, comps, strict=True):
        for c in _select(p, cs, spec.wrong_per_question):
            item = solution_item(p, c)
            if item is not None:
                items.append(item)
    t0 = time.perf_counter()
    n_rollouts = rollout_tokens = dead = 0
    alive = list(range(len(items)))
    max_new = max_new_tokens_for(problems)
    # Units: solution steps to label (a dead prefix's later steps count as labelled at once).
    with report(
        f"PRM labels: rollouts from {len(items):,} solutions",
        sum(it["n_steps"] for it in items),
        unit="steps",
        enabled=progress,
    ) as bar:
        for j in range(max((it["n_steps"] for it in items), default=0)):
            todo = [i for i in alive if j < items[i]["n_steps"]]
            if not todo:
                break
            prompts = []
            for i in todo:
                it = items[i]
                prefix = (
                    task.format_prompt(it["question"])
                    + task.STEP_DELIMITER.join(it["lines"][: j + 1])
                    + task.STEP_DELIMITER
                )
                prompts += [[codec.bos_id, *codec.encode(prefix)]] * spec.rollouts
            gens = sample_chunked(
                policy,
                prompts,
                max_new_tokens=max_new,
                temperature=1.0,
                eos_token_id=codec.eos_id,
                pad_token_id=codec.pad_id,
                seed=seed + 1 + 1000 * j,
            )
            n_rollouts += len(gens)
            rollout_tokens += sum(len(g.token_ids) for g in gens)
            alive = []
            for k, i in enumerate(todo):
                hits = sum(
                    task.is_correct(codec.decode(g.token_ids), items[i]["answer"])
                    for g in gens[k * spec.rollouts : (k + 1) * spec.rollouts]
                )
                items[i]["labels"][j] = hits / spec.rollouts
                if hits or not spec.stop_dead:
                    alive.append(i)
                else:
                    dead += items[i]["n_steps"] - j - 1
                    bar.update(items[i]["n_steps"] - j - 1)  # labelled 0 without rollouts
            bar.update(len(todo))
    for it in items:
        del it["n_steps"]
    seconds = time.perf_counter() - t0
    stats = {
        "prm_questions": spec.questions,
        "prm_solutions": len(items),
        "prm_labelled_lines": sum(len(it["lines"]) for it in items),
        "prm_wrong_answer_solutions": sum(
            not task.is_correct("\n".join(it["lines"]), it["answer"]) for it in items
        ),
        "prm_lines_labelled_dead": dead,
        "prm_rollouts": n_rollouts,
        "prm_rollout_tokens": rollout_tokens,
        "prm_rollout_seconds": round(seconds, 2),
        "prm_rollout_tokens_per_s": round(rollout_tokens / max(1e-9, seconds), 1),
    }
    return items, stats


def prepare_labels(
    settings: TestbedSettings, work: Path, dirs: dict[str, Path], progress: bool
) -> tuple[list[dict], dict]:
    """The rollout labels, computed once into ``work/labels.json`` (they need only the policy, so
    a run computes them while the larger LM is still pretraining)."""
    labels_path = work / "labels.json"
    if labels_path.exists():
        saved = json.loads(labels_path.read_text())
        return saved["items"], saved["stats"]
    policy = load_model(dirs["policy"])
    items, stats = rollout_labels(policy, settings, progress)
    tmp = labels_path.with_name(labels_path.name + ".tmp")
    tmp.write_text(json.dumps({"items": items, "stats": stats}))
    tmp.replace(labels_path)
    return items, stats


def train_prm(
    settings: TestbedSettings, work: Path, out: Path, dirs: dict[str, Path], progress: bool
) -> dict:
    """The PRM stage: rollout labels, then fine-tuning of the larger LM with the settings'
    recipe (`prm_train`); returns its record."""
    t0 = time.perf_counter()
    items, stats = prepare_labels(settings, work, dirs, progress)
    spec = settings.prm
    model, train_items, record = fit_prm(
        load_model(dirs["large"]), items, spec, settings.seed, work / "ckpt.pt", progress
    )
    save_model(model, out / "model")
    if spec.head == "value":
        # The harness's token-class PRM reads the head right after each step's tag.
        (out / "model" / "verifier.json").write_text(
            json.dumps({"format": "token_class", "separator": STEP_TAG}, indent=2)
        )
    # A quick check that the head is wired: scores at the tags are probabilities.
    with torch.no_grad():
        s = torch.tensor(
            prm_line_scores(model, [items[0]["question"]], ["\n".join(items[0]["lines"])])[0]
        )
        assert bool(((s >= 0) & (s <= 1)).all())
    n = count_params(model)
    mean_label = sum(sum(it["labels"]) for it in train_items) / max(
        1, sum(len(it["labels"]) for it in train_items)
    )
    record.update(stats)
    record.update(
        {
            "init_from": "large",
            "params": n,
            "fine_tune_tokens": record["tokens"],
            "fine_tune_flops": 6 * n * record["tokens"],
            "mean_label": round(mean_label, 4),
            "lm_weight": spec.lm_weight if spec.head == "tag" else 0.0,
            "wrong_per_question": spec.wrong_per_question,
            "stop_dead": spec.stop_dead,
            "length_grouped_batches": spec.grouped,
            "recipe": {"name": settings.prm_recipe, **spec.recipe()},
            "stage_seconds": round(time.perf_counter() - t0, 2),
        }
    )
    return record


def fit_prm(
    large: torch.nn.Module,
    items: list[dict],
    spec: PRMSpec,
    seed: int,
    ckpt: Path,
    progress: bool,
) -> tuple[torch.nn.Module, list[dict], dict]:
    """Fine-tune the larger LM into a PRM with `spec`'s recipe on rollout-labelled `items`
    (checkpointed at `ckpt`); (model, the items as trained on, training record)."""
    codec = CharCodec()
    model, train_items = recipe_model(large, items, spec, seed)
    if spec.surprise > 0:
        train_items = with_surprise(large, train_items)
        base = int(large.config.num_hidden_layers)
        # the first new layer's output, else the last layer's
        char_layer = base + 1 if spec.extra_layers else base
        model.ttc_probes = Probes(int(large.config.hidden_size), char_layer)
    lengths = (
        [sum(len(line) + 2 for line in it["lines"]) + len(it["question"]) for it in train_items]
        if spec.grouped
        else None
    )
    groups = question_groups(train_items) if "rank" in spec.loss else None

    def loss_fn(m: torch.nn.Module, step: int) -> tuple[torch.Tensor, int]:
        rng = random.Random(f"testbed-prm:{seed}:{step}")
        chosen = draw(train_items, rng, spec.train.batch_size, lengths, groups, spec.per_question)
        batch = make_batch(train_items, chosen, codec, spec.head)
        return prm_loss(
            m,
            batch,
            codec,
            head=spec.head,
            loss=spec.loss,
            lm_weight=spec.lm_weight,
            surprise=spec.surprise,
        )

    record = train_loop(model, spec.train, loss_fn, ckpt, desc="PRM", progress=progress)
    if spec.surprise > 0:
        del model.ttc_probes  # training-only: the saved PRM is a plain checkpoint
    return model, train_items, record


def recipe_model(
    large: torch.nn.Module, items: list[dict], spec: PRMSpec, seed: int
) -> tuple[torch.nn.Module, list[dict]]:
    """The model a recipe fine-tunes (the larger LM, deepened, with a value head) and the labels
    it trains on (soft or hard)."""
    codec = CharCodec()
    model = deepen(large, spec.extra_layers, seed + PRM_SEED_OFFSET) if spec.extra_layers else large
    if spec.head == "value":
        model = value_head_model(model, codec)
    return model, hard_labels(items) if spec.labels == "hard" else items

"""The PRM, exactly as in the paper (Math-Shepherd style), initialised from the larger LM.

Labels: the policy samples solutions to training questions; from every step prefix it rolls out
`rollouts` completions, and the step's soft label is the fraction that reach the right answer; the
final answer line is labelled by its own correctness. The step checker is never used here.
Training: binary cross-entropy between P(good) = softmax(logits[<good>, <bad>])[0] at each step tag
and the soft label, plus an auxiliary LM loss on the correct solutions' lines, which keeps the
larger LM's ability to notice a wrong line (the prototype's PRM, trained from the small policy
without it, learned step position and question difficulty instead of step checking).

Which solutions get labels (`wrong_per_question`) and where rollouts stop (`stop_dead`) are
choices of cost, not of the label: see `_select` and `rollout_labels`. Measured on the default
testbed: the PRM fits its training questions (within-question step AUROC .83-1.0 on its own lines
after 800 steps) but not new ones (.38-.69), and six times the questions (960, 1,200 steps) left it
there; it learns which questions and positions fail, not which lines are wrong. The labels are not
the cause: `benchmarks/prm_capacity.py` trains this PRM on perfect step-checker labels for 5.8k
solutions of 1,200 questions and gets .55 on new questions after 1,000 steps; with two more
decoder layers on top of the larger LM (which can read its next-token expectations at earlier
positions, where a wrong line shows) and 2,000 steps, .66 (.88 on its training lines); with those
layers and this module's rollout labels for 1,200 questions (5 min of rollouts, 14 min of
training), .61 (.90 on level 2, .74 on level 5). The larger LM's likelihood is the testbed's
verifier that checks steps.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from models.testbed import task
from models.testbed.checkpoints import load_model, save_model
from models.testbed.generation import max_new_tokens_for, sample_chunked, sample_completions
from models.testbed.modeling import count_params, length_grouped, train_loop
from models.testbed.settings import TestbedSettings
from models.testbed.tokenizer import CharCodec
from models.testbed.verifiers import completion_lines, prm_input, prm_logits_to_scores

PRM_SEED_OFFSET = 2_000_003


def _trim(completion: str) -> list[str]:
    """Lines up to and including the first answer line."""
    lines = completion_lines(completion)
    for i, line in enumerate(lines):
        if line.startswith(task.ANSWER_PREFIX.strip()):
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
    has_answer = lines[-1].startswith(task.ANSWER_PREFIX.strip())
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
    if progress:
        print(f"[prm] rollouts from {len(items)} solutions", flush=True)
    t0 = time.perf_counter()
    n_rollouts = rollout_tokens = dead = 0
    alive = list(range(len(items)))
    max_new = max_new_tokens_for(problems)
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


def prm_batch(
    items: list[dict],
    rng: random.Random,
    batch_size: int,
    codec: CharCodec,
    lengths: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training batch: uniform draws, or with `lengths` a batch of similar lengths;
    (ids, attention mask, step-tag mask, soft labels at the tags, LM labels)."""
    if lengths is None:
        chosen = [items[rng.randrange(len(items))] for _ in range(batch_size)]
    else:
        chosen = [items[i] for i in length_grouped(rng, lengths, batch_size)]
    encoded = [prm_input(codec, it["question"], it["lines"]) for it in chosen]
    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((batch_size, width), codec.pad_id, dtype=torch.long)
    att = torch.zeros_like(ids)
    tag_mask = torch.zeros((batch_size, width), dtype=torch.bool)
    soft = torch.zeros((batch_size, width))
    lm_labels = torch.full((batch_size, width), -100, dtype=torch.long)
    prompt_len = {}
    for b, ((seq, tags), it) in enumerate(zip(encoded, chosen, strict=True)):
        ids[b, : len(seq)] = torch.tensor(seq)
        att[b, : len(seq)] = 1
        for t, y in zip(tags, it["labels"], strict=True):
            tag_mask[b, t] = True
            soft[b, t] = y
        if it["labels"] and it["labels"][-1] == 1.0:
            q = prompt_len.setdefault(
                it["question"], len(codec.encode(task.format_prompt(it["question"]))) + 1
            )
            seq_t = torch.tensor(seq)
            keep = seq_t != codec.tag_id
            keep[:q] = False
            lm_labels[b, : len(seq)] = torch.where(keep, seq_t, torch.full_like(seq_t, -100))
    return ids, att, tag_mask, soft, lm_labels


def prm_loss(
    model: torch.nn.Module, batch: tuple, codec: CharCodec, lm_weight: float
) -> tuple[torch.Tensor, int]:
    """BCE between P(good) at the step tags and the soft labels, plus `lm_weight` times the LM loss
    on the correct solutions' lines; (loss, tokens read). `batch` is `prm_batch`'s output."""
    ids, att, tag_mask, soft, lm_labels = batch
    logits = model(input_ids=ids, attention_mask=att).logits
    pair = F.log_softmax(logits[tag_mask][:, [codec.good_id, codec.bad_id]].float(), dim=-1)
    y = soft[tag_mask]
    loss = -(y * pair[:, 0] + (1 - y) * pair[:, 1]).mean()
    if lm_weight > 0 and bool((lm_labels[:, 1:] != -100).any()):
        lg = logits[:, :-1]
        lm = F.cross_entropy(
            lg.reshape(-1, lg.shape[-1]), lm_labels[:, 1:].reshape(-1), ignore_index=-100
        )
        loss = loss + lm_weight * lm
    return loss, int(att.sum())


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
    """The PRM stage: rollout labels, then fine-tuning of the larger LM; returns its record."""
    t0 = time.perf_counter()
    codec = CharCodec()
    items, stats = prepare_labels(settings, work, dirs, progress)
    model = load_model(dirs["large"])
    spec = settings.prm
    lengths = (
        [sum(len(line) + 2 for line in it["lines"]) + len(it["question"]) for it in items]
        if spec.grouped
        else None
    )

    def loss_fn(m: torch.nn.Module, step: int) -> tuple[torch.Tensor, int]:
        rng = random.Random(f"testbed-prm:{settings.seed}:{step}")
        return prm_loss(
            m, prm_batch(items, rng, spec.train.batch_size, codec, lengths), codec, spec.lm_weight
        )

    record = train_loop(model, spec.train, loss_fn, work / "ckpt.pt", desc="PRM", progress=progress)
    save_model(model, out / "model")
    # A quick check that the head is wired: scores at the tags are probabilities.
    with torch.no_grad():
        ids, tags = prm_input(codec, items[0]["question"], items[0]["lines"])
        s = prm_logits_to_scores(model(input_ids=torch.tensor([ids])).logits[0, tags], codec)
        assert bool(((s >= 0) & (s <= 1)).all())
    n = count_params(model)
    mean_label = sum(sum(it["labels"]) for it in items) / max(
        1, sum(len(it["labels"]) for it in items)
    )
    record.update(stats)
    record.update(
        {
            "init_from": "large",
            "params": n,
            "fine_tune_tokens": record["tokens"],
            "fine_tune_flops": 6 * n * record["tokens"],
            "mean_label": round(mean_label, 4),
            "lm_weight": spec.lm_weight,
            "wrong_per_question": spec.wrong_per_question,
            "stop_dead": spec.stop_dead,
            "length_grouped_batches": spec.grouped,
            "stage_seconds": round(time.perf_counter() - t0, 2),
        }
    )
    return record

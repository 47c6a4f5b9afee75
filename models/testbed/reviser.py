"""The reviser: the policy LM fine-tuned to revise, as in the paper.

Training examples put 0-4 of the policy's *incorrect* attempts at a question in context, followed by
a correct one (the policy's own when it has one, else the gold solution); the last incorrect
attempt is the one closest to the correct answer by edit distance, so the model learns to fix
near-misses. At test time the reviser sees the 4 most recent attempts of its chain.
Correctness here is the final answer's (as the paper), never the step checker.

Prompt: the earlier attempts come first, each as a worked example of the same question ended by
<eos>, and the question last, so the text right before the new attempt is the plain prompt::

    Q: 6-1\n6-1=4>4\nAnswer: 4<eos>Q: 6-1\n6-1=3>3\nAnswer: 3<eos>Q: 6-1\n   <- new attempt

With no earlier attempt this is exactly the policy's prompt, so the first attempt of a chain is a
plain policy sample. The policy is pretrained on rows of several examples packed this way, so it
already solves the last question after others (pass@1 kept with four attempts in front: .89 ->
.72 on level 1, .47 -> .59 on level 3). Measured before this layout: a question-first one
(``Q: ..`` then ``Try:`` blocks then ``Fix:``) made the reviser fall from .48 to .03 on easy
questions after one revision, and separating attempts by a newline instead of <eos> left the
packed policy at .12 on level 1.
One departure from the paper, in the manifest: a question whose attempts are all correct (the
paper makes no example with attempts from it) gives, half the time, an example with one of its
correct attempts in context and another as the target, so the reviser also learns that a right
attempt is kept (at test time chains do hold correct attempts). `keep_share` extends this to
questions with incorrect attempts too (default 0; 0.5 made no measurable difference).

Measured (benchmarks/testbed_quality.py, 40 questions per level): revisions do not help at this
scale. The last of 5 attempts is below the first on easy (-6.2 ± 3.8 points) and no better on
medium (-1.3 ± 3.3). `context_effect` shows why: with 4 of its own attempts in context the
reviser is no more accurate than with none whether they are all wrong (easy +3 ± 14, medium
-5 ± 6) or all right (easy -14 ± 7, medium -8 ± 13). It cannot tell a right attempt from a wrong
one, so it neither keeps the first nor fixes the second, though the policy's own likelihood tells
them apart (step AUROC .82-1.0): the signal is in its output probabilities, not in a form later
positions read. Contexts of sampled attempts (right or wrong), 3x the steps, lr 1e-3, replay rows
that repeat one solution (to teach copying) and temperature 0.8 all left the sign negative.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from models.testbed import task
from models.testbed.checkpoints import load_model, save_model
from models.testbed.generation import max_new_tokens_for, sample_chunked, sample_completions
from models.testbed.metrics import GROUPS, mean_with_ci, vote
from models.testbed.modeling import (
    count_params,
    length_grouped,
    lm_loss,
    lm_loss_parts,
    packed_batch,
    pad_batch,
    train_loop,
)
from models.testbed.settings import TestbedSettings
from models.testbed.tokenizer import EOS_TOKEN, CharCodec

MAX_ATTEMPTS = 4
# The harness's templates (profiling.strategies.revisions): attempts, each after the prompt and
# ended by <eos> as in the packed pretraining rows, then the prompt again.
ATTEMPT_FORMAT = "{prompt}{attempt}" + EOS_TOKEN
REVISER_PROMPT_FORMAT = "{attempts}{prompt}"
REVISER_SEED_OFFSET = 3_000_017
MAX_PROMPT_TOKENS = 760  # leaves room for a level-8 answer within the 1024 positions


def _clean(attempt: str) -> str:
    """An attempt as shown in context: its lines up to the answer line."""
    lines = [line for line in attempt.split(task.STEP_DELIMITER) if line.strip()]
    for i, line in enumerate(lines):
        if task.is_answer_line(line):
            lines = lines[: i + 1]
            break
    return task.STEP_DELIMITER.join(lines)


def format_reviser_prompt(question: str, attempts: Sequence[str]) -> str:
    """The reviser's prompt: the question, then the (at most 4) most recent attempts, oldest first.

    Oldest attempts are dropped while the prompt would exceed MAX_PROMPT_TOKENS characters.
    """
    kept = [_clean(a) for a in attempts[-MAX_ATTEMPTS:]]
    prompt = task.format_prompt(question)
    while True:
        text = REVISER_PROMPT_FORMAT.format(
            prompt=prompt,
            attempts="".join(ATTEMPT_FORMAT.format(prompt=prompt, attempt=a) for a in kept),
        )
        if len(text) <= MAX_PROMPT_TOKENS or not kept:
            return text
        kept = kept[1:]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one character each)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def revision_examples(
    problems: Sequence[task.TestbedProblem],
    attempts: Sequence[Sequence[str]],
    rng: random.Random,
    keep_share: float = 0.0,
) -> list[tuple[str, str]]:
    """(prompt, target completion) pairs: 0-4 incorrect attempts, then a correct one.

    A question with no incorrect attempt gets 0 or 1 attempts in context, the one a correct
    attempt; with probability `keep_share` an example with incorrect attempts also ends its
    context with a correct one. The target is then another correct attempt when there is one."""
    out = []
    for p, atts in zip(problems, attempts, strict=True):
        atts = [_clean(a) for a in atts]
        right = [a for a in atts if task.is_correct(a, p.answer)]
        wrong = [a for a in atts if not task.is_correct(a, p.answer)]
        target = rng.choice(right) if right else p.completion
        # the wrong attempt closest to the target: the last one in context when wrong ones are shown
        closest = min(wrong, key=lambda w: (edit_distance(w, target), w)) if wrong else None
        for _ in range(2):
            m = rng.randint(0, min(MAX_ATTEMPTS, len(wrong) + (1 if right else 0)))
            if m == 0:
                ctx: list[str] = []
            elif right and (not wrong or rng.random() < keep_share):
                others = rng.sample(wrong, min(m - 1, len(wrong)))
                last = rng.choice(right)
                target_k = rng.choice([r for r in right if r is not last] or [last])
                out.append((format_reviser_prompt(p.question, [*others, last]), target_k))
                continue
            else:
                m = min(m, len(wrong))
                others = [w for w in wrong if w is not closest]
                ctx = [*rng.sample(others, min(m - 1, len(others))), closest]
            out.append((format_reviser_prompt(p.question, ctx), target))
    return out


def sampled_context_examples(
    problems: Sequence[task.TestbedProblem],
    attempts: Sequence[Sequence[str]],
    rng: random.Random,
) -> list[tuple[str, str]]:
    """(prompt, target) pairs whose context is 0-4 of the policy's attempts as sampled, right or
    wrong, and whose target is another right attempt (the gold solution if none is right).

    A departure from the paper's data (context of wrong attempts only), recorded in the manifest.
    Why: a test-time chain holds right attempts too, and the paper's data teaches the reviser that
    whatever is in context is wrong. With sampled contexts the target agrees with the context's
    right lines and not with its slips, so the reviser learns to keep what earlier attempts got
    right; measured against the paper's data in `benchmarks/testbed_quality.py`.
    """
    out = []
    for p, atts in zip(problems, attempts, strict=True):
        atts = [_clean(a) for a in atts]
        right = [i for i, a in enumerate(atts) if task.is_correct(a, p.answer)]
        for _ in range(2):
            t = rng.choice(right) if right else None
            others = [i for i in range(len(atts)) if i != t]
            m = rng.randint(0, min(MAX_ATTEMPTS, len(others)))
            ctx = [atts[i] for i in rng.sample(others, m)]
            out.append(
                (format_reviser_prompt(p.question, ctx), atts[t] if t is not None else p.completion)
            )
    return out


def train_reviser(
    settings: TestbedSettings, work: Path, out: Path, dirs: dict[str, Path], progress: bool
) -> dict:
    """The reviser stage: revision examples from the policy's attempts, then fine-tuning of the
    policy with replay; returns its record."""
    t0 = time.perf_counter()
    spec = settings.reviser
    codec = CharCodec()
    model = load_model(dirs["policy"])
    problems = task.generate_problems(
        spec.questions, settings.seed + REVISER_SEED_OFFSET, settings.levels
    )
    attempts, _ = sample_completions(
        model, problems, spec.samples_per_question, settings.seed + REVISER_SEED_OFFSET
    )
    rng = random.Random(f"testbed-reviser:{settings.seed}")
    if spec.context == "sampled":
        examples = sampled_context_examples(problems, attempts, rng)
    else:
        examples = revision_examples(problems, attempts, rng, spec.keep_share)
    encoded = []
    for prompt, target in examples:
        p_ids = [codec.bos_id, *codec.encode(prompt)]
        t_ids = [*codec.encode(target), codec.eos_id]
        encoded.append((p_ids + t_ids, [0] * len(p_ids) + [1] * len(t_ids)))

    lengths = [len(ids) for ids, _ in encoded]

    def loss_fn(m: torch.nn.Module, step: int) -> tuple[torch.Tensor, int]:
        rng = random.Random(f"testbed-reviser-batch:{settings.seed}:{step}")
        n_rev = spec.train.batch_size - int(spec.train.batch_size * spec.replay)
        if spec.grouped:
            chosen = [encoded[i] for i in length_grouped(rng, lengths, n_rev)]
        else:
            chosen = [encoded[rng.randrange(len(encoded))] for _ in range(n_rev)]
        # Replay of pretraining data (fresh problems), packed several to a row: it keeps the
        # policy's own solving (fine-tuning on a few hundred revision examples eroded it without
        # replay) and teaches it to solve the last question after other text.
        seqs, masks = packed_batch(
            settings.seed + REVISER_SEED_OFFSET,
            step,
            spec.train.batch_size - n_rev,
            settings.levels,
        )
        if spec.grouped:
            # Revision examples and replay rows padded apart (the same loss, half the padding).
            return lm_loss_parts(
                m, [([s for s, _ in chosen], [k for _, k in chosen]), (seqs, masks)]
            )
        chosen += list(zip(seqs, masks, strict=True))
        ids, att, labels = pad_batch([s for s, _ in chosen], [k for _, k in chosen], codec.pad_id)
        return lm_loss(m, ids, att, labels), int(att.sum())

    record = train_loop(
        model, spec.train, loss_fn, work / "ckpt.pt", desc="reviser", progress=progress
    )
    save_model(model, out / "model")
    n = count_params(model)
    record.update(
        {
            "init_from": "policy",
            "params": n,
            "examples": len(examples),
            "examples_with_attempts": sum(
                1 for p, _ in examples if p.count(task.PROMPT_FORMAT.split("{")[0]) > 1
            ),
            "keep_share": spec.keep_share,
            "context": spec.context,
            "length_grouped_batches": spec.grouped,
            "replay_fraction": spec.replay,
            "fine_tune_tokens": record["tokens"],
            "fine_tune_flops": 6 * n * record["tokens"],
            "prompt_format": REVISER_PROMPT_FORMAT,
            "attempt_format": ATTEMPT_FORMAT,
            "max_attempts_in_context": MAX_ATTEMPTS,
            "stage_seconds": round(time.perf_counter() - t0, 2),
        }
    )
    return record


def _run_chains(
    model: torch.nn.Module,
    problems: Sequence[task.TestbedProblem],
    chains: int,
    length: int,
    seed: int,
    temperature: float = 1.0,
) -> list[list[str]]:
    """Revision chains: per problem, `chains` chains of `length` attempts; attempt t sees the (at
    most 4) previous attempts of its chain. Returns, per chain (problem-major), its attempts."""
    codec = CharCodec()
    owners = [p for p in problems for _ in range(chains)]
    hist: list[list[str]] = [[] for _ in owners]
    max_new = max_new_tokens_for(problems)
    for t in range(length):
        prompts = [
            [codec.bos_id, *codec.encode(format_reviser_prompt(p.question, h))]
            for p, h in zip(owners, hist, strict=True)
        ]
        gens = sample_chunked(
            model,
            prompts,
            max_new_tokens=max_new,
            temperature=temperature,
            eos_token_id=codec.eos_id,
            pad_token_id=codec.pad_id,
            seed=seed * 100 + t,
        )
        for h, g in zip(hist, gens, strict=True):
            h.append(codec.decode(g.token_ids))
    return hist


def evaluate_reviser(
    model: torch.nn.Module,
    problems: Sequence[task.TestbedProblem],
    chains: int,
    seed: int,
    length: int = 5,
    temperature: float = 1.0,
) -> dict:
    """Accuracy of the first attempt vs the last (after length-1 revisions), per level and group,
    and, as the paper uses revisions (it picks the answer within a chain, since revising also turns
    right answers wrong), majority over a chain's first m attempts against majority over m first
    attempts of independent chains (the same number of samples, in parallel); m = min(length,
    chains)."""
    hist = _run_chains(model, problems, chains, length, seed, temperature)
    m = min(length, chains)
    acc: dict[int, list[list[bool]]] = defaultdict(list)
    seq: dict[int, list[float]] = defaultdict(list)
    par: dict[int, list[float]] = defaultdict(list)

    def majority_right(attempts: Sequence[str], answer: str) -> float:
        top = vote([task.extract_answer(a) for a in attempts])
        return sum(a == answer for a in top) / len(top) if top else 0.0

    for i, p in enumerate(problems):
        own = hist[i * chains : (i + 1) * chains]
        for h in own:
            acc[p.level].append([task.is_correct(a, p.answer) for a in h])
            seq[p.level].append(majority_right(h[:m], p.answer))
        par[p.level].append(majority_right([h[0] for h in own[:m]], p.answer))

    def figs(lvs: Sequence[int]) -> dict:
        a = np.asarray([r for lv in lvs for r in acc.get(lv, [])], dtype=float)
        s_ = [x for lv in lvs for x in seq.get(lv, [])]
        p_ = [x for lv in lvs for x in par.get(lv, [])]
        return {
            "first": round(float(a[:, 0].mean()), 4),
            "last": round(float(a[:, -1].mean()), 4),
            "by_position": [round(float(x), 4) for x in a.mean(0)],
            "chains": len(a),
            # paired per chain: the same chain's last attempt minus its first
            "last_minus_first": mean_with_ci(list(a[:, -1] - a[:, 0])),
            "m": m,
            f"chain_majority@{m}": round(float(np.mean(s_)), 4),
            f"parallel_majority@{m}": round(float(np.mean(p_)), 4),
        }

    return {
        "length": length,
        "temperature": temperature,
        "levels": {str(lv): figs([lv]) for lv in sorted(acc)},
        "groups": {g: figs(lvs) for g, lvs in GROUPS.items() if any(lv in acc for lv in lvs)},
    }


def context_effect(
    model: torch.nn.Module,
    problems: Sequence[task.TestbedProblem],
    seed: int,
    pool: int = 12,
    repeats: int = 3,
    temperature: float = 1.0,
) -> dict:
    """Why revisions do or do not help: accuracy with 4 earlier attempts in context, by how many of
    them are right (0-4), paired per question against the same question with no context.

    The attempts are the model's own first attempts (`pool` per question, plain prompt); for each
    question and each count k that its pool allows, one context of k right and 4-k wrong attempts
    in random order. A reviser that can tell a right attempt from a wrong one keeps the right
    answer (gain at k = 4) and fixes wrong ones (gain at k = 0); one that cannot only re-solves.
    """
    codec = CharCodec()
    first, _ = sample_completions(model, problems, pool, seed, temperature)
    rng = random.Random(f"testbed-reviser-context:{seed}")
    prompts: list[str] = []
    meta: list[tuple[int | None, int]] = []  # (right attempts in context or None, problem index)
    for i, p in enumerate(problems):
        right = [a for a in first[i] if task.is_correct(a, p.answer)]
        wrong = [a for a in first[i] if not task.is_correct(a, p.answer)]
        prompts.append(task.format_prompt(p.question))
        meta.append((None, i))
        for k in range(MAX_ATTEMPTS + 1):
            if len(right) >= k and len(wrong) >= MAX_ATTEMPTS - k:
                ctx = rng.sample(right, k) + rng.sample(wrong, MAX_ATTEMPTS - k)
                rng.shuffle(ctx)
                prompts.append(format_reviser_prompt(p.question, ctx))
                meta.append((k, i))
    ids = [[codec.bos_id, *codec.encode(t)] for t in prompts]
    hits: dict[tuple[int | None, int], list[bool]] = defaultdict(list)
    for r in range(repeats):
        gens = sample_chunked(
            model,
            ids,
            max_new_tokens=max_new_tokens_for(problems),
            temperature=temperature,
            eos_token_id=codec.eos_id,
            pad_token_id=codec.pad_id,
            seed=seed * 100 + 50 + r,
        )
        for key, g in zip(meta, gens, strict=True):
            hits[key].append(task.is_correct(codec.decode(g.token_ids), problems[key[1]].answer))
    out: dict = {"context_attempts": MAX_ATTEMPTS, "pool": pool, "repeats": repeats, "groups": {}}
    for g, lvs in GROUPS.items():
        idx = [i for i, p in enumerate(problems) if p.level in lvs]
        if not idx:
            continue
        rows = {}
        for k in range(MAX_ATTEMPTS + 1):
            have = [i for i in idx if (k, i) in hits]
            rows[str(k)] = {
                "questions": len(have),
                "accuracy": round(float(np.mean([x for i in have for x in hits[(k, i)]])), 4)
                if have
                else None,
                "none_same_questions": round(
                    float(np.mean([x for i in have for x in hits[(None, i)]])), 4
                )
                if have
                else None,
                "minus_none": mean_with_ci(
                    [np.mean(hits[(k, i)]) - np.mean(hits[(None, i)]) for i in have]
                ),
            }
        out["groups"][g] = {
            "none": round(float(np.mean([x for i in idx for x in hits[(None, i)]])), 4),
            "by_right_in_context": rows,
        }
    return out

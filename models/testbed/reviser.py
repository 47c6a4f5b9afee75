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
from pathlib import Path

import torch

from models.testbed import task
from models.testbed.checkpoints import load_model, save_model
from models.testbed.generation import sample_completions
from models.testbed.modeling import (
    count_params,
    length_grouped,
    lm_loss,
    lm_loss_parts,
    packed_batch,
    pad_batch,
    train_loop,
)
from models.testbed.revision_data import (
    ATTEMPT_FORMAT,
    MAX_ATTEMPTS,
    REVISER_PROMPT_FORMAT,
    contrast_examples,
    revision_examples,
    sampled_context_examples,
)
from models.testbed.settings import TestbedSettings
from models.testbed.tokenizer import CharCodec

REVISER_SEED_OFFSET = 3_000_017


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
    if spec.context in ("fix", "feedback"):
        examples = contrast_examples(problems, attempts, rng, flagged=spec.context == "feedback")
    elif spec.context == "sampled":
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

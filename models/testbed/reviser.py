"""The reviser: the policy LM fine-tuned to revise, as in the paper.

Its prompt (models/testbed/revision_data.py) is up to 4 earlier attempts at the question, each
after the question and ended by <eos>, then the question, so that with no earlier attempt it is
the policy's prompt and the first attempt of a chain is a plain sample. The layout was measured:
a question-first one (``Q: ..`` then ``Try:`` blocks then ``Fix:``) made the reviser fall from .48
to .03 on easy questions after one revision, and separating attempts by a newline instead of
<eos> left the packed policy at .12 on level 1. Fine-tuning mixes revision examples with replay of
pretraining data packed several to a row (without replay a few hundred examples eroded the
policy's solving; packed rows teach it to solve the last question after other text).

The examples follow `ReviserSpec.context`, a recipe of revision_data:
- `wrong`, the paper's (the quick scale's): 0-4 incorrect attempts in context, the last the one
  closest to the target by edit distance, then a correct attempt (the policy's own, else the
  gold one); correctness is the final answer's. One departure, in the manifest: a question whose
  attempts are all correct gives, half the time, one of them in context and another as the target
  (`keep_share` extends this to other questions; 0.5 made no measurable difference);
- `sampled`: 0-4 attempts as sampled, right or wrong, then a right one;
- `fix` (the default and paper scales'): balanced contrast pairs, the most recent attempt right
  (kept whole) or wrong (its lines copied up to the first wrong line, found with the step checker
  in training data only, then continued correctly);
- `feedback`: `fix` with each attempt's first wrong line flagged, at test time by the larger LM's
  likelihood (a strategy variant of its own: it needs a verifier in the chain).

Measured (benchmarks/reviser_recipes.py, default testbed, 40 fresh questions per level x 4
chains of 5 at temperature 1; the README's table): `fix` at lr 1e-3 with a quarter of each batch
replay puts the last attempt +5.2 ± 3.5 points above the first on easy levels and +2.3 ± 3.0 on
medium ones (three sets of questions together; +11.6, +3.1 and +0.9 on easy ones apart); the
paper's recipe at the former settings (lr 5e-4, half replay) gave -3.9 ± 3.4 and -6.0 ± 2.9. Why
no recipe does much better, as far as measured: the attempts in context are the model's own
samples, so given what the model computes they say nothing about which line is right, and a
reviser trained by cross-entropy on right targets learns to re-sample from its own belief. What
beats sampling at temperature 1 is a sharper choice (the policy's greedy answer is right on .86
of easy questions against .76 sampled) or information from outside the model (the larger LM
flags the exact first wrong line of 98.7% of the policy's attempts), both through copying the
lines to keep, which 300-600 fine-tuning steps teach only in part. Per step, every variant
measured (this recipe; 1,200 steps; 8 layers) turns right into wrong and wrong into right at the
rates of an attempt drawn afresh at the question's accuracy: it re-samples. Its last - first gain
is mostly its first attempt's deficit (nothing in context, which the contrast data never has).
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
    if spec.context in ("fix", "feedback"):
        # The departure from the paper, named in the manifest as the PRM's recipe is.
        record["departure"] = (
            "training targets copy an attempt up to its first wrong line, found by the step "
            "checker (never at test time), then continue correctly"
        )
    return record

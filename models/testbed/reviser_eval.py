"""How well the reviser revises: accuracy by position in a chain, last against first attempt,
right-to-wrong and wrong-to-right rates per step, the answer picked within a chain against the
same number of parallel samples, and its accuracy by how many right attempts are in its context.

Intervals are over questions (the chains of one question are not independent): a paired
difference is averaged per question first; a rate is a ratio of counts summed over questions with
a percentile bootstrap over questions.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
import torch

from models.testbed import task
from models.testbed.generation import max_new_tokens_for, sample_completions, sample_text_prompts
from models.testbed.metrics import GROUPS, mean_with_ci, vote
from models.testbed.revision_data import (
    FEEDBACK_THRESHOLD,
    MAX_ATTEMPTS,
    flag_line,
    format_reviser_prompt,
)
from models.testbed.tokenizer import CharCodec
from models.testbed.verifiers import likelihood_line_scores
from planner.stats import bootstrap_stat

_BOOT = 1000
# The revision goals' own grouping (easy = levels 1-3, medium 4-5, and every level together for
# the per-step rates), printed beside the testbed's quality groups (easy 1-2, medium 3-5).
GOAL_GROUPS = {"levels 1-3": (1, 2, 3), "levels 4-5": (4, 5), "levels 1-5": (1, 2, 3, 4, 5)}


def transition_rates(chains_by_question: Sequence[Sequence[Sequence[bool]]], seed: int) -> dict:
    """Right-to-wrong (share of right attempts whose next attempt is wrong) and wrong-to-right
    (share of wrong attempts whose next is right), over every step and per step, each with a 95%
    bootstrap interval over questions. `chains_by_question`: per question, per chain, the
    correctness of each attempt."""
    length = max((len(c) for q in chains_by_question for c in q), default=0)

    def counts(steps: Sequence[int]) -> np.ndarray:
        rows = []
        for q in chains_by_question:
            rw = r = wr = w = 0
            for c in q:
                for t in steps:
                    if t >= len(c):
                        continue
                    if c[t - 1]:
                        r += 1
                        rw += not c[t]
                    else:
                        w += 1
                        wr += c[t]
            rows.append((rw, r, wr, w))
        return np.asarray(rows, dtype=float).reshape(-1, 4)

    def rate(v: np.ndarray, num: int, den: int) -> float:
        d = v[:, den].sum()
        return float(v[:, num].sum() / d) if d else float("nan")

    def figs(steps: Sequence[int]) -> dict:
        v = counts(steps)
        out = {}
        for name, num, den in (("right_to_wrong", 0, 1), ("wrong_to_right", 2, 3)):
            if not len(v) or v[:, den].sum() == 0:
                out[name] = {"rate": None, "ci95": None, "n": 0}
                continue
            # a resample without any right (or wrong) attempt has no rate: bootstrap_stat
            # leaves it out
            point, lo, hi = bootstrap_stat(
                v, lambda x, a=num, b=den: rate(x, a, b), 0.95, _BOOT, np.random.default_rng(seed)
            )
            out[name] = {
                "rate": round(point, 4),
                "ci95": [round(lo, 4), round(hi, 4)],
                "n": int(v[:, den].sum()),
            }
        return out

    # What the rates would be if each attempt were drawn afresh with its question's accuracy (a
    # reviser that only resamples): right-to-wrong sum p(1-p) / sum p over each question's
    # transitions, p the share of its attempts that are right; a reviser that keeps right attempts
    # and fixes wrong ones is below the first and above the second.
    ref_rw = ref_r = ref_w = 0.0
    for q in chains_by_question:
        flat = [x for c in q for x in c]
        if not flat:
            continue
        p, n = float(np.mean(flat)), sum(max(0, len(c) - 1) for c in q)
        ref_rw += n * p * (1 - p)
        ref_r += n * p
        ref_w += n * (1 - p)
    return {
        "all_steps": figs(range(1, length)),
        "by_step": [figs([t]) for t in range(1, length)],
        "if_resampled": {
            "right_to_wrong": round(ref_rw / ref_r, 4) if ref_r else None,
            "wrong_to_right": round(ref_rw / ref_w, 4) if ref_w else None,
        },
    }


# Which line of each attempt to flag in context (None: none), from the questions and attempts.
Flagger = Callable[[Sequence[str], Sequence[str]], list[int | None]]


def likelihood_flagger(large: torch.nn.Module, threshold: float = FEEDBACK_THRESHOLD) -> Flagger:
    """The `feedback` reviser's verifier: the first line whose mean token log-prob under the larger
    LM is below `threshold`."""

    def flag(questions: Sequence[str], attempts: Sequence[str]) -> list[int | None]:
        scores = likelihood_line_scores(large, questions, attempts)
        return [next((i for i, v in enumerate(s) if v < threshold), None) for s in scores]

    return flag


def _run_chains(
    model: torch.nn.Module,
    problems: Sequence[task.TestbedProblem],
    chains: int,
    length: int,
    seed: int,
    temperature: float = 1.0,
    flagger: Flagger | None = None,
) -> list[list[str]]:
    """Revision chains: per problem, `chains` chains of `length` attempts; attempt t sees the (at
    most 4) previous attempts of its chain (each with its flagged line marked, with `flagger`).
    Returns, per chain (problem-major), its attempts as generated."""
    codec = CharCodec()
    owners = [p for p in problems for _ in range(chains)]
    hist: list[list[str]] = [[] for _ in owners]
    shown: list[list[str]] = [[] for _ in owners]
    max_new = max_new_tokens_for(problems)
    for t in range(length):
        prompts = [format_reviser_prompt(p.question, h) for p, h in zip(owners, shown, strict=True)]
        gens = sample_text_prompts(model, prompts, max_new, temperature, seed * 100 + t)
        texts = [codec.decode(g.token_ids) for g in gens]
        flags = flagger([p.question for p in owners], texts) if flagger else [None] * len(texts)
        for h, s, text, f in zip(hist, shown, texts, flags, strict=True):
            h.append(text)
            s.append(flag_line(text, f) if flagger else text)
    return hist


def evaluate_reviser(
    model: torch.nn.Module,
    problems: Sequence[task.TestbedProblem],
    chains: int,
    seed: int,
    length: int = 5,
    temperature: float = 1.0,
    flagger: Flagger | None = None,
) -> dict:
    """Accuracy of the first attempt vs the last (after length-1 revisions), per level and group,
    and, as the paper uses revisions (it picks the answer within a chain, since revising also turns
    right answers wrong), majority over a chain's first m attempts against majority over m first
    attempts of independent chains (the same number of samples, in parallel); m = min(length,
    chains)."""
    hist = _run_chains(model, problems, chains, length, seed, temperature, flagger)
    m = min(length, chains)
    # per level, per question: [chains, length] correctness
    acc: dict[int, list[np.ndarray]] = defaultdict(list)
    seq: dict[int, list[float]] = defaultdict(list)
    par: dict[int, list[float]] = defaultdict(list)

    def majority_right(attempts: Sequence[str], answer: str) -> float:
        top = vote([task.extract_answer(a) for a in attempts])
        return sum(a == answer for a in top) / len(top) if top else 0.0

    for i, p in enumerate(problems):
        own = hist[i * chains : (i + 1) * chains]
        acc[p.level].append(
            np.asarray([[task.is_correct(a, p.answer) for a in h] for h in own], dtype=bool)
        )
        seq[p.level].append(float(np.mean([majority_right(h[:m], p.answer) for h in own])))
        par[p.level].append(majority_right([h[0] for h in own[:m]], p.answer))

    def figs(lvs: Sequence[int]) -> dict:
        qs = [q for lv in lvs for q in acc.get(lv, [])]
        a = np.concatenate(qs).astype(float)
        s_ = [x for lv in lvs for x in seq.get(lv, [])]
        p_ = [x for lv in lvs for x in par.get(lv, [])]
        return {
            "first": round(float(a[:, 0].mean()), 4),
            "last": round(float(a[:, -1].mean()), 4),
            "by_position": [round(float(x), 4) for x in a.mean(0)],
            "chains": len(a),
            "questions": len(qs),
            # paired per question: its chains' last attempts minus their first
            "last_minus_first": mean_with_ci(
                [float((q[:, -1] - q[:, 0].astype(float)).mean()) for q in qs]
            ),
            "transitions": transition_rates([q.tolist() for q in qs], seed),
            "m": m,
            f"chain_majority@{m}": round(float(np.mean(s_)), 4),
            f"parallel_majority@{m}": round(float(np.mean(p_)), 4),
            # paired per question: within-chain majority minus parallel majority
            "chain_minus_parallel": mean_with_ci([a_ - b_ for a_, b_ in zip(s_, p_, strict=True)]),
        }

    return {
        "length": length,
        "temperature": temperature,
        "levels": {str(lv): figs([lv]) for lv in sorted(acc)},
        "groups": {
            g: figs(lvs)
            for g, lvs in {**GROUPS, **GOAL_GROUPS}.items()
            if any(lv in acc for lv in lvs)
        },
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
    hits: dict[tuple[int | None, int], list[bool]] = defaultdict(list)
    max_new = max_new_tokens_for(problems)
    for r in range(repeats):
        gens = sample_text_prompts(model, prompts, max_new, temperature, seed * 100 + 50 + r)
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

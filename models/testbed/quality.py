"""Quality figures of a testbed run (written into the manifest; the benchmark runs a larger set).

Figures, per level and per group of levels (easy 1-2, medium 3-5, hard 6-8):
- pass@1, pass@n and the fully-correct-chain ceiling (pass@n counting only chains whose every step
  is right: answers reached by luck do not count), and the share of correct answers that are lucky;
- per verifier: step AUROC *within the same question and step index* (pooled AUROC mixes up step
  position and question difficulty) and solution AUROC within the same question;
- weighted best-of-k by each verifier vs majority@k, paired per question, with a 95% CI, and the
  larger LM's own majority at the same FLOPs as best-of-k + scoring;
- the reviser's accuracy at its first attempt vs after revisions.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from models.testbed import task
from models.testbed.checkpoints import load_hf_model
from models.testbed.generation import sample_completions
from models.testbed.metrics import GROUPS, grouped_auroc, mean_with_ci, subset_accuracy
from models.testbed.modeling import count_params
from models.testbed.reviser_eval import evaluate_reviser
from models.testbed.settings import TestbedSettings
from models.testbed.task import TestbedProblem
from models.testbed.tokenizer import CharCodec
from models.testbed.verifiers import likelihood_line_scores, min_score, prm_line_scores
from planner.estimate.closed_form import pass_at_k
from planner.progress import say

EVAL_SEED_OFFSET = 1_000_003  # evaluation problems never overlap the training streams' seeds


def eval_problems(
    seed: int, per_level: int, levels: Sequence[int] = task.DEFAULT_LEVELS
) -> list[TestbedProblem]:
    """`per_level` evaluation problems of every level, from a stream no training stage draws."""
    return task.generate_problems(per_level * len(levels), seed + EVAL_SEED_OFFSET, levels)


# --- evaluation -------------------------------------------------------------------------------


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _evaluate_pool(
    problems: Sequence[TestbedProblem],
    completions: Sequence[Sequence[str]],
    verifier_scores: dict[
        str,
        tuple[
            list[list[list[float]]],
            Callable[[list[float]], float],
            Callable[[list[float]], list[float]],
        ],
    ],
    *,
    k: int,
    seed: int,
    draws: int = 64,
) -> dict:
    """Figures for one pool of completions; `verifier_scores[name] = (line scores per completion,
    solution weight from line scores, per-step scores from line scores)`."""
    rng = random.Random(seed)
    levels = sorted({p.level for p in problems})
    per_q: dict[str, list] = defaultdict(list)
    step_groups: dict[str, dict[int, list]] = {v: defaultdict(list) for v in verifier_scores}
    sol_groups: dict[str, dict[int, list]] = {v: defaultdict(list) for v in verifier_scores}
    for qi, (p, comps) in enumerate(zip(problems, completions, strict=True)):
        answers = [task.extract_answer(c) for c in comps]
        correct = [task.is_correct(c, p.answer) for c in comps]
        chains = [task.chain_correct(p, c) for c in comps]
        steps = [task.check_steps(p, c) for c in comps]
        n = len(comps)
        row = {
            "level": p.level,
            "pass1": sum(correct) / n,
            "pass_n": float(pass_at_k(n, sum(correct), n)),
            "ceiling_n": float(pass_at_k(n, sum(chains), n)),
            "correct": sum(correct),
            "lucky": sum(c and not ch for c, ch in zip(correct, chains, strict=True)),
            "majority": subset_accuracy(answers, correct, k, rng, draws),
        }
        for name, (scores, weight_fn, step_fn) in verifier_scores.items():
            lines = scores[qi]
            weights = [weight_fn(ls) for ls in lines]
            row[f"weighted:{name}"] = subset_accuracy(answers, correct, k, rng, draws, weights)
            sol_groups[name][p.level].append(list(zip(weights, correct, strict=True)))
            by_index: dict[int, list] = defaultdict(list)
            for ls, st in zip(lines, steps, strict=True):
                s_scores = step_fn(ls)
                for i, ok in enumerate(st):
                    if i < len(s_scores):
                        by_index[i].append((s_scores[i], ok))
            step_groups[name][p.level].extend(by_index.values())
        per_q[str(p.level)].append(row)

    def summarise(rows: list[dict], lv: Sequence[int]) -> dict:
        out = {
            "questions": len(rows),
            "pass1": _r(np.mean([r["pass1"] for r in rows])),
            "pass_n": _r(np.mean([r["pass_n"] for r in rows])),
            "chain_ceiling_n": _r(np.mean([r["ceiling_n"] for r in rows])),
            "lucky_share_of_correct": _r(
                sum(r["lucky"] for r in rows) / max(1, sum(r["correct"] for r in rows))
            ),
            f"majority@{k}": _r(np.mean([r["majority"] for r in rows])),
        }
        for name in verifier_scores:
            step_auc, step_pairs = grouped_auroc(
                [g for level in lv for g in step_groups[name][level]]
            )
            sol_auc, sol_pairs = grouped_auroc([g for level in lv for g in sol_groups[name][level]])
            diff = mean_with_ci([r[f"weighted:{name}"] - r["majority"] for r in rows])
            out[name] = {
                "step_auroc_within_question_step": _r(step_auc),
                "step_pairs": step_pairs,
                "solution_auroc_within_question": _r(sol_auc),
                "solution_pairs": sol_pairs,
                f"weighted@{k}": _r(np.mean([r[f"weighted:{name}"] for r in rows])),
                f"weighted_minus_majority@{k}": diff,
            }
        return out

    result: dict = {"k": k, "samples_per_question": len(completions[0]) if completions else 0}
    result["levels"] = {str(lv): summarise(per_q[str(lv)], [lv]) for lv in levels}
    result["groups"] = {}
    for g, lvs in GROUPS.items():
        rows = [r for lv in lvs for r in per_q.get(str(lv), [])]
        if rows:
            result["groups"][g] = summarise(rows, [lv for lv in lvs if lv in levels])
    return result


def _prefix_min(xs: list[float]) -> list[float]:
    return list(np.minimum.accumulate(xs)) if xs else []


def _verifier_table(
    large: torch.nn.Module | None,
    prm: torch.nn.Module | None,
    problems: Sequence[TestbedProblem],
    completions: Sequence[Sequence[str]],
) -> dict:
    """Line scores by the larger LM's likelihood and by the PRM for a pool."""
    flat_q = [p.question for p, comps in zip(problems, completions, strict=True) for _ in comps]
    flat_c = [c for comps in completions for c in comps]
    out: dict = {}

    def regroup(flat: list[list[float]]) -> list[list[list[float]]]:
        res, i = [], 0
        for comps in completions:
            res.append(flat[i : i + len(comps)])
            i += len(comps)
        return res

    if large is not None:
        ll = regroup(likelihood_line_scores(large, flat_q, flat_c))
        out["large_likelihood"] = (
            ll,
            lambda ls: math.exp(min_score(ls)) if ls else 0.0,
            _prefix_min,
        )
    if prm is not None:
        ps = regroup(prm_line_scores(prm, flat_q, flat_c))
        out["prm_last"] = (ps, lambda ls: ls[-1] if ls else 0.0, lambda ls: ls)
    return out


def _matched_flops(
    problems: Sequence[TestbedProblem],
    policy_tokens: Sequence[Sequence[int]],
    large_tokens: Sequence[Sequence[int]],
    large_completions: Sequence[Sequence[str]],
    params_policy: int,
    params_large: int,
    k: int,
    seed: int,
) -> dict:
    """The larger LM's majority vote at the FLOPs of policy best-of-k + larger-LM scoring.

    FLOPs ≈ 2·params per token (generation: prompt + generated tokens; scoring: prompt +
    completion), so per question k_large = k·(Np·T_gen + Nl·T_score) / (Nl·T_large).
    """
    rng = random.Random(seed)
    codec = CharCodec()
    per_level: dict[int, list] = defaultdict(list)
    for p, pt, lt, lc in zip(problems, policy_tokens, large_tokens, large_completions, strict=True):
        prompt = len(codec.encode(task.format_prompt(p.question))) + 1
        gen = np.mean(pt) + prompt
        score = np.mean(pt) + prompt
        big = np.mean(lt) + prompt
        ratio = (params_policy * gen + params_large * score) / (params_large * big)
        k_large = max(1, round(k * ratio))
        answers = [task.extract_answer(c) for c in lc]
        correct = [task.is_correct(c, p.answer) for c in lc]
        per_level[p.level].append(
            (
                ratio,
                min(k_large, len(lc)),
                k_large > len(lc),
                subset_accuracy(answers, correct, min(k_large, len(lc)), rng, 64),
            )
        )
    res: dict = {"levels": {}, "groups": {}}
    for lv, rows in sorted(per_level.items()):
        res["levels"][str(lv)] = {
            "flops_ratio_vs_policy_generation": _r(
                np.mean([r[0] for r in rows]) * params_large / params_policy
            ),
            "k_large": int(np.median([r[1] for r in rows])),
            "k_large_capped": any(r[2] for r in rows),
            "large_majority_at_matched_flops": _r(np.mean([r[3] for r in rows])),
        }
    for g, lvs in GROUPS.items():
        rows = [r for lv in lvs for r in per_level.get(lv, [])]
        if rows:
            res["groups"][g] = {
                "large_majority_at_matched_flops": _r(np.mean([r[3] for r in rows])),
                "k_large": int(np.median([r[1] for r in rows])),
            }
    return res


def evaluate_run(
    dirs: dict[str, Path],
    problems_per_level: int,
    samples: int,
    k: int,
    seed: int,
    progress: bool = False,
    levels: Sequence[int] = task.DEFAULT_LEVELS,
    reviser_temperature: float = 1.0,
) -> dict:
    """Every quality figure for models in `dirs` (name -> HF model dir)."""
    models = {n: load_hf_model(Path(d)) for n, d in dirs.items()}
    problems = eval_problems(seed, problems_per_level, levels)
    log = say if progress else (lambda text: None)
    log(f"[quality] sampling the policy: {samples} answers to each of {len(problems)} problems")
    pol_c, pol_t = sample_completions(models["policy"], problems, samples, seed)
    log("[quality] sampling the larger LM")
    big_c, big_t = sample_completions(models["large"], problems, samples, seed + 1)
    log("[quality] scoring the policy's answers with each verifier")
    vt = _verifier_table(models["large"], models.get("prm"), problems, pol_c)
    out = {
        "eval_seed": seed + EVAL_SEED_OFFSET,
        "policy": _evaluate_pool(problems, pol_c, vt, k=k, seed=seed),
        "large": _evaluate_pool(problems, big_c, {}, k=k, seed=seed),
        "matched_flops": _matched_flops(
            problems,
            pol_t,
            big_t,
            big_c,
            count_params(models["policy"]),
            count_params(models["large"]),
            k,
            seed,
        ),
    }
    if "reviser" in models:
        log("[quality] revision chains")
        out["reviser"] = evaluate_reviser(
            models["reviser"],
            problems,
            chains=max(1, samples // 4),
            seed=seed,
            temperature=reviser_temperature,
        )
    return out


def manifest_quality(settings: TestbedSettings, dirs: dict[str, Path], progress: bool) -> dict:
    """The quality stage: the compact figures of the finished stages' models, for the manifest."""
    e = settings.eval
    res = evaluate_run(
        {n: dirs[n] / "model" for n in ("policy", "large", "prm", "reviser")},
        e.problems_per_level,
        e.samples,
        k=min(8, e.samples),
        seed=settings.seed,
        progress=progress,
        levels=settings.levels,
    )
    return _summary(res)


def _summary(res: dict) -> dict:
    """The compact figures for the manifest."""
    pol, big = res["policy"], res["large"]
    k = pol["k"]
    out: dict = {
        "k": k,
        "samples_per_question": pol["samples_per_question"],
        "levels": {},
        "groups": {},
    }
    for lv, f in pol["levels"].items():
        row = {
            "policy_pass1": f["pass1"],
            "policy_pass_n": f["pass_n"],
            "policy_chain_ceiling_n": f["chain_ceiling_n"],
            "large_pass1": big["levels"][lv]["pass1"],
        }
        for v in ("large_likelihood", "prm_last"):
            if v in f:
                row[f"{v}_step_auroc"] = f[v]["step_auroc_within_question_step"]
                row[f"{v}_solution_auroc"] = f[v]["solution_auroc_within_question"]
        out["levels"][lv] = row
    for g, f in pol["groups"].items():
        row = {f"majority@{k}": f[f"majority@{k}"]}
        for v in ("large_likelihood", "prm_last"):
            if v in f:
                row[f"{v}_weighted@{k}"] = f[v][f"weighted@{k}"]
        row["large_majority_at_matched_flops"] = (
            res["matched_flops"]["groups"].get(g, {}).get("large_majority_at_matched_flops")
        )
        out["groups"][g] = row
    if "reviser" in res:
        out["reviser"] = res["reviser"]["groups"]
    return out

"""Pool curves: every budget of an independent-sample pool at once, and the reading options.

A pool of n independent samples is read at every budget k <= n as the average over all k-subsets:
coverage (pass@k) and best-of-k by verifier score in exact closed form
(`planner.estimate.closed_form`), majority and weighted majority exact or Monte Carlo
(`planner.estimate.votes`), batched over the problems whose pools have the same size
(`pool_group`). It also holds what the readers of a samples table share: `CurveOptions`, the
budget grid, the seed per group and the check on vote weights. It is separate from
`planner.estimate.curves`, which reads revision chains and search runs one problem at a time and
dispatches every group of a samples table, because the pool reader is vectorised over problems
and emits whole frames where those readers emit rows.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.estimate.closed_form import best_of_k_weights, pass_at_k, tie_averaged_sorted
from planner.estimate.votes import pool_classes, vote_curves_batch
from planner.strategies import AGGS, aggregate_steps
from planner.tables import canonical_config


@dataclass(frozen=True)
class CurveOptions:
    """How `profile_from_samples` reads the samples.

    budgets: the budgets (generations) to report; None means powers of two up to each pool.
    aggs: step-score aggregations to report for verifier-based selection (`last` reads `score`).
    mc_samples: random subsets per budget for majority votes when enumeration is too large.
    """

    budgets: tuple[int, ...] | None = None
    aggs: tuple[str, ...] = AGGS
    mc_samples: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [a for a in self.aggs if a not in AGGS]
        if bad:
            raise ValueError(f"unknown aggregation {bad[0]!r} (known: {', '.join(AGGS)})")
        if self.mc_samples < 1:
            raise ValueError("mc_samples must be >= 1")
        if self.budgets is not None and any(b < 1 for b in self.budgets):
            raise ValueError("budgets must be >= 1")


def powers_of_two(n: int) -> list[int]:
    return [2**i for i in range(math.floor(math.log2(n)) + 1)] if n >= 1 else []


def stable_seed(seed: int, *parts: str) -> int:
    h = hashlib.sha256("\x1f".join((str(seed), *parts)).encode()).digest()
    return int.from_bytes(h[:8], "little")


def check_weights(scores: np.ndarray, group: str, agg: str) -> None:
    if (scores < 0).any():
        raise PlannerError(
            f"samples {group}: weighted majority needs non-negative scores, found "
            f"{scores.min():.4g} (agg={agg}); re-import the scores as probabilities (ttc samples "
            "import --score-transform sigmoid)"
        )


def pool_group(
    strategy: str,
    base: dict,
    verifier: str,
    grp: pd.DataFrame,
    opts: CurveOptions,
    with_votes: bool,
) -> list[pd.DataFrame]:
    """All curves of one (strategy, config, verifier) pool group, batched over problems of equal
    pool size (the pools' rows sorted by problem, run, position)."""
    sizes = grp.groupby("problem_id", sort=True).size()
    out: list[pd.DataFrame] = []
    cfg_text = canonical_config(base)
    for n, pids_n in sizes.groupby(sizes, sort=True):
        n = int(n)
        budgets = [b for b in (opts.budgets or powers_of_two(n)) if b <= n]
        if not budgets:
            continue
        g = grp[grp["problem_id"].isin(set(pids_n.index))]
        pids = g["problem_id"].to_numpy(object)
        names = pids[::n]
        p_count = len(names)
        shape = (p_count, n)
        correct = g["correct"].to_numpy(bool).reshape(shape)
        gen = g["gen_flops"].to_numpy(float).reshape(shape).mean(axis=1)
        ver = g["verifier_flops"].to_numpy(float).reshape(shape).mean(axis=1)
        tok = g["gen_tokens"].to_numpy(float).reshape(shape).mean(axis=1)
        # each row holds its whole prompt, so k candidates read k prompts (the profile's rule)
        prm = g["prompt_tokens"].to_numpy(float).reshape(shape).mean(axis=1)
        wall = g["wall_s"].to_numpy(float).reshape(shape).mean(axis=1)  # NaN stays NaN
        ks = np.asarray(budgets, float)

        batch = (names, ks, gen, ver, tok, prm, wall)

        def emit(
            cfg: dict,
            acc: np.ndarray,
            se: np.ndarray | None,
            uses_verifier: bool,
            batch: tuple = batch,
        ) -> None:
            names, ks, gen, ver, tok, prm, wall = batch
            per = gen + (ver if uses_verifier else 0.0)
            out.append(
                pd.DataFrame(
                    {
                        "problem_id": np.repeat(names, len(ks)),
                        "strategy": strategy,
                        "config": canonical_config(cfg),
                        "budget": np.tile(ks, len(names)),
                        "accuracy": np.clip(acc, 0.0, 1.0).ravel(),
                        "accuracy_se": (np.zeros_like(acc) if se is None else se).ravel(),
                        "flops": np.outer(per, ks).ravel(),
                        "tokens": np.outer(tok, ks).ravel(),
                        "prompt_tokens": np.outer(prm, ks).ravel(),
                        "wall_s": np.outer(wall, ks).ravel(),
                    }
                )
            )

        cls, cls_ok = pool_classes(
            pids, g["answer"].to_numpy(object), g["correct"].to_numpy(bool), n
        )
        if with_votes:
            c = correct.sum(axis=1)
            emit(
                {**base, "select": "coverage", "agg": "none", "verifier": "none"},
                np.column_stack([pass_at_k(n, c, k) for k in budgets]),
                None,
                False,
            )
            rng = np.random.default_rng(
                stable_seed(opts.seed, strategy, cfg_text, str(n), "majority")
            )
            acc, se, _ = vote_curves_batch(
                cls, np.ones(shape), cls_ok, budgets, opts.mc_samples, rng
            )
            emit({**base, "select": "majority", "agg": "none", "verifier": "none"}, acc, se, False)
        if verifier == "none":
            continue
        score = g["score"].to_numpy(float)
        steps = g["step_scores"].tolist()
        has_steps = any(len(x) > 0 for x in steps)
        for agg in opts.aggs:
            if agg != "last" and not has_steps:
                continue
            s = aggregate_steps(steps, score, agg).reshape(shape)
            sorted_ok = tie_averaged_sorted(s, correct)
            emit(
                {**base, "select": "best", "agg": agg, "verifier": verifier},
                np.column_stack([sorted_ok @ best_of_k_weights(n, k) for k in budgets]),
                None,
                True,
            )
            check_weights(s, f"{strategy} {cfg_text} verifier={verifier}", agg)
            rng = np.random.default_rng(
                stable_seed(opts.seed, strategy, cfg_text, str(n), verifier, agg)
            )
            acc, se, _ = vote_curves_batch(cls, s, cls_ok, budgets, opts.mc_samples, rng)
            emit({**base, "select": "weighted", "agg": agg, "verifier": verifier}, acc, se, True)
    return out

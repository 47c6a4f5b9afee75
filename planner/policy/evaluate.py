"""Fidelity of a policy: does it keep its promise on problems it was not fitted on?

`evaluate_policy` applies a policy to held-out samples (`ttc policy evaluate`) and compares the
accuracy and FLOPs it predicts with what the problems realise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.estimate import CurveOptions, probe_cost, probe_table, profile_from_samples
from planner.policy.runtime import Policy
from planner.stats import mean_ci
from planner.strategies import AGGS
from planner.tables import parse_config


def _boot_ci(
    values: np.ndarray, ci: float, n_boot: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    return mean_ci(np.asarray(values, float), ci, n_boot, rng)


def _consistent(p: float, p_lo: float, p_hi: float, r: float, r_lo: float, r_hi: float) -> bool:
    """Whether predicted and realised accuracy agree given BOTH intervals (a two-sample check).

    The goal's per-bin test puts the prediction inside the realised interval, which ignores that
    the prediction is itself an estimate from a finite fit set: two unbiased estimates of equal
    precision miss that test about one time in six. Here the difference must lie within the
    root-sum-square of the two half-widths on its side (equal-level intervals combine that way).
    """
    if r >= p:
        return bool(r - p <= math.hypot(p_hi - p, r - r_lo) + 1e-9)
    return bool(p - r <= math.hypot(p - p_lo, r_hi - r) + 1e-9)


def evaluate_policy(
    policy: Policy,
    samples: pd.DataFrame,
    budgets: Sequence[float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    mc_samples: int = 1000,
) -> dict[str, Any]:
    """Apply `policy` to the problems of `samples` and compare its promise with what they realise.

    For each problem: its k probes (first k of its `sample` pool, the policy's verifier) give a
    predicted bin and a decision; the realised accuracy is the decided option's expected accuracy
    on the problem's own samples (estimated like `ttc curves`: exact or Monte Carlo over subsets of
    its pool), its realised FLOPs the option's measured FLOPs plus the probes' (counted once where
    the policy reuses them). Reported per predicted bin and overall, with bootstrap CIs over
    problems; `goal` checks |predicted - realised| <= 2 points overall, every bin's prediction
    inside its realised interval, and realised FLOPs within 5% of predicted. Each bin also says
    whether prediction and realisation are `consistent` given both intervals (`_consistent`;
    `goal.bins_consistent` for all bins): information, not a replacement of the goal.
    """
    if not isinstance(policy, Policy):
        raise PlannerError("evaluate_policy needs a loaded Policy")
    k, verifier = policy.k, policy.doc["probe"]["verifier"]
    probes = probe_table(samples, k, verifier)
    ids = probes["problem_id"].to_numpy(dtype=object).reshape(-1, k)[:, 0]
    scores = probes["score"].to_numpy(float).reshape(-1, k)
    answers = probes["answer"].to_numpy(dtype=object).reshape(-1, k)
    tokens = probes["gen_tokens"].to_numpy(float).reshape(-1, k)
    pcost = probe_cost(samples, k, verifier).set_index("problem_id").loc[ids]

    want = sorted(set(float(b) for b in (budgets or policy.budgets)))
    dec_all = {t: policy.decide_many(scores, t, answers, tokens) for t in want}
    # Every problem's predicted bin, also where a decision skipped the probes (no bin): the
    # per-bin figures group problems as a probing router would have.
    pred_bins = policy.predict_bins(scores, answers, tokens)
    # Profile only what the decisions need.
    needed = {
        (str(s), str(c), float(b))
        for d in dec_all.values()
        for s, c, b in zip(
            d.column("strategy"), d.column("config"), d.column("option_budget"), strict=True
        )
    }
    int_budgets = tuple(sorted({round(b) for _, _, b in needed if b >= 1}))
    aggs = tuple(
        sorted({parse_config(c).get("agg", "last") for _, c, _ in needed} & set(AGGS)) or ("last",)
    )
    strategies = {s for s, _, _ in needed}
    sub = samples[samples["strategy"].isin(strategies)]
    prof = profile_from_samples(
        sub, CurveOptions(budgets=int_budgets, aggs=aggs, mc_samples=mc_samples, seed=seed)
    )
    prof = prof.set_index(["problem_id", "strategy", "config", "budget"]).sort_index()

    rng = np.random.default_rng(seed)
    ci = float(policy.doc["ci"])
    charged = bool(policy.doc["probe"]["charged"])
    out_budgets = []
    for t in want:
        # The same bootstrap draws at every budget: budgets with the same decisions get the same
        # intervals (a fresh stream per budget made "inside" flip between them by chance alone).
        rng = np.random.default_rng(seed)
        d = dec_all[t]
        strat, cfg, ob = d.column("strategy"), d.column("config"), d.column("option_budget")
        keys = list(zip(ids, strat, cfg, ob.astype(float), strict=True))
        missing = [key for key in keys if key not in prof.index]
        if missing:
            p, s, c, b = missing[0]
            raise PlannerError(
                f"held-out samples cannot evaluate the decision {s} {c} at budget {b:g} "
                f"for problem {p!r} (the samples lack that strategy or pool size)"
            )
        rows = prof.loc[keys]
        acc = rows["accuracy"].to_numpy(float)
        opt_flops = rows["flops"].to_numpy(float)
        reused = d.column("probe_reused").astype(bool)
        n_opt = np.maximum(ob, 1e-12)
        pf = pcost["probe_flops"].to_numpy(float)
        if charged:
            frac = np.where(reused, np.minimum(ob, k) / n_opt, 0.0)
            pf = np.where(d.probe, pf, 0.0)  # an unprobed decision pays no probes
            real_flops = opt_flops + pf - frac * opt_flops
        else:
            real_flops = opt_flops
        pred_acc = d.column("accuracy")
        pred_flops = d.column("total_flops")
        bins_out = []
        for b in policy.bins:
            m = pred_bins == b
            if not m.any():
                continue
            r_m, r_lo, r_hi = _boot_ci(acc[m], ci, n_boot, rng)
            p_acc = float(pred_acc[m].mean())
            p_lo, p_hi = float(d.column("ci_lo")[m].mean()), float(d.column("ci_hi")[m].mean())
            bins_out.append(
                {
                    "bin": int(b),
                    "n": int(m.sum()),
                    "predicted_accuracy": p_acc,
                    "predicted_ci_lo": p_lo,
                    "predicted_ci_hi": p_hi,
                    "realised_accuracy": r_m,
                    "realised_ci_lo": r_lo,
                    "realised_ci_hi": r_hi,
                    "inside": bool(r_lo - 1e-9 <= p_acc <= r_hi + 1e-9),
                    "consistent": _consistent(p_acc, p_lo, p_hi, r_m, r_lo, r_hi),
                    "predicted_flops": float(pred_flops[m].mean()),
                    "realised_flops": float(real_flops[m].mean()),
                    "fallback": int(d.fallback[m].sum()),
                }
            )
        r_m, r_lo, r_hi = _boot_ci(acc, ci, n_boot, rng)
        p_all, pf_all, rf_all = (
            float(pred_acc.mean()),
            float(pred_flops.mean()),
            float(real_flops.mean()),
        )
        flops_ratio = rf_all / pf_all if pf_all > 0 else float("nan")
        out_budgets.append(
            {
                "budget": float(t),
                "overall": {
                    "n": len(ids),
                    "predicted_accuracy": p_all,
                    "realised_accuracy": r_m,
                    "realised_ci_lo": r_lo,
                    "realised_ci_hi": r_hi,
                    "abs_error": abs(p_all - r_m),
                    "predicted_flops": pf_all,
                    "realised_flops": rf_all,
                    "flops_ratio": flops_ratio,
                },
                "bins": bins_out,
                "goal": {
                    "accuracy_within_2_points": bool(abs(p_all - r_m) <= 0.02),
                    "bins_inside_ci": bool(all(b["inside"] for b in bins_out)),
                    "bins_consistent": bool(all(b["consistent"] for b in bins_out)),
                    "flops_within_5_percent": None
                    if math.isnan(flops_ratio)
                    else bool(abs(flops_ratio - 1) <= 0.05),
                },
            }
        )
    return {
        "problems": len(ids),
        "probe_k": k,
        "verifier": verifier,
        "ci": ci,
        "budgets": out_budgets,
    }

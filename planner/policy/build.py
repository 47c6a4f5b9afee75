"""Build a policy file from a plan made on predicted difficulty bins (`ttc policy export`).

The plan must bin problems by `predicted_bin` (cross-fitted from probe features, `ttc curves
--probe-k K` then `ttc plan --bin-by predicted`): those are the bins a router can compute, and
the plan's per-bin accuracy is then measured on problems grouped exactly as the router will group
them. The predictor in the file is refitted on all problems of the plan (features `feat_*`,
target `oracle_bin`) with the model recorded by `ttc curves`, so it is the one whose cross-fitted
predictions made the plan's bins.

Each decision's `accuracy` (with `ci_lo`, `ci_hi`) is the plan's repeated K-fold cross-fitted
estimate of the deployed choice's accuracy in its bin (`choices.expected_accuracy`; the field
`accuracy_estimate` of the file names the estimator), not the paper's two-fold figure, which is
pessimistic and noisy for the option actually deployed.

The fallback decision (used below the smallest budget) is the best deployable single-strategy
baseline of the plan at its smallest budget (majority, best-of-N or weighted best-of-N over the
probe pool), with its measured accuracy and CI over all problems: the right choice when nothing
is known about the prompt.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from planner import __version__
from planner.errors import PlannerError
from planner.estimate import fit_predictor
from planner.features import FEATURE_PREFIX, FEATURES
from planner.policy.file import POLICY_KIND, POLICY_SCHEMA_VERSION, dumps_policy, validate_policy
from planner.tables import (
    CHOICES,
    CHOICES_FILE,
    PLAN_CURVES,
    PLAN_CURVES_FILE,
    PROBLEMS,
    PROBLEMS_FILE,
    SUMMARY_FILE,
    canonical_config,
    parse_config,
    read_table,
)


def _r(x: float) -> float:
    """Round to 12 significant digits: the file does not depend on the last ulp of a sum."""
    x = float(x)
    if x == 0 or not math.isfinite(x):
        return 0.0 if x == 0 else x
    return float(f"{x:.12g}")


def _promise(row: pd.Series) -> tuple[float, float, float]:
    """The accuracy a decision promises, with its interval.

    The plan's repeated K-fold estimate of the deployed choice (`expected_*` columns, see
    `planner.optimize.expect.kfold_estimate`) when the plan has it; a plan made before it existed
    gives its two-fold cross-validated accuracy (pessimistic and noisy for the deployed choice).
    """
    cols = ("expected_accuracy", "expected_ci_lo", "expected_ci_hi")
    if all(c in row.index for c in cols) and not any(pd.isna(row[c]) for c in cols):
        a, lo, hi = (float(row[c]) for c in cols)
    else:
        a, lo, hi = float(row["accuracy"]), float(row["ci_lo"]), float(row["ci_hi"])
    return a, min(lo, a), max(hi, a)


def _decision(row: pd.Series, probe_k: int, charged: bool) -> dict[str, Any]:
    acc, lo, hi = _promise(row)
    # Plans made before decisions could skip the probes have no `probe` column: they probe.
    probe = bool(row["probe"]) if "probe" in row.index and not pd.isna(row["probe"]) else True
    out = {
        "strategy": str(row["strategy"]),
        "config": str(row["config"]),
        "option_budget": _r(row["option_budget"]),
        "accuracy": _r(acc),
        "ci_lo": _r(lo),
        "ci_hi": _r(hi),
        "flops": _r(row["flops"]),
        "tokens": _r(row["tokens"]),
        "n_problems": int(row["n_problems"]),
        "probe": probe,
    }
    if charged:
        out.update(
            {
                "total_generations": _r(row["total_generations"]),
                "total_flops": _r(row["total_flops"]),
                "total_tokens": _r(row["total_tokens"]),
                "probe_reused": bool(row["probe_reused"] >= 0.5),
            }
        )
    else:
        out.update(
            {
                "total_generations": _r(row["option_budget"]),
                "total_flops": _r(row["flops"]),
                "total_tokens": _r(row["tokens"]),
                "probe_reused": False,
            }
        )
    return out


def _unprobed_decision(
    rows: pd.DataFrame, promise: dict | None, probe_k: int, charged: bool
) -> dict[str, Any]:
    """The decision of a budget without probes from its per-bin choice rows (one option): costs
    averaged over the bins by their problems, the promise over all problems (the plan's)."""
    if rows[["strategy", "config"]].drop_duplicates().shape[0] != 1:
        raise PlannerError("a budget without probes must run one option in every bin")
    w = rows["n_problems"].to_numpy(float)
    row = rows.iloc[0].copy()
    cost_cols = ["flops", "tokens", "total_generations", "total_flops", "total_tokens"]
    for col in [c for c in cost_cols if c in rows.columns]:
        row[col] = float(np.dot(w, rows[col].to_numpy(float)) / w.sum())
    row["n_problems"] = int(w.sum())
    if promise is not None:
        row["expected_accuracy"] = promise["accuracy"]
        row["expected_ci_lo"] = promise["ci_lo"]
        row["expected_ci_hi"] = promise["ci_hi"]
    out = _decision(row, probe_k, charged)
    out["reason"] = "one option for every prompt: probing does not repay its cost at this budget"
    return out


def _fallback(
    curves: pd.DataFrame,
    choices: pd.DataFrame,
    budget: float,
    probe: dict,
    charged: bool,
    n_problems: int,
) -> dict[str, Any]:
    sub = curves[(curves["budget"] == budget)]
    cands = sub[sub["method"].str.match(r"^(majority|best\[|weighted\[)")]
    pool_cfgs = sorted(
        c for s, c in zip(choices["strategy"], choices["config"], strict=True) if s == "sample"
    )
    if cands.empty or not pool_cfgs:
        # No pool baseline: the choice of the most populous bin at the smallest budget.
        row = (
            choices[choices["budget"] == budget]
            .sort_values(["n_problems", "bin"], ascending=[False, True])
            .iloc[0]
        )
        d = _decision(row, probe["k"], charged)
        d["reason"] = (
            f"budget below the smallest policy budget: the choice of bin {int(row['bin'])} there"
        )
        return d
    best = cands.sort_values(["accuracy", "method"], ascending=[False, True], kind="stable").iloc[0]
    method = str(best["method"])
    base = {
        k: v
        for k, v in parse_config(pool_cfgs[0]).items()
        if k not in ("select", "agg", "verifier")
    }
    if method == "majority":
        cfg = {**base, "select": "majority", "agg": "none", "verifier": "none"}
    else:
        sel, ver = method[:-1].split("[", 1)
        cfg = {**base, "select": sel, "agg": "last", "verifier": ver}
    d = {
        "strategy": "sample",
        "config": canonical_config(cfg),
        "option_budget": _r(best["generations"]),
        "accuracy": _r(best["accuracy"]),
        "ci_lo": _r(min(best["ci_lo"], best["accuracy"])),
        "ci_hi": _r(max(best["ci_hi"], best["accuracy"])),
        "flops": _r(best["flops"]),
        "tokens": _r(best["tokens"]),
        "n_problems": int(n_problems),
        "reason": "budget below the smallest policy budget: the best single strategy over "
        f"all problems ({method})",
        # A fixed strategy for every prompt: nothing to predict, so no probes.
        "probe": False,
    }
    if charged and "total_flops" in best and not pd.isna(best["total_flops"]):
        d.update(
            {
                "total_generations": _r(best["total_generations"]),
                "total_flops": _r(best["total_flops"]),
                "total_tokens": _r(best["total_tokens"]),
                "probe_reused": bool(best["probe_reused"] >= 0.5),
            }
        )
    else:
        d.update(
            {
                "total_generations": d["option_budget"],
                "total_flops": d["flops"],
                "total_tokens": d["tokens"],
                "probe_reused": False,
            }
        )
    return d


def _estimate_info(summary: dict, choices: pd.DataFrame) -> dict[str, Any]:
    """How the decisions' `accuracy` was estimated (the policy's `accuracy_estimate` field)."""
    info = summary.get("expected_accuracy")
    if info and "expected_accuracy" in choices.columns:
        return {
            "method": str(info["method"]),
            "folds": int(info["folds"]),
            "repeats": int(info["repeats"]),
            "ci_method": str(info["ci_method"]),
            "select_rule": str(summary.get("select_rule", "best")),
        }
    return {
        "method": "two-fold",
        "folds": 2,
        "repeats": 1,
        "ci_method": "bootstrap-fixed" if summary.get("n_boot") else "normal",
        "select_rule": "best",
    }


def build_policy(
    plan_dir: str | os.PathLike[str], budgets: Sequence[float] | None = None
) -> dict[str, Any]:
    """The policy document for the plan in `plan_dir` (validated before it is returned)."""
    d = Path(plan_dir)
    if not d.is_dir():
        raise PlannerError(f"{d}: not a plan directory (run ttc plan first)")
    summ_path = d / SUMMARY_FILE
    try:
        summary = json.loads(summ_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlannerError(f"{summ_path}: file not found (run ttc plan first)") from None
    except ValueError as exc:
        raise PlannerError(f"{summ_path}: not valid JSON ({exc})") from None
    if summary.get("bin_column") != "predicted_bin":
        raise PlannerError(
            f"{summ_path}: the plan bins problems by '{summary.get('bin_column')}', which a server "
            "cannot compute; make the plan on predicted bins (ttc curves --probe-k 4, then ttc "
            "plan --bin-by predicted)"
        )
    meta = summary.get("metadata") or {}
    probe_meta = meta.get("probe") or {}
    if not probe_meta.get("k"):
        raise PlannerError(
            f"{summ_path}: no probe settings in the plan's metadata (make the profile with "
            "ttc curves --probe-k)"
        )
    choices, _ = read_table(d / CHOICES_FILE, CHOICES)
    curves, _ = read_table(d / PLAN_CURVES_FILE, PLAN_CURVES)
    problems, _ = read_table(d / PROBLEMS_FILE, PROBLEMS)
    charged = summary.get("probe") is not None
    if charged:
        for col in ("total_generations", "total_flops", "total_tokens", "probe_reused"):
            if col not in choices.columns:
                raise PlannerError(
                    f"{d / CHOICES_FILE}: column '{col}' missing (a plan with "
                    "probes charged has it)"
                )

    plan_budgets = sorted(float(b) for b in choices["budget"].unique())
    if budgets:
        want = sorted(set(float(b) for b in budgets))
        missing = [
            b for b in want if not any(math.isclose(b, p, rel_tol=1e-9) for p in plan_budgets)
        ]
        if missing:
            raise PlannerError(
                f"budget {missing[0]:g} is not in the plan (plan budgets: "
                f"{', '.join(f'{b:g}' for b in plan_budgets)})"
            )
        plan_budgets = [
            p for p in plan_budgets if any(math.isclose(b, p, rel_tol=1e-9) for b in want)
        ]

    feat_cols = [c for c in problems.columns if str(c).startswith(FEATURE_PREFIX)]
    names = [c[len(FEATURE_PREFIX) :] for c in feat_cols]
    unknown = [n for n in names if n not in FEATURES]
    if unknown or not names:
        raise PlannerError(
            f"{d / PROBLEMS_FILE}: probe feature columns {feat_cols} (known: "
            f"{', '.join(FEATURE_PREFIX + f for f in FEATURES)})"
        )
    feats = problems[feat_cols]
    if feats.isna().any().any() or problems["oracle_bin"].isna().any():
        raise PlannerError(f"{d / PROBLEMS_FILE}: missing probe features or oracle bins")
    predictor = fit_predictor(
        feats,
        problems["oracle_bin"].to_numpy(np.int64),
        model=probe_meta.get("predictor", "ordinal"),
        seed=int(probe_meta.get("seed", 0)),
    )
    pred_params = predictor.to_dict(names)
    pred_params["mean"] = [_r(v) for v in pred_params["mean"]]
    pred_params["scale"] = [_r(v) for v in pred_params["scale"]]
    pred_params["intercept"] = [_r(v) for v in pred_params["intercept"]]
    pred_params["coef"] = (
        [_r(v) for v in pred_params["coef"]]
        if pred_params["model"] == "ordinal"
        else [[_r(v) for v in row] for row in pred_params["coef"]]
    )
    bins = [int(c) for c in predictor.classes_]

    decisions = []
    chosen = choices[choices["budget"].isin(plan_budgets)]
    by_key = {(int(r["bin"]), float(r["budget"])): r for _, r in chosen.iterrows()}
    fallback = _fallback(curves, choices, plan_budgets[0], probe_meta, charged, len(problems))
    promises = {float(e["budget"]): e.get("promise") for e in summary.get("per_budget", [])}
    for t in plan_budgets:
        at = chosen[chosen["budget"] == t]
        if "probe" in at.columns and len(at) and not at["probe"].any():
            # No probes at this budget: one option for every prompt, which knows no bin, so every
            # bin's decision is that option with the promise and the cost over all problems.
            dec = _unprobed_decision(at, promises.get(t), probe_meta["k"], charged)
            decisions += [{"bin": b, "budget": _r(t), **dec} for b in bins]
            continue
        for b in bins:
            row = by_key.get((b, t))
            if row is None:
                # The predictor can output a bin the cross-fitted plan never saw: decide as the
                # fallback.
                dec = {
                    **{k: v for k, v in fallback.items() if k != "reason"},
                    "reason": f"no problem of the plan was predicted into bin {b}: "
                    "fallback decision",
                }
            else:
                dec = _decision(row, probe_meta["k"], charged)
            decisions.append({"bin": b, "budget": _r(t), **dec})
    decisions.sort(key=lambda d: (d["bin"], d["budget"]))

    probe_summary = summary.get("probe") or {}
    pool_cfgs = sorted(
        c for s, c in zip(choices["strategy"], choices["config"], strict=True) if s == "sample"
    )
    probe_cfg = None
    if pool_cfgs:
        probe_cfg = canonical_config(
            {
                k: v
                for k, v in parse_config(pool_cfgs[0]).items()
                if k not in ("select", "agg", "verifier")
            }
        )
    doc = {
        "schema_version": POLICY_SCHEMA_VERSION,
        "kind": POLICY_KIND,
        "package_version": __version__,
        "source_profile_sha256": meta.get("source_profile_sha256"),
        "model_id": meta.get("model_id"),
        "verifier_id": meta.get("verifier_id") or probe_meta.get("verifier"),
        "budget_unit": summary.get("unit", "generations"),
        "ci": float(summary.get("ci", 0.95)),
        "probe": {
            "k": int(probe_meta["k"]),
            "verifier": str(probe_meta.get("verifier")),
            "strategy": "sample",
            "config": probe_cfg,
            "charged": charged,
            "reuse": bool(probe_summary.get("reuse", False)),
            "mean_flops": _r(probe_summary.get("mean_flops", 0.0)),
            "mean_tokens": _r(probe_summary.get("mean_tokens", 0.0)),
        },
        "predictor": pred_params,
        "bins": bins,
        "budgets": [_r(t) for t in plan_budgets],
        "decisions": decisions,
        "fallback": fallback,
        "accuracy_estimate": _estimate_info(summary, choices),
    }
    # Round-trip through the canonical text so the returned dict equals what `load` will read.
    doc = json.loads(dumps_policy(doc))
    validate_policy(doc, f"policy built from {d}")
    return doc

"""The probes of a samples table: the first k candidates of each problem's independent pool.

A router sees k cheap samples of a prompt before it decides. In a samples table those are the
first k candidates (positions 0..k-1 of run 0) of the problem's `sample` pool, scored by one
verifier. This module selects them (`probe_table`), computes their features with the serving
arithmetic of `planner.features` (`probe_features`) and their cost (`probe_cost`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from planner.errors import PlannerError
from planner.features import FEATURES, feature_columns, features_from_probes

DEFAULT_PROBE_K = 4
PROBE_STRATEGY = "sample"


def probe_verifiers(samples: pd.DataFrame) -> list[str]:
    pool = samples[samples["strategy"] == PROBE_STRATEGY]
    return sorted(v for v in pool["verifier"].unique() if v != "none")


def probe_table(samples: pd.DataFrame, k: int, verifier: str | None = None) -> pd.DataFrame:
    """The k probe rows of every problem: run 0, positions 0..k-1 of the `sample` pool.

    With several pool configs the first in sorted order is the probe pool (a router probes with
    one sampler). Raises when a problem has fewer than k probes, since its features would not be
    comparable with the others'.
    """
    if k < 1:
        raise PlannerError(f"probe k must be >= 1, got {k}")
    pool = samples[samples["strategy"] == PROBE_STRATEGY]
    if pool.empty:
        raise PlannerError("probe features need an independent-sample pool (strategy 'sample')")
    verifiers = probe_verifiers(samples)
    if verifier is None:
        if not verifiers:
            raise PlannerError("probe features need verifier scores: the sample pool is unscored")
        verifier = verifiers[0]
    elif verifier not in verifiers:
        raise PlannerError(
            f"probe verifier {verifier!r} not in the samples (known: "
            f"{', '.join(verifiers) or 'none'})"
        )
    config = sorted(pool["config"].unique())[0]
    sel = pool[(pool["verifier"] == verifier) & (pool["config"] == config) & (pool["run"] == 0)]
    sel = sel.sort_values(["problem_id", "position"], kind="stable")
    sel = sel.groupby("problem_id", sort=True).head(k)
    counts = sel.groupby("problem_id").size()
    all_ids = sorted(pool["problem_id"].unique())
    short = [p for p in all_ids if counts.get(p, 0) < k]
    if short:
        raise PlannerError(
            f"problem {short[0]!r} has {int(counts.get(short[0], 0))} probe samples "
            f"(run 0 of the '{PROBE_STRATEGY}' pool, verifier {verifier!r}); "
            f"--probe-k {k} needs {k}"
        )
    return sel.reset_index(drop=True)


def probe_features(
    samples: pd.DataFrame,
    k: int = DEFAULT_PROBE_K,
    verifier: str | None = None,
    names: Sequence[str] = FEATURES,
) -> pd.DataFrame:
    """One row per problem (sorted ids): problem_id and the `feat_*` columns from its k probes."""
    probes = probe_table(samples, k, verifier)
    ids = probes["problem_id"].to_numpy(dtype=object).reshape(-1, k)[:, 0]
    scores = probes["score"].to_numpy(float).reshape(-1, k)
    answers = probes["answer"].to_numpy(dtype=object).reshape(-1, k)
    tokens = probes["gen_tokens"].to_numpy(float).reshape(-1, k)
    x = features_from_probes(scores, answers, tokens, names)
    out = pd.DataFrame(x, columns=feature_columns(names))
    out.insert(0, "problem_id", ids)
    return out


def probe_cost(samples: pd.DataFrame, k: int, verifier: str | None = None) -> pd.DataFrame:
    """Per problem: the probes' FLOPs (generation + the probe verifier) and generated tokens."""
    probes = probe_table(samples, k, verifier)
    g = probes.groupby("problem_id", sort=True)
    return pd.DataFrame(
        {
            "problem_id": list(g.groups.keys()),
            "probe_flops": (g["gen_flops"].sum() + g["verifier_flops"].sum()).to_numpy(float),
            "probe_tokens": g["gen_tokens"].sum().to_numpy(float),
        }
    )

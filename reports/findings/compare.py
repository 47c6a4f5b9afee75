"""Findings (b) and (e): two options of the profiles compared problem by problem.

(b) beam search against best-of-N on the easy oracle bins at the lowest and highest budgets both
have; (e) the small model's verifier-weighted sampling against the larger model's majority vote
at matched FLOPs per query. Both are paired percentile bootstraps over the problems both sides
answered (`planner.stats.paired_diff_ci`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from planner.stats import paired_diff_ci
from reports.findings.base import (
    CI,
    N_BOOT,
    Finding,
    across_budgets,
    combine,
    easy_bins,
    interval,
    num,
    option_table,
    oracle_bins,
    per_problem,
    pts,
    reference_verifier,
    rng_for,
    side,
    single_mark,
    spread,
    untestable,
)
from reports.run import RunTables

CLAIM_B = (
    "Beam search beats best-of-N at low budgets and falls behind it at high budgets on easy "
    "problems."
)
CLAIM_E = (
    "Beyond the paper: verifier-weighted sampling of the small model beats the larger model's "
    "majority vote at matched FLOPs per query (verifier FLOPs counted)."
)
# The beam's answer selection, in order of preference: the paper's weighted best-of-N first.
BEAM_SELECTS = ("weighted", "best", "majority")


def _beam_and_pool(opts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame] | str:
    """Per budget, the beam option (select per BEAM_SELECTS, agg last, the first config in
    canonical order among widths) and the sample pool's option with the same select and
    verifier; or why there is none."""
    beam = opts[(opts["strategy"] == "beam") & (opts["agg"].isin(["last", "none"]))]
    if beam.empty:
        return "the profile has no beam-search rows"
    present = [s for s in BEAM_SELECTS if (beam["select"] == s).any()]
    if not present:
        return "the profile's beam rows have no majority, best or weighted selection"
    select = present[0]
    beam = beam[beam["select"] == select]
    verifier = sorted(beam["verifier"])[0]
    beam = beam[beam["verifier"] == verifier].groupby("budget", sort=True).head(1)
    pool = (
        opts[
            (opts["strategy"] == "sample")
            & (opts["select"] == select)
            & (opts["verifier"] == verifier)
            & (opts["agg"].isin(["last", "none"]))
        ]
        .groupby("budget", sort=True)
        .head(1)
    )
    if pool.empty:
        return f"the profile has no best-of-N pool selected by {select} with verifier {verifier}"
    return beam.set_index("budget"), pool.set_index("budget")


def finding_b(run: RunTables) -> Finding:
    if run.profile is None:
        return untestable("b", CLAIM_B, "no profile (profile.parquet, written by ttc curves)")
    bins = oracle_bins(run.problems)
    if bins is None:
        return untestable("b", CLAIM_B, "no problems table with oracle bins (problems.parquet)")
    labels = sorted(int(b) for b in set(bins))
    if len(labels) < 2:
        return untestable(
            "b", CLAIM_B, "the run has one difficulty bin: no easy bins to single out"
        )
    found = _beam_and_pool(option_table(run.profile))
    if isinstance(found, str):
        return untestable("b", CLAIM_B, found)
    beam, pool = found
    easy = easy_bins(labels)
    pids = bins.index[bins.isin(easy)]
    series = {}
    for t in sorted(set(beam.index) & set(pool.index)):
        b = per_problem(run.profile, "beam", beam.at[t, "config"], t).reindex(pids)
        s = per_problem(run.profile, "sample", pool.at[t, "config"], t).reindex(pids)
        keep = b.notna() & s.notna()
        if keep.sum() >= 2:
            series[float(t)] = (b[keep].to_numpy(), s[keep].to_numpy())
    if len(series) < 2:
        have = ", ".join(f"{t:g}" for t in series) or "none"
        return untestable(
            "b",
            CLAIM_B,
            f"beam search and best-of-N share fewer than two budgets on the easy bins "
            f"(shared: {have}): no low/high contrast",
        )
    rng = rng_for("b")
    low, high = min(series), max(series)
    res = {t: paired_diff_ci(*series[t], CI, N_BOOT, rng) for t in (low, high)}
    at_low = single_mark(side(res[low][1], res[low][2]))
    # At the high budget the claim is the other way round: best-of-N ahead.
    at_high = single_mark(side(-res[high][2], -res[high][1]))
    n = len(series[low][0])
    method = (
        f"paired percentile bootstrap over {n} problems of oracle bins "
        f"{', '.join(map(str, easy))} ({N_BOOT} resamples, {CI:.0%})"
    )
    select = beam["select"].iloc[0]
    evidence = (
        f"Beam minus best-of-N ({select}) on oracle bins {', '.join(map(str, easy))}: "
        f"{pts(*res[low])} at budget {low:g} and {pts(*res[high])} at budget {high:g}; {method}."
    )
    numbers = {
        "easy_bins": easy,
        "select": select,
        "verifier": beam["verifier"].iloc[0],
        "method": method,
        "ci": CI,
        "n_boot": N_BOOT,
        "low": {"budget": num(low), "mark": at_low, **interval(*res[low])},
        "high": {"budget": num(high), "mark": at_high, **interval(*res[high])},
        "beam_configs": {f"{t:g}": beam.at[t, "config"] for t in sorted(series)},
    }
    return Finding("b", CLAIM_B, combine([at_low, at_high]), evidence, numbers)


def _flops_options(profile: pd.DataFrame, rows: pd.DataFrame, pids: pd.Index) -> pd.DataFrame:
    """Each option's per-problem accuracy on `pids` and its mean FLOPs there, by budget."""
    out = []
    for _, o in rows.iterrows():
        sub = profile[(profile["strategy"] == o["strategy"]) & (profile["config"] == o["config"])]
        sub = sub[np.isclose(sub["budget"].to_numpy(float), o["budget"])]
        sub = sub.set_index("problem_id").reindex(pids)
        if sub["accuracy"].isna().any():
            continue
        out.append(
            {
                "budget": float(o["budget"]),
                "config": o["config"],
                "flops": float(sub["flops"].mean()),
                "acc": sub["accuracy"].to_numpy(float),
            }
        )
    return pd.DataFrame(out)


def finding_e(run: RunTables) -> Finding:
    if run.profile is None:
        return untestable("e", CLAIM_E, "no profile (profile.parquet, written by ttc curves)")
    if run.large_profile is None:
        return untestable("e", CLAIM_E, "no larger model's profile (large/profile/profile.parquet)")
    small_opts, large_opts = option_table(run.profile), option_table(run.large_profile)
    weighted = small_opts[
        (small_opts["strategy"] == "sample")
        & (small_opts["select"] == "weighted")
        & (small_opts["agg"] == "last")
    ]
    verifier = reference_verifier(run.plan_summary, sorted(set(weighted["verifier"])))
    if verifier is None:
        return untestable("e", CLAIM_E, "the small model's profile has no verifier-weighted pool")
    weighted = weighted[weighted["verifier"] == verifier]
    majority = large_opts[
        (large_opts["strategy"] == "sample") & (large_opts["select"] == "majority")
    ]
    if majority.empty:
        return untestable("e", CLAIM_E, "the larger model's profile has no majority-vote pool")
    pids = pd.Index(sorted(set(run.profile["problem_id"]) & set(run.large_profile["problem_id"])))
    if len(pids) < 2:
        return untestable("e", CLAIM_E, "the two profiles share fewer than two problems")
    small = _flops_options(run.profile, weighted, pids).sort_values("budget")
    large = _flops_options(run.large_profile, majority, pids).sort_values("budget")
    if (
        small.empty
        or large.empty
        or not (small["flops"] > 0).all()
        or not (large["flops"] > 0).all()
    ):
        return untestable("e", CLAIM_E, "a profile records no FLOPs (e.g. an imported dump)")
    rng = rng_for("e")
    rows = []
    # The matched budget F is each weighted option's own mean FLOPs per query; the larger model
    # gets its largest majority pool within F.
    for _, s in small.iterrows():
        within = large[large["flops"] <= s["flops"] * (1 + 1e-9)]
        if within.empty:
            continue
        g = within.iloc[-1]
        d, lo, hi = paired_diff_ci(s["acc"], g["acc"], CI, N_BOOT, rng)
        rows.append((s["flops"], s["budget"], g["budget"], g["flops"], d, lo, hi))
    if not rows:
        return untestable(
            "e",
            CLAIM_E,
            f"the larger model's cheapest majority option ({large['flops'].min():.3g} FLOPs) "
            f"costs more than the small model's largest weighted option "
            f"({small['flops'].max():.3g} FLOPs): no matched budget",
        )
    mark = across_budgets([side(lo, hi) for *_, lo, hi in rows])
    method = f"paired percentile bootstrap over {len(pids)} problems ({N_BOOT} resamples, {CI:.0%})"
    evidence = (
        f"Small model weighted[{verifier}] minus the larger model's majority at matched FLOPs "
        f"per query: "
        + spread(
            [
                (f"{f:.3g} FLOPs (N={n_s:g} vs {n_l:g})", d, lo, hi)
                for f, n_s, n_l, _, d, lo, hi in rows
            ]
        )
        + f"; {method}."
    )
    numbers = {
        "verifier": verifier,
        "method": method,
        "ci": CI,
        "n_boot": N_BOOT,
        "per_budget": [
            {
                "flops_per_query": num(f),
                "small_generations": num(n_s),
                "large_generations": num(n_l),
                "large_flops_per_query": num(f_l),
                **interval(d, lo, hi),
            }
            for f, n_s, n_l, f_l, d, lo, hi in rows
        ],
    }
    return Finding("e", CLAIM_E, mark, evidence, numbers)

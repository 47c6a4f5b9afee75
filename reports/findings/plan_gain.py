"""Finding (f), the plan's own: what choosing per difficulty bin buys over one fixed option.

Not a claim of the paper but the question a user of the plan asks first: is the compute-optimal
plan better than the best single option a user could have picked without it? Both sides are
cross-fitted the same way (`planner.optimize.deployed`: the plan's whole selection procedure and
the single-option selection, each chosen without the problems it is scored on), so the
difference is not inflated by the winner's curse. Paired bootstrap over problems where the plan
can be rebuilt from the run's profile, else the conservative unpaired interval from the curves.
The evidence also gives the selection's optimism (in-sample minus promised accuracy of the
deployed choices, from the plan's summary): how much the plan's own data flatters its choice.

Marked by the fixed rule of a claim at several budgets (`reports.findings.base.across_budgets`),
on the claim "at least as accurate at every budget and more accurate at some": reproduced when
ahead at some budget and behind at none; not reproduced when behind at some budget, or tied at
every budget (the plan then deploys one option everywhere, which is a result: per-bin choices
bought nothing on this data).
"""

from __future__ import annotations

import numpy as np

from planner.stats import paired_diff_ci
from reports.findings.base import (
    CI,
    N_BOOT,
    Finding,
    across_budgets,
    interval,
    num,
    rng_for,
    side,
    spread,
    untestable,
)
from reports.findings.compute_optimal import CO, rebuild_plan, same_as_curves
from reports.run import RunTables

CLAIM = (
    "The compute-optimal plan is at least as accurate as the best single option at every budget "
    "and more accurate at some (both cross-fitted the same way)."
)
SINGLE = "single_best"


def finding_f(run: RunTables) -> Finding:
    curves = run.plan_curves
    if curves is None or curves.empty or SINGLE not in set(curves["method"]):
        return untestable(
            "f",
            CLAIM,
            "the plan has no single_best curve (made with --select-rule best or one-se, or "
            "before the pooled rule existed)",
        )
    co = curves[curves["method"] == CO].set_index("budget")
    sb = curves[curves["method"] == SINGLE].set_index("budget")
    budgets = sorted(float(b) for b in set(co.index) & set(sb.index))
    rng = rng_for("f")
    got = rebuild_plan(run, None)
    why = got if isinstance(got, str) else same_as_curves(got[0], curves, [CO, SINGLE])
    rows = []
    for t in budgets:
        if why is None and not isinstance(got, str):
            a, b = got[0].series[CO][t], got[0].series[SINGLE][t]
            d, lo, hi = paired_diff_ci(a, b, CI, N_BOOT, rng)
        else:
            c, s = co.loc[t], sb.loc[t]
            d = c["accuracy"] - s["accuracy"]
            lo, hi = c["ci_lo"] - s["ci_hi"], c["ci_hi"] - s["ci_lo"]
        rows.append((t, float(d), float(lo), float(hi)))
    if not rows:
        return untestable("f", CLAIM, "no budget has both compute_optimal and single_best")
    mark = across_budgets([side(lo, hi) for _, _, lo, hi in rows])
    per_budget = {float(e["budget"]): e for e in (run.plan_summary or {}).get("per_budget", [])}
    optimism = [per_budget.get(t, {}).get("optimism") for t, *_ in rows]
    known = [o for o in optimism if o is not None]
    probed = [t for t, *_ in rows if (per_budget.get(t, {}).get("deployed") or {}).get("probe")]
    method = (
        f"paired percentile bootstrap over {len(run.problems)} problems ({N_BOOT} resamples, "
        f"{CI:.0%}), the plan rebuilt from its profile"
        if why is None and run.problems is not None
        else f"conservative unpaired interval from the plan's curves because {why}"
    )
    evidence = (
        f"Compute-optimal minus the best single option: "
        f"{spread([(f'budget {t:g}', d, lo, hi) for t, d, lo, hi in rows])}; "
        f"per-bin choices (with probes) at {len(probed)} of {len(rows)} budgets, one option "
        f"without probes at the others"
        + (
            f"; the selection's optimism (in-sample minus promised) "
            f"{100 * float(np.mean(known)):+.1f} points on average, "
            f"{100 * float(np.max(known)):+.1f} at most"
            if known
            else ""
        )
        + f"; {method}."
    )
    numbers = {
        "method": method,
        "ci": CI,
        "per_budget": [
            {
                "budget": num(t),
                **interval(d, lo, hi),
                "per_bin": t in probed,
                "optimism": None if o is None else num(o),
            }
            for (t, d, lo, hi), o in zip(rows, optimism, strict=True)
        ],
    }
    return Finding("f", CLAIM, mark, evidence, numbers)

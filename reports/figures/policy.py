"""The policy's promise against what held-out problems realised, per bin, with both intervals.

Reads the JSON of `planner.policy.evaluate.evaluate_policy` (`ttc policy evaluate`): per budget
and predicted bin, the promised accuracy (the plan's K-fold estimate, with its interval) and the
realised accuracy on problems the policy was not fitted on (bootstrap interval).
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

from reports.figures._common import HEIGHT, Missing, guarded, need
from reports.run import RunTables

_KINDS = ["promised (policy)", "realised (held-out)"]


def promise_table(evaluation: dict[str, Any], unit: str = "generations") -> pd.DataFrame:
    """Long form: one row per budget, bin and kind (promised or realised), accuracy in %."""
    rows = []
    for entry in evaluation.get("budgets", []):
        t = float(entry["budget"])
        for b in entry.get("bins", []):
            for kind, key in zip(_KINDS, ("predicted", "realised"), strict=True):
                rows.append(
                    {
                        "budget": t,
                        "panel": f"budget {t:g} {unit}",
                        "bin": int(b["bin"]),
                        "kind": kind,
                        "acc": 100 * float(b[f"{key}_accuracy"]),
                        "ci_lo": 100 * float(b[f"{key}_ci_lo"]),
                        "ci_hi": 100 * float(b[f"{key}_ci_hi"]),
                        "n": int(b["n"]),
                        "consistent": bool(b.get("consistent", False)),
                    }
                )
    if not rows:
        raise Missing("the evaluation has no per-bin rows")
    return pd.DataFrame(rows).sort_values(["budget", "bin", "kind"]).reset_index(drop=True)


def promise_vs_realised(
    evaluation: dict[str, Any], unit: str = "generations", columns: int = 4
) -> alt.FacetChart:
    """Per budget (one panel each, in the policy's `unit`) and predicted bin: promised and
    realised accuracy side by side, each with its 95% interval."""
    data = promise_table(evaluation, unit)
    base = alt.Chart().encode(
        x=alt.X("bin:O", title="predicted difficulty bin (1 = easiest)"),
        xOffset=alt.XOffset("kind:N", sort=_KINDS),
        color=alt.Color("kind:N", title=None, sort=_KINDS),
    )
    layer = alt.layer(
        base.mark_errorbar(ticks=True).encode(
            y=alt.Y("ci_lo:Q", title="accuracy (%)", scale=alt.Scale(domain=[0, 100])),
            y2="ci_hi:Q",
        ),
        base.mark_point(filled=True, size=50).encode(
            y="acc:Q",
            tooltip=["panel:N", "bin:O", "kind:N", "acc:Q", "ci_lo:Q", "ci_hi:Q", "n:Q"],
        ),
    ).properties(width=HEIGHT, height=HEIGHT)
    panels = [f"budget {t:g} {unit}" for t in sorted(data["budget"].unique())]
    n = int(evaluation.get("problems", 0))
    return layer.facet(
        facet=alt.Facet("panel:N", title=None, sort=panels), columns=columns, data=data
    ).properties(
        title=f"The policy's promise against what {n} held-out problems realised (95% intervals)"
    )


def build_promise(run: RunTables) -> alt.TopLevelMixin:
    name = "promise against realised"
    policy = need(run.policy, f"{name}: needs policy.json (written by ttc policy export)")
    evaluation = need(
        run.evaluation,
        f"{name}: needs evaluation.json (the JSON of ttc policy evaluate; written by ttc demo)",
    )
    unit = str(policy.get("budget_unit", "generations"))
    return guarded(name, lambda: promise_vs_realised(evaluation, unit))

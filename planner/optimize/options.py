"""The settings of a plan (`PlanOptions`): budget unit, bins, intervals, probes, the promise."""

from __future__ import annotations

from dataclasses import dataclass

from planner.optimize.expect import EXPECT_METHODS, SELECT_RULES
from planner.optimize.procedure import SelectionSpec

UNITS = ("generations", "flops")
# "pooled" (`planner.optimize.procedure`, the default) or a per-bin rule of `expect`.
PLAN_RULES = ("pooled", *SELECT_RULES)
_SPEC = SelectionSpec()


@dataclass(frozen=True)
class PlanOptions:
    """unit: what a budget counts (generations, or FLOPs per query).
    budgets: the budgets to plan at; None = every budget of the pool (generations) or the FLOPs of
    k generations of the independent-sample pool at each k (FLOPs).
    bin_column: the problems-table column that holds the bins (oracle_bin, predicted_bin, ...).
    verifier: the verifier of the best-of-N baselines (None = each verifier in the profile; the
    efficiency multiple uses the first in sorted order).
    ci: confidence level; n_boot: bootstrap resamples over problems (0 = normal approximation).
    probe_k: probe samples charged to every prompt (0 = the paper: difficulty is free). The probes'
    cost is read from the problems table (columns probe_flops, probe_tokens; `ttc curves
    --probe-k`); with probe_reuse a `sample` pool of the probe sampler reuses them (see
    `charge_probes`).
    expect_folds, expect_repeats: K and R of the repeated K-fold estimate of each deployed choice's
    accuracy (`planner.optimize.expect.kfold_estimate`; choices' expected_* columns). Folds are
    balanced within each bin from seeded permutations (seed, seed + 1, ...) of the sorted ids.
    select_rule: how the deployed options are chosen (`planner.optimize.deployed`): "pooled" (the
    default: one option without probes, or per-bin options partially pooled over a shortlist,
    chosen by nested cross-validation, `planner.optimize.procedure`; the compute-optimal curve is
    its cross-fit), or per bin on all its problems (`planner.optimize.expect.deploy_choices`):
    "best" (highest accuracy, the paper) or "one-se" (the cheapest within one paired standard
    error of the best), with the paper's two-fold compute-optimal curve. The selection folds 0/1
    and choices.accuracy are always the paper's two-fold figures.
    pool_strengths, shortlist_z, inner_folds, se_factor: the pooled procedure's settings
    (`planner.optimize.procedure.SelectionSpec`).
    expect_method: "kfold" (`planner.optimize.expect.kfold_estimate`, the default) or "bootstrap"
    (the deployed option's in-sample accuracy minus a bootstrap estimate of its winner's curse,
    `planner.optimize.expect.bootstrap_corrected_estimate`; rule "best" only).
    """

    unit: str = "generations"
    budgets: tuple[float, ...] | None = None
    bin_column: str = "oracle_bin"
    verifier: str | None = None
    ci: float = 0.95
    n_boot: int = 1000
    seed: int = 0
    probe_k: int = 0
    probe_verifier: str | None = None
    probe_reuse: bool = True
    expect_folds: int = 10
    expect_repeats: int = 5
    select_rule: str = "pooled"
    expect_method: str = "kfold"
    pool_strengths: tuple[float, ...] = _SPEC.strengths
    shortlist_z: float | None = _SPEC.shortlist_z
    inner_folds: int = _SPEC.inner_folds
    se_factor: float = _SPEC.se_factor

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")
        if not 0 < self.ci < 1:
            raise ValueError("ci must be in (0, 1)")
        if self.n_boot < 0:
            raise ValueError("n_boot must be >= 0")
        if self.budgets is not None and any(b <= 0 for b in self.budgets):
            raise ValueError("budgets must be > 0")
        if self.probe_k < 0:
            raise ValueError("probe_k must be >= 0")
        if self.expect_folds < 2:
            raise ValueError("expect_folds must be >= 2")
        if self.expect_repeats < 1:
            raise ValueError("expect_repeats must be >= 1")
        if self.expect_method not in EXPECT_METHODS:
            raise ValueError(
                f"expect_method must be one of {EXPECT_METHODS}, got {self.expect_method!r}"
            )
        if self.expect_method == "bootstrap" and self.select_rule != "best":
            raise ValueError("expect_method 'bootstrap' is for select_rule 'best'")
        if self.select_rule not in PLAN_RULES:
            raise ValueError(f"select_rule must be one of {PLAN_RULES}, got {self.select_rule!r}")
        self.selection_spec()  # its own checks

    def selection_spec(self) -> SelectionSpec:
        """The pooled procedure's settings."""
        return SelectionSpec(
            tuple(float(s) for s in self.pool_strengths),
            self.shortlist_z,
            self.inner_folds,
            self.se_factor,
        )


def options_from_summary(summary: dict, **overrides: object) -> PlanOptions:
    """The options a plan was made with, from its summary.json (what rebuilds the plan's own
    per-problem series, e.g. for a paired comparison in a report); `overrides` replace fields."""
    probe = summary.get("probe") or {}
    sel = summary.get("selection") or {}
    exp = summary.get("expected_accuracy") or {}
    spec = SelectionSpec()
    fields = {
        "unit": summary["unit"],
        "budgets": tuple(float(b) for b in summary["budgets"]),
        "bin_column": summary["bin_column"],
        "ci": float(summary.get("ci", 0.95)),
        "n_boot": int(summary.get("n_boot", 0)),
        "seed": int(summary.get("seed", 0)),
        "probe_k": int(probe.get("k", 0)),
        "probe_verifier": probe.get("verifier"),
        "probe_reuse": bool(probe.get("reuse", True)),
        "expect_folds": int(exp.get("folds") or 10),
        "expect_repeats": int(exp.get("repeats", 5)),
        "select_rule": str(summary.get("select_rule", "best")),
        "pool_strengths": tuple(float(x) for x in sel.get("strengths", spec.strengths)),
        "shortlist_z": sel.get("shortlist_z", spec.shortlist_z),
        "inner_folds": int(sel.get("inner_folds", spec.inner_folds)),
        "se_factor": float(sel.get("se_factor", spec.se_factor)),
    }
    if exp.get("method") == "bootstrap-corrected":
        fields["expect_method"] = "bootstrap"
    fields.update(overrides)
    return PlanOptions(**fields)  # type: ignore[arg-type]

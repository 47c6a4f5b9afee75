"""Optimize: profile -> plan (the compute-optimal strategy per difficulty bin and budget).

The third stage of the flow: two-fold cross-fitted selection within bins (`crossfit`), the
promise of the deployed choice (`expect`), probe costs (`charge`), the plan itself (`plan`, over
the profile as dense arrays of `grid` and writing the output rows of `rows`, with its settings in
`options`; `run` from a profile directory to the tables `ttc plan` writes), and the allocation
of a mean budget across bins (`binned` per-bin options, `allocate` the exact knapsack).

May import: numpy, scipy, pandas, `planner.errors`, `planner.stats`, `planner.tables` and
`planner.estimate`.
"""

from planner.optimize.allocate import allocation_report
from planner.optimize.binned import BinnedProfile, bin_options, load_binned_profile, require_bins
from planner.optimize.options import PlanOptions, options_from_summary
from planner.optimize.plan import Plan, make_plan
from planner.optimize.run import PlanInputs, PlanTables, plan_tables, read_plan_inputs

__all__ = [
    "BinnedProfile",
    "Plan",
    "PlanInputs",
    "PlanOptions",
    "PlanTables",
    "allocation_report",
    "bin_options",
    "load_binned_profile",
    "make_plan",
    "options_from_summary",
    "plan_tables",
    "read_plan_inputs",
    "require_bins",
]

"""Estimate: samples -> profile (accuracy and cost at every budget) and problem difficulty.

The second stage of the flow: read every budget from one pool (`curves`, dispatching pools to
`pools` with the exact closed forms of `closed_form` and the vote estimators of `votes`, and
reading revision chains and search runs itself), bin problems by difficulty
(`difficulty`: oracle pass@1 or a level, and the probe-feature predictor) and read probe features
from a samples table (`probes`; the feature arithmetic itself is the numpy-only leaf
`planner.features`, shared with the policy runtime). `run` holds the stage's two entry points,
`import_samples` and `profile_samples`.

May import: numpy, scipy, pandas, scikit-learn, `planner.errors`, `planner.stats`,
`planner.strategies`, `planner.features` and `planner.tables`.
"""

from planner.estimate.curves import profile_from_samples
from planner.estimate.difficulty import (
    assign_folds,
    build_problems,
    fit_predictor,
    label_bins,
    quantile_bins,
)
from planner.estimate.pools import CurveOptions
from planner.estimate.probes import probe_cost, probe_table
from planner.estimate.run import ProbeOptions, import_samples, profile_samples

__all__ = [
    "CurveOptions",
    "ProbeOptions",
    "assign_folds",
    "build_problems",
    "fit_predictor",
    "import_samples",
    "label_bins",
    "probe_cost",
    "probe_table",
    "profile_from_samples",
    "profile_samples",
    "quantile_bins",
]

"""Costs: what test-time compute costs in FLOPs, GPU-hours and dollars, and the exchange.

The last analysis stage: hardware profiles and model shapes as data (`hardware`, `modelspec`),
the serving simulator (`simulator`: a strategy's workload priced with the per-phase formulas of
`roofline`) and its application to a profile's options (`serving`), the pretraining vs
test-time FLOPs exchange of Snell et al. 2024 (`exchange`, the per-bin comparison, over the
FLOPs formulas and scaling-law extrapolation of `scaling`) and the inference-load what-if built
on it (`whatif`).

May import: numpy, pandas, `planner.data`, `planner.errors`, `planner.stats`, `planner.tables`
and `planner.optimize` (the per-bin options of a profile).
"""

from planner.costs.exchange import exchange_formula, exchange_report, larger_model
from planner.costs.hardware import HardwareSpec, hardware_from_json, known_hardware, load_hardware
from planner.costs.modelspec import ModelSpec, load_model
from planner.costs.scaling import budget_multiplier, check_positive, small_model_size
from planner.costs.serving import cost_report, cost_rows, option_serving_costs, workload_cost_row
from planner.costs.simulator import Workload, simulate, workload_from_profile
from planner.costs.whatif import Deployment, parse_load, whatif_report

__all__ = [
    "Deployment",
    "HardwareSpec",
    "ModelSpec",
    "Workload",
    "budget_multiplier",
    "check_positive",
    "cost_report",
    "cost_rows",
    "exchange_formula",
    "exchange_report",
    "hardware_from_json",
    "known_hardware",
    "larger_model",
    "load_hardware",
    "load_model",
    "option_serving_costs",
    "parse_load",
    "simulate",
    "small_model_size",
    "whatif_report",
    "workload_cost_row",
    "workload_from_profile",
]

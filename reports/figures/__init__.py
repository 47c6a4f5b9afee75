"""Figures: each a function from the planner's tables to an altair chart, usable from Python.

`FIGURES` is the report's list, in the order the report shows them. Each entry's `build` takes the
run's tables (`reports.run.RunTables`) and returns a chart, or raises `Missing` with a line that
says which table would draw it; a chart is never drawn empty.

The functions behind them take tables, not runs: `accuracy_vs_budget(profile, problems)`,
`compute_optimal_vs_baselines(curves)`, `beam_vs_best_of_n`, `revisions_ratio`,
`difficulty_figure(problems, profile, probe)`, `exchange_per_bin(profile, problems, large, M)`,
`cost_tradeoff(profile, problems, model, hardware, slo_s)`, `pareto_frontier_chart` and
`promise_vs_realised(evaluation)`.

Settings the tables lack come from `run.context` (report.json): `model_multiplier` (M) and
`ratios` (default 0.16, 0.79, 22) and the user's R (`user_ratio`, or `load` with
queries_per_day, days, tokens_per_query, pretrain_tokens) for the exchange; `model` (a shipped
model name or a config folder), `hardware` (names or paths, default h100-sxm), `cpu_hardware`
(a calibrated profile path) and `slo_s` for the cost figure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reports.figures._common import Missing
from reports.figures.allocation import build_pareto, pareto_frontier_chart
from reports.figures.cost import build_cost, cost_tradeoff
from reports.figures.curves import (
    accuracy_vs_budget,
    beam_vs_best_of_n,
    build_accuracy,
    build_beam,
    build_compute_optimal,
    build_revisions,
    compute_optimal_vs_baselines,
    revisions_ratio,
)
from reports.figures.difficulty import build_difficulty, difficulty_figure
from reports.figures.exchange import build_exchange, exchange_per_bin
from reports.figures.policy import build_promise, promise_vs_realised
from reports.run import RunTables


@dataclass(frozen=True)
class Figure:
    """One figure of the report: `name` is its file stem (`name.png`, `name.svg`)."""

    name: str
    title: str
    build: Callable[[RunTables], Any]  # -> altair chart; raises Missing


FIGURES: tuple[Figure, ...] = (
    Figure("accuracy_vs_budget", "Accuracy against budget per strategy", build_accuracy),
    Figure(
        "compute_optimal",
        "Compute-optimal against majority and best-of-N, with the efficiency multiple",
        build_compute_optimal,
    ),
    Figure("beam_vs_best_of_n", "Beam search against best-of-N per bin", build_beam),
    Figure("revisions", "Revisions: parallel against sequential per bin", build_revisions),
    Figure("difficulty", "Predicted against oracle difficulty, and its cost", build_difficulty),
    Figure("exchange", "Test-time compute against a larger model per bin", build_exchange),
    Figure("cost", "Accuracy against dollars and latency per hardware", build_cost),
    Figure("pareto_frontier", "Allocation across bins: the Pareto frontier", build_pareto),
    Figure("promise_vs_realised", "The policy's promise against held-out problems", build_promise),
)

__all__ = [
    "FIGURES",
    "Figure",
    "Missing",
    "accuracy_vs_budget",
    "beam_vs_best_of_n",
    "compute_optimal_vs_baselines",
    "cost_tradeoff",
    "difficulty_figure",
    "exchange_per_bin",
    "pareto_frontier_chart",
    "promise_vs_realised",
    "revisions_ratio",
]

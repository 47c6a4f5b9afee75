"""A process-pool executor: the sweep's units on `cfg.workers` local processes, no Ray.

Each worker (started with `spawn`, so no torch state is forked) loads the models once, on its
first unit, with `cfg.threads` torch threads; `save` runs in this process as each unit finishes.
Every problem's seed derives from the run seed, so the tables equal the local executor's.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from typing import Any

from planner.errors import PlannerError
from profiling.sweep.config import RunConfig
from profiling.sweep.units import SaveUnit, Unit, UnitRunner

_RUNNER: UnitRunner | None = None


def _run_unit(args: tuple[RunConfig, str, Unit]) -> tuple[str, list[dict], dict[str, Any]]:
    global _RUNNER
    cfg, grader, unit = args
    if _RUNNER is None:
        # The pool numbers its processes from 1 (one server of a --base-url list each).
        ident = multiprocessing.current_process()._identity
        worker = ident[0] - 1 if ident else 0
        _RUNNER = UnitRunner(cfg, grader, threads=cfg.threads, worker=worker)
    return unit.name, _RUNNER.run(unit), _RUNNER.metadata()


class PoolExecutor:
    """Runs units on `cfg.workers` spawned processes of this machine."""

    def __init__(self, cfg: RunConfig, grader: str) -> None:
        self.cfg = cfg
        self.grader = grader

    def run(self, units: Sequence[Unit], save: SaveUnit, bar: Any) -> dict[str, Any]:
        by_name = {u.name: u for u in units}
        meta: dict[str, Any] = {}
        n = max(1, min(self.cfg.workers, len(units)))
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(n) as pool:
            jobs = [(self.cfg, self.grader, u) for u in units]
            try:
                for name, rows, meta in pool.imap_unordered(_run_unit, jobs):
                    unit = by_name[name]
                    save(unit, rows, meta)
                    bar.update(len(unit.problems))
            except PlannerError:
                raise
            except Exception as exc:  # a worker's failure, re-raised here
                raise PlannerError(f"a sweep worker failed: {exc}") from None
        return meta

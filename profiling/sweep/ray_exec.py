"""The Ray executor: units spread over Ray actors, each loading the models once.

`--executor ray --workers N [--address ADDR]` connects to a cluster (or starts a local one when no
address is given), creates N actors, and hands them units (one strategy config on one shard of
problems) as they free up. Rows come back to the driver, which writes every checkpoint itself, so
resume works exactly as with the local executor; since each problem's rows depend only on its own
seed, the tables equal the local executor's for the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from planner.errors import PlannerError
from profiling.sweep.config import RunConfig
from profiling.sweep.units import SaveUnit, Unit, UnitRunner


class _Worker:
    """A Ray actor body: loads the run's models once, then runs units."""

    def __init__(self, cfg: RunConfig, grader: str, threads: int, worker: int) -> None:
        self.runner = UnitRunner(cfg, grader, threads=threads, worker=worker)

    def metadata(self) -> dict[str, Any]:
        return self.runner.metadata()

    def run(self, unit: Unit) -> tuple[str, list[dict], dict[str, Any]]:
        rows = self.runner.run(unit)
        return unit.name, rows, self.runner.metadata()  # read after the unit, as local


def _init_ray(cfg: RunConfig) -> bool:
    """Connect to `cfg.address`, or start a local cluster sized for the workers; True when this
    call started it."""
    try:
        import ray
    except ImportError:
        raise PlannerError("--executor ray needs ray: pip install 'ttc-planner[ray]'") from None
    if ray.is_initialized():
        return False
    # Quiet, dashboard-free start: the local cluster lives only as long as this run.
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
    }
    # Workers import `profiling` from the driver's environment (an installed package), so no
    # runtime_env upload is needed.
    try:
        if cfg.address:
            ray.init(address=cfg.address, **kwargs)
        else:
            ray.init(num_cpus=max(cfg.workers, 1), **kwargs)
    except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError...
        raise PlannerError(
            f"cannot start or reach the Ray cluster ({cfg.address or 'local'}): {exc}"
        ) from None
    return True


class RayExecutor:
    """Runs units on `cfg.workers` Ray actors; `save` is called on the driver as each finishes.
    Ray starts (and the actors load the models) when `run` is called."""

    def __init__(self, cfg: RunConfig, grader: str) -> None:
        self.cfg = cfg
        self.grader = grader

    def run(self, units: Sequence[Unit], save: SaveUnit, bar: Any) -> dict[str, Any]:
        return _run_units_ray(self.cfg, self.grader, list(units), save, bar)


def _run_units_ray(
    cfg: RunConfig, grader: str, units: list[Unit], save: SaveUnit, bar: Any
) -> dict[str, Any]:
    import ray

    started = _init_ray(cfg)
    try:
        gpus = 1 if cfg.model.device.startswith("cuda") else 0
        actor_cls = ray.remote(num_cpus=1, num_gpus=gpus)(_Worker)
        n = min(cfg.workers, len(units))
        actors = [actor_cls.remote(cfg, grader, cfg.threads, i) for i in range(n)]
        try:
            meta = ray.get(actors[0].metadata.remote())
        except ray.exceptions.RayActorError as exc:
            raise PlannerError(f"a Ray worker failed to load the models: {exc}") from None
        by_name = {u.name: u for u in units}
        queue = list(units)
        inflight: dict[Any, Any] = {}
        for a in actors:
            if queue:
                inflight[a.run.remote(queue.pop(0))] = a
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1)
            ref = ready[0]
            actor = inflight.pop(ref)
            try:
                name, rows, meta = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if hasattr(exc, "cause") else exc
                if isinstance(cause, PlannerError):
                    raise PlannerError(str(cause)) from None
                raise PlannerError(f"a Ray worker failed: {cause}") from None
            unit = by_name[name]
            save(unit, rows, meta)
            bar.update(len(unit.problems))
            if queue:
                inflight[actor.run.remote(queue.pop(0))] = actor
        return meta
    finally:
        if started:
            ray.shutdown()

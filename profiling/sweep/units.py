"""Units of a sweep and the code that runs them, wherever they run (this process or a Ray actor).

A unit is one strategy config on one shard of `shard_size` consecutive problems: the checkpoint
granularity. Every problem gets its own seed, derived from (run seed, problem_id, strategy,
config) by `unit_seed`, and is run alone, so a unit's rows do not depend on which process ran it.
`UnitRunner` loads the run's models once and runs units; `LocalExecutor` runs them in order in
this process (the Ray executor, `profiling.sweep.ray_exec`, hands them to actors).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from planner.errors import PlannerError
from planner.strategies import CHAINS
from profiling.backend import PromptTemplate, TransformersBackend
from profiling.problems import Problem
from profiling.strategies import STRATEGIES, strategy_config
from profiling.sweep.config import ModelConfig, RunConfig, StrategySpec, VerifierSpec
from profiling.verifiers import LikelihoodVerifier, SelfLikelihood, Verifier, load_prm, prm_format

# The [[verifiers]] keys each PRM format's adapter takes (besides the common ones).
_PRM_KEYS = {
    "step_tag": ("step_tag", "good_token", "bad_token", "separator"),
    "rlhflow": ("good_token", "bad_token"),
    "token_class": ("separator",),
}


def unit_seed(seed: int, problem_id: str, strategy: StrategySpec) -> int:
    """The seed of one problem under one strategy config: independent of shards and executors."""
    text = f"{seed}\x00{problem_id}\x00{strategy.key}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % (2**31 - 1)


@dataclass(frozen=True)
class Unit:
    """One strategy config on one shard of problems (the checkpoint granularity)."""

    strategy: StrategySpec
    shard: int
    problems: tuple[Problem, ...]

    @property
    def name(self) -> str:
        digest = hashlib.sha256(self.strategy.key.encode()).hexdigest()[:12]
        return f"{self.strategy.name}-{digest}-shard{self.shard:05d}"


# Called with a finished unit, its rows and the models' metadata (writes its checkpoint).
SaveUnit = Callable[[Unit, list[dict], dict[str, Any]], None]


def make_units(cfg: RunConfig, problems: Sequence[Problem]) -> list[Unit]:
    size = cfg.shard_size
    shards = [tuple(problems[i : i + size]) for i in range(0, len(problems), size)]
    return [Unit(s, k, shard) for s in cfg.strategies for k, shard in enumerate(shards)]


class SweepModels:
    """The policy backend, the optional reviser backend and the verifiers of one run."""

    def __init__(self, cfg: RunConfig, worker: int = 0) -> None:
        from transformers.utils import logging as hf_logging

        # One sweep progress bar, not one "Loading weights" bar per model and worker.
        hf_logging.disable_progress_bar()
        try:
            self.backend = _backend(cfg.model, worker)
            self.reviser = _backend(cfg.reviser, worker) if cfg.reviser is not None else None
            self.verifiers = [_verifier(v, cfg.model, worker) for v in cfg.verifiers]
        except (OSError, ValueError) as exc:
            # transformers' messages span lines; the CLI promises one.
            raise PlannerError(f"loading models: {' '.join(str(exc).split())}") from None
        ids = [v.verifier_id for v in self.verifiers]
        if len(set(ids)) != len(ids):
            raise PlannerError(f"two verifiers have the same id {ids}: give them distinct names")

    def metadata(self) -> dict[str, Any]:
        b = self.backend
        meta: dict[str, Any] = {
            "model_id": b.model_id,
            "model_params": b.n_params,
            "model_path": str(b.config.model_dir),
            "device": b.config.device,
            "dtype": b.config.dtype,
            "verifier_ids": [v.verifier_id for v in self.verifiers] or ["none"],
            "verifier_params": {v.verifier_id: _params(v) for v in self.verifiers},
        }
        if self.reviser is not None:
            meta.update(reviser_id=self.reviser.model_id, reviser_params=self.reviser.n_params)
        if getattr(b, "served_model", None):
            # a served policy: its server, and the prefix-cache hit rate so far
            meta.update({k: v for k, v in b.metadata().items() if k not in meta or k == "device"})
        # what each served model's local folder was checked against (`ttc profile` warns when
        # neither its config nor its log-probs could be compared)
        served = [("policy", b), ("reviser", self.reviser)]
        served += [(v.verifier_id, getattr(v, "s", None)) for v in self.verifiers]
        checks = {
            name: m.info.check.as_dict()
            for name, m in served
            if getattr(getattr(m, "info", None), "check", None) is not None
        }
        if checks:
            meta["model_checks"] = checks
        return meta


def _backend(spec: ModelConfig, worker: int = 0) -> TransformersBackend:
    if spec.backend == "openai":
        from profiling.openai import open_backend

        return open_backend(
            _pick_url(str(spec.base_url), worker),
            str(spec.served_model),
            spec.model_config or spec.path,
            max_concurrency=spec.max_concurrency,
            timeout_s=spec.request_timeout,
            template=PromptTemplate(template=spec.template),
            step_delimiter=spec.step_delimiter,
            batch_size=spec.batch_size,
            dtype=spec.dtype,
        )
    return TransformersBackend.load(
        spec.path,
        device=spec.device,
        dtype=spec.dtype,
        batch_size=spec.batch_size,
        step_delimiter=spec.step_delimiter,
        trust_remote_code=spec.trust_remote_code,
        template=PromptTemplate(template=spec.template),
    )


def _verifier(v: VerifierSpec, model: ModelConfig, worker: int = 0) -> Verifier:
    common: dict[str, Any] = {"agg": v.agg, "mode": v.mode}
    if v.kind == "self":
        return SelfLikelihood(stat=v.stat, delimiter=model.step_delimiter, **common)
    path = str(v.path)
    common.update(
        delimiter=model.step_delimiter,
        batch_size=v.batch_size,
        template=v.template or model.template,
    )
    if v.name:
        common["name"] = v.name
    if v.base_url:
        from profiling.openai import open_verifier

        fmt = prm_format(path, v.format) if v.kind == "prm" else None
        if fmt not in (None, "step_tag", "token_class"):
            raise ValueError(
                f"verifier {path}: a served PRM is of the step_tag or token_class format"
            )
        keys = ("format", *_PRM_KEYS[fmt]) if fmt else ()
        extra = {k: getattr(v, k) for k in keys if getattr(v, k) is not None}
        if v.kind == "likelihood":
            extra["stat"] = v.stat
        url, served = _pick_url(v.base_url, worker), str(v.served_model)
        return open_verifier(v.kind, url, served, path, **extra, **common)
    if v.kind == "likelihood":
        return LikelihoodVerifier.load(path, stat=v.stat, **common)
    keys = ("format", *_PRM_KEYS.get(prm_format(path, v.format), ()))
    extra = {k: getattr(v, k) for k in keys if getattr(v, k) is not None}
    return load_prm(path, **extra, **common)


def _pick_url(urls: str, worker: int) -> str:
    """Worker `worker`'s server of a comma-separated list of URLs (replicas): workers 0, 1, ...
    go round the list in order, so N workers over N replicas use each once."""
    choices = [u.strip() for u in urls.split(",") if u.strip()]
    return choices[worker % len(choices)]


def _params(v: Verifier) -> int:
    s = getattr(v, "s", None)
    if getattr(s, "n_params", None) is not None:
        return int(s.n_params)
    model = getattr(s, "model", None)
    return 0 if model is None else int(sum(p.numel() for p in model.parameters()))


class UnitRunner:
    """Runs units with models loaded once; used in-process and inside each Ray worker."""

    def __init__(
        self, cfg: RunConfig, grader: str, threads: int | None = None, worker: int = 0
    ) -> None:
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        self.cfg = cfg
        self.grader = grader
        self.models = SweepModels(cfg, worker)
        self._seen = (0.0, 0.0)

    def metadata(self) -> dict[str, Any]:
        """The models' metadata; for a served policy also the prefix-cache tokens since the
        last call (`unit_prefix_cache_*`: a unit's, as every executor calls this after each
        unit), which the runner sums over every checkpoint, resumed ones included."""
        meta = self.models.metadata()
        if "prefix_cache_query_tokens" in meta:
            now = (meta["prefix_cache_hit_tokens"], meta["prefix_cache_query_tokens"])
            meta["unit_prefix_cache_hit_tokens"] = now[0] - self._seen[0]
            meta["unit_prefix_cache_query_tokens"] = now[1] - self._seen[1]
            self._seen = now
        return meta

    def run(self, unit: Unit, on_problem: Callable[[], None] | None = None) -> list[dict]:
        rows: list[dict] = []
        strategy = STRATEGIES[unit.strategy.name]
        # Revision chains are sampled by the reviser model; every other strategy by the policy.
        backend = self.models.reviser if strategy.kind == CHAINS else self.models.backend
        for problem in unit.problems:
            config = strategy_config(
                unit.strategy.name,
                unit.strategy.config,
                seed=unit_seed(self.cfg.seed, problem.problem_id, unit.strategy),
                grader=self.grader,
            )
            try:
                out = strategy.run([problem], backend, list(self.models.verifiers), config)
            except ValueError as exc:
                raise PlannerError(f"{unit.strategy.key} on {problem.problem_id}: {exc}") from None
            for r in out:
                r.pop("text", None)  # kept out of the tables and of the executors' pickles
                if not self.cfg.timing:
                    r["wall_s"] = math.nan
            rows += out
            if on_problem is not None:
                on_problem()
        return rows


class LocalExecutor:
    """Runs units one after another in this process; models load when it is made (before the
    run writes anything, so a model that fails to load leaves no trace)."""

    def __init__(self, cfg: RunConfig, grader: str) -> None:
        self.runner = UnitRunner(cfg, grader, threads=cfg.threads)

    def run(self, units: Sequence[Unit], save: SaveUnit, bar: Any) -> dict[str, Any]:
        meta = self.runner.metadata()
        for u in units:
            rows = self.runner.run(u, on_problem=lambda: bar.update(1))
            # read after the unit: a served policy's metadata holds its prefix-cache hit rate
            meta = self.runner.metadata()
            save(u, rows, meta)
        return meta

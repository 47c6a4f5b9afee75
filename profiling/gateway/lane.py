"""One lane of a batch through the engine's stages (probe, decide, run, pick), each stage
isolating its failures (see `profiling.gateway.engine`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from planner.policy import Decision, Policy
from planner.strategies import CHAINS, POOL, SEARCH, strategy_kind
from profiling.gateway import work
from profiling.gateway.asks import Ask, Failure, Reply
from profiling.gateway.choose import Pick, Spend, choose
from profiling.gateway.upstream import fails_every_request
from profiling.problems import Problem

if TYPE_CHECKING:
    from profiling.gateway.engine import Engine


def _parse(config: str) -> dict[str, Any]:
    return json.loads(config)


class Lane:
    """The requests of one lane through the stages, each stage isolating its failures."""

    def __init__(self, engine: Engine, policy: Policy, asks: list[Ask]) -> None:
        self.e = engine
        self.policy = policy
        self.asks = asks
        self.seed = int(asks[0].seed or 0)
        self.problems = [Problem(f"r{i}", a.prompt, "") for i, a in enumerate(asks)]
        self.prompts = [
            list(a.prompt_ids) if a.prompt_ids is not None else engine.backend.prompt_ids(p)
            for a, p in zip(asks, self.problems, strict=True)
        ]
        self.spends = [Spend() for _ in asks]
        self.failed: dict[int, Failure] = {}
        self.budgets = np.array([float(a.budget) for a in asks])
        self.need = np.asarray(policy.probes_needed(self.budgets), bool)
        self.probes: list[list[Pick]] = [[] for _ in asks]
        self.decisions: dict[int, Decision] = {}
        self.finals: dict[int, list[Pick]] = {}
        doc = policy.doc["probe"]
        self.k, self.pvid = int(doc["k"]), str(doc["verifier"])
        self.probe_cfg = engine.option("sample", doc["config"], self.k)
        self.reuse = bool(doc.get("reuse"))

    def alive(self, idx: Sequence[int]) -> list[int]:
        return [i for i in idx if i not in self.failed]

    def isolated(self, idx: list[int], stage: str, fn: Callable[[list[int]], None]) -> None:
        """fn(idx); if it raises, fn([i]) for each member; members that still raise fail."""
        if not idx:
            return
        try:
            fn(idx)
            return
        except Exception as exc:
            if len(idx) == 1 or fails_every_request(exc):
                for i in idx:
                    self.fail(i, exc, stage)
                return
        for i in idx:
            try:
                fn([i])
            except Exception as exc:
                self.fail(i, exc, stage)

    def fail(self, i: int, exc: BaseException, stage: str) -> None:
        self.failed[i] = Failure(exc, stage, self.spends[i], self.decisions.get(i))

    def by_cap(self, idx: Sequence[int]) -> dict[int | None, list[int]]:
        by: dict[int | None, list[int]] = {}
        for i in idx:
            by.setdefault(self.asks[i].max_tokens, []).append(i)
        return by

    # -- stages ----------------------------------------------------------------------------------
    def probe(self) -> None:
        def run(idx: list[int]) -> None:
            for cap, part in self.by_cap(idx).items():
                pools = self.draw(part, self.k, work.Sampler.of(self.probe_cfg, cap), probe=True)
                work.score(self.e.verifiers[self.pvid], pools, [self.spends[i] for i in part], True)
                for i, pool in zip(part, pools, strict=True):
                    self.probes[i] = pool

        self.isolated([i for i in range(len(self.asks)) if self.need[i]], "probe", run)

    def draw(self, idx: list[int], n: int, sampler: work.Sampler, probe: bool) -> list:
        return work.draw(
            self.e.backend,
            self.e.grader,
            [self.prompts[i] for i in idx],
            [self.problems[i] for i in idx],
            n,
            sampler,
            self.seed + (0 if probe else 1),
            [self.spends[i] for i in idx],
            probe,
        )

    def decide(self) -> None:
        def run(idx: list[int]) -> None:
            probed = [bool(self.need[i]) for i in idx]
            scores = answers = tokens = None
            if any(probed):
                rows = [self.probes[i] if p else [] for i, p in zip(idx, probed, strict=True)]
                scores = np.array(
                    [[q.scores[self.pvid] for q in r] or [0.0] * self.k for r in rows]
                )
                answers = _objects([[q.answer for q in r] or [None] * self.k for r in rows])
                tokens = np.array([[q.gen_tokens for q in r] or [0] * self.k for r in rows], float)
            got = self.policy.decide_many(scores, self.budgets[idx], answers, tokens)
            for j, i in enumerate(idx):
                self.decisions[i] = got.decision(j)

        self.isolated(self.alive(range(len(self.asks))), "decide", run)

    def execute(self) -> None:
        groups: dict[tuple, list[int]] = {}
        for i in self.alive(range(len(self.asks))):
            d = self.decisions[i]
            key = (d.strategy, d.config, d.option_budget, d.probe_reused, self.asks[i].max_tokens)
            groups.setdefault(key, []).append(i)
        for (strategy, config, budget, reused, cap), idx in sorted(
            groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])
        ):
            if strategy_kind(strategy) == POOL:
                fn = self.pool_fn(config, budget, reused, cap)
            else:
                fn = self.rows_fn(strategy, config, cap)
            self.isolated(idx, "strategy", fn)

    def pool_fn(self, config: str, budget: float, reused: bool, cap: int | None) -> Callable:
        cfg = self.e.option("sample", config, budget)
        sampler = work.Sampler.of(cfg, cap)
        same = sampler == work.Sampler.of(self.probe_cfg, cap)
        vid = str(_parse(config).get("verifier", "none"))

        def run(idx: list[int]) -> None:
            n = int(cfg.n)
            reuse = self.reuse and reused and same and all(self.probes[i] for i in idx)
            kept = min(n, self.k) if reuse else 0
            pools = [list(self.probes[i][:kept]) for i in idx]
            if n > kept:
                for j, extra in enumerate(self.draw(idx, n - kept, sampler, probe=False)):
                    pools[j] += extra
            verifier = self.e.verifiers.get(vid) if vid != "none" else None
            work.score(verifier, pools, [self.spends[i] for i in idx], False)
            for i, pool in zip(idx, pools, strict=True):
                self.finals[i] = pool

        return run

    def rows_fn(self, strategy: str, config: str, cap: int | None) -> Callable:
        cfg = _parse(config)
        run_cfg = self.e.run_config(strategy, config, self.seed, cap)
        guide = cfg.get("search_verifier") if strategy_kind(strategy) == SEARCH else None
        kind_backend = self.e.reviser if strategy_kind(strategy) == CHAINS else self.e.backend

        def run(idx: list[int]) -> None:
            got = work.strategy_rows(
                strategy,
                run_cfg,
                guide,
                str(cfg.get("verifier", "none")),
                kind_backend,
                self.e.verifiers,
                [self.problems[i] for i in idx],
                [self.spends[i] for i in idx],
            )
            for i, picks in zip(idx, got, strict=True):
                self.finals[i] = picks

        return run

    # -- answers ---------------------------------------------------------------------------------
    def replies(self) -> list[Reply | Failure]:
        out: list[Reply | Failure] = []
        probe_new = int(self.probe_cfg.max_new_tokens)
        for i, ask in enumerate(self.asks):
            if i in self.failed:
                out.append(self.failed[i])
                continue
            d = self.decisions[i]
            picks = self.finals.get(i) or []
            if not picks:
                out.append(Failure(ValueError("no candidates"), "strategy", self.spends[i], d))
                continue
            cfg = _parse(d.config)
            j = choose(picks, cfg.get("select", "weighted"), cfg.get("verifier", "none"),
                       cfg.get("agg", "last"))  # fmt: skip
            best = picks[j]
            probed = d.probe and bool(self.probes[i])
            measured = self.measured(d, probe_new if probed else 0)
            off = None
            if ask.max_tokens is not None and ask.max_tokens < measured:
                off = f"max_tokens {ask.max_tokens} < {measured}, the policy's max_new_tokens"
            pool = self.probes[i]
            out.append(
                Reply(
                    text=best.text if best.text is not None else (best.answer or ""),
                    answer=best.answer,
                    decision=d,
                    probe_scores=[float(q.scores[self.pvid]) for q in pool] if probed else None,
                    probe_answers=[q.answer for q in pool] if probed else None,
                    probe_tokens=[int(q.gen_tokens) for q in pool] if probed else None,
                    spend=self.spends[i],
                    finish_reason=best.finish,
                    off_policy=off,
                )
            )
        return out

    def measured(self, d: Decision, probe_new: int) -> int:
        """The longest generation the decision was measured with (its probes' included)."""
        opt = self.e.option(d.strategy, d.config, max(d.option_budget, 1))
        return max(int(opt.max_new_tokens), probe_new)


def _objects(rows: list[list[Any]]) -> np.ndarray:
    arr = np.empty((len(rows), len(rows[0]) if rows else 0), dtype=object)
    for i, r in enumerate(rows):
        arr[i, :] = r
    return arr

"""Applying a policy to prompts: probe, predict the bin, run the decided strategy, pick the answer.

`Engine.run(policy, asks)` answers a batch of requests that arrived together, sharing the model:

1. probe: k samples of every prompt with the policy's probe sampler, in one batched call, scored
   by the probe verifier (its own aggregation, the samples table's `score`, which the predictor's
   features were computed from);
2. decide: `Policy.decide_many` on the probe scores, answers and token counts;
3. run: requests with the same strategy, config and option budget run together. A pool
   (`sample`) draws the decided number of candidates, reusing the probes where the policy says
   so (same sampler: the first min(budget, k) candidates are the probes, as the plan charged
   them); a search or revision strategy runs through its registered function
   (`profiling.strategies.STRATEGIES`) on the batch of prompts;
4. pick: the decision's `select` over the candidates' verifier scores (`choose`).

Costs follow the `sample` strategy's accounting (each prompt's prefill once per drawn pool, each
generated token at its context length, the verifiers' metered FLOPs), so the FLOPs a request
reports compare with the policy's `total_flops`. Verifier tokens are counted as the prompt and
candidate tokens each scored candidate shows the verifier (in the policy's tokenizer).
The backend is injected: the in-process transformers backend or any other `Backend`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from planner.errors import PlannerError
from planner.policy import Decision, Policy
from planner.strategies import CHAINS, POOL, aggregate, strategy_kind
from profiling.backend import Backend
from profiling.flops import forward_flops
from profiling.gateway.choose import Pick, Spend, choose
from profiling.grading import get_grader
from profiling.problems import Problem
from profiling.strategies import STRATEGIES
from profiling.strategies.common import make_candidate
from profiling.verifiers import Verifier

# Keys of a decision's config that say how the answer is chosen, not how candidates are drawn.
SELECT_KEYS = ("select", "agg", "verifier")
# Keys the curves add to a revisions config (the run it was read from).
_RUN_KEYS = ("run_chains", "run_length")
_SAMPLER_KEYS = ("temperature", "top_p", "max_new_tokens")


@dataclass(frozen=True)
class Ask:
    """One request: the prompt text (before the model's template), the budget in the policy's
    unit, an optional cap on every generation's length, and a seed."""

    prompt: str
    budget: float
    max_tokens: int | None = None
    seed: int = 0


@dataclass
class Reply:
    """The answer to one request, the decision it ran and what it spent."""

    text: str
    answer: str | None
    decision: Decision
    probe_scores: list[float]
    probe_answers: list[str | None]
    probe_tokens: list[int]
    spend: Spend
    finish_reason: str


def _parse(config: str) -> dict[str, Any]:
    return json.loads(config)


def _base(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in SELECT_KEYS}


class Engine:
    """The model, verifiers and optional reviser that a policy's decisions run on."""

    def __init__(
        self,
        backend: Backend,
        verifiers: Sequence[Verifier],
        reviser: Backend | None = None,
        grader: str = "testbed",
    ) -> None:
        self.backend = backend
        self.verifiers = {v.verifier_id: v for v in verifiers}
        self.reviser = reviser
        self.grader = get_grader(grader)
        self.grader_name = grader

    # -- checks --------------------------------------------------------------------------------
    def check(self, policy: Policy) -> None:
        """Raise PlannerError unless every verifier and model the policy names is loaded."""
        doc = policy.doc
        known = ", ".join(sorted(self.verifiers)) or "none"
        wanted = {str(doc["probe"]["verifier"])}
        for dec in [*doc["decisions"], doc["fallback"]]:
            cfg = _parse(dec["config"])
            if cfg.get("verifier", "none") != "none":
                wanted.add(str(cfg["verifier"]))
            if strategy_kind(dec["strategy"]) == CHAINS and self.reviser is None:
                raise PlannerError(
                    f"{policy.source}: the policy runs revisions; start the gateway with a reviser"
                )
        missing = sorted(wanted - set(self.verifiers))
        if missing:
            raise PlannerError(
                f"{policy.source}: the policy needs verifier {missing[0]!r}, which the gateway "
                f"has not loaded (loaded: {known})"
            )
        if doc["probe"]["strategy"] != "sample" or not doc["probe"].get("config"):
            raise PlannerError(f"{policy.source}: field 'probe': needs a 'sample' probe config")

    # -- drawing pools -------------------------------------------------------------------------
    def _draw(
        self,
        prompts: list[list[int]],
        problems: list[Problem],
        n: int,
        sampler: dict[str, Any],
        seed: int,
        spends: list[Spend],
        probe: bool,
    ) -> list[list[Pick]]:
        """n candidates per prompt in one batched call, with their generation cost."""
        b = self.backend
        pools = b.sample(
            prompts,
            n,
            max_new_tokens=int(sampler["max_new_tokens"]),
            temperature=float(sampler["temperature"]),
            top_p=float(sampler.get("top_p", 1.0)),
            seed=seed,
        )
        out = []
        for prompt, problem, pool, spend in zip(prompts, problems, pools, spends, strict=True):
            plen = len(prompt)
            flops = forward_flops(b.shape, plen, 0, logits=1)
            picks = []
            for g in pool:
                m = len(g.token_ids)
                flops += forward_flops(b.shape, m - 1, plen) if m > 1 else 0.0
                cand = make_candidate(b, problem, g.token_ids, g.logprobs)
                finish = "length" if g.finish == "length" else "stop"
                answer = self.grader.extract_answer(cand.text)
                picks.append(
                    Pick(
                        cand.text,
                        answer,
                        gen_tokens=m,
                        finish=finish,
                        candidate=cand,
                        prompt_tokens=plen,
                    )
                )
            spend.prompt_tokens += plen
            if probe:
                spend.probe_tokens += sum(p.gen_tokens for p in picks)
                spend.probe_flops += flops
            else:
                spend.candidate_tokens += sum(p.gen_tokens for p in picks)
                spend.candidate_flops += flops
            out.append(picks)
        return out

    def _score(
        self, vid: str, picks: list[Pick], owners: list[int], spends: list[Spend], probe: bool
    ) -> None:
        """Score the candidates that lack `vid`'s score, in one call; charge each owner."""
        todo = [(p, o) for p, o in zip(picks, owners, strict=True) if vid not in p.scores]
        if not todo or vid == "none":
            return
        v = self.verifiers[vid]
        scored = v.score([p.candidate for p, _ in todo])
        for (p, o), s in zip(todo, scored, strict=True):
            p.steps[vid] = [float(x) for x in s.step_scores]
            p.scores[vid] = aggregate(p.steps[vid], v.agg)
            spends[o].verifier_tokens += p.prompt_tokens + p.gen_tokens
            if probe:
                spends[o].probe_flops += float(s.flops)
            else:
                spends[o].verifier_flops += float(s.flops)

    # -- one batch -----------------------------------------------------------------------------
    def run(self, policy: Policy, asks: Sequence[Ask]) -> list[Reply]:
        """Answer a batch of requests with `policy` (see the module docstring)."""
        if not asks:
            return []
        probe_doc = policy.doc["probe"]
        k, pvid = int(probe_doc["k"]), str(probe_doc["verifier"])
        probe_cfg = _base(_parse(probe_doc["config"]))
        problems = [Problem(f"r{i}", a.prompt, "") for i, a in enumerate(asks)]
        prompts = [list(self.backend.prompt_ids(p)) for p in problems]
        spends = [Spend() for _ in asks]
        seed = int(asks[0].seed)
        # Requests with different length caps cannot share a sampling call.
        probes: list[list[Pick]] = [[] for _ in asks]
        for idx, sampler in self._by_sampler(asks, probe_cfg, range(len(asks))).items():
            pools = self._draw(
                [prompts[i] for i in idx],
                [problems[i] for i in idx],
                k,
                dict(sampler),
                seed,
                [spends[i] for i in idx],
                probe=True,
            )
            for i, pool in zip(idx, pools, strict=True):
                probes[i] = pool
        flat = [p for pool in probes for p in pool]
        owners = [i for i, pool in enumerate(probes) for _ in pool]
        self._score(pvid, flat, owners, spends, probe=True)
        scores = [[p.scores[pvid] for p in pool] for pool in probes]
        answers = [[p.answer for p in pool] for pool in probes]
        tokens = [[p.gen_tokens for p in pool] for pool in probes]
        decisions = policy.decide_many(scores, [a.budget for a in asks], _objects(answers), tokens)
        groups: dict[tuple[str, str, float, bool], list[int]] = {}
        for i in range(len(asks)):
            d = decisions.decision(i)
            key = (d.strategy, d.config, d.option_budget, d.probe_reused)
            groups.setdefault(key, []).append(i)
        finals: list[list[Pick]] = [[] for _ in asks]
        for (strategy, config, budget, reused), idx in sorted(groups.items()):
            cfg = _parse(config)
            if strategy_kind(strategy) == POOL:
                reuse = bool(probe_doc.get("reuse")) and _base(cfg) == probe_cfg
                got = self._pool(
                    [asks[i] for i in idx],
                    [problems[i] for i in idx],
                    [prompts[i] for i in idx],
                    [probes[i] for i in idx],
                    [spends[i] for i in idx],
                    cfg,
                    budget,
                    reuse and reused,
                    seed,
                )
            else:
                got = self._rows(
                    strategy, cfg, [problems[i] for i in idx], [spends[i] for i in idx], seed
                )
            for i, picks in zip(idx, got, strict=True):
                finals[i] = picks
        replies = []
        for i in range(len(asks)):
            d = decisions.decision(i)
            cfg = _parse(d.config)
            picks = finals[i]
            j = choose(
                picks,
                cfg.get("select", "weighted"),
                cfg.get("verifier", "none"),
                cfg.get("agg", "last"),
            )
            best = picks[j]
            replies.append(
                Reply(
                    text=best.text if best.text is not None else (best.answer or ""),
                    answer=best.answer,
                    decision=d,
                    probe_scores=[float(s) for s in scores[i]],
                    probe_answers=list(answers[i]),
                    probe_tokens=[int(t) for t in tokens[i]],
                    spend=spends[i],
                    finish_reason=best.finish,
                )
            )
        return replies

    @staticmethod
    def _by_sampler(
        asks: Sequence[Ask], cfg: dict[str, Any], idx: Sequence[int]
    ) -> dict[tuple[int, ...], tuple[tuple[str, Any], ...]]:
        """Request indices grouped by their sampler (the config, its length capped per request)."""
        by: dict[tuple[tuple[str, Any], ...], list[int]] = {}
        for i in idx:
            s = {k: cfg[k] for k in _SAMPLER_KEYS if k in cfg}
            s.setdefault("temperature", 1.0)
            s.setdefault("max_new_tokens", 256)
            if asks[i].max_tokens is not None:
                s["max_new_tokens"] = min(int(s["max_new_tokens"]), int(asks[i].max_tokens))
            by.setdefault(tuple(sorted(s.items())), []).append(i)
        return {tuple(v): key for key, v in by.items()}

    def _pool(
        self,
        asks: list[Ask],
        problems: list[Problem],
        prompts: list[list[int]],
        probes: list[list[Pick]],
        spends: list[Spend],
        cfg: dict[str, Any],
        budget: float,
        reuse: bool,
        seed: int,
    ) -> list[list[Pick]]:
        n = max(1, round(budget))
        k = len(probes[0]) if probes else 0
        kept = min(n, k) if reuse else 0
        out = [list(p[:kept]) for p in probes]
        extra = n - kept
        if extra > 0:
            for idx, sampler in self._by_sampler(asks, cfg, range(len(asks))).items():
                pools = self._draw(
                    [prompts[i] for i in idx],
                    [problems[i] for i in idx],
                    extra,
                    dict(sampler),
                    seed + 1,
                    [spends[i] for i in idx],
                    probe=False,
                )
                for i, pool in zip(idx, pools, strict=True):
                    out[i] += pool
        vid = str(cfg.get("verifier", "none"))
        flat = [p for pool in out for p in pool]
        owners = [i for i, pool in enumerate(out) for _ in pool]
        self._score(vid, flat, owners, spends, probe=False)
        return out

    def _rows(
        self,
        strategy: str,
        cfg: dict[str, Any],
        problems: list[Problem],
        spends: list[Spend],
        seed: int,
    ) -> list[list[Pick]]:
        """A search or revision strategy through its registered function: rows become picks."""
        vid = str(cfg.get("verifier", "none"))
        run_cfg = {k: v for k, v in _base(cfg).items() if k not in _RUN_KEYS}
        run_cfg.update(seed=seed, grader=self.grader_name)
        backend = self.reviser if strategy_kind(strategy) == CHAINS else self.backend
        verifiers = [] if vid == "none" else [self.verifiers[vid]]
        try:
            rows = STRATEGIES[strategy].run(problems, backend, verifiers, run_cfg)
        except ValueError as exc:
            raise PlannerError(f"{strategy} {json.dumps(cfg)}: {exc}") from None
        pos = {p.problem_id: i for i, p in enumerate(problems)}
        out: list[list[Pick]] = [[] for _ in problems]
        for r in rows:
            i = pos[r["problem_id"]]
            pick = Pick(r.get("text"), r["answer"], gen_tokens=int(r["gen_tokens"]))
            pick.steps[vid] = list(r["step_scores"])
            pick.scores[vid] = float(r["score"])
            out[i].append(pick)
            s = spends[i]
            s.prompt_tokens += int(r["prompt_tokens"])
            s.candidate_tokens += int(r["gen_tokens"])
            s.candidate_flops += float(r["gen_flops"])
            s.verifier_flops += float(r["verifier_flops"])
            if vid != "none":
                s.verifier_tokens += int(r["prompt_tokens"]) + int(r["gen_tokens"])
        return out


def _objects(rows: list[list[Any]]) -> Any:
    import numpy as np

    arr = np.empty((len(rows), len(rows[0]) if rows else 0), dtype=object)
    for i, r in enumerate(rows):
        arr[i, :] = r
    return arr

"""Applying a policy to prompts: probe, predict the bin, run the decided strategy, pick the answer.

`Engine.run(policy, asks)` answers a batch of requests that arrived together, sharing the model:

1. lanes: a request with a `seed` runs in model calls of its own (its randomness and the shapes
   of its forwards are its alone, so its answer does not depend on what it is batched with);
   requests without one share their calls;
2. probe, for requests whose budget needs the probes (`Policy.probes_needed`): k samples of every
   prompt with the policy's probe sampler, scored by the probe verifier (its own aggregation, the
   samples table's `score`, which the predictor's features were computed from);
3. decide: `Policy.decide_many` on the probe scores, answers and token counts;
4. run: requests with the same decision and length cap run together. Every decision's config
   becomes the strategy's through the harness's one translation
   (`profiling.strategies.strategy_config`). A pool (`sample`) draws the decided number of
   candidates, reusing the probes where the policy says so (same sampler: the first
   min(budget, k) candidates are the probes, as the plan charged them); a search or revision
   strategy runs through its registered function (`profiling.gateway.work`);
5. pick: the decision's `select` over the candidates' verifier scores (`choose`).

Failures stay with their request: a stage that raises for a group is run again for each member
alone, and a request whose own work raises gets a `Failure` (the error, what it spent, the
decision if one was made) while its batch-mates get their replies. An upstream server that
cannot be reached fails the group at once (a retry would wait out the same time-out again).
The backend is injected: the in-process transformers backend or any other `Backend`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from planner.errors import PlannerError
from planner.policy import Policy
from planner.strategies import CHAINS, strategy_kind
from profiling.backend import Backend
from profiling.gateway.asks import Ask, Failure, Reply
from profiling.gateway.lane import Lane
from profiling.grading import get_grader
from profiling.problems import Problem
from profiling.strategies import STRATEGIES, strategy_config
from profiling.verifiers import Verifier


def _parse(config: str) -> dict[str, Any]:
    return json.loads(config)


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
        self._max_chars: int | None = None

    # -- translation (the harness's) -------------------------------------------------------------
    def option(self, strategy: str, config: str, budget: float) -> Any:
        """A decision's strategy config (the config class's instance, defaults filled in): a
        pool option read at `budget` draws that many candidates."""
        cfg = strategy_config(
            strategy, _parse(config), seed=0, grader=self.grader_name, budget=budget
        )
        return STRATEGIES[strategy].config(**cfg)

    def run_config(self, strategy: str, config: str, seed: int, cap: int | None) -> dict:
        """A search or revision option's strategy config, its lengths capped by the request."""
        cfg = strategy_config(strategy, _parse(config), seed=seed, grader=self.grader_name)
        if cap is not None:
            full = STRATEGIES[strategy].config(**cfg)
            for key in ("max_new_tokens", "max_step_tokens"):
                if hasattr(full, key):
                    cfg[key] = min(int(getattr(full, key)), int(cap))
        return cfg

    # -- checks ----------------------------------------------------------------------------------
    def check(self, policy: Policy) -> None:
        """Raise PlannerError unless every decision's config makes a strategy config and every
        verifier and model the policy names is loaded."""
        doc = policy.doc
        if doc["probe"]["strategy"] != "sample" or not doc["probe"].get("config"):
            raise PlannerError(f"{policy.source}: field 'probe': needs a 'sample' probe config")
        wanted = {str(doc["probe"]["verifier"])}
        self._check_option(policy, "probe", "sample", doc["probe"]["config"], doc["probe"]["k"])
        for dec in [*doc["decisions"], doc["fallback"]]:
            where = "fallback" if dec is doc["fallback"] else (
                f"decision bin {dec.get('bin')} budget {dec.get('budget')}")  # fmt: skip
            cfg = _parse(dec["config"])
            for key in ("verifier", "search_verifier"):
                if cfg.get(key, "none") != "none":
                    wanted.add(str(cfg[key]))
            if strategy_kind(dec["strategy"]) == CHAINS and self.reviser is None:
                raise PlannerError(
                    f"{policy.source}: the policy runs revisions; start the gateway with a reviser"
                )
            self._check_option(policy, where, dec["strategy"], dec["config"], dec["option_budget"])
        missing = sorted(wanted - set(self.verifiers))
        if missing:
            known = ", ".join(sorted(self.verifiers)) or "none"
            raise PlannerError(
                f"{policy.source}: the policy needs verifier {missing[0]!r}, which the gateway "
                f"has not loaded (loaded: {known})"
            )

    def _check_option(
        self, policy: Policy, where: str, strategy: str, config: str, budget: float
    ) -> None:
        try:
            self.option(strategy, config, float(budget))
        except (ValueError, TypeError) as exc:
            raise PlannerError(
                f"{policy.source}: {where}: {strategy} config {config} is not one the strategy "
                f"runs: {exc}"
            ) from None

    # -- limits ----------------------------------------------------------------------------------
    def prompt_ids(self, prompt: str) -> list[int]:
        """The prompt's token ids as the policy model sees them (its template applied)."""
        return list(self.backend.prompt_ids(Problem("request", prompt, "")))

    def max_token_chars(self) -> int:
        """The most characters one token of the policy's tokenizer spells (its special tokens
        aside): a prompt of c characters has at least c // this many tokens."""
        if self._max_chars is None:
            tok = self.backend.tokenizer
            special = set(getattr(tok, "all_special_tokens", ()))
            self._max_chars = max((len(t) for t in tok.get_vocab() if t not in special), default=1)
        return self._max_chars

    def room(self, policy: Policy) -> list[int]:
        """Prompt tokens allowed at each policy budget (the last entry: the fallback): the
        smallest context of the models a decision there uses, minus the most tokens it
        generates after the prompt (a revision prompt also holds `window` earlier attempts)."""
        doc = policy.doc
        probe_new = int(self.option("sample", doc["probe"]["config"], 1).max_new_tokens)
        slots: dict[float, list[dict]] = {float(b): [] for b in doc["budgets"]}
        for dec in doc["decisions"]:
            slots[float(dec["budget"])].append(dec)
        out = []
        for decs in [*slots.values(), [doc["fallback"]]]:
            left = []
            for dec in decs:
                kind = strategy_kind(dec["strategy"])
                opt = self.option(dec["strategy"], dec["config"], max(dec["option_budget"], 1))
                new = int(opt.max_new_tokens) * (int(opt.window) + 1 if kind == CHAINS else 1)
                models = [self.reviser if kind == CHAINS else self.backend]
                models.append(self.verifiers.get(_parse(dec["config"]).get("verifier", "none")))
                if dec.get("probe", True):
                    new = max(new, probe_new)
                    models.append(self.verifiers.get(str(doc["probe"]["verifier"])))
                ctx = min((p for p in map(_positions, models) if p), default=1 << 30)
                left.append(ctx - new)
            out.append(min(left))
        return out

    # -- one batch -------------------------------------------------------------------------------
    def run(self, policy: Policy, asks: Sequence[Ask]) -> list[Reply | Failure]:
        """Answer a batch of requests with `policy` (see the module docstring)."""
        out: list[Reply | Failure | None] = [None] * len(asks)
        shared = [i for i, a in enumerate(asks) if a.seed is None]
        lanes = [[i] for i, a in enumerate(asks) if a.seed is not None]
        for idx in ([shared] if shared else []) + lanes:
            for i, r in zip(idx, self._lane(policy, [asks[i] for i in idx]), strict=True):
                out[i] = r
        return [r for r in out if r is not None]  # every index was filled

    def _lane(self, policy: Policy, asks: list[Ask]) -> list[Reply | Failure]:
        lane = Lane(self, policy, asks)
        lane.probe()
        lane.decide()
        lane.execute()
        return lane.replies()


def _positions(model: Any) -> int | None:
    """A model's context in tokens: a served model's max_model_len, else its config's positions."""
    if model is None:
        return None
    n = getattr(model, "max_model_len", None)
    if not n:
        n = getattr(
            getattr(getattr(model, "model", None), "config", None), "max_position_embeddings", None
        )
    return int(n) if n else None

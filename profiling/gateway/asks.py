"""What the engine is asked and what it answers: one request (`Ask`), its answer (`Reply`), or
the failure of its own work (`Failure`)."""

from __future__ import annotations

from dataclasses import dataclass

from planner.policy import Decision
from profiling.gateway.choose import Spend


@dataclass(frozen=True)
class Ask:
    """One request: the prompt text (before the model's template), the budget in the policy's
    unit, an optional cap on every generation's length, an optional seed, and the prompt's token
    ids when the caller has them already (the gateway's context check made them)."""

    prompt: str
    budget: float
    max_tokens: int | None = None
    seed: int | None = None
    prompt_ids: tuple[int, ...] | None = None


@dataclass
class Reply:
    """The answer to one request, the decision it ran and what it spent. The probe fields are
    None where the decision needed no probes; `off_policy` says why the request left the
    conditions the promise was measured under (None: it did not)."""

    text: str
    answer: str | None
    decision: Decision
    probe_scores: list[float] | None
    probe_answers: list[str | None] | None
    probe_tokens: list[int] | None
    spend: Spend
    finish_reason: str
    off_policy: str | None = None


@dataclass
class Failure:
    """A request whose work raised: the error, the stage (`probe`, `decide`, `strategy`), what
    it had spent, and its decision where one was made."""

    error: BaseException
    stage: str
    spend: Spend
    decision: Decision | None = None

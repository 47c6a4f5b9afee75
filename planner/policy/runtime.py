"""The policy runtime: decide what to run for a prompt from a loaded policy (numpy only).

A serving router draws k probe samples of the prompt, scores them with the policy's verifier and
calls `Policy.decide(scores, budget)`. The policy predicts the prompt's difficulty bin from the
probes (the same features and arithmetic as `planner.features`) and returns the strategy
and config that the plan chose for that bin at that budget, with the expected accuracy (and its
confidence interval) and the expected cost.

Budgets: the decision is the one at the **largest policy budget <= the requested budget** (a
router never spends more than it was given). At some budgets the plan found that probing does not
repay its k generations: there every bin's decision is the same option with `probe` false, and a
router asks `Policy.probes_needed(budget)` first and runs that option without probing (the
decision's bin is then None, -1 in `Decisions.bin`). A budget below the smallest policy budget
gets the policy's `fallback` decision, marked `fallback=True`. Budgets are in the policy's
`budget_unit` (generations per prompt, or FLOPs per prompt), probes included when the policy
charges them. With FLOPs, a policy budget is the plan's: an option's mean FLOPs over all
problems, so a hard bin (longer generations) may expect more FLOPs than the budget;
`total_flops` says how much.

The file is read and checked once, at load (`planner.policy.file`), so `decide` can stay fast.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from planner.errors import PlannerError
from planner.features import features_from_probes, linear_proba
from planner.policy.file import dumps_policy, read_policy, validate_policy

_DECISION_FIELDS = (
    "option_budget",
    "accuracy",
    "ci_lo",
    "ci_hi",
    "flops",
    "tokens",
    "total_generations",
    "total_flops",
    "total_tokens",
)


@dataclass(frozen=True)
class Decision:
    """What to run for one prompt. `budget` is the policy budget used (<= the requested one);
    `probe` whether the decision needed the probes (False: `bin` is None, nothing was predicted)."""

    bin: int | None
    budget: float
    strategy: str
    config: str
    option_budget: float
    accuracy: float
    ci_lo: float
    ci_hi: float
    flops: float
    tokens: float
    total_generations: float
    total_flops: float
    total_tokens: float
    probe_reused: bool
    fallback: bool
    probe: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Decisions:
    """Vectorised decisions: row i answers request i. `index` points into `Policy.table`;
    `bin` is -1 where the decision needs no probes (`probe` False)."""

    policy: Policy
    bin: np.ndarray
    budget: np.ndarray
    index: np.ndarray
    fallback: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def column(self, name: str) -> np.ndarray:
        return self.policy.table[name][self.index]

    @property
    def probe(self) -> np.ndarray:
        """Whether each row's decision needed the probes."""
        return self.policy.table["probe"][self.index]

    def decision(self, i: int) -> Decision:
        b = int(self.bin[i])
        return self.policy._decision(
            int(self.index[i]), None if b < 0 else b, float(self.budget[i]), bool(self.fallback[i])
        )


class Policy:
    """A loaded, validated policy. Build with `Policy.load(path)` or `Policy.from_dict(doc)`."""

    def __init__(self, doc: dict[str, Any], source: str = "policy") -> None:
        validate_policy(doc, source)
        self.doc = doc
        self.source = source
        pred = doc["predictor"]
        self.k = int(doc["probe"]["k"])
        self.features: tuple[str, ...] = tuple(pred["features"])
        self.model = pred["model"]
        self.classes = np.asarray(pred["classes"], dtype=np.int64)
        self.mean = np.asarray(pred["mean"], float)
        self.scale = np.asarray(pred["scale"], float)
        self.coef = np.asarray(pred["coef"], float)
        self.intercept = np.asarray(pred["intercept"], float)
        self.bins = np.asarray(doc["bins"], dtype=np.int64)
        self.budgets = np.asarray(doc["budgets"], float)
        self.unit = doc["budget_unit"]
        n_bins, n_bud = len(self.bins), len(self.budgets)
        # Dense lookup: row = bin_index * n_budgets + budget_index; the fallback is the last row.
        rows: list[dict[str, Any]] = [{}] * (n_bins * n_bud)
        bin_pos = {int(b): i for i, b in enumerate(self.bins)}
        bud_pos = {float(t): j for j, t in enumerate(self.budgets)}
        for dec in doc["decisions"]:
            rows[bin_pos[dec["bin"]] * n_bud + bud_pos[float(dec["budget"])]] = dec
        rows.append(doc["fallback"])
        self.fallback_index = len(rows) - 1
        self.table: dict[str, np.ndarray] = {
            "strategy": np.array([r["strategy"] for r in rows], dtype=object),
            "config": np.array([r["config"] for r in rows], dtype=object),
            "probe_reused": np.array([bool(r["probe_reused"]) for r in rows]),
            # Files written before decisions could skip the probes have no field: they probe.
            "probe": np.array([bool(r.get("probe", True)) for r in rows]),
        }
        for f in _DECISION_FIELDS:
            self.table[f] = np.array([float(r[f]) for r in rows])
        # Class index -> bin index (the classes are the bins, possibly in another order).
        self._class_to_bin = np.array([bin_pos[int(c)] for c in self.classes], dtype=np.int64)

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        return cls(read_policy(path), str(Path(path)))

    @classmethod
    def from_dict(cls, doc: dict[str, Any], source: str = "policy") -> Policy:
        return cls(doc, source)

    def dumps(self) -> str:
        return dumps_policy(self.doc)

    # -- deciding ------------------------------------------------------------------------------
    def predict_bins(
        self,
        scores: np.ndarray,
        answers: np.ndarray | None = None,
        gen_tokens: np.ndarray | None = None,
    ) -> np.ndarray:
        """Difficulty bin (1 = easiest) per request from probe arrays [n, k]."""
        return self.bins[self._bin_index(scores, answers, gen_tokens)]

    def bin_probabilities(
        self,
        scores: np.ndarray,
        answers: np.ndarray | None = None,
        gen_tokens: np.ndarray | None = None,
    ) -> np.ndarray:
        x = self._features(scores, answers, gen_tokens)
        if len(self.classes) == 1:
            return np.ones((x.shape[0], 1))
        return linear_proba(self.model, (x - self.mean) / self.scale, self.coef, self.intercept)

    def _features(self, scores: Any, answers: Any, gen_tokens: Any) -> np.ndarray:
        s = np.asarray(scores, dtype=float)
        if s.ndim == 1:
            s = s[None, :]
        if s.ndim != 2 or s.shape[1] != self.k:
            raise PlannerError(
                f"{self.source}: the policy needs exactly k={self.k} probe scores per request, "
                f"got shape {tuple(np.shape(scores))}"
            )
        return features_from_probes(s, answers, gen_tokens, self.features)

    def _bin_index(self, scores: Any, answers: Any, gen_tokens: Any) -> np.ndarray:
        p = self.bin_probabilities(scores, answers, gen_tokens)
        return self._class_to_bin[np.argmax(p, axis=1)]

    def budget_index(self, budget: Any) -> np.ndarray:
        """Index of the largest policy budget <= each requested budget (-1 when below all)."""
        b = np.atleast_1d(np.asarray(budget, dtype=float))
        if not np.isfinite(b).all() or (b < 0).any():
            raise PlannerError(f"budget must be a finite number >= 0, got {budget!r}")
        # A small relative tolerance so that a budget equal to a policy budget up to rounding
        # counts.
        return np.searchsorted(self.budgets, b * (1 + 1e-9), side="right") - 1

    def probes_needed(self, budgets: Any) -> np.ndarray:
        """[n] bool: whether the decision at each requested budget needs the k probes (False at
        budgets where the plan runs one option for every prompt, and below the smallest policy
        budget when the fallback says so)."""
        ti = self.budget_index(budgets)
        # Every bin's decision at a budget agrees on `probe` (checked at load): read bin 0's.
        return self.table["probe"][np.where(ti < 0, self.fallback_index, np.maximum(ti, 0))]

    def decide_many(
        self, probe_scores: Any, budgets: Any, answers: Any = None, gen_tokens: Any = None
    ) -> Decisions:
        """Vectorised decisions for n requests: probe arrays [n, k], budgets scalar or [n].

        Rows whose budget needs no probes (`probes_needed`) ignore their probe inputs (any finite
        values will do); `probe_scores` None is allowed when no requested budget needs them.
        """
        if probe_scores is None:
            ti = self.budget_index(budgets)
            need = self.probes_needed(budgets)
            if need.any():
                raise PlannerError(
                    f"{self.source}: the decision at budget "
                    f"{float(np.atleast_1d(np.asarray(budgets, float))[int(np.argmax(need))]):g} "
                    f"needs k={self.k} probe scores"
                )
            bi = np.zeros(len(ti), dtype=np.int64)
        else:
            bi = self._bin_index(probe_scores, answers, gen_tokens)
            ti = self.budget_index(budgets)
        n = len(bi)
        if len(ti) == 1 and n != 1:
            ti = np.broadcast_to(ti, (n,))
        elif len(ti) != n:
            raise PlannerError(f"{n} requests but {len(ti)} budgets")
        below = ti < 0
        index = np.where(below, self.fallback_index, bi * len(self.budgets) + np.maximum(ti, 0))
        probed = self.table["probe"][index]
        # An unprobed decision is the same in every bin: take bin 0's row, predict nothing.
        index = np.where(below | probed, index, np.maximum(ti, 0))
        used = np.where(
            below,
            self.table["total_generations"][self.fallback_index]
            if self.unit == "generations"
            else self.table["total_flops"][self.fallback_index],
            self.budgets[np.maximum(ti, 0)],
        )
        return Decisions(self, np.where(probed, self.bins[bi], -1), used, index, below)

    def decide(
        self, probe_scores: Any, budget: float, answers: Any = None, gen_tokens: Any = None
    ) -> Decision:
        """The decision for one prompt from its k probe scores (and answers / token counts when the
        predictor uses agreement / generated tokens). `probe_scores` None: a budget whose
        decision needs no probes (`probes_needed`)."""
        if probe_scores is None:
            if not isinstance(budget, int | float | np.number) or isinstance(budget, bool):
                raise PlannerError(f"budget must be a number, got {budget!r}")
            return self.decide_many(None, float(budget)).decision(0)
        s = np.asarray(probe_scores, dtype=float)
        if s.ndim != 1:
            raise PlannerError(
                "decide takes one request's probe scores (a flat list); use decide_many for a batch"
            )
        if (
            not isinstance(budget, int | float | np.number)
            or isinstance(budget, bool)
            or math.isnan(float(budget))
        ):
            raise PlannerError(f"budget must be a number, got {budget!r}")
        a = None if answers is None else np.asarray([list(answers)], dtype=object)
        t = None if gen_tokens is None else np.asarray([list(gen_tokens)], dtype=float)
        return self.decide_many(s[None, :], float(budget), a, t).decision(0)

    def _decision(self, idx: int, bin_label: int | None, budget: float, fallback: bool) -> Decision:
        tab = self.table
        return Decision(
            bin=bin_label,
            budget=budget,
            strategy=str(tab["strategy"][idx]),
            config=str(tab["config"][idx]),
            **{f: float(tab[f][idx]) for f in _DECISION_FIELDS},
            probe_reused=bool(tab["probe_reused"][idx]),
            fallback=fallback,
            probe=bool(tab["probe"][idx]),
        )

    def needs(self) -> list[str]:
        """Which probe inputs decide needs beyond the scores."""
        return [f for f in ("agreement", "gen_tokens") if f in self.features]

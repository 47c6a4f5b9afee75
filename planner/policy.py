"""The policy runtime: load a policy file and decide what to run for a prompt (numpy only).

A serving router draws k probe samples of the prompt, scores them with the policy's verifier and
calls `Policy.decide(scores, budget)`. The policy predicts the prompt's difficulty bin from the
probes (the same features and arithmetic as `planner.features`) and returns the strategy and
config that the plan chose for that bin at that budget, with the expected accuracy (and its
confidence interval) and the expected cost.

Budgets: the decision is the one at the **largest policy budget <= the requested budget** (a
router never spends more than it was given). A budget below the smallest policy budget gets the
policy's `fallback` decision, marked `fallback=True`. Budgets are in the policy's `budget_unit`
(generations per prompt, or FLOPs per prompt), probes included when the policy charges them.
With FLOPs, a policy budget is the plan's: an option's mean FLOPs over all problems, so a hard
bin (longer generations) may expect more FLOPs than the budget; `total_flops` says how much.

Loading executes no code (plain JSON, never pickle) and checks everything once, so `decide` can
stay fast: the JSON Schema shipped as `planner/policy_schema.json` (unknown fields are rejected,
not ignored: a field this version does not understand may change what a decision means), then
the cross-field rules (every bin x budget present once, known strategies and selections, CI
around the accuracy, predictor shapes matching its feature list, increasing thresholds). Any
violation is one `PlannerError` naming the file and the field.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from planner.errors import PlannerError
from planner.features import FEATURES, features_from_probes, linear_proba
from planner.strategies import DEPLOYABLE_SELECTS, STRATEGY_KINDS

POLICY_SCHEMA_VERSION = 1
POLICY_KIND = "ttc-policy"
_DECISION_FIELDS = ("option_budget", "accuracy", "ci_lo", "ci_hi", "flops", "tokens", "total_generations",
                    "total_flops", "total_tokens")


@cache
def policy_schema() -> dict[str, Any]:
    text = resources.files("planner").joinpath("policy_schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} (NaN and Infinity are not allowed)")


def dumps_policy(policy: dict[str, Any]) -> str:
    """The one byte spelling of a policy: sorted keys, two-space indent, trailing newline."""
    return json.dumps(policy, sort_keys=True, indent=2, allow_nan=False, ensure_ascii=True) + "\n"


def _fmt_path(path: Any) -> str:
    return "/".join(str(p) for p in path) or "(top level)"


def validate_policy(doc: Any, source: str = "policy") -> None:
    """Raise PlannerError unless `doc` is a valid policy document (schema + cross-field rules)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(policy_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        e = errors[0]
        if isinstance(doc, dict) and "schema_version" in doc and doc.get("schema_version") != POLICY_SCHEMA_VERSION:
            raise PlannerError(f"{source}: field 'schema_version': unsupported version {doc.get('schema_version')!r} "
                               f"(this ttc reads version {POLICY_SCHEMA_VERSION})")
        raise PlannerError(f"{source}: field '{_fmt_path(e.absolute_path)}': {e.message[:300]}")
    _check_semantics(doc, source)


def _check_decision(d: dict[str, Any], where: str, source: str) -> None:
    if d["strategy"] not in STRATEGY_KINDS:
        raise PlannerError(f"{source}: field '{where}/strategy': unknown strategy {d['strategy']!r} "
                           f"(known: {', '.join(sorted(STRATEGY_KINDS))})")
    try:
        cfg = json.loads(d["config"], parse_constant=_reject_constant)
    except ValueError as exc:
        raise PlannerError(f"{source}: field '{where}/config': not JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise PlannerError(f"{source}: field '{where}/config': must be a JSON object")
    if cfg.get("select", "weighted") not in DEPLOYABLE_SELECTS:
        raise PlannerError(f"{source}: field '{where}/config': select {cfg.get('select')!r} is not deployable "
                           f"(use one of {', '.join(DEPLOYABLE_SELECTS)})")
    if not d["ci_lo"] - 1e-9 <= d["accuracy"] <= d["ci_hi"] + 1e-9:
        raise PlannerError(f"{source}: field '{where}/accuracy': {d['accuracy']} outside its interval "
                           f"[{d['ci_lo']}, {d['ci_hi']}]")


def _check_semantics(doc: dict[str, Any], source: str) -> None:
    pred = doc["predictor"]
    d = len(pred["features"])
    for name in ("mean", "scale"):
        if len(pred[name]) != d:
            raise PlannerError(f"{source}: field 'predictor/{name}': {len(pred[name])} values for {d} features")
    k = len(pred["classes"])
    coef = pred["coef"]
    if pred["model"] == "ordinal":
        if any(isinstance(c, list) for c in coef) or len(coef) != d:
            raise PlannerError(f"{source}: field 'predictor/coef': the ordinal model needs {d} numbers (one per feature)")
        if len(pred["intercept"]) != max(k - 1, 0):
            raise PlannerError(f"{source}: field 'predictor/intercept': {len(pred['intercept'])} thresholds for {k} classes")
        if any(b <= a for a, b in zip(pred["intercept"], pred["intercept"][1:], strict=False)):
            raise PlannerError(f"{source}: field 'predictor/intercept': thresholds must increase")
    else:
        if len(coef) != k or any(not isinstance(row, list) or len(row) != d for row in coef):
            raise PlannerError(f"{source}: field 'predictor/coef': the multinomial model needs {k} rows of {d} numbers")
        if len(pred["intercept"]) != k:
            raise PlannerError(f"{source}: field 'predictor/intercept': {len(pred['intercept'])} values for {k} classes")
    if sorted(pred["classes"]) != sorted(doc["bins"]):
        raise PlannerError(f"{source}: field 'bins': {doc['bins']} differ from the predictor's classes {pred['classes']}")
    if list(doc["bins"]) != sorted(doc["bins"]) or list(doc["budgets"]) != sorted(doc["budgets"]):
        raise PlannerError(f"{source}: fields 'bins' and 'budgets' must be sorted ascending")
    seen: dict[tuple[int, float], int] = {}
    for i, dec in enumerate(doc["decisions"]):
        key = (dec["bin"], float(dec["budget"]))
        if key[0] not in doc["bins"] or key[1] not in doc["budgets"]:
            raise PlannerError(f"{source}: field 'decisions/{i}': bin {key[0]} / budget {key[1]:g} not in 'bins'/'budgets'")
        if key in seen:
            raise PlannerError(f"{source}: field 'decisions/{i}': bin {key[0]} budget {key[1]:g} given twice")
        seen[key] = i
        _check_decision(dec, f"decisions/{i}", source)
    for b in doc["bins"]:
        for t in doc["budgets"]:
            if (b, float(t)) not in seen:
                raise PlannerError(f"{source}: field 'decisions': no decision for bin {b} at budget {t:g}")
    _check_decision(doc["fallback"], "fallback", source)


@dataclass(frozen=True)
class Decision:
    """What to run for one prompt. `budget` is the policy budget used (<= the requested one)."""

    bin: int
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

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Decisions:
    """Vectorised decisions: row i answers request i. `index` points into `Policy.table`."""

    policy: Policy
    bin: np.ndarray
    budget: np.ndarray
    index: np.ndarray
    fallback: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def column(self, name: str) -> np.ndarray:
        return self.policy.table[name][self.index]

    def decision(self, i: int) -> Decision:
        return self.policy._decision(int(self.index[i]), int(self.bin[i]), float(self.budget[i]), bool(self.fallback[i]))


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
        }
        for f in _DECISION_FIELDS:
            self.table[f] = np.array([float(r[f]) for r in rows])
        # Class index -> bin index (the classes are the bins, possibly in another order).
        self._class_to_bin = np.array([bin_pos[int(c)] for c in self.classes], dtype=np.int64)

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        p = Path(path)
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            raise PlannerError(f"{p}: policy file not found") from None
        except OSError as exc:
            raise PlannerError(f"{p}: cannot read the policy ({exc.strerror or exc})") from None
        try:
            doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError:
            raise PlannerError(f"{p}: not a UTF-8 JSON policy file") from None
        except (ValueError, RecursionError) as exc:
            raise PlannerError(f"{p}: not valid JSON (truncated or corrupt?): {str(exc)[:200]}") from None
        return cls(doc, str(p))

    @classmethod
    def from_dict(cls, doc: dict[str, Any], source: str = "policy") -> Policy:
        return cls(doc, source)

    def dumps(self) -> str:
        return dumps_policy(self.doc)

    # -- deciding ------------------------------------------------------------------------------
    def predict_bins(self, scores: np.ndarray, answers: np.ndarray | None = None,
                     gen_tokens: np.ndarray | None = None) -> np.ndarray:
        """Difficulty bin (1 = easiest) per request from probe arrays [n, k]."""
        return self.bins[self._bin_index(scores, answers, gen_tokens)]

    def bin_probabilities(self, scores: np.ndarray, answers: np.ndarray | None = None,
                          gen_tokens: np.ndarray | None = None) -> np.ndarray:
        x = self._features(scores, answers, gen_tokens)
        if len(self.classes) == 1:
            return np.ones((x.shape[0], 1))
        return linear_proba(self.model, (x - self.mean) / self.scale, self.coef, self.intercept)

    def _features(self, scores: Any, answers: Any, gen_tokens: Any) -> np.ndarray:
        s = np.asarray(scores, dtype=float)
        if s.ndim == 1:
            s = s[None, :]
        if s.ndim != 2 or s.shape[1] != self.k:
            raise PlannerError(f"{self.source}: the policy needs exactly k={self.k} probe scores per request, "
                               f"got shape {tuple(np.shape(scores))}")
        return features_from_probes(s, answers, gen_tokens, self.features)

    def _bin_index(self, scores: Any, answers: Any, gen_tokens: Any) -> np.ndarray:
        p = self.bin_probabilities(scores, answers, gen_tokens)
        return self._class_to_bin[np.argmax(p, axis=1)]

    def budget_index(self, budget: Any) -> np.ndarray:
        """Index of the largest policy budget <= each requested budget (-1 when below all)."""
        b = np.atleast_1d(np.asarray(budget, dtype=float))
        if not np.isfinite(b).all() or (b < 0).any():
            raise PlannerError(f"budget must be a finite number >= 0, got {budget!r}")
        # A small relative tolerance so that a budget equal to a policy budget up to rounding counts.
        return np.searchsorted(self.budgets, b * (1 + 1e-9), side="right") - 1

    def decide_many(self, probe_scores: Any, budgets: Any, answers: Any = None,
                    gen_tokens: Any = None) -> Decisions:
        """Vectorised decisions for n requests: probe arrays [n, k], budgets scalar or [n]."""
        bi = self._bin_index(probe_scores, answers, gen_tokens)
        n = len(bi)
        ti = self.budget_index(budgets)
        if len(ti) == 1 and n != 1:
            ti = np.broadcast_to(ti, (n,))
        elif len(ti) != n:
            raise PlannerError(f"{n} requests but {len(ti)} budgets")
        below = ti < 0
        index = np.where(below, self.fallback_index, bi * len(self.budgets) + np.maximum(ti, 0))
        used = np.where(below, self.table["total_generations"][self.fallback_index] if self.unit == "generations"
                        else self.table["total_flops"][self.fallback_index], self.budgets[np.maximum(ti, 0)])
        return Decisions(self, self.bins[bi], used, index, below)

    def decide(self, probe_scores: Any, budget: float, answers: Any = None, gen_tokens: Any = None) -> Decision:
        """The decision for one prompt from its k probe scores (and answers / token counts when the
        predictor uses agreement / generated tokens)."""
        s = np.asarray(probe_scores, dtype=float)
        if s.ndim != 1:
            raise PlannerError("decide takes one request's probe scores (a flat list); use decide_many for a batch")
        if not isinstance(budget, int | float | np.number) or isinstance(budget, bool) or math.isnan(float(budget)):
            raise PlannerError(f"budget must be a number, got {budget!r}")
        a = None if answers is None else np.asarray([list(answers)], dtype=object)
        t = None if gen_tokens is None else np.asarray([list(gen_tokens)], dtype=float)
        return self.decide_many(s[None, :], float(budget), a, t).decision(0)

    def _decision(self, idx: int, bin_label: int, budget: float, fallback: bool) -> Decision:
        tab = self.table
        return Decision(
            bin=bin_label, budget=budget, strategy=str(tab["strategy"][idx]), config=str(tab["config"][idx]),
            **{f: float(tab[f][idx]) for f in _DECISION_FIELDS},
            probe_reused=bool(tab["probe_reused"][idx]), fallback=fallback,
        )

    def needs(self) -> list[str]:
        """Which probe inputs decide needs beyond the scores."""
        return [f for f in ("agreement", "gen_tokens") if f in self.features]


__all__ = ["FEATURES", "POLICY_SCHEMA_VERSION", "Decision", "Decisions", "Policy", "dumps_policy",
           "policy_schema", "validate_policy"]

"""Table contracts: samples, problems, profile and the plan outputs, column by column.

Each table is a `TableSpec` of typed `Column`s with its key; `planner.tables.validation` checks a
dataframe against it and `planner.tables.parquet` reads and writes it, so a bad file is caught at
the boundary with one `SchemaError` naming the file, the column and the first bad row.
A config is always stored in its one canonical JSON spelling (`canonical_config`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from planner.errors import PlannerError

# 2: a samples row's `prompt_tokens` is its own prompt in full (version 1 split a prompt shared by
# several rows among them) and a profile's counts every parallel stream's prompt; version-1 samples
# are read by `planner.tables.parquet` with each shared prompt made whole again, version-1
# profiles are refused (they are remade from their samples).
SCHEMA_VERSION = 2

Kind = Literal["str", "int", "float", "bool", "list_float"]


@dataclass(frozen=True)
class Column:
    """One column of a table contract.

    `nullable` admits missing values (None / NaN for floats); `nonneg` rejects negatives;
    `unit` requires values in [0, 1].
    """

    name: str
    kind: Kind
    nullable: bool = False
    nonneg: bool = False
    unit: bool = False
    doc: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    # Columns with this prefix are admitted as extra float features (problems: `feat_*`).
    feature_prefix: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


SAMPLES = TableSpec(
    name="samples",
    columns=(
        Column("problem_id", "str", doc="problem identifier"),
        Column(
            "strategy", "str", doc="strategy name (sample, beam, lookahead, dvts, revisions, ...)"
        ),
        Column("config", "str", doc="canonical JSON of the strategy's hyper-parameters"),
        Column(
            "run", "int", nonneg=True, doc="independent repetition, or chain index for revisions"
        ),
        Column(
            "position", "int", nonneg=True, doc="index in the pool, or step in a revision chain"
        ),
        Column(
            "answer", "str", nullable=True, doc="normalised final answer; null when none was found"
        ),
        Column("correct", "bool", doc="whether the answer is right"),
        Column("verifier", "str", doc="id of the scorer ('none' when unscored)"),
        Column("score", "float", doc="aggregated verifier score (never NaN)"),
        Column("step_scores", "list_float", doc="per-step verifier scores (may be empty)"),
        Column(
            "prompt_tokens",
            "int",
            nonneg=True,
            doc=(
                "length in tokens of the prompt this row's answer was generated from, as sent to "
                "the model: the problem's prompt for a pool's candidate or a search's final "
                "candidate (a search's steps are its generated tokens), the revision prompt with "
                "the earlier attempts it holds for a revision step. A prompt shared by several "
                "rows (a pool's n candidates, a search run's final candidates, one candidate's "
                "rows under several verifiers) is counted in full on each of them, so a sum over "
                "rows counts the prompt every candidate read; the prompt tokens prefilled, with "
                "a shared prompt read once, are `planner.strategies.prefilled_prompt_tokens`"
            ),
        ),
        Column(
            "gen_tokens", "int", nonneg=True, doc="generated tokens attributed to this candidate"
        ),
        Column(
            "gen_flops", "float", nonneg=True, doc="generation FLOPs attributed to this candidate"
        ),
        Column("verifier_flops", "float", nonneg=True, doc="verifier FLOPs attributed to this row"),
        Column(
            "wall_s", "float", nonneg=True, nullable=True, doc="wall seconds; NaN when not measured"
        ),
    ),
    key=("problem_id", "strategy", "config", "verifier", "run", "position"),
)

PROBLEMS = TableSpec(
    name="problems",
    columns=(
        Column("problem_id", "str"),
        Column("fold", "int", nonneg=True, doc="cross-validation fold (0/1), seeded"),
        Column("pass1", "float", unit=True, nullable=True, doc="oracle pass@1 from the pool"),
        Column("oracle_bin", "int", nullable=True, doc="oracle difficulty bin, 1 = easiest"),
        Column("predicted_bin", "int", nullable=True, doc="predicted difficulty bin, 1 = easiest"),
        Column("level", "str", nullable=True, doc="a given difficulty label (e.g. MATH level)"),
    ),
    key=("problem_id",),
    feature_prefix="feat_",
)

PROFILE = TableSpec(
    name="profile",
    columns=(
        Column("problem_id", "str"),
        Column("strategy", "str"),
        Column("config", "str", doc="canonical JSON; includes select, agg and verifier"),
        Column("budget", "float", nonneg=True, doc="budget in generations"),
        Column("accuracy", "float", unit=True, doc="expected accuracy over k-subsets of the pool"),
        Column(
            "accuracy_se", "float", nonneg=True, doc="Monte Carlo standard error (0 when exact)"
        ),
        Column("flops", "float", nonneg=True, doc="expected FLOPs (generation + verifier)"),
        Column("tokens", "float", nonneg=True, doc="expected generated tokens"),
        Column(
            "prompt_tokens",
            "float",
            nonneg=True,
            doc=(
                "expected prompt tokens per query, every parallel stream's prompt counted in "
                "full: a pool read at budget k counts its prompt k times, a search of n beams n "
                "times, revision chains each answer's own prompt; a serving engine that shares a "
                "prompt among streams prefills less (planner.costs.simulator)"
            ),
        ),
        Column(
            "wall_s",
            "float",
            nonneg=True,
            nullable=True,
            doc="expected wall seconds; NaN if unmeasured",
        ),
    ),
    key=("problem_id", "strategy", "config", "budget"),
)

# Plan outputs (written by `ttc plan`, read by `ttc policy export` and the reports).
PLAN_CURVES = TableSpec(
    name="plan_curves",
    columns=(
        Column("budget", "float", nonneg=True, doc="budget in the plan's unit"),
        Column(
            "method",
            "str",
            doc="compute_optimal, majority, coverage, best[verifier], weighted[verifier]",
        ),
        Column("accuracy", "float", unit=True),
        Column("ci_lo", "float", unit=True),
        Column("ci_hi", "float", unit=True),
        Column("generations", "float", nonneg=True, doc="mean generations actually spent"),
        Column("flops", "float", nonneg=True, doc="mean FLOPs per query actually spent"),
        Column("tokens", "float", nonneg=True, doc="mean generated tokens per query"),
        Column(
            "efficiency_multiple",
            "float",
            nullable=True,
            doc="reference budget / budget; NaN = > max",
        ),
    ),
    key=("budget", "method"),
)

SELECTION = TableSpec(
    name="selection",
    columns=(
        Column("budget", "float", nonneg=True),
        Column("bin", "int"),
        Column("fold", "int", doc="fold selected on (0/1), or -1 for the whole bin"),
        Column("strategy", "str"),
        Column("config", "str"),
        Column("option_budget", "float", nonneg=True, doc="the option's own budget in generations"),
        Column("select_accuracy", "float", unit=True, nullable=True),
        Column("eval_accuracy", "float", unit=True, nullable=True),
        Column("n_select", "int", nonneg=True),
        Column("n_eval", "int", nonneg=True),
        Column("flops", "float", nonneg=True),
        Column("tokens", "float", nonneg=True),
    ),
    key=("budget", "bin", "fold"),
)

CHOICES = TableSpec(
    name="choices",
    columns=(
        Column("bin", "int"),
        Column("budget", "float", nonneg=True),
        Column("strategy", "str"),
        Column("config", "str"),
        Column("option_budget", "float", nonneg=True),
        Column(
            "accuracy",
            "float",
            unit=True,
            nullable=True,
            doc="the paper's two-fold cross-validated accuracy of per-bin selection in this bin "
            "(NaN where, with probes charged, it has no option within the budget)",
        ),
        Column("ci_lo", "float", unit=True, nullable=True),
        Column("ci_hi", "float", unit=True, nullable=True),
        Column("in_sample_accuracy", "float", unit=True),
        Column("flops", "float", nonneg=True),
        Column("tokens", "float", nonneg=True),
        Column("n_problems", "int", nonneg=True),
    ),
    key=("bin", "budget"),
)


def canonical_config(config: Mapping[str, Any]) -> str:
    """The one JSON spelling of a config: sorted keys, no spaces, so equal configs compare equal."""
    try:
        return json.dumps(dict(config), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PlannerError(f"config is not JSON-serialisable: {exc}") from None


def parse_config(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise PlannerError(f"config must be a JSON object, got {text!r}")
    return value


# Canonical file names inside the directories the stages exchange.
SAMPLES_FILE = "samples.parquet"
PROBLEMS_FILE = "problems.parquet"
PROFILE_FILE = "profile.parquet"
PLAN_CURVES_FILE = "curves.parquet"
SELECTION_FILE = "selection.parquet"
CHOICES_FILE = "choices.parquet"
SUMMARY_FILE = "summary.json"

"""Import sample dumps produced elsewhere (JSONL) into the samples table.

Two shapes are read:
- per-problem lists (the default): one JSON object per problem with a list of answers, a list of
  correctness flags and a list of scores (a flat list, or a list of one-element lists as in
  Qwen2.5-Math's reward-model dumps);
- one row per sample (`flatten=True`): the answer, correctness and score are scalars and rows of
  the same problem share its id.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.tables.fsutil import file_sha256
from planner.tables.schema import canonical_config

SCORE_TRANSFORMS = ("none", "sigmoid")


@dataclass(frozen=True)
class ImportOptions:
    id_field: str = "idx"
    answers_field: str = "pred"
    correct_field: str = "score"
    scores_field: str | None = "pred_score"
    level_field: str | None = None
    flatten: bool = False
    verifier: str = "imported"
    strategy: str = "sample"
    score_transform: str = "none"

    def __post_init__(self) -> None:
        if self.score_transform not in SCORE_TRANSFORMS:
            raise ValueError(
                f"score transform must be one of {SCORE_TRANSFORMS}, got {self.score_transform!r}"
            )
        if not self.verifier:
            raise ValueError("verifier id must not be empty")


def read_jsonl(path: Path, what: str = "file") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for each non-blank line; one PlannerError naming the
    file and line for a missing file, bad JSON or a non-object line. `what` names the file's role
    in the not-found message."""
    if not path.exists():
        raise PlannerError(f"{path}: {what} not found")
    if path.is_dir():
        raise PlannerError(f"{path}: is a directory, expected a JSONL {what}")
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PlannerError(f"{path}: line {lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise PlannerError(
                    f"{path}: line {lineno}: expected a JSON object, got {type(obj).__name__}"
                )
            yield lineno, obj


def _field(obj: dict[str, Any], name: str, path: Path, lineno: int) -> Any:
    if name not in obj:
        raise PlannerError(f"{path}: line {lineno}: missing field '{name}'")
    return obj[name]


def _as_score(value: Any, path: Path, lineno: int, field: str, i: int | None) -> float:
    where = f"{path}: line {lineno}: field '{field}'" + (f"[{i}]" if i is not None else "")
    if isinstance(value, list):
        if len(value) != 1:
            raise PlannerError(f"{where}: expected a number or a one-element list, got {value!r}")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PlannerError(f"{where}: expected a number, got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise PlannerError(f"{where}: score is NaN or infinite")
    return float(value)


def _as_bool(value: Any, path: Path, lineno: int, field: str, i: int | None) -> bool:
    if not isinstance(value, bool):
        where = f"{path}: line {lineno}: field '{field}'" + (f"[{i}]" if i is not None else "")
        raise PlannerError(f"{where}: correctness must be true/false, got {value!r}")
    return value


def _as_answer(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def import_jsonl(
    path: str | Path, opts: ImportOptions
) -> tuple[pd.DataFrame, pd.Series | None, dict[str, Any]]:
    """Read a JSONL dump; returns (samples dataframe, levels per problem or None, metadata)."""
    p = Path(path)
    rows: list[dict[str, Any]] = []
    levels: dict[str, str] = {}
    positions: dict[str, int] = {}
    config = canonical_config({"source": "import"})
    for lineno, obj in read_jsonl(p):
        raw_id = _field(obj, opts.id_field, p, lineno)
        pid = str(raw_id)
        if opts.level_field:
            lvl = _field(obj, opts.level_field, p, lineno)
            if pid in levels and levels[pid] != str(lvl):
                raise PlannerError(f"{p}: line {lineno}: problem {pid!r} has two levels")
            levels[pid] = str(lvl)
        answers = _field(obj, opts.answers_field, p, lineno)
        correct = _field(obj, opts.correct_field, p, lineno)
        scores = _field(obj, opts.scores_field, p, lineno) if opts.scores_field else None
        if opts.flatten:
            answers, correct = [answers], [correct]
            scores = None if scores is None else [scores]
        else:
            if pid in positions:
                raise PlannerError(
                    f"{p}: line {lineno}: problem id {pid!r} appears twice (use --flatten "
                    "for one row per sample)"
                )
            for name, val in ((opts.answers_field, answers), (opts.correct_field, correct)) + (
                ((opts.scores_field, scores),) if scores is not None else ()
            ):
                if not isinstance(val, list):
                    raise PlannerError(
                        f"{p}: line {lineno}: field '{name}' must be a list (or use --flatten)"
                    )
            if len(correct) != len(answers) or (scores is not None and len(scores) != len(answers)):
                raise PlannerError(
                    f"{p}: line {lineno}: fields '{opts.answers_field}', '{opts.correct_field}'"
                    + (f", '{opts.scores_field}'" if scores is not None else "")
                    + " have different lengths"
                )
        start = positions.get(pid, 0)
        for i, ans in enumerate(answers):
            idx = None if opts.flatten else i
            ok = _as_bool(correct[i], p, lineno, opts.correct_field, idx)
            score = (
                0.0
                if scores is None
                else _as_score(scores[i], p, lineno, opts.scores_field or "", idx)
            )
            if opts.score_transform == "sigmoid":
                score = float(1.0 / (1.0 + math.exp(-score))) if score > -700 else 0.0
            rows.append(
                {
                    "problem_id": pid,
                    "strategy": opts.strategy,
                    "config": config,
                    "run": 0,
                    "position": start + i,
                    "answer": _as_answer(ans),
                    "correct": ok,
                    "verifier": opts.verifier if scores is not None else "none",
                    "score": score,
                    "step_scores": [],
                    # The dump records no token counts, FLOPs or times: zeros, flagged in metadata.
                    "prompt_tokens": 0,
                    "gen_tokens": 0,
                    "gen_flops": 0.0,
                    "verifier_flops": 0.0,
                    "wall_s": float("nan"),
                }
            )
        positions[pid] = start + len(answers)
    if not rows:
        raise PlannerError(f"{p}: no samples found (empty file?)")
    df = pd.DataFrame(rows)
    level_series = pd.Series(levels, dtype=object) if opts.level_field else None
    meta = {
        "source_file": p.name,
        "source_sha256": file_sha256(p),
        "dataset_id": p.stem,
        "verifier_id": opts.verifier if opts.scores_field else "none",
        "score_transform": opts.score_transform,
        "field_mapping": {
            "id": opts.id_field,
            "answers": opts.answers_field,
            "correct": opts.correct_field,
            "scores": opts.scores_field,
            "level": opts.level_field,
            "flatten": opts.flatten,
        },
        "costs_measured": False,
        "n_problems": int(df["problem_id"].nunique()),
        "n_samples": len(df),
        "pool_sizes": sorted({int(v) for v in np.unique(df.groupby("problem_id").size())}),
    }
    return df, level_series, meta

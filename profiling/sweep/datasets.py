"""Problem sets for sweeps: the testbed task, MATH-500, MATH, GSM8K and any JSONL with a field map.

`load_problems(spec)` returns a `ProblemSet`: the selected problems (after a seeded shuffle,
`offset` and `limit`), the grader that judges completions, and hashes that identify the data in a
run's metadata (`source_sha256`: the file's bytes; `problems_sha256`: the selected problems).

A bad file gets one `PlannerError` naming the file and line (1-based): not JSON, not an object, a
missing or empty field, a duplicate id, an answer that cannot be extracted, or no problems at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.errors import PlannerError
from profiling.grading import GRADERS, Grader, get_grader, gsm8k_gold, last_boxed
from profiling.problems import Problem

SOURCES = ("testbed", "math500", "math", "gsm8k", "jsonl")
ANSWER_FORMATS = ("raw", "boxed", "gsm8k")

# Where `../shared/data` lives when no path is given: $TTC_DATA_DIR, else beside the repository.
_DEFAULT_FILES = {
    "math500": "math500/test.jsonl",
    "math": "math/test.jsonl",
    "gsm8k": "gsm8k/{split}.jsonl",
}


def shared_data_dir() -> Path:
    env = os.environ.get("TTC_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


@dataclass(frozen=True)
class DataSpec:
    """Which problems a sweep runs on.

    source: testbed | math500 | math | gsm8k | jsonl. `n` and `levels` pick testbed problems
    (generated with `seed`, 0 unless set); file sources read `path` (default: the shared
    data folder). For `jsonl`, `*_field` map the file's fields and `answer_format` says how the
    gold answer is read from the answer field (raw text, last \\boxed{}, or GSM8K's `####`).
    Selection: shuffle (seeded by `shuffle_seed`) first, then skip `offset`, then keep `limit`.
    """

    source: str = field(
        default="testbed", metadata={"flag": "--data", "choices": SOURCES, "help": "Problem set."}
    )
    path: str | None = field(
        default=None,
        metadata={
            "flag": "--data-path",
            "help": "JSONL file (default for math500/math/gsm8k: ../shared/data).",
        },
    )
    n: int = field(
        default=200, metadata={"flag": "--n", "help": "Testbed: number of problems to generate."}
    )
    levels: tuple[int, ...] | None = field(
        default=None,
        metadata={
            "flag": "--levels",
            "help": "Testbed: difficulty levels to generate, e.g. 1,2,3.",
        },
    )
    seed: int = field(
        default=0,
        metadata={"flag": "--data-seed", "help": "Testbed: seed of the generated problems."},
    )
    split: str = field(
        default="test",
        metadata={
            "flag": "--split",
            "choices": ("train", "test"),
            "help": "gsm8k: which split file.",
        },
    )
    limit: int | None = field(
        default=None, metadata={"flag": "--limit", "help": "Keep at most this many problems."}
    )
    offset: int = field(
        default=0, metadata={"flag": "--offset", "help": "Skip this many problems first."}
    )
    shuffle: bool = field(
        default=False, metadata={"flag": "--shuffle", "help": "Seeded shuffle before offset/limit."}
    )
    shuffle_seed: int = field(
        default=0, metadata={"flag": "--shuffle-seed", "help": "Seed of the shuffle."}
    )
    id_field: str | None = field(
        default=None,
        metadata={
            "flag": "--id-field",
            "help": "jsonl: field with the problem id (default: line index).",
        },
    )
    prompt_field: str = field(
        default="problem",
        metadata={"flag": "--prompt-field", "help": "jsonl: field with the question."},
    )
    answer_field: str = field(
        default="answer",
        metadata={"flag": "--answer-field", "help": "jsonl: field with the gold answer."},
    )
    level_field: str | None = field(
        default=None,
        metadata={"flag": "--level-field", "help": "jsonl: field with a difficulty label."},
    )
    answer_format: str = field(
        default="raw",
        metadata={
            "flag": "--answer-format",
            "choices": ANSWER_FORMATS,
            "help": "jsonl: read the gold answer as is, from the last \\boxed{}, or after ####.",
        },
    )
    grader: str | None = field(
        default=None,
        metadata={
            "flag": "--grader",
            "choices": tuple(GRADERS),
            "help": "Grader of the completions (default: the problem set's).",
        },
    )

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(
                f"data.source must be one of {', '.join(SOURCES)}, got {self.source!r}"
            )
        if self.n < 1:
            raise ValueError(f"data.n must be >= 1, got {self.n}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"data.limit must be >= 1, got {self.limit}")
        if self.offset < 0:
            raise ValueError(f"data.offset must be >= 0, got {self.offset}")
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(
                f"data.answer_format must be one of {', '.join(ANSWER_FORMATS)}, "
                f"got {self.answer_format!r}"
            )
        if self.grader is not None and self.grader not in GRADERS:
            raise ValueError(
                f"data.grader must be one of {', '.join(GRADERS)}, got {self.grader!r}"
            )
        if self.source == "jsonl" and not self.path:
            raise ValueError("data.source = 'jsonl' needs data.path")
        if self.levels is not None and (not self.levels or min(self.levels) < 1):
            raise ValueError(f"data.levels must be integers >= 1, got {self.levels!r}")
        if self.split not in ("train", "test"):
            raise ValueError(f"data.split must be train or test, got {self.split!r}")


@dataclass(frozen=True)
class ProblemSet:
    dataset_id: str
    problems: tuple[Problem, ...]
    grader: Grader
    grader_name: str
    source_sha256: str
    problems_sha256: str

    def metadata(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "dataset_sha256": self.source_sha256,
            "problems_sha256": self.problems_sha256,
            "grader": self.grader_name,
            "n_problems": len(self.problems),
        }


def problems_hash(problems: Sequence[Problem]) -> str:
    h = hashlib.sha256()
    for p in problems:
        h.update(json.dumps([p.problem_id, p.prompt, p.answer, p.level]).encode())
        h.update(b"\n")
    return h.hexdigest()


def _select(problems: list[Problem], spec: DataSpec) -> list[Problem]:
    if spec.shuffle:
        # String seeds hash deterministically (no PYTHONHASHSEED dependence).
        random.Random(f"ttc-shuffle:{spec.shuffle_seed}").shuffle(problems)
    out = problems[spec.offset :]
    if spec.limit is not None:
        out = out[: spec.limit]
    return out


def _field(path: Path, lineno: int, row: dict[str, Any], name: str) -> str:
    if name not in row:
        known = ", ".join(sorted(row)) or "none"
        raise PlannerError(f"{path}: line {lineno}: missing field {name!r} (fields: {known})")
    value = row[name]
    if isinstance(value, bool) or value is None:
        raise PlannerError(f"{path}: line {lineno}: field {name!r} is {value!r}, expected text")
    text = str(value)
    if not text.strip():
        raise PlannerError(f"{path}: line {lineno}: field {name!r} is empty")
    return text


def _gold(path: Path, lineno: int, text: str, fmt: str, field: str) -> str:
    if fmt == "raw":
        return text.strip()
    got = last_boxed(text) if fmt == "boxed" else gsm8k_gold(text)
    if not got:
        what = "\\boxed{...} answer" if fmt == "boxed" else "'#### <answer>' line"
        raise PlannerError(f"{path}: line {lineno}: field {field!r} has no {what}")
    return got


def _file_problems(
    path: Path,
    spec: DataSpec,
    *,
    id_field: str | None,
    prompt_field: str,
    answer_field: str,
    level_field: str | None,
    answer_format: str,
    id_prefix: str,
    level_fmt: Any = str,
) -> list[Problem]:
    # planner.tables loads pandas and pyarrow: only when a file is read, not to list flags
    from planner.tables.importer import read_jsonl

    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, (lineno, row) in enumerate(read_jsonl(path, "problem file")):
        pid = _field(path, lineno, row, id_field) if id_field else f"{id_prefix}{index}"
        if pid in seen:
            raise PlannerError(
                f"{path}: line {lineno}: duplicate problem id {pid!r} (first on line {seen[pid]})"
            )
        seen[pid] = lineno
        prompt = _field(path, lineno, row, prompt_field)
        answer = _gold(
            path, lineno, _field(path, lineno, row, answer_field), answer_format, answer_field
        )
        level = None
        if level_field is not None and row.get(level_field) is not None:
            level = level_fmt(row[level_field])
        problems.append(Problem(pid, prompt, answer, level, {"line": lineno}))
    if not problems:
        raise PlannerError(f"{path}: no problems (the file is empty)")
    return problems


def _math_level(value: Any) -> str:
    # MATH writes "Level 3", MATH-500 writes 3: one spelling, so bins by level line up.
    text = str(value).strip()
    return text.removeprefix("Level ").strip()


def load_problems(spec: DataSpec) -> ProblemSet:
    """Load and select the problems of `spec`; raise PlannerError on a bad or empty source."""
    if spec.source == "testbed":
        from models.testbed.task import generate_problems
        from profiling.problems import testbed_problems

        # Generate offset+limit problems (a longer list extends a shorter one), then select.
        n = spec.n
        items = testbed_problems(generate_problems(n, spec.seed, spec.levels))
        chosen = _select(list(items), spec)
        levels = ",".join(map(str, spec.levels)) if spec.levels else "default"
        dataset_id = f"testbed(seed={spec.seed},n={n},levels={levels})"
        full_hash = problems_hash(items)
        grader_name = "testbed"
    else:
        if spec.path:
            path = Path(spec.path).expanduser()
        elif spec.source in _DEFAULT_FILES:
            path = shared_data_dir() / _DEFAULT_FILES[spec.source].format(split=spec.split)
        else:  # pragma: no cover - DataSpec requires a path for jsonl
            raise PlannerError("data.path is required")
        if spec.source == "math500":
            items = _file_problems(
                path,
                spec,
                id_field="unique_id",
                prompt_field="problem",
                answer_field="answer",
                level_field="level",
                answer_format="raw",
                id_prefix="",
                level_fmt=_math_level,
            )
            default_grader = "math"
        elif spec.source == "math":
            items = _file_problems(
                path,
                spec,
                id_field=None,
                prompt_field="problem",
                answer_field="solution",
                level_field="level",
                answer_format="boxed",
                id_prefix="math-",
                level_fmt=_math_level,
            )
            default_grader = "math"
        elif spec.source == "gsm8k":
            items = _file_problems(
                path,
                spec,
                id_field=None,
                prompt_field="question",
                answer_field="answer",
                level_field=None,
                answer_format="gsm8k",
                id_prefix=f"gsm8k-{spec.split}-",
            )
            default_grader = "gsm8k"
        else:
            items = _file_problems(
                path,
                spec,
                id_field=spec.id_field,
                prompt_field=spec.prompt_field,
                answer_field=spec.answer_field,
                level_field=spec.level_field,
                answer_format=spec.answer_format,
                id_prefix=f"{path.stem}-",
            )
            default_grader = (
                "gsm8k"
                if spec.answer_format == "gsm8k"
                else ("math" if spec.answer_format == "boxed" else "string")
            )
        chosen = _select(list(items), spec)
        grader_name = spec.grader or default_grader
        h = hashlib.sha256(path.read_bytes()).hexdigest()
        full_hash = h
        dataset_id = spec.source if spec.source != "jsonl" else f"jsonl:{path.name}"
    if not chosen:
        raise PlannerError(
            f"{dataset_id}: the selection is empty (offset {spec.offset}, "
            f"limit {spec.limit}, {len(items)} problems in the set)"
        )
    return ProblemSet(
        dataset_id=dataset_id,
        problems=tuple(chosen),
        grader=get_grader(grader_name),
        grader_name=grader_name,
        source_sha256=full_hash,
        problems_sha256=problems_hash(chosen),
    )

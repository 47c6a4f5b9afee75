"""Tables: the contracts the stages exchange, their validation and their parquet I/O.

The first stage of the flow (samples -> profile -> plan -> policy): what a samples, problems,
profile or plan table holds (`schema`), how a dataframe is checked against it (`validation`), how
tables are read and written with their metadata (`parquet`; atomic writes in `fsutil`), and dumps
made elsewhere (`importer`). What the planner knows about each strategy is the leaf
`planner.strategies`.

May import: numpy, pandas, pyarrow, `planner` (its version), `planner.errors`,
`planner.strategies`; no other stage (every other stage imports this one).
"""

from planner.tables.fsutil import atomic_dir, atomic_write_text, file_sha256
from planner.tables.importer import ImportOptions, import_jsonl, read_jsonl
from planner.tables.parquet import (
    read_metadata,
    read_problems,
    read_profile,
    read_samples,
    read_table,
    resolve_table_path,
    write_table,
)
from planner.tables.schema import (
    CHOICES,
    CHOICES_FILE,
    PLAN_CURVES,
    PLAN_CURVES_FILE,
    PROBLEMS,
    PROBLEMS_FILE,
    PROFILE,
    PROFILE_FILE,
    SAMPLES,
    SAMPLES_FILE,
    SELECTION,
    SELECTION_FILE,
    SUMMARY_FILE,
    canonical_config,
    parse_config,
)
from planner.tables.validation import validate

__all__ = [
    "CHOICES",
    "CHOICES_FILE",
    "PLAN_CURVES",
    "PLAN_CURVES_FILE",
    "PROBLEMS",
    "PROBLEMS_FILE",
    "PROFILE",
    "PROFILE_FILE",
    "SAMPLES",
    "SAMPLES_FILE",
    "SELECTION",
    "SELECTION_FILE",
    "SUMMARY_FILE",
    "ImportOptions",
    "atomic_dir",
    "atomic_write_text",
    "canonical_config",
    "file_sha256",
    "import_jsonl",
    "parse_config",
    "read_jsonl",
    "read_metadata",
    "read_problems",
    "read_profile",
    "read_samples",
    "read_table",
    "resolve_table_path",
    "validate",
    "write_table",
]

"""One error family for the whole library; the CLI turns it into a one-line message."""

from __future__ import annotations


class PlannerError(Exception):
    """Any error caused by the user's input or environment (bad file, bad option, bad config)."""


class SchemaError(PlannerError):
    """A table violates its contract. The message names the file, the column and the first bad
    row."""

    def __init__(self, source: str, column: str | None, row: int | None, problem: str) -> None:
        where = source
        if column is not None:
            where += f": column '{column}'"
        if row is not None:
            where += f", row {row}"
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.column = column
        self.row = row
        self.problem = problem

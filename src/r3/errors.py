"""User-facing errors.

Anything a user can cause (a missing file, a malformed row, an unknown task) raises `R3Error`. The CLI
prints its message as one line and exits non-zero without a traceback; everything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class R3Error(Exception):
    """An error caused by the user's input or environment, reported as one clear line."""


class DataError(R3Error):
    """A data file or row is unusable. The message names the file, the row and the field."""

    def __init__(self, source: str, row: int | None, field: str | None, problem: str) -> None:
        where = source
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {problem}")
        self.source, self.row, self.field, self.problem = source, row, field, problem

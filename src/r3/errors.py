"""User-facing errors: `R3Error`, which the CLI prints as one line (exit 2); anything else is a bug."""

from __future__ import annotations

from typing import Any


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


def check_numbers(options: Any, at_least: dict[str, int]) -> None:
    """Check whole-number options against a lower bound, by flag name (None: not set); YAML skips
    argparse's type conversion."""
    for name, low in at_least.items():
        value = getattr(options, name, None)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool) or not isinstance(value, int):
            raise R3Error(f"{flag} must be an integer (got {value!r})")
        if value < low:
            raise R3Error(f"{flag} must be at least {low} (got {value})")

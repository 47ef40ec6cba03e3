"""The failures file: one self-contained JSON row per query the model failed.

This is the contract between `r3 mine` (writes) and `r3 train` (reads). A row holds the example's
own fields at the top level (as the task stores them, see `Task.to_record`) plus:

    task             the task name
    query_index      position of the query in the mined data (stable across resumes)
    failed_attempts  [{"completion": str, "reason": str}, ...]  (at least one); with `r3 mine --rounds K`
                     each also has "rounds": [{"reflection", "retry", "reason"}, ...], the rounds that
                     followed it while their retries failed (at most K-1; training reflects on each);
                     with `r3 mine --screen K` each also has "screen": {"samples": K, "successes": s,
                     "retry_temperature": T}, K reflections sampled for it, each followed by one retry
                     at temperature T, s of which succeeded (`learnable` reads it; training refuses
                     to select by a screen whose T is not its `retry_temperature`, and reads a screen
                     without T, written before it was recorded, unchecked)
    samples_drawn    attempts sampled for this query
    successes        how many of them the verifier accepted
    failures_format  the row's format (`FAILURES_FORMAT`), on every row written since it existed; a row
                     without it is format 1, the format before (the same fields), and still reads. A
                     row of a later format than this r3 knows is refused with one line. (Not `format`:
                     the example's own fields share the row, and that name is a likely column.)

Everything is plain JSON so `datasets.load_dataset("json", data_files=...)` loads it. `read_failures`
reads it as the run folders' logs are read (`rundir.log_lines`): a last line cut short by a kill of
`r3 mine` mid-write is left out, with a warning, since every line before it is a query committed whole
and the cut one is the query a resumed `r3 mine` mines again; a damaged line followed by good ones is an
error.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r3.errors import DataError, R3Error
from r3.rundir import log_lines, torn_tail
from r3.tasks.base import Example, Task
from r3.text import clip

#: The format of the rows `FailureRecord.to_json` writes. 1: the rows written before the field existed
#: (no `failures_format`); 2: the same fields, with `failures_format`.
FAILURES_FORMAT = 2
FORMAT_KEY = "failures_format"
#: Fields every row has, whatever its format.
REQUIRED = ("task", "query_index", "failed_attempts", "samples_drawn", "successes")
#: Names the failures file uses for itself: an example may not have a field of these names.
RESERVED = (*REQUIRED, FORMAT_KEY)


def check_reserved_fields(examples: list[Example], source: str) -> None:
    """Refuse examples with a field the failures file uses for itself, before any sampling starts.

    Rows are numbered 1-based among the rows read (blank JSONL lines are not counted)."""
    for number, example in enumerate(examples, start=1):
        clash = next((k for k in RESERVED if k in example), None)
        if clash is not None:
            raise DataError(
                source,
                number,
                clash,
                f"the failures file uses this name for itself ({', '.join(RESERVED)}); rename the column",
            )


@dataclass(frozen=True)
class FailureRecord:
    """One mined query: the example, its failed attempts, and how often the model succeeded."""

    task: str
    query_index: int
    example: Example
    failed_attempts: list[dict[str, Any]]
    samples_drawn: int
    successes: int

    def to_json(self, task: Task) -> dict[str, Any]:
        """The row as `r3 mine` writes it, in the current format (`FAILURES_FORMAT`)."""
        row = task.to_record(self.example)
        clash = [k for k in RESERVED if k in row]
        if clash:
            raise DataError(
                task.name, self.query_index, clash[0], "field name is reserved by the failures file"
            )
        row.update(
            task=self.task,
            query_index=self.query_index,
            failed_attempts=self.failed_attempts,
            samples_drawn=self.samples_drawn,
            successes=self.successes,
        )
        row[FORMAT_KEY] = FAILURES_FORMAT
        return row

    @classmethod
    def from_json(cls, row: Any, task: Task, source: str, line_no: int | None = None) -> FailureRecord:
        """A row of any format this r3 knows (`row_format`), checked: a `DataError` naming `source`, the
        line and the field otherwise."""
        if not isinstance(row, dict):
            raise DataError(source, line_no, None, "expected an object")
        row_format(row, source, line_no)
        for key in REQUIRED:
            if key not in row:
                raise DataError(source, line_no, key, "missing (is this a file written by `r3 mine`?)")
        if row["task"] != task.name:
            raise DataError(source, line_no, "task", f"'{row['task']}' does not match the task '{task.name}'")
        attempts = row["failed_attempts"]
        if (
            not isinstance(attempts, list)
            or not attempts
            or not all(isinstance(a, dict) and isinstance(a.get("completion"), str) for a in attempts)
        ):
            raise DataError(
                source, line_no, "failed_attempts", "expected a non-empty list of {completion, reason}"
            )
        for key in ("query_index", "samples_drawn", "successes"):
            if not _is_count(row[key]):
                raise DataError(
                    source, line_no, key, f"expected a whole number (got {clip(repr(row[key]), 40)})"
                )
        example = task.validate({k: v for k, v in row.items() if k not in RESERVED}, line_no, source)
        return cls(
            task=row["task"],
            query_index=row["query_index"],
            example=example,
            failed_attempts=[_attempt(a, source, line_no, i) for i, a in enumerate(attempts)],
            samples_drawn=row["samples_drawn"],
            successes=row["successes"],
        )


def row_format(row: dict[str, Any], source: str, line_no: int | None = None) -> int:
    """The format of a failures row: its `failures_format`, or 1 (the format before the field) when it
    has none (or null, as `datasets` writes a field back that some rows lack)."""
    value = row.get(FORMAT_KEY)
    if value is None:
        return 1
    if not _is_count(value) or value < 1:
        raise DataError(
            source, line_no, FORMAT_KEY, f"expected a format number (got {clip(repr(value), 40)})"
        )
    if value > FAILURES_FORMAT:
        raise DataError(
            source,
            line_no,
            FORMAT_KEY,
            f"format {value} was written by a newer r3; this one reads formats 1 to {FAILURES_FORMAT}",
        )
    return int(value)


def learnable(attempt: dict[str, Any]) -> bool | None:
    """Whether a failed attempt's GRPO groups are expected to carry a signal: the selection `r3 train`
    uses to train only where there is one (`selection: learnable`).

    A group's advantages are all zero when every retry succeeds or every retry fails, so an attempt is
    learnable iff some but not all of its screen's retries succeeded (0 < successes < samples). None
    when the attempt was not screened (`r3 mine` without `--screen`): nothing is known, and the caller
    decides (keep it, or refuse a file mined without screening)."""
    screen = attempt.get("screen")
    if screen is None:
        return None
    return 0 < screen["successes"] < screen["samples"]


def check_screen_temperature(records: list[FailureRecord], retry_temperature: float, source: str) -> None:
    """Refuse to select attempts by a screen whose retries were drawn at another temperature than
    training draws them: its counts then predict other groups than the ones training samples. Screens
    that recorded no temperature are not checked."""
    screened = {
        a["screen"]["retry_temperature"]
        for r in records
        for a in r.failed_attempts
        if "retry_temperature" in a.get("screen", {})
    }
    other = sorted(t for t in screened if t != retry_temperature)
    if other:
        raise R3Error(
            f"{source}: screened with retries at temperature {other[0]} (r3 mine --screen-retry-temperature) "
            f"but training retries at retry_temperature {retry_temperature}; train with --retry_temperature "
            f"{other[0]}, or mine again with --screen-retry-temperature {retry_temperature}"
        )


def _is_count(value: Any) -> bool:
    """A whole number (JSON integer), not a bool (which Python counts as an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _screen(raw: Any, source: str, line_no: int, number: int) -> dict[str, Any]:
    """The `screen` of failed attempt `number`, checked: `learnable` and training's selection trust
    its counts and its retry temperature (absent from screens written before it was recorded)."""
    temperature = raw.get("retry_temperature") if isinstance(raw, dict) else None
    if (
        not isinstance(raw, dict)
        or not _is_count(raw.get("samples"))
        or not _is_count(raw.get("successes"))
        or not 0 <= raw["successes"] <= raw["samples"]
        or raw["samples"] < 1
        or not (temperature is None or (isinstance(temperature, int | float) and temperature >= 0))
        or isinstance(temperature, bool)
    ):
        raise DataError(
            source,
            line_no,
            f"failed_attempts[{number}].screen",
            f"expected {{samples: K >= 1, successes: 0..K, retry_temperature: T >= 0}} "
            f"(got {clip(json.dumps(raw), 80)})",
        )
    screen = {"samples": raw["samples"], "successes": raw["successes"]}
    if temperature is not None:
        screen["retry_temperature"] = temperature
    return screen


def _attempt(raw: dict[str, Any], source: str, line_no: int, number: int = 0) -> dict[str, Any]:
    """One failed attempt as training reads it, its chain of later rounds and its screen checked."""
    attempt: dict[str, Any] = {"completion": raw["completion"], "reason": str(raw.get("reason", ""))}
    if raw.get("screen") is not None:  # null as absent, as for `rounds` (a file re-saved by `datasets`)
        attempt["screen"] = _screen(raw["screen"], source, line_no, number)
    chain = raw.get("rounds")
    if chain is None:
        return attempt
    if not isinstance(chain, list) or not all(
        isinstance(step, dict)
        and isinstance(step.get("reflection"), str)
        and isinstance(step.get("retry"), str)
        for step in chain
    ):
        raise DataError(
            source, line_no, "failed_attempts", "rounds: expected a list of {reflection, retry, reason}"
        )
    attempt["rounds"] = [
        {"reflection": step["reflection"], "retry": step["retry"], "reason": str(step.get("reason", ""))}
        for step in chain
    ]
    return attempt


def read_failures(path: str | Path, task: Task) -> list[FailureRecord]:
    """Read and validate a failures file written by `r3 mine` (any task's rows are refused), with the
    run folders' reader (`rundir.log_lines`): a torn last line is left out with a warning."""
    file = Path(path)
    if not file.is_file():
        raise DataError(str(file), None, None, "no such failures file (run `r3 mine` first)")
    lines = log_lines(file, remedy="mine it again (`r3 mine --overwrite`)")
    if torn_tail(file):
        warnings.warn(
            f"{file}: the last line is incomplete (`r3 mine` was stopped mid-write); read without it. "
            "Run the same `r3 mine` again to mine that query",
            stacklevel=2,
        )
    records = [FailureRecord.from_json(row, task, str(file), line_no) for line_no, row in lines]
    if not records:
        raise DataError(str(file), None, None, "contains no failures")
    return records

"""The failures file: one self-contained JSON row per mined query, in query order.

It is mining's commit log (a row is written whole when its query is done, so a resumed `r3 mine`
starts after the last row) and the contract with `r3 train`, which trains on the rows with failed
attempts. A row holds the example's own fields at the top level (`Task.to_record`) plus:

    task             the task name
    query_index      position of the query in the mined data (stable across resumes)
    failed_attempts  the kept failed attempts, none for a query the model never failed; each an
                     `Episode` (`Episode.to_json` without its example) whose `rounds` are the rounds mined
                     after it (`r3 mine --rounds K`), and its `screen` (`r3 mine --screen K`: K sampled
                     reflections, each followed by one retry at `retry_temperature`, `successes` of
                     them accepted) or null
    samples_drawn    attempts sampled for this query
    successes        how many of them the verifier accepted
    sampled_tokens   tokens of its sampled attempts
    failures_format  the row's format (`FAILURES_FORMAT`); another is refused in one line that says to
                     mine again. (Not `format`: that name is a likely column of the example.)

Everything is plain JSON so `datasets.load_dataset("json", data_files=...)` loads it (filter on
`failed_attempts` for the failures alone). `read_failures` reads it with the run folders' reader
(`rundir.log_lines`): a last line cut short by a kill mid-write is left out with a warning.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from r3.episode import Episode
from r3.errors import DataError, R3Error
from r3.generation.base import Completion
from r3.rundir import log_lines, torn_tail
from r3.tasks.base import Example, Task, Verdict
from r3.text import clip

#: The format of the rows `FailureRecord.to_json` writes: 4, one row per mined query.
FAILURES_FORMAT = 4
FORMAT_KEY = "failures_format"
#: Fields every row has.
REQUIRED = ("task", "query_index", "failed_attempts", "samples_drawn", "successes")
#: Names the failures file uses for itself: an example may not have a field of these names.
RESERVED = (*REQUIRED, "sampled_tokens", FORMAT_KEY)
#: What to do with a file of another format.
MINE_AGAIN = "mine it again (`r3 mine --overwrite`)"


def check_reserved_fields(examples: list[Example], source: str) -> None:
    """Refuse examples with a field the failures file uses for itself, before any sampling starts
    (rows numbered from 1 among the rows read)."""
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
class Screen:
    """A failed attempt's screen (`r3 mine --screen K`): K reflections sampled for it, each followed by
    one retry at `retry_temperature`, `successes` of which the verifier accepted."""

    samples: int
    successes: int
    retry_temperature: float

    @property
    def learnable(self) -> bool:
        """Some but not all of the retries succeeded: a group whose retries all agree has zero advantages."""
        return 0 < self.successes < self.samples

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any, source: str, line_no: int | None, number: int) -> Screen:
        """A screen, checked: `learnable` and training's selection trust its counts and temperature."""
        temperature = raw.get("retry_temperature") if isinstance(raw, dict) else None
        if (
            not isinstance(raw, dict)
            or not _is_count(raw.get("samples"))
            or not _is_count(raw.get("successes"))
            or not 0 <= raw["successes"] <= raw["samples"]
            or raw["samples"] < 1
            or isinstance(temperature, bool)
            or not (isinstance(temperature, int | float) and temperature >= 0)
        ):
            raise DataError(
                source,
                line_no,
                f"failed_attempts[{number}].screen",
                f"expected {{samples: K >= 1, successes: 0..K, retry_temperature: T >= 0}} "
                f"(got {clip(json.dumps(raw), 80)})",
            )
        return cls(raw["samples"], raw["successes"], temperature)


@dataclass
class FailedAttempt:
    """A kept failed attempt: the episode it starts (its mined chain as `rounds`) and its screen."""

    episode: Episode
    screen: Screen | None = None

    @classmethod
    def of(
        cls, example: Example, completion: str, reason: str = "", index: int = 0, screen: Screen | None = None
    ) -> FailedAttempt:
        """A failed attempt from its text and the verifier's reason alone: for callers that write
        failures files of their own."""
        return cls(Episode(index, example, Completion(completion, 0), Verdict.failure(reason)), screen)

    def to_json(self) -> dict[str, Any]:
        return {**self.episode.to_json(), "screen": None if self.screen is None else self.screen.to_json()}

    @classmethod
    def from_json(
        cls, raw: Any, task: Task, example: Example, source: str, line_no: int | None, number: int
    ) -> FailedAttempt:
        """Failed attempt `number` of a row whose example is `example`."""
        where = f"{source}, row {line_no}, failed_attempts[{number}]"
        episode = Episode.from_json(raw, where, task, example)
        if episode.attempt_verdict.ok:
            raise DataError(source, line_no, f"failed_attempts[{number}]", "attempt_ok is true")
        screen = raw.get("screen")
        return cls(episode, None if screen is None else Screen.from_json(screen, source, line_no, number))


@dataclass(frozen=True)
class FailureRecord:
    """One mined query: the example, its failed attempts (none if the model never failed it), how often
    the model succeeded and the tokens it sampled."""

    task: str
    query_index: int
    example: Example
    failed_attempts: list[FailedAttempt]
    samples_drawn: int
    successes: int
    sampled_tokens: int = 0

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
            failed_attempts=[a.to_json() for a in self.failed_attempts],
            samples_drawn=self.samples_drawn,
            successes=self.successes,
            sampled_tokens=self.sampled_tokens,
        )
        row[FORMAT_KEY] = FAILURES_FORMAT
        return row

    @classmethod
    def from_json(cls, row: Any, task: Task, source: str, line_no: int | None = None) -> FailureRecord:
        """A row of the current format, checked: a `DataError` naming `source`, the line and the field
        otherwise."""
        if not isinstance(row, dict):
            raise DataError(source, line_no, None, "expected an object")
        check_format(row, source, line_no)
        for key in REQUIRED:
            if key not in row:
                raise DataError(source, line_no, key, "missing (is this a file written by `r3 mine`?)")
        if row["task"] != task.name:
            raise DataError(source, line_no, "task", f"'{row['task']}' does not match the task '{task.name}'")
        attempts = row["failed_attempts"]
        if not isinstance(attempts, list):
            raise DataError(source, line_no, "failed_attempts", "expected a list of attempts")
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
            failed_attempts=[
                FailedAttempt.from_json(a, task, example, source, line_no, i) for i, a in enumerate(attempts)
            ],
            samples_drawn=row["samples_drawn"],
            successes=row["successes"],
            sampled_tokens=row.get("sampled_tokens") or 0,
        )


def check_format(row: dict[str, Any], source: str, line_no: int | None = None) -> None:
    """Refuse a row of another format than `FAILURES_FORMAT` in one line (no field, or null as
    `datasets` writes it back, is the first format)."""
    value = row.get(FORMAT_KEY)
    if value is not None and (not _is_count(value) or value < 1):
        raise DataError(
            source, line_no, FORMAT_KEY, f"expected a format number (got {clip(repr(value), 40)})"
        )
    if value is None or value < FAILURES_FORMAT:
        raise DataError(
            source, line_no, FORMAT_KEY, f"format {value or 1} was written by an older r3; {MINE_AGAIN}"
        )
    if value > FAILURES_FORMAT:
        raise DataError(
            source,
            line_no,
            FORMAT_KEY,
            f"format {value} was written by a newer r3; this one reads format {FAILURES_FORMAT}",
        )


def learnable(attempt: FailedAttempt) -> bool | None:
    """Whether a failed attempt's GRPO groups are expected to carry a signal (`selection: learnable`);
    None when the attempt was not screened."""
    return None if attempt.screen is None else attempt.screen.learnable


def check_screen_temperature(records: list[FailureRecord], retry_temperature: float, source: str) -> None:
    """Refuse to select attempts by a screen whose retries were drawn at another temperature than
    training draws them: its counts then predict other groups than the ones training samples."""
    screened = {a.screen.retry_temperature for r in records for a in r.failed_attempts if a.screen}
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


def read_failures(path: str | Path, task: Task) -> list[FailureRecord]:
    """The rows with failed attempts of a failures file written by `r3 mine`, validated (another task's
    rows are refused), read with the run folders' reader: a torn last line is left out with a warning."""
    file = Path(path)
    if not file.is_file():
        raise DataError(str(file), None, None, "no such failures file (run `r3 mine` first)")
    lines = log_lines(file, remedy=MINE_AGAIN)
    if torn_tail(file):
        warnings.warn(
            f"{file}: the last line is incomplete (`r3 mine` was stopped mid-write); read without it. "
            "Run the same `r3 mine` again to mine that query",
            stacklevel=2,
        )
    records = [FailureRecord.from_json(row, task, str(file), line_no) for line_no, row in lines]
    records = [record for record in records if record.failed_attempts]
    if not records:
        raise DataError(str(file), None, None, "contains no failures")
    return records

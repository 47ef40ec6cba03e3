"""Progress reporting for long jobs.

On a terminal: a rich progress bar. Elsewhere (CI logs, `nohup`): a plain line at most every
`interval` seconds and one at the end, so logs show progress without a flood of redraws.
`R3_NO_PROGRESS=1` (or `--no-progress`) silences both. Used by every long job: eval, mine.
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import Any


class ProgressReport:
    """`with ProgressReport("eval", total) as p: p.advance(k, kept=3)`."""

    def __init__(
        self,
        description: str,
        total: int,
        fields: dict[str, Any] | None = None,
        interval: float = 10.0,
        done: int = 0,
        enabled: bool = True,
    ):
        """`done`: already finished (a resumed job); `enabled=False` (`--no-progress`) shows nothing."""
        self.description = description
        self.total = total
        self.done = done
        self.fields = dict(fields or {})
        self.interval = interval
        self.quiet = not enabled or os.environ.get("R3_NO_PROGRESS") == "1"
        self.live = not self.quiet and sys.stderr.isatty()
        self._start = time.monotonic()
        self._last_line = 0.0
        self._last_done = -1
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressReport:
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=Console(stderr=True),
            )
            self._bar.start()
            self._task = self._bar.add_task(
                self.description, total=self.total, completed=self.done, status=self._status()
            )
        return self

    def advance(self, steps: int = 1, **fields: Any) -> None:
        self.done += steps
        self.fields.update(fields)
        if self._bar is not None:
            self._bar.update(self._task, advance=steps, status=self._status())
        elif not self.quiet and time.monotonic() - self._last_line >= self.interval:
            self._print_line()

    def _status(self) -> str:
        return "  ".join(f"{k} {v}" for k, v in self.fields.items())

    def _print_line(self) -> None:
        if self.done == self._last_done:
            return
        self._last_done = self.done
        self._last_line = time.monotonic()
        elapsed = self._last_line - self._start
        print(
            f"{self.description}: {self.done}/{self.total}  {self._status()}  [{elapsed:.0f}s]",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ):
        if self._bar is not None:
            self._bar.stop()
        elif not self.quiet:
            self._print_line()

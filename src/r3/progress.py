"""Progress of long jobs: a rich bar on a terminal; elsewhere a line at most every `interval` seconds, one
at the end, and one every `heartbeat` seconds so a log never looks hung (`R3_NO_PROGRESS=1`: none).
"""

from __future__ import annotations

import os
import sys
import threading
import time
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
        heartbeat: float = 30.0,
    ):
        """`done`: already finished (a resumed job); `enabled=False` (`--no-progress`) shows nothing."""
        self.description = description
        self.total = total
        self.done = done
        self.fields = dict(fields or {})
        self.interval = interval
        self.heartbeat = heartbeat
        self.quiet = not enabled or os.environ.get("R3_NO_PROGRESS") == "1"
        self.live = not self.quiet and sys.stderr.isatty()
        self._start = time.monotonic()
        self._last_line = self._start
        self._last_done = -1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beats: threading.Thread | None = None
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressReport:
        if self.live:
            from rich import progress
            from rich.console import Console

            self._bar = progress.Progress(
                progress.TextColumn("[bold]{task.description}"),
                progress.BarColumn(),
                progress.MofNCompleteColumn(),
                progress.TimeElapsedColumn(),
                progress.TimeRemainingColumn(),
                progress.TextColumn("{task.fields[status]}"),
                console=Console(stderr=True),
            )
            self._bar.start()
            self._task = self._bar.add_task(
                self.description, total=self.total, completed=self.done, status=self._status()
            )
        elif not self.quiet and self.heartbeat > 0:
            self._beats = threading.Thread(
                target=self._beat, name=f"{self.description}-progress", daemon=True
            )
            self._beats.start()
        return self

    def advance(self, steps: int = 1, **fields: Any) -> None:
        with self._lock:
            self.done += steps
            self.fields.update(fields)
            if self._bar is not None:
                self._bar.update(self._task, advance=steps, status=self._status())
                if self.interval == 0:
                    self._bar.console.print(self._line(), highlight=False)
            elif not self.quiet and time.monotonic() - self._last_line >= self.interval:
                self._print_line()

    def _beat(self) -> None:
        while not self._stop.wait(min(self.heartbeat, 1.0)):
            with self._lock:
                if time.monotonic() - self._last_line >= self.heartbeat:
                    self._print_line(force=True)

    def _status(self) -> str:
        return "  ".join(f"{k} {v}" for k, v in self.fields.items())

    def _line(self) -> str:
        elapsed = time.monotonic() - self._start
        return f"{self.description}: {self.done}/{self.total}  {self._status()}  [{elapsed:.0f}s]"

    def _print_line(self, force: bool = False) -> None:
        if self.done == self._last_done and not force:
            return
        self._last_done = self.done
        self._last_line = time.monotonic()
        print(self._line(), file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._beats is not None:
            self._beats.join()
        if self._bar is not None:
            self._bar.stop()
        elif not self.quiet:
            with self._lock:
                self._print_line()

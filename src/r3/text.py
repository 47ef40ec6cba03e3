"""One way to shorten model output and exceptions to one line, for reasons, errors and reports."""

from __future__ import annotations


def clip(text: str | None, limit: int) -> str:
    """`text` on one line (whitespace runs collapsed to one space), cut to at most `limit` characters
    with "…" as the last one when it was longer."""
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: max(0, limit - 1)] + "…"

"""Short one-line versions of long texts, for reasons, error messages and reports.

One helper so that every place that shortens model output or an exception does it the same way.
"""

from __future__ import annotations


def clip(text: str | None, limit: int) -> str:
    """`text` on one line (whitespace runs collapsed to one space), cut to at most `limit` characters
    with "…" as the last one when it was longer."""
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: max(0, limit - 1)] + "…"

"""What every report plot shares: one way to save a figure, an axis scaled to its data, tick labels
that stay apart.

The reports' plots are read at a glance, so two things are worth one place each: a bar of 7% on an
axis to 100% is a sliver nobody reads (`axis_top` fits the axis to the data, with headroom), and two
tick labels shortened to the same text make two rows look like one (`distinct_labels` wraps instead
of cutting, and names the row when shortening cannot be avoided).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend: reports are written where there is no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Figure, path: Path, dpi: int = 120) -> Path:
    """Lay out, write and close `fig` (closed so that a long report does not hold every figure). A
    figure made with a layout of its own (constrained, for a legend outside the axes) keeps it."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def axis_top(
    peak: float, *, headroom: float = 0.15, floor: float = 5.0, ceiling: float | None = 100.0
) -> float:
    """The upper limit of a value axis starting at 0 whose largest value (bar end, interval bound) is
    `peak`: `headroom` above it, at least `floor` (all zeros still get a readable axis), at most
    `ceiling` (None: no cap, for axes that need room past 100% for a label beside the bar)."""
    top = max(peak * (1 + headroom), floor)
    return top if ceiling is None else min(top, ceiling)


def distinct_labels(texts: Sequence[str], width: int = 40, max_lines: int = 3) -> list[str]:
    """Tick labels for `texts`: each wrapped onto lines of at most `width` characters, at most
    `max_lines` of them (the last cut with "…" when the text is longer still). Texts that are
    different but still come out the same get their row number, "(row 3)", which the report's table
    lists in the same order."""
    labels = []
    for text in texts:
        lines = textwrap.wrap(" ".join(text.split()), width) or [""]
        if len(lines) > max_lines:
            kept = lines[: max_lines - 1]
            rest = " ".join(lines[max_lines - 1 :])
            lines = [*kept, rest[: width - 1] + "…"]
        labels.append("\n".join(lines))
    texts_of: dict[str, set[str]] = {}
    for text, label in zip(texts, labels, strict=True):
        texts_of.setdefault(label, set()).add(text)
    return [
        f"{label} (row {row})" if len(texts_of[label]) > 1 else label
        for row, label in enumerate(labels, start=1)
    ]

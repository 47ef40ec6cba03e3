"""What every report's plots and tables share. A bar of 7% on an axis to 100% is a sliver nobody reads
(`axis_top` fits the axis to the data), and two tick labels shortened to the same text make two rows
look like one (`distinct_labels` wraps).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
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


def figure_link(fig: Figure | None, out: Path, name: str, alt: str, dpi: int = 120) -> list[str]:
    """Save `fig` as `out/name` and return the markdown lines linking it (none when no figure)."""
    if fig is None:
        return []
    save_figure(fig, out / name, dpi)
    return [f"![{alt}]({name})", ""]


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table: `header`, then a line per row of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def axis_top(
    peak: float, *, headroom: float = 0.15, floor: float = 5.0, ceiling: float | None = 100.0
) -> float:
    """The top of an axis from 0 whose largest value is `peak`: `headroom` above it, at least `floor`,
    at most `ceiling` (None: room past 100% for a label beside the bar)."""
    top = max(peak * (1 + headroom), floor)
    return top if ceiling is None else min(top, ceiling)


def distinct_labels(texts: Sequence[str], width: int = 40, max_lines: int = 3) -> list[str]:
    """Tick labels for `texts`: each wrapped onto at most `max_lines` lines of `width` characters (the
    last cut with "…"). Different texts that still come out the same get their row, "(row 3)"."""
    labels = []
    for text in texts:
        lines = textwrap.wrap(" ".join(text.split()), width) or [""]
        if len(lines) > max_lines:
            rest = " ".join(lines[max_lines - 1 :])
            lines = [*lines[: max_lines - 1], rest[: width - 1] + "…"]
        labels.append("\n".join(lines))
    texts_of: dict[str, set[str]] = {}
    for text, label in zip(texts, labels, strict=True):
        texts_of.setdefault(label, set()).add(text)
    return [
        f"{label} (row {row})" if len(texts_of[label]) > 1 else label
        for row, label in enumerate(labels, start=1)
    ]

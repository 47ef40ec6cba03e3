"""The table and plot of `r3 forgetting`: each model's lm-eval scores and their change against the
first, so that what training cost elsewhere is one look (the paper: under 1% in nearly all cases)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r3.reports.plots import figure_link, markdown_table, pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Row = tuple[str, str]  # (task, metric)


def change(reference: dict[str, float | None], other: dict[str, float | None]) -> tuple[float, float | None]:
    """`other - reference` and its standard error (the two runs' errors combined as independent)."""
    delta = float(other["value"] or 0.0) - float(reference["value"] or 0.0)
    if reference["stderr"] is None or other["stderr"] is None:
        return delta, None
    return delta, math.sqrt(reference["stderr"] ** 2 + other["stderr"] ** 2)


def _rows(summary: dict[str, Any]) -> list[Row]:
    """Every (task, metric) of any model, in the order lm-eval gave them."""
    rows: list[Row] = []
    for label in summary["order"]:
        for task, metrics in summary["models"][label]["scores"].items():
            rows += [(task, metric) for metric in metrics if (task, metric) not in rows]
    return rows


def _score(summary: dict[str, Any], label: str, row: Row) -> dict[str, float | None] | None:
    return summary["models"][label]["scores"].get(row[0], {}).get(row[1])


def _fmt(value: float, stderr: float | None, sign: str = "") -> str:
    return f"{value:{sign}.3f}" + (f" ± {stderr:.3f}" if stderr is not None else "")


def forgetting_table(summary: dict[str, Any]) -> str:
    """Markdown: a row per task and metric; per model its score ± standard error, and for every model
    after the first, the change against the first."""
    order = summary["order"]
    reference = order[0]
    rows = []
    for row in _rows(summary):
        base = _score(summary, reference, row)
        cells = [row[0], row[1]]
        for label in order:
            score = _score(summary, label, row)
            cells.append("-" if score is None else _fmt(float(score["value"] or 0.0), score["stderr"]))
        for label in order[1:]:
            score = _score(summary, label, row)
            cells.append("-" if base is None or score is None else _fmt(*change(base, score), sign="+"))
        rows.append(cells)
    header = ["task", "metric", *order, *[f"{label} - {reference}" for label in order[1:]]]
    return markdown_table(header, rows)


def plot_changes(summary: dict[str, Any]) -> Figure | None:
    """Horizontal bars: each later model's change against the first per task and metric, with
    ±1.96 combined standard errors; None when there is only one model."""
    order = summary["order"]
    if len(order) < 2:
        return None
    rows = [row for row in _rows(summary) if _score(summary, order[0], row) is not None]
    height = 0.8 / (len(order) - 1)
    fig, ax = pyplot().subplots(figsize=(7, 1.2 + 0.5 * len(rows) * (len(order) - 1)))
    for k, label in enumerate(order[1:]):
        ys, deltas, errs = [], [], []
        for i, row in enumerate(rows):
            score = _score(summary, label, row)
            if score is None:
                continue
            delta, err = change(_score(summary, order[0], row), score)  # type: ignore[arg-type]
            ys.append(i + k * height)
            deltas.append(delta)
            errs.append(1.96 * err if err is not None else 0.0)
        ax.barh(ys, deltas, height=height, xerr=errs, capsize=3, label=label)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(rows))])
    ax.set_yticklabels([f"{task}\n{metric}" for task, metric in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"change against {order[0]} (±1.96 standard errors)")
    ax.legend(loc="best", fontsize="small")
    return fig


def write_forgetting_report(summary: dict[str, Any], out: Path) -> Path:
    """Write `forgetting.md` (and `forgetting.png` with two models or more); returns the markdown path."""
    config = summary.get("config", {})
    body = [
        "# Forgetting check: general ability before and after",
        "",
        forgetting_table(summary),
        "",
        f"Scores from lm-evaluation-harness (tasks: {', '.join(config.get('tasks', '').split(','))}; "
        f"limit: {config.get('limit')}; few-shot: {config.get('num_fewshot')}), ± its standard error. "
        f"Changes are against {summary['order'][0]}, ± the two standard errors combined as independent; "
        "a change inside about twice that is not evidence of a change. lm-eval's own files are in "
        "`lm_eval/`.",
        "",
        *figure_link(plot_changes(summary), out, "forgetting.png", "changes", dpi=110),
    ]
    path = out / "forgetting.md"
    path.write_text("\n".join(body))
    return path

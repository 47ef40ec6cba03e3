"""Training curves from `r3 train` output folders: the per-step `r3/...` metrics of `r3_training.json`,
for `r3 report` and the learning experiment's report."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r3.errors import R3Error
from r3.reports.plots import markdown_table, pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SUMMARY_FILE = "r3_training.json"  # = r3.training.trainer.SUMMARY_FILE (not imported: no torch here)
#: A run's success, the mean of the outcome its reward scores, by the first of these it logged: every
#: turn's (`mode: combined`, which also logs each kind's), the retry's (R3), the attempt's (GRPO).
SUCCESS_KEYS = ("r3/turn_success", "r3/retry_success", "r3/attempt_success")
SUCCESS = "success"
#: The metrics plotted, with their titles; `SUCCESS` is the run's own (`success_key`).
CURVES = {
    SUCCESS: "success (reward mean: retry; GRPO: attempt; combined: both)",
    "r3/groups_no_signal": "groups with no signal",
    "r3/reflection_length": "reflection length (tokens)",
}

Series = dict[str, list[tuple[int, float]]]


def success_key(series: Series) -> str:
    """The key of a run's success (`SUCCESS_KEYS`); the retry's when it logged none."""
    return next((key for key in SUCCESS_KEYS if key in series), "r3/retry_success")


@dataclass(frozen=True)
class TrainingSummary:
    """One `r3_training.json`, parsed: the task it trained on, every per-step `r3/...` metric, and the
    optimizer steps it ran (None when unknown; more than the rollouts logged under `num_iterations`)."""

    task: str | None
    series: Series
    optimizer_steps: int | None


def read_training_summary(folder: str | Path) -> TrainingSummary | None:
    """A training folder's summary (None when it has no `r3_training.json`: not trained, or cut
    before the end). A file that is there but unreadable is an error naming it, not an empty run."""
    path = Path(folder) / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        history = data.get("log_history", [])
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise R3Error(f"{path}: not a training summary ({exc})") from None
    series: Series = {}
    for row in history if isinstance(history, list) else []:
        if not isinstance(row, dict) or "step" not in row:
            continue
        for key, value in row.items():
            if key.startswith("r3/") and isinstance(value, int | float) and not isinstance(value, bool):
                series.setdefault(key, []).append((int(row["step"]), float(value)))
    steps = data.get("global_step")
    task = data.get("task")
    return TrainingSummary(
        task=task if isinstance(task, str) else None,
        series=series,
        optimizer_steps=steps if isinstance(steps, int) and not isinstance(steps, bool) else None,
    )


def plot_training_curves(runs: dict[str, Series]) -> Figure:
    """Retry success, groups without signal and reflection length against steps, one line per run. A
    run keeps one colour in every panel, even where it has no curve (plain GRPO writes no
    reflections), and the legend sits below the panels, where it hides no curve."""
    fig, axes = pyplot().subplots(1, 3, figsize=(13, 3.9), layout="constrained")
    handles: dict[str, Any] = {}
    for ax, (key, title) in zip(axes, CURVES.items(), strict=True):
        for colour, (label, series) in enumerate(runs.items()):
            points = series.get(success_key(series) if key == SUCCESS else key, [])
            if points:
                steps, values = zip(*points, strict=True)
                (line,) = ax.plot(steps, values, label=label, marker=".", alpha=0.8, color=f"C{colour % 10}")
                handles.setdefault(label, line)
        ax.set_title(textwrap.fill(title, 42), fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if handles:
        labels = [label for label in runs if label in handles]
        ncols = min(len(labels), 5)
        fig.legend([handles[label] for label in labels], labels, loc="outside lower center", ncols=ncols)
    return fig


def training_table(runs: dict[str, Series]) -> str:
    """Markdown: per run, the steps logged and the mean (and last) value of each curve."""
    patterns = {SUCCESS: "{:.3f}", "r3/groups_no_signal": "{:.2f}", "r3/reflection_length": "{:.1f}"}
    rows = []
    for label, series in runs.items():
        steps = len({step for points in series.values() for step, _ in points})
        cells = []
        for key, pattern in patterns.items():
            points = series.get(success_key(series) if key == SUCCESS else key, [])
            mean = sum(value for _, value in points) / len(points) if points else None
            cells.append("-" if mean is None else f"{pattern.format(mean)} ({pattern.format(points[-1][1])})")
        rows.append([label, steps, *cells])
    header = ["run", "steps logged", "success (retry; GRPO: attempt; combined: both): mean (last)"]
    header += ["groups with no signal: mean (last)", "reflection length: mean (last)"]
    return markdown_table(header, rows)

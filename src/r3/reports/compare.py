"""Compare evaluations (e.g. the vanilla and the trained model): a table, plots, and reflections.

    r3 report runs/demo/eval-vanilla runs/demo/eval-trained --output-dir runs/demo/report

Reads each folder's `results.json` and `samples.jsonl` (written by `r3 eval`) and writes
`report.md`, `accuracy.png` (first/second try with 95% intervals) and `reflection_lengths.png`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r3.errors import R3Error


@dataclass
class EvalRun:
    """One `r3 eval` output folder, loaded."""

    label: str
    folder: Path
    results: dict[str, Any]
    samples: list[dict[str, Any]]


def load_run(folder: str | Path, label: str | None = None) -> EvalRun:
    path = Path(folder)
    results_file = path / "results.json"
    if not results_file.is_file():
        raise R3Error(f"{path}: no results.json (is this an `r3 eval` output folder?)")
    results = json.loads(results_file.read_text())
    samples_file = path / "samples.jsonl"
    samples = (
        [json.loads(line) for line in samples_file.read_text().splitlines() if line.strip()]
        if samples_file.is_file()
        else []
    )
    return EvalRun(label or path.name, path, results, samples)


def protocol(run: EvalRun) -> str:
    """The run's second-try protocol (`r3 eval --second-try`); results written before the option
    existed were all `reflect`."""
    r = run.results
    return str(r.get("second_try_protocol") or r.get("config", {}).get("second_try") or "reflect")


def comparison_table(runs: list[EvalRun]) -> str:
    """Markdown: one row per run, accuracies with intervals, and the change over the first run.

    When the runs used different second-try protocols (e.g. reflect and resample of one model), a
    column names each run's, so that a protocol comparison reads side by side; otherwise the column
    would only repeat itself and is left out."""
    mixed = len({protocol(run) for run in runs}) > 1
    lines = [
        "| run | model | n |"
        + (" second-try protocol |" if mixed else "")
        + " first try | second try | retries fixed | mean reflection tokens |",
        "|---|---|---|" + ("---|" if mixed else "") + "---|---|---|---|",
    ]
    base = runs[0].results
    for run in runs:
        r = run.results
        cells = []
        for key in ("first_try", "second_try"):
            block = r[key]
            lo, hi = block["ci95"]
            delta = block["accuracy"] - base[key]["accuracy"]
            change = "" if run is runs[0] else f" ({delta:+.1%})"
            cells.append(f"{block['accuracy']:.1%}{change} [{lo:.1%}, {hi:.1%}]")
        mean = r.get("reflection_tokens_mean")
        fixed = f"{r.get('retry_fixed', 0)}/{r.get('retries', 0)}"
        lines.append(
            f"| {run.label} | `{r['model']}` | {r['n']} | "
            + (f"{protocol(run)} | " if mixed else "")
            + f"{cells[0]} | {cells[1]} | {fixed} | "
            f"{'-' if mean is None else f'{mean:.1f}'} |"
        )
    return "\n".join(lines)


def reflection_examples(runs: list[EvalRun], count: int = 3, max_chars: int = 600) -> str:
    """The reflections each run wrote for the same examples, side by side."""
    by_run = [{s["index"]: s for s in run.samples if s.get("reflection")} for run in runs]
    shared = sorted(set.intersection(*(set(m) for m in by_run))) if by_run else []
    if not shared:
        shared = sorted(by_run[0]) if by_run else []
    parts: list[str] = []
    for index in shared[:count]:
        parts.append(f"### Example {index}\n")
        for run, samples in zip(runs, by_run, strict=True):
            s = samples.get(index)
            if s is None:
                continue
            text = s["reflection"].strip().replace("\n", " ")
            text = text if len(text) <= max_chars else text[:max_chars] + " ..."
            verdict = (
                "retry succeeded" if s.get("retry_ok") else f"retry failed: {s.get('retry_reason') or '-'}"
            )
            parts.append(f"**{run.label}** ({verdict}):\n\n> {text}\n")
    return "\n".join(parts) if parts else "_No reflections were written (every first attempt succeeded)._"


def plot_accuracy(runs: list[EvalRun], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(runs), 3.6))
    width = 0.38
    for offset, key, name in (
        (-width / 2, "first_try", "first try"),
        (width / 2, "second_try", "second try"),
    ):
        xs = [i + offset for i in range(len(runs))]
        acc = [run.results[key]["accuracy"] * 100 for run in runs]
        # Clamped at 0: results.json files written before the interval was exact at 0% and 100%
        # can hold a bound a rounding error on the wrong side of the accuracy.
        lo = [max(0.0, a - run.results[key]["ci95"][0] * 100) for a, run in zip(acc, runs, strict=True)]
        hi = [max(0.0, run.results[key]["ci95"][1] * 100 - a) for a, run in zip(acc, runs, strict=True)]
        ax.bar(xs, acc, width, yerr=[lo, hi], capsize=4, label=name)
    ax.set_xticks(range(len(runs)), [run.label for run in runs])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{runs[0].results['task']}: first and second try (95% Wilson CI)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_reflection_lengths(runs: list[EvalRun], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = [[s["reflection_tokens"] for s in run.samples if s.get("reflection_tokens")] for run in runs]
    if not any(lengths):
        return False
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for run, values in zip(runs, lengths, strict=True):
        if values:
            ax.hist(values, bins=20, alpha=0.55, label=f"{run.label} (mean {sum(values) / len(values):.0f})")
    ax.set_xlabel("reflection length (tokens)")
    ax.set_ylabel("examples")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_report(folders: list[str], output_dir: str | Path, labels: list[str] | None = None) -> Path:
    """Write the comparison report and return the path of `report.md`."""
    if labels and len(labels) != len(folders):
        raise R3Error(f"--labels gives {len(labels)} names for {len(folders)} runs")
    runs = [load_run(f, labels[i] if labels else None) for i, f in enumerate(folders)]
    tasks = {run.results["task"] for run in runs}
    if len(tasks) > 1:
        raise R3Error(f"the runs are of different tasks ({', '.join(sorted(tasks))}); compare like with like")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_accuracy(runs, out / "accuracy.png")
    has_lengths = plot_reflection_lengths(runs, out / "reflection_lengths.png")
    body = [
        f"# R3 report: {runs[0].results['task']}",
        "",
        comparison_table(runs),
        "",
        "Second try counts examples solved on either attempt. Intervals are 95% Wilson intervals; "
        "changes are against the first run.",
        "",
    ]
    if len({protocol(run) for run in runs}) > 1:
        body += [
            "Second-try protocols: reflect = a reflection, then a retry (the paper's); resample = a "
            "second independent attempt with no reflection (a replay under greedy decoding); feedback "
            "= a reflection shown the verifier's reason, then a retry.",
            "",
        ]
    body += [
        "![accuracy](accuracy.png)",
        "",
    ]
    if has_lengths:
        body += ["![reflection lengths](reflection_lengths.png)", ""]
    body += ["## Reflections", "", reflection_examples(runs), ""]
    report = out / "report.md"
    report.write_text("\n".join(body))
    return report

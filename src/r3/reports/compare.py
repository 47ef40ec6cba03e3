"""Compare `r3 eval` runs (e.g. the vanilla and the trained model) and `r3 train` runs in `report.md`.

    r3 report runs/demo/eval-vanilla runs/demo/eval-trained runs/demo/trained --output-dir runs/demo/report

Evaluations are read as typed records (`r3.evaluation.records`), trainings from `r3_training.json`;
the analysis is `r3.reports.analysis`, the pairing of runs and their names `r3.reports.problems`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from r3.episode import Episode
from r3.errors import R3Error
from r3.evaluation.records import EvalResults, read_results, read_samples
from r3.reports import analysis
from r3.reports.plots import axis_top, distinct_labels, figure_link, markdown_table, pyplot
from r3.reports.problems import comparability_note, display_path, distinct_names
from r3.reports.training import (
    SUMMARY_FILE,
    TrainingSummary,
    plot_training_curves,
    read_training_summary,
    training_table,
)
from r3.text import clip

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class EvalRun:
    """One `r3 eval` output folder, loaded."""

    label: str
    folder: Path
    results: EvalResults
    samples: list[Episode]


def load_run(folder: str | Path, label: str | None = None) -> EvalRun:
    path = Path(folder)
    results_file = path / "results.json"
    if not results_file.is_file():
        raise R3Error(f"{path}: no results.json (is this an `r3 eval` output folder?)")
    return EvalRun(label or path.name, path, read_results(results_file), read_samples(path / "samples.jsonl"))


def comparability(runs: list[EvalRun]) -> str | None:
    """The sentence saying that the runs evaluated different problems (or numbers of them); None when
    every run evaluated the same ones."""
    return comparability_note([(run.label, [analysis.key(s) for s in run.samples]) for run in runs])


def comparison_table(runs: list[EvalRun], folder: Path | None = None) -> str:
    """Markdown: one row per run, accuracies with intervals and the change over the first run; a
    column of second-try protocols only when they differ. With `folder` (the report's), a model given
    as an absolute path is shown relative to it (`display_path`)."""
    mixed = len({run.results.second_try_protocol for run in runs}) > 1
    header = ["run", "model", "n", *(["second-try protocol"] if mixed else [])]
    header += ["first try", "second try", "retries fixed", "mean reflection tokens"]
    base = runs[0].results
    rows = []
    for run in runs:
        r = run.results
        cells = []
        for block, first in ((r.first_try, base.first_try), (r.second_try, base.second_try)):
            lo, hi = block.ci95
            change = "" if run is runs[0] else f" ({block.accuracy - first.accuracy:+.1%})"
            cells.append(f"{block.accuracy:.1%}{change} [{lo:.1%}, {hi:.1%}]")
        model = r.model if folder is None else display_path(r.model, folder)
        mean = "-" if r.reflection_tokens_mean is None else f"{r.reflection_tokens_mean:.1f}"
        protocol = [r.second_try_protocol] if mixed else []
        rows.append([run.label, f"`{model}`", r.n, *protocol, *cells, f"{r.retry_fixed}/{r.retries}", mean])
    return markdown_table(header, rows)


def reflection_examples(runs: list[EvalRun], count: int = 3, max_chars: int = 600) -> str:
    """The reflections each run wrote for the same problems, side by side (the first run's alone
    when no problem has a reflection from every run)."""
    by_run = [{analysis.key(s): s for s in run.samples if analysis.reflection_text(s)} for run in runs]
    shared = sorted(set.intersection(*(set(m) for m in by_run))) or sorted(by_run[0])
    parts: list[str] = []
    for problem in shared[:count]:
        parts.append(f"### Example {problem[0]}\n")
        for run, samples in zip(runs, by_run, strict=True):
            s = samples.get(problem)
            if s is None:
                continue
            text = (analysis.reflection_text(s) or "").strip().replace("\n", " ")
            text = text if len(text) <= max_chars else text[:max_chars] + " ..."
            verdict = _retry_verdict(s, "retry succeeded", "retry failed")
            parts.append(f"**{run.label}** ({verdict}):\n\n> {text}\n")
    return "\n".join(parts) if parts else "_No reflections were written (every first attempt succeeded)._"


def _retry_verdict(row: Episode, right: str, wrong: str) -> str:
    """Round 1's retry as `right`, or as `wrong` with the verifier's reason."""
    verdict = row.first_round.retry_verdict if row.first_round is not None else None
    if verdict is not None and verdict.ok:
        return right
    return f"{wrong}: {(verdict.reason if verdict else '') or '-'}"


def plot_accuracy(runs: list[EvalRun]) -> Figure:
    """Bars of each run's first and second try with their 95% intervals, on an axis that ends a
    little above the highest interval (a run at 5% stays readable)."""
    fig, ax = pyplot().subplots(figsize=(1.8 + 1.6 * len(runs), 3.6))
    width = 0.38
    peak = 0.0
    for offset, blocks, name in (
        (-width / 2, [run.results.first_try for run in runs], "first try"),
        (width / 2, [run.results.second_try for run in runs], "second try"),
    ):
        xs = [i + offset for i in range(len(runs))]
        acc = [block.accuracy * 100 for block in blocks]
        # Clamped at 0: a stored bound can be a rounding error on the wrong side of the accuracy.
        lo = [max(0.0, a - block.ci95[0] * 100) for a, block in zip(acc, blocks, strict=True)]
        hi = [max(0.0, block.ci95[1] * 100 - a) for a, block in zip(acc, blocks, strict=True)]
        ax.bar(xs, acc, width, yerr=[lo, hi], capsize=4, label=name)
        peak = max(peak, *(a + h for a, h in zip(acc, hi, strict=True)))
    ax.set_xticks(range(len(runs)), distinct_labels([run.label for run in runs], width=18))
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, axis_top(peak, headroom=0.25))
    ax.set_title(f"{runs[0].results.task}: first and second try (95% Wilson CI)")
    ax.legend()
    return fig


def load_folders(
    folders: list[str], labels: list[str] | None = None
) -> tuple[list[EvalRun], dict[str, TrainingSummary]]:
    """Each folder as an evaluation (`results.json`) or a training run (`r3_training.json`, by label),
    in order, named by `labels`, else by folder names told apart (`distinct_names`: "a/eval", "b/eval")."""
    if labels and len(labels) != len(folders):
        raise R3Error(f"--labels gives {len(labels)} names for {len(folders)} runs")
    evals: list[EvalRun] = []
    trainings: dict[str, TrainingSummary] = {}
    for folder, label in zip(folders, labels or distinct_names(folders), strict=True):
        path = Path(folder)
        if (path / "results.json").is_file():
            evals.append(load_run(path, label))
        elif (summary := read_training_summary(path)) is not None:
            trainings[label] = summary
        elif not path.is_dir():
            raise R3Error(f"{path}: no such folder")
        else:
            raise R3Error(
                f"{path}: no results.json and no {SUMMARY_FILE} (neither an `r3 eval` nor an `r3 train` "
                "output folder)"
            )
    return evals, trainings


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({k / n:.0%})" if n else "-"


def _clip(text: str | None, limit: int) -> str:
    """One line of at most `limit` characters, with no backticks to break inline code."""
    return clip((text or "").replace("`", "'"), limit)


def length_table(runs: list[EvalRun]) -> str:
    """Markdown: the distribution of each run's reflection lengths (tokens)."""
    rows: list[list[object]] = []
    for run in runs:
        s = analysis.length_summary(analysis.reflection_lengths(run.samples))
        if s is None:
            rows.append([run.label, 0, *["-"] * 7])
        else:
            quartiles = [f"{s[q]:.0f}" for q in ("p25", "median", "p75", "p90")]
            rows.append([run.label, s["n"], f"{s['mean']:.1f}", s["min"], *quartiles, s["max"]])
    return markdown_table(["run", "reflections", "mean", "min", "25%", "median", "75%", "90%", "max"], rows)


def behaviour_table(runs: list[EvalRun]) -> str:
    """Markdown: reflections that contain an answer, retries fixed, retries that repeat the attempt."""
    rows = []
    for run in runs:
        b = analysis.reflection_behaviour(run.samples, analysis.evaluated_task(run.results))
        with_answer = "-" if b["with_answer"] is None else _pct(b["with_answer"], b["reflections"])
        fixed, repeats = _pct(b["fixed"], b["retries"]), _pct(b["repeats"], b["retries"])
        rows.append([run.label, b["reflections"], with_answer, b["retries"], fixed, repeats])
    header = ["run", "reflections", "containing an answer", "retries of failed attempts", "fixed"]
    return markdown_table([*header, "repeating the failed attempt"], rows)


def fix_rate_table(runs: list[EvalRun], table: list[tuple[str, list[tuple[int, int]]]]) -> str:
    """Markdown: per failure category of the first attempt, each run's retries fixed / made."""
    return markdown_table(
        ["first attempt's failure", *(run.label for run in runs)],
        (
            [category.replace("|", "\\|").replace("\n", " "), *(_pct(k, n) for k, n in cells)]
            for category, cells in table
        ),
    )


def fixed_examples(runs: list[EvalRun], count: int = 3, max_chars: int = 500) -> str:
    """For each later run: the examples its retry fixed and the first run did not solve, with both
    runs' attempt, reflection and retry side by side."""
    if len(runs) < 2:
        return ""
    base = runs[0]
    base_rows = {analysis.key(s): s for s in base.samples}
    parts: list[str] = []
    for run in runs[1:]:
        indices = analysis.fixed_only_by(run.samples, base.samples)
        noun = "example" if len(indices) == 1 else "examples"
        parts.append(f"### Fixed by {run.label}, not by {base.label}: {len(indices)} {noun}\n")
        rows = {s.index: s for s in run.samples}
        for index in indices[:count]:
            example = json.dumps(rows[index].example, ensure_ascii=False)
            parts.append(f"#### Example {index}\n\n`{_clip(example, 300)}`\n")
            pair = ((base.label, base_rows[analysis.key(rows[index])]), (run.label, rows[index]))
            for label, row in pair:
                if row.first_try_ok:
                    parts.append(f"**{label}**: first attempt right.\n")
                    continue
                attempt = _clip(row.attempt.text, max_chars)
                lines = [
                    f"**{label}**",
                    "",
                    f"- attempt ({row.attempt_verdict.reason or 'failed'}): `{attempt}`",
                    f"- reflection: {_clip(analysis.reflection_text(row), max_chars) or '_(none)_'}",
                ]
                if row.first_round is not None:
                    verdict = _retry_verdict(row, "right", "failed")
                    lines.append(f"- retry ({verdict}): `{_clip(row.first_round.retry.text, max_chars)}`")
                parts.append("\n".join(lines) + "\n")
        if len(indices) > count:
            parts.append(f"_... and {len(indices) - count} more (see samples.jsonl)._\n")
    return "\n".join(parts)


def plot_reflection_lengths(runs: list[EvalRun]) -> Figure | None:
    """Histograms of each run's reflection lengths on shared bins; None when no run reflected."""
    lengths = [analysis.reflection_lengths(run.samples) for run in runs]
    if not any(lengths):
        return None
    top = max(max(values) for values in lengths if values)
    width = max(1, -(-top // 25))  # about 25 bins of whole tokens
    bins = list(range(0, top + 2 * width, width))
    fig, ax = pyplot().subplots(figsize=(6, 3.4))
    for run, values in zip(runs, lengths, strict=True):
        s = analysis.length_summary(values)
        if s is not None:
            label = f"{run.label} (n {s['n']}, mean {s['mean']:.0f}, median {s['median']:.0f})"
            ax.hist(values, bins=bins, alpha=0.5, label=label)
    ax.set_xlabel("reflection length (tokens)")
    ax.set_ylabel("reflections")
    ax.legend(fontsize=8)
    return fig


def plot_fix_rates(runs: list[EvalRun], table: list[tuple[str, list[tuple[int, int]]]]) -> Figure | None:
    """Horizontal bars: each run's fix rate per failure category (wrapped, `distinct_labels`), its
    "fixed/retried" count beside it, on an axis fitted to the rates; None when there were no retries."""
    if not table:
        return None
    labels = distinct_labels([category for category, _ in table])
    lines = max(label.count("\n") + 1 for label in labels)
    row_inches = max(0.25 * len(runs) + 0.3, 0.16 * lines + 0.15)
    fig, ax = pyplot().subplots(figsize=(8, 1.4 + row_inches * len(table)))
    height = 0.8 / len(runs)
    peak = 0.0
    for j, run in enumerate(runs):
        ys = [i - 0.4 + height * (j + 0.5) for i in range(len(table))]
        rates = [100 * cells[j][0] / cells[j][1] if cells[j][1] else 0.0 for _, cells in table]
        peak = max(peak, *rates)
        bars = ax.barh(ys, rates, height, label=run.label)
        ax.bar_label(bars, [f"{cells[j][0]}/{cells[j][1]}" for _, cells in table], padding=3, fontsize=7)
    ax.set_yticks(range(len(table)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, axis_top(peak, headroom=0.3, ceiling=None))
    ax.set_xticks([tick for tick in ax.get_xticks() if 0 <= tick <= 100])  # room past 100%, no "120%"
    ax.set_xlabel("retries that fixed the attempt (%)")
    ax.set_title("fix rate by the first attempt's failure")
    ax.legend(fontsize=8)
    return fig


def rounds_table(runs: list[EvalRun]) -> str:
    """Markdown: a row per run, a column per round."""
    most = max(len(run.results.by_round()) for run in runs)
    rows = []
    for run in runs:
        cells = [f"{r.accuracy:.1%} ({r.correct}/{run.results.n})" for _, r in run.results.by_round()]
        rows.append([run.label, run.results.second_try_protocol, *cells, *["-"] * (most - len(cells))])
    header = ["run", "protocol", *[f"round {k}" if k else "first try" for k in range(most)]]
    return markdown_table(header, rows)


def plot_rounds(runs: list[EvalRun]) -> Figure:
    """Accuracy against rounds, a line per run with its 95% interval as a band."""
    fig, ax = pyplot().subplots(figsize=(5.5, 3.6))
    peak = 0.0
    for run in runs:
        points = run.results.by_round()
        ks = [k for k, _ in points]
        label = f"{run.label} ({run.results.second_try_protocol})"
        ax.plot(ks, [p.accuracy * 100 for _, p in points], marker="o", label=label)
        ax.fill_between(
            ks, [p.ci95[0] * 100 for _, p in points], [p.ci95[1] * 100 for _, p in points], alpha=0.15
        )
        peak = max(peak, *(p.ci95[1] * 100 for _, p in points))
    most = max(len(run.results.by_round()) for run in runs)
    ax.set_xticks(range(most), ["first try", *[str(k) for k in range(1, most)]])
    ax.set_xlabel("round")
    ax.set_ylabel("solved so far (%)")
    ax.set_ylim(0, axis_top(peak, headroom=0.25))
    ax.set_title(f"{runs[0].results.task}: accuracy by round (95% Wilson CI)")
    ax.legend(fontsize="small")
    return fig


def eval_sections(runs: list[EvalRun], out: Path) -> list[str]:
    """The report's sections on evaluations (writing their plots into `out`)."""
    body = [
        comparison_table(runs, out),
        "",
        "Second try counts examples solved on either attempt. Intervals are 95% Wilson intervals; "
        "changes are against the first run.",
        "",
    ]
    if len({run.results.second_try_protocol for run in runs}) > 1:
        body += [
            "Second-try protocols: reflect = a reflection, then a retry (the paper's); resample = a "
            "second independent attempt with no reflection (a replay under greedy decoding); feedback "
            "= a reflection shown the verifier's reason, then a retry.",
            "",
        ]
    body += figure_link(plot_accuracy(runs), out, "accuracy.png", "accuracy")
    if any(len(run.results.rounds) > 1 for run in runs):  # some run went past round 1
        body += [
            "## Accuracy by round",
            "",
            rounds_table(runs),
            "",
            "Examples solved on any attempt up to each round (round 0: the first attempt alone), with "
            "95% Wilson intervals. A round is a reflection and a retry (reflect, feedback) or one more "
            "independent attempt (resample): the same number of answers either way.",
            "",
            *figure_link(plot_rounds(runs), out, "rounds.png", "accuracy by round"),
        ]

    body += ["## Reflection lengths", "", length_table(runs), ""]
    body += figure_link(plot_reflection_lengths(runs), out, "reflection_lengths.png", "reflection lengths")

    body += [
        "## What the reflections do",
        "",
        behaviour_table(runs),
        "",
        "A reflection contains an answer when it holds a closed `<answer>...</answer>` pair or tool-call "
        'JSON with a `"name"` (it was asked for advice, not for the answer). A retry repeats the failed '
        "attempt when both are the same text once whitespace is collapsed.",
        "",
    ]

    fixes = analysis.fix_rates_by_reason([run.samples for run in runs])
    body += ["## Fix rate by the first attempt's failure", ""]
    if fixes:
        body += [
            fix_rate_table(runs, fixes),
            "",
            "Retries that fixed the first attempt / retries made, by the verifier's reason for the first "
            "attempt's failure (numbers shown as N, quoted text as '…'; the "
            f"{analysis.TOP_REASONS} most frequent, then `{analysis.OTHER}`).",
            "",
        ]
        body += figure_link(plot_fix_rates(runs, fixes), out, "fix_rates.png", "fix rates")
    else:
        body += ["_No retries: every first attempt succeeded._", ""]

    if fixed := fixed_examples(runs):
        body += ["## Fixed by a later run, not by the first", "", fixed, ""]
    body += ["## Reflections", "", reflection_examples(runs), ""]
    return body


def write_report(folders: list[str], output_dir: str | Path, labels: list[str] | None = None) -> Path:
    """Write the report of `r3 eval` and `r3 train` folders and return the path of `report.md`."""
    if not folders:
        raise R3Error("no folders to report on")
    runs, trainings = load_folders(folders, labels)
    tasks = {run.results.task for run in runs}
    if len(tasks) > 1:
        raise R3Error(f"the runs are of different tasks ({', '.join(sorted(tasks))}); compare like with like")
    task = runs[0].results.task if runs else next((t.task for t in trainings.values() if t.task), "training")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    body = [f"# R3 report: {task}", ""]
    if note := comparability(runs):
        body += [f"**{note}**", ""]
    if runs:
        body += eval_sections(runs, out)
    if trainings:
        series = {label: summary.series for label, summary in trainings.items()}
        body += ["## Training", ""]
        if any(series.values()):
            body += figure_link(plot_training_curves(series), out, "training_curves.png", "training curves")
        body += [
            training_table(series),
            "",
            "From each folder's `r3_training.json` (the `r3/...` metrics logged every `logging_steps`): "
            "retry success is the reward mean; a group with no signal has the same reward for all its "
            "reflections.",
            "",
        ]
    report = out / "report.md"
    report.write_text("\n".join(body))
    return report

"""`r3 report`: compare `r3 eval` runs (vanilla vs trained) and plot `r3 train` runs' curves."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from r3.errors import R3Error

DESCRIPTION = """\
Compare r3 eval runs (e.g. before and after training) and plot r3 train runs' curves. For evaluation
folders: the accuracy table and plot, reflection lengths, how often reflections contain an answer and
retries repeat the failed attempt, the retry's fix rate by failure reason, and the reflections of the
examples a later run fixed. For training folders: retry success, groups with no signal and
reflection length against steps. Writes report.md and its plots to --output_dir (--html: report.html).

examples:
  r3 report runs/eval-vanilla runs/eval-trained --labels vanilla trained --output_dir runs/report
  r3 report runs/eval-vanilla runs/eval-trained runs/trained --output_dir runs/report --html
"""


@dataclass
class ReportArguments:
    """`r3 report`'s options. The folders come first, as positional arguments (`runs`)."""

    runs: list[str] = field(
        default_factory=list,
        metadata={"help": "`r3 eval` folders (the first is the baseline) and/or `r3 train` folders"},
    )
    labels: list[str] | None = field(
        default=None, metadata={"help": "a name per folder (default: folder names)"}
    )
    output_dir: str = field(default="runs/report", metadata={"help": "where the report goes"})
    html: bool = field(
        default=False, metadata={"help": "also write report.html, the report as one self-contained page"}
    )

    def __post_init__(self) -> None:
        if not self.runs:
            raise R3Error("r3 report needs at least one folder (r3 report runs/eval-a runs/eval-b ...)")
        if self.labels is not None and len(self.labels) != len(self.runs):
            raise R3Error(f"--labels names {len(self.labels)} folders, but {len(self.runs)} were given")


def positional_runs(argv: list[str]) -> list[str]:
    """`r3 report A B --html` as `--runs A B --html`: the folders before the first flag."""
    head = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    return ["--runs", *argv] if head else argv


def main(argv: list[str]) -> int:
    """`r3 report ...`; returns the exit status."""
    from r3.cli.options import parse_trl_config

    args = parse_trl_config(
        ReportArguments,
        positional_runs(argv),
        prog="r3 report",
        description=DESCRIPTION,
        usage="r3 report FOLDER [FOLDER ...] [--config FILE.yaml] [OPTIONS]",
    )
    return run(args)  # type: ignore[arg-type]


def run(args: ReportArguments) -> int:
    from r3.reports.compare import comparability, comparison_table, load_folders, write_report
    from r3.reports.training import training_table

    report = write_report(args.runs, args.output_dir, args.labels)
    evals, trainings = load_folders(args.runs, args.labels)
    note = comparability(evals)
    if note:
        print(note)
    if evals:
        print(comparison_table(evals))
    if trainings:
        print(training_table({label: summary.series for label, summary in trainings.items()}))
    plots = ", ".join(re.findall(r"\]\(([^)]+\.png)\)", report.read_text()))
    print(f"Report in {report}" + (f" (with {plots})" if plots else ""))
    if args.html:
        from r3.reports.html import write_html

        print(f"Page in {write_html(report)} (self-contained: open it in a browser)")
    return 0

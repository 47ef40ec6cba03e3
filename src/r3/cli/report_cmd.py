"""`r3 report`: compare `r3 eval` runs (vanilla vs trained) and plot `r3 train` runs' curves.

r3 report runs/eval-vanilla runs/eval-trained --labels vanilla trained --output-dir runs/report
r3 report runs/eval-vanilla runs/eval-trained runs/trained --output-dir runs/report --html

Evaluation folders (holding results.json and samples.jsonl): the accuracy table and plot, reflection
length histograms, how often reflections contain an answer and retries repeat the failed attempt, the
retry's fix rate by the first attempt's failure reason, and reflections side by side for the examples
a later run fixed and the first did not. Training folders (holding r3_training.json): retry success,
groups with no signal and reflection length against steps (training_curves.png) and a table.
`--html` also writes report.html, the same report as one page with the plots inline.
"""

from __future__ import annotations

import argparse
import re


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # argparse exposes no public type
    parser = subparsers.add_parser(
        "report",
        help="compare evaluations and training runs: tables, plots, reflections",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "runs",
        nargs="+",
        help="`r3 eval` output folders (the first is the baseline) and/or `r3 train` output folders",
    )
    parser.add_argument("--labels", nargs="+", default=None, help="a name per folder (default: folder names)")
    parser.add_argument("--output-dir", default="runs/report")
    parser.add_argument(
        "--html",
        action="store_true",
        help="also write report.html: the same report as one self-contained page (plots inline)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from r3.reports.compare import comparison_table, load_folders, write_report
    from r3.reports.training import training_table

    report = write_report(args.runs, args.output_dir, args.labels)
    evals, trainings = load_folders(args.runs, args.labels)
    if evals:
        print(comparison_table(evals))
    if trainings:
        print(training_table({t.label: t.series for t in trainings}))
    plots = ", ".join(re.findall(r"\]\(([^)]+\.png)\)", report.read_text()))
    print(f"Report in {report}" + (f" (with {plots})" if plots else ""))
    if args.html:
        from r3.reports.html import write_html

        print(f"Page in {write_html(report)} (self-contained: open it in a browser)")
    return 0

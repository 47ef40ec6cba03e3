"""`r3 report`: compare `r3 eval` runs (vanilla vs trained) in a table, plots and sample reflections.

r3 report runs/eval-vanilla runs/eval-trained --labels vanilla trained --output-dir runs/report
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # argparse exposes no public type
    parser = subparsers.add_parser(
        "report",
        help="compare evaluations: table, plots, reflections",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", help="`r3 eval` output folders; the first is the baseline")
    parser.add_argument("--labels", nargs="+", default=None, help="a name per run (default: folder names)")
    parser.add_argument("--output-dir", default="runs/report")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from r3.reports.compare import comparison_table, load_run, write_report

    report = write_report(args.runs, args.output_dir, args.labels)
    runs = [load_run(f, args.labels[i] if args.labels else None) for i, f in enumerate(args.runs)]
    print(comparison_table(runs))
    print(f"Report in {report} (with accuracy.png, reflection_lengths.png)")
    return 0

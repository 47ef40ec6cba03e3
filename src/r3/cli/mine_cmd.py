"""`r3 mine`: build the dataset of failures that `r3 train` learns from.

    r3 mine --task countdown --limit 1000 --output-dir runs/mine [--budget 64] [--round-size 8]

Everything that can be refused (unknown task, malformed rows, a folder holding another run) is
checked before the model is loaded, so mistakes cost seconds, not a model load. The mining itself,
the file formats and the resume rules are in `r3.mining.mine`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from r3.cli.options import add_common, check_numbers, task_options
from r3.errors import R3Error
from r3.generation.base import Generator
from r3.mining.mine import FAILURES_FILE, SUMMARY_FILE, MineConfig, RunStore, mine, run_fingerprint
from r3.mining.records import check_reserved_fields
from r3.tasks.registry import get_task

DESCRIPTION = """\
Sample attempts for every query and keep the queries the model fails (the paper's dataset of
failures). Attempts are drawn in rounds of --round-size up to --budget per query; by default a query
stops at the first round with a failure (same queries kept as drawing the whole budget, far fewer
samples when the model fails often); --full draws the whole budget and gives per-query success rates.
Results are written query by query: run the same command again to resume after a crash or Ctrl-C.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "mine",
        help="build the dataset of failures (failures.jsonl) for r3 train",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    g = parser.add_argument_group("mining")
    g.add_argument("--budget", type=int, default=64, help="most attempts per query (paper: 64)")
    g.add_argument("--round-size", type=int, default=8, help="attempts sampled per generation call")
    g.add_argument("--keep", type=int, default=1, help="failed attempts kept per failed query")
    g.add_argument("--full", action="store_true", help="always draw the whole budget (paper's protocol)")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (must be > 0)")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="reflect-and-retry rounds (as r3 eval --rounds): with K > 1, after each kept attempt the model "
        "reflects and retries while it fails, up to K-1 times, and each failed retry is stored as one more "
        "context for r3 train (not to be confused with --round-size, the attempts drawn per call)",
    )
    g.add_argument(
        "--reflection-max-new-tokens", type=int, default=256, help="with --rounds > 1: a reflection's budget"
    )
    g.add_argument(
        "--window",
        type=int,
        default=8,
        help="queries mined together, one batched generate call per sampling round (each query keeps "
        "its own seeds, so the rows do not depend on it)",
    )
    g.add_argument("--overwrite", action="store_true", help="discard the output folder's previous run")
    # `_parser` lets `r3.cli` apply `--config FILE.yaml` as defaults of this subcommand (flags win).
    parser.set_defaults(run=run, _parser=parser)
    return parser


def _load_generator(args: argparse.Namespace) -> Generator:
    """The model, through the shared loader (tests replace this function with a scripted fake)."""
    from r3.cli.options import generator_from_args

    return generator_from_args(args)


def _absolute_if_local(value: str | None) -> str | None:
    """A local path as an absolute path, so resuming from another folder is recognised as the same run."""
    if value is None:
        return None
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else value


def run(args: argparse.Namespace) -> int:
    if not args.output_dir:
        raise R3Error("r3 mine needs --output-dir (where failures.jsonl goes)")

    config = MineConfig(
        budget=args.budget,
        round_size=args.round_size,
        keep=args.keep,
        full=args.full,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        rounds=args.rounds,
        reflection_max_new_tokens=args.reflection_max_new_tokens,
        window=args.window,
    )
    check_numbers(args)
    task = get_task(args.task, **task_options(args))
    # Validates every row (a malformed row is named here, before any model is loaded).
    examples = task.load(args.data, args.limit, args.seed)
    if not examples:
        raise R3Error("no queries to mine (the data is empty, or --limit is 0)")
    check_reserved_fields(examples, args.data or f"{task.name} (generated)")
    server = {"base_url": args.base_url} if args.backend == "openai" else {}  # old folders still resume
    fingerprint = run_fingerprint(
        task,
        examples,
        config,
        task_options=task_options(args),
        data=_absolute_if_local(args.data),
        model=_absolute_if_local(args.model) or "embedded",
        backend=args.backend,
        dtype=args.dtype,
        **server,
    )
    out = Path(args.output_dir)
    with RunStore.open(out, fingerprint, overwrite=args.overwrite) as store:
        remaining = len(examples) - len(store.done)
        if store.done:
            print(
                f"resuming {out}: {len(store.done)} of {len(examples)} queries already mined, "
                f"{remaining} to go",
                file=sys.stderr,
            )
        # Nothing left: no need to load the model just to rewrite the summary.
        generator: Generator = _load_generator(args) if remaining else _NoGenerator(args)
        summary = mine(task, examples, generator, store, config, progress=not args.no_progress)
    rate = (
        f", mean success rate {summary.mean_success_rate:.3f}"
        if summary.mean_success_rate is not None
        else ""
    )
    print(
        f"{summary.queries_kept} of {summary.queries_seen} queries kept ({summary.samples} samples, "
        f"{summary.tokens} tokens, {summary.wall_seconds:.1f}s{rate}) -> {out / FAILURES_FILE}; "
        f"totals in {out / SUMMARY_FILE}"
    )
    return 0


class _NoGenerator:
    """Stands in for the model when every query is already mined (never asked to generate)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from r3.models import display_name

        self.model_name = display_name(args.model)

    def generate(self, prompts: Any, n: int, sampling: Any) -> Any:  # pragma: no cover - never called
        raise RuntimeError("no generation expected: every query is already mined")

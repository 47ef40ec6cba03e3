"""`r3 mine`: build the dataset of failures that `r3 train` learns from."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from r3.cli.options import parse_trl_config
from r3.errors import R3Error
from r3.generation.base import Generator
from r3.mining.mine import FAILURES_FILE, SUMMARY_FILE, MineConfig, RunStore, mine, run_fingerprint
from r3.mining.records import check_reserved_fields
from r3.tasks.registry import get_task

MISSING_OUTPUT_DIR = "r3 mine needs --output-dir (where failures.jsonl goes)"

DESCRIPTION = """\
Sample attempts for every query and keep the queries the model fails (the paper's dataset of
failures). Attempts are drawn in rounds of --round-size up to --budget per query; by default a query
stops at the first round with a failure (same queries kept as drawing the whole budget, far fewer
samples when the model fails often); --full draws the whole budget and gives per-query success rates.
--screen K samples K reflections (each with one retry) for every kept failed attempt and stores how
many retries succeeded, so that r3 train can keep the attempts whose groups carry a signal.
Results are written query by query: run the same command again to resume after a crash or Ctrl-C.

example:
  r3 mine --task countdown --limit 1000 --output-dir runs/mine --budget 64 --round-size 8
"""


def parse(argv: list[str]) -> MineConfig:
    """Flags and `--config` into `MineConfig`."""
    return parse_trl_config(  # type: ignore[return-value]
        MineConfig,
        argv,
        prog="r3 mine",
        description=DESCRIPTION,
        usage="r3 mine --output-dir DIR [--config FILE.yaml] [OPTIONS]",
        required={"output_dir": MISSING_OUTPUT_DIR},
    )


def main(argv: list[str]) -> int:
    """`r3 mine ...`; returns the exit status."""
    return run(parse(argv))


def _load_generator(config: MineConfig) -> Generator:
    """The model, through the shared loader (tests replace this function with a scripted fake)."""
    return config.generator()


def run(config: MineConfig) -> int:
    """`r3 mine` on parsed options (Python calls it too): the data and the folder are checked before
    the model loads, so mistakes cost seconds."""
    if not config.output_dir:
        raise R3Error(MISSING_OUTPUT_DIR)
    task = get_task(config.task, **config.task_options())
    examples = task.load(config.data, config.limit, config.seed)  # a malformed row is named here
    if not examples:
        raise R3Error("no queries to mine (the data is empty, or --limit is 0)")
    check_reserved_fields(examples, config.data or f"{task.name} (generated)")
    fingerprint = run_fingerprint(task, examples, config, batching=config.batching(), **config.identity())
    out = Path(config.output_dir)
    with RunStore.open(out, fingerprint, overwrite=config.overwrite) as store:
        remaining = len(examples) - len(store.done)
        if store.done:
            print(
                f"resuming {out}: {len(store.done)} of {len(examples)} queries already mined, "
                f"{remaining} to go",
                file=sys.stderr,
            )
        # Nothing left: no need to load the model just to rewrite the summary.
        generator: Generator = _load_generator(config) if remaining else _NoGenerator(config)
        summary = mine(task, examples, generator, store, config, progress=not config.no_progress)
    rate = "" if summary.mean_success_rate is None else f", mean success rate {summary.mean_success_rate:.3f}"
    screened = summary.attempts_screened
    learnable = (
        "" if screened is None else f", {summary.attempts_learnable} of {screened} failed attempts learnable"
    )
    print(
        f"{summary.queries_kept} of {summary.queries_seen} queries kept ({summary.samples} samples, "
        f"{summary.tokens} tokens, {summary.wall_seconds:.1f}s{rate}){learnable} -> "
        f"{out / FAILURES_FILE}; totals in {out / SUMMARY_FILE}"
    )
    return 0


class _NoGenerator:
    """Stands in for the model when every query is already mined (never asked to generate)."""

    def __init__(self, config: MineConfig) -> None:
        from r3.models import display_name

        self.model_name = display_name(config.model)

    def generate(self, prompts: Any, n: int, sampling: Any) -> Any:  # pragma: no cover - never called
        raise RuntimeError("no generation expected: every query is already mined")

"""`r3 mine`: build the dataset of failures that `r3 train` learns from.

    r3 mine --task countdown --limit 1000 --output-dir runs/mine [--budget 64] [--round-size 8]

Everything that can be refused (unknown task, malformed rows, a folder holding another run) is
checked before the model is loaded, so mistakes cost seconds, not a model load. The mining itself,
the file formats and the resume rules are in `r3.mining.mine`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r3.cli.arguments import ModelArguments, OutputArguments, TaskArguments, check_shared, config_from
from r3.cli.options import parse_trl_config
from r3.errors import R3Error
from r3.generation.base import Generator
from r3.mining.mine import (
    FAILURES_FILE,
    SUMMARY_FILE,
    MineConfig,
    MineSummary,
    RunStore,
    mine,
    run_fingerprint,
)
from r3.mining.records import check_reserved_fields
from r3.models import batch_invariant
from r3.tasks.registry import get_task

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


@dataclass
class MineArguments(OutputArguments, ModelArguments, TaskArguments):
    """`r3 mine`'s options: the shared task, model and output groups, and the mining rule's.
    (Bases in reverse: dataclass fields come base by base from the last, so the shared group of `--help`
    lists the task first.)"""

    max_new_tokens: int = field(default=256, metadata={"help": "an attempt's token budget"})
    batch_size: int = field(
        default=128,
        metadata={
            "help": "rows per generation batch: window x round-size fills one (--backend openai: "
            "requests in flight at once)"
        },
    )
    budget: int = field(default=64, metadata={"help": "most attempts per query (paper: 64)"})
    round_size: int = field(default=8, metadata={"help": "attempts sampled per generation call"})
    keep: int = field(default=1, metadata={"help": "failed attempts kept per failed query"})
    full: bool = field(default=False, metadata={"help": "always draw the whole budget (paper's protocol)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (must be > 0)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling (1: off)"})
    rounds: int = field(
        default=1,
        metadata={
            "help": "reflect-and-retry rounds (as r3 eval --rounds): with K > 1, after each kept attempt "
            "the model reflects and retries while it fails, up to K-1 times, and each failed retry is "
            "stored as one more context for r3 train (not --round-size, the attempts drawn per call)"
        },
    )
    reflection_max_new_tokens: int = field(
        default=256, metadata={"help": "with --rounds > 1 or --screen: a reflection's budget"}
    )
    screen: int = field(
        default=0,
        metadata={
            "help": "screen each kept failed attempt by K sampled reflections, each followed by one retry, "
            "and store how many retries succeeded: attempts with some but not all (learnable) are the ones "
            "whose GRPO groups carry a signal (r3 train selection: learnable). 0: off"
        },
    )
    screen_retry_temperature: float = field(
        default=1.0,
        metadata={
            "help": "with --screen: the retry's temperature, recorded on each screen; it must match r3 "
            "train's retry_temperature (whose default is 0, greedy), or the screen predicts other groups "
            "than training draws and selection learnable refuses the file"
        },
    )
    window: int = field(
        default=16,
        metadata={
            "help": "queries mined together, one batched generate call per sampling round (each query keeps "
            "its own seeds: on CPU in float32 the rows do not depend on it; elsewhere it is part of the run)"
        },
    )

    def __post_init__(self) -> None:
        check_shared(self)
        if not self.output_dir:
            raise R3Error("r3 mine needs --output-dir (where failures.jsonl goes)")
        self.mine_config()  # the mining settings are checked by `MineConfig`, their one checker

    def mine_config(self) -> MineConfig:
        """The settings that decide the rows (`MineConfig`), filled from these options by name
        (`config_from`): every field of it is an option of the same name."""
        return config_from(self, MineConfig)


def parse(argv: list[str]) -> MineArguments:
    """Flags and `--config` into `MineArguments`."""
    return parse_trl_config(  # type: ignore[return-value]
        MineArguments,
        argv,
        prog="r3 mine",
        description=DESCRIPTION,
        usage="r3 mine --output-dir DIR [--config FILE.yaml] [OPTIONS]",
    )


def main(argv: list[str]) -> int:
    """`r3 mine ...`; returns the exit status."""
    return run(parse(argv))


def _load_generator(args: MineArguments) -> Generator:
    """The model, through the shared loader (tests replace this function with a scripted fake)."""
    return args.generator()


def run(args: MineArguments) -> int:
    config = args.mine_config()
    options = args.task_options()
    task = get_task(args.task, **options)
    # Validates every row (a malformed row is named here, before any model is loaded).
    examples = task.load(args.data, args.limit, args.seed)
    if not examples:
        raise R3Error("no queries to mine (the data is empty, or --limit is 0)")
    check_reserved_fields(examples, args.data or f"{task.name} (generated)")
    server = {"base_url": args.base_url} if args.backend == "openai" else {}  # only where it counts
    if args.engine_args:  # vLLM's engine settings, only when given (rows depend on its batching)
        server["engine_args"] = args.engine_args
    # Rows depend on the batch except on CPU in float32: then the batching is part of the run.
    batching = (
        None
        if batch_invariant(args.backend, args.dtype, args.device)
        else {"window": args.window, "batch_size": args.batch_size}
    )
    fingerprint = run_fingerprint(
        task,
        examples,
        config,
        batching=batching,
        task_options=options,
        data=args.data,
        model=args.model or "embedded",
        backend=args.backend,
        dtype=args.dtype,
        **server,
    )
    out = Path(args.output_dir or "")
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
        f"{summary.tokens} tokens, {summary.wall_seconds:.1f}s{rate}){_screened(summary)} -> "
        f"{out / FAILURES_FILE}; totals in {out / SUMMARY_FILE}"
    )
    return 0


def _screened(summary: MineSummary) -> str:
    """The screen's outcome for the closing line (empty without screening)."""
    if summary.attempts_screened is None:
        return ""
    return f", {summary.attempts_learnable} of {summary.attempts_screened} failed attempts learnable"


class _NoGenerator:
    """Stands in for the model when every query is already mined (never asked to generate)."""

    def __init__(self, args: MineArguments) -> None:
        from r3.models import display_name

        self.model_name = display_name(args.model)

    def generate(self, prompts: Any, n: int, sampling: Any) -> Any:  # pragma: no cover - never called
        raise RuntimeError("no generation expected: every query is already mined")

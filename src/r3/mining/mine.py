"""Mine the dataset of failures: adaptive, seeded, resumable.

Each query is attempted in rounds of `round_size` samples, up to `budget` (64 in the paper), and kept
iff some attempt fails. The adaptive rule (the default) stops at the first round that holds `keep`
failures; `full=True` draws the whole budget (the paper's protocol, an unbiased success rate per
query). Round `r` of query `i` is always seeded by `query_seed(seed, i, r)`, so both keep the same
queries with the same failed attempts, whatever the window, the batch or the resumes; only
`samples_drawn` and `successes` differ.

`rounds=K > 1` continues each kept failed attempt as an `Episode` (`episode.run_rounds`, as `r3 eval
--rounds` runs it, retries at the mining temperature) while its retry fails, up to K-1 rounds: each
failed retry is one more context `r3 train` reflects in. With a generator that knows its context
(`fits`) a chain stops where the next context would not fit.

`screen=K > 0` samples K reflections for each kept failed attempt, each followed by one retry at
`screen_retry_temperature` (the round `r3 train` draws), and stores the count of successful retries
with that temperature as the attempt's `Screen`: an attempt with some but not all successes is
`learnable` (its GRPO groups carry a signal).

The output folder (a `RunFolder`: lock, `run.json` fingerprint, `--overwrite`) holds `failures.jsonl`,
one row per mined query appended whole and fsync'd in query order (`records.FailureRecord`): the
run's commit log and training's input. A resumed run starts after the last whole row and writes
byte-for-byte the rows an uninterrupted run would have. `summary.json` holds the totals over every
session.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r3 import rundir
from r3.episode import (
    Episode,
    EpisodeSampling,
    EpisodeSamplingOptions,
    Turn,
    next_turn,
    reflect_and_retry,
    run_rounds,
    safe_verify,
)
from r3.errors import R3Error, check_numbers
from r3.generation.base import Generator, SamplingConfig, derive_seed
from r3.mining.records import FAILURES_FORMAT, FailedAttempt, FailureRecord, Screen
from r3.progress import ProgressReport
from r3.run_options import RunFields
from r3.rundir import RunFolder, examples_digest
from r3.tasks.base import Example, Task

FAILURES_FILE = "failures.jsonl"
SUMMARY_FILE = "summary.json"
#: Files this module owns in an output folder (`--overwrite` removes exactly these and run.json).
OWNED_FILES = (FAILURES_FILE, SUMMARY_FILE)


@dataclass
class MineConfig(RunFields):
    """Everything `r3 mine` takes: the shared groups (`RunFields`) and the mining rule's settings."""

    budget: int = field(default=64, metadata={"help": "most attempts per query (paper: 64)"})
    round_size: int = field(default=8, metadata={"help": "attempts sampled per generation call"})
    keep: int = field(default=1, metadata={"help": "failed attempts kept per failed query"})
    full: bool = field(default=False, metadata={"help": "always draw the whole budget (paper's protocol)"})
    max_new_tokens: int = field(default=256, metadata={"help": "an attempt's token budget"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (must be > 0)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling (1: off)"})
    rounds: int = field(
        default=1,
        metadata={"help": "with K > 1, each kept attempt is followed by up to K-1 reflect-and-retry rounds"},
    )
    reflection_max_new_tokens: int = field(
        default=256, metadata={"help": "with --rounds > 1 or --screen: a reflection's budget"}
    )
    window: int = field(
        default=16, metadata={"help": "queries mined together, one batched call per sampling round"}
    )
    screen: int = field(
        default=0,
        metadata={"help": "count the successful retries of K sampled reflections per kept attempt (0: off)"},
    )
    screen_retry_temperature: float = field(
        default=1.0,
        metadata={"help": "with --screen: the retries' temperature (train's retry_temperature)"},
    )
    batch_size: int = field(
        default=128, metadata={"help": "rows per generation batch (--backend openai: requests in flight)"}
    )

    def __post_init__(self) -> None:
        from r3.episode import check_rounds

        # The one check of these settings, from flags, YAML or Python.
        self.check_run_fields()
        check_rounds(self.rounds)
        whole = ("budget", "round_size", "keep", "window", "max_new_tokens", "reflection_max_new_tokens")
        check_numbers(self, dict.fromkeys(whole, 1))
        if isinstance(self.screen, bool) or not isinstance(self.screen, int) or self.screen < 0:
            raise R3Error(f"--screen must be a whole number >= 0 (got {self.screen!r})")
        if self.screen_retry_temperature < 0:
            # 0 is allowed: a greedy retry (training's default) still depends on the sampled reflection.
            raise R3Error(f"--screen-retry-temperature must be >= 0 (got {self.screen_retry_temperature})")
        if self.temperature <= 0:
            # Greedy decoding gives the same answer every round: the budget would be wasted.
            raise R3Error("--temperature must be > 0 for mining (repeated greedy attempts are identical)")
        if not 0 < self.top_p <= 1:
            raise R3Error(f"--top-p must be in (0, 1] (got {self.top_p})")

    def settings(self) -> dict[str, Any]:
        """The mining rule as run.json holds it: the seed and this class's fields but `batch_size`
        (which counts only where rows depend on their batch, `batching`)."""
        names = [name for name in inspect.get_annotations(MineConfig) if name != "batch_size"]
        names.insert(names.index("max_new_tokens"), "seed")  # where every run.json has held it
        return {name: getattr(self, name) for name in names}

    def identity(self) -> dict[str, Any]:
        """The task options, data and model the command mines with: `run_fingerprint`'s `identity`."""
        return {
            "task_options": self.task_options(),
            "data": self.data,
            "model": self.model or "embedded",
            "backend": self.backend,
            "dtype": self.dtype,
            **self.server(),
        }

    def batching(self) -> dict[str, Any] | None:
        """The window and batch size where rows depend on their batch (`BATCHING_KEYS`), else None."""
        return None if self.batch_invariant() else {"window": self.window, "batch_size": self.batch_size}

    def episode_options(
        self, seed: int = 0, retry_temperature: float | None = None
    ) -> EpisodeSamplingOptions:
        """Mining's episode settings under the parent `seed`: chains retry at the mining temperature
        (`retry_temperature` None), for diverse failed retries; the screen at training's."""
        return EpisodeSamplingOptions(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            reflection_max_new_tokens=self.reflection_max_new_tokens,
            top_p=self.top_p,
            retry_temperature=retry_temperature,
            seed=seed,
        )

    def sampling(self, task: Task) -> SamplingConfig:
        """The first attempts' settings (each round of a query then gets its seeds, `query_seed`)."""
        return self.episode_options().build(task).attempt


@dataclass
class MineSummary:
    """What `summary.json` holds: totals over every session (`wall_seconds`: mining time without model
    loading; `session_*`: the last session). `mean_success_rate` only with `full` (adaptive rates are
    biased); the screen's counts only with screening."""

    queries_total: int
    queries_seen: int
    queries_kept: int
    samples: int
    tokens: int
    wall_seconds: float
    session_wall_seconds: float
    session_queries: int
    complete: bool
    model: str
    config: dict[str, Any]
    mean_success_rate: float | None = None
    attempts_screened: int | None = None
    attempts_learnable: int | None = None

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["wall_seconds"] = round(self.wall_seconds, 3)
        out["session_wall_seconds"] = round(self.session_wall_seconds, 3)
        out["samples_per_second"] = round(self.samples_per_second, 3)
        out["samples_per_query"] = round(self.samples / self.queries_seen, 3) if self.queries_seen else None
        out["seconds_per_kept_query"] = (
            round(self.wall_seconds / self.queries_kept, 3) if self.queries_kept else None
        )
        out["keep_rate"] = round(self.queries_kept / self.queries_seen, 4) if self.queries_seen else None
        if self.attempts_screened is None:
            del out["attempts_screened"], out["attempts_learnable"]
        else:
            learnable = self.attempts_learnable or 0
            screened = self.attempts_screened
            out["learnable_rate"] = round(learnable / screened, 4) if screened else None
        return out


# --------------------------------------------------------------------------------------------------
# Sampling one query


#: Fingerprint keys present only where rows depend on their batch (`models.batch_invariant`).
BATCHING_KEYS = ("window", "batch_size")


def query_seed(run_seed: int, query_index: int, round_index: int) -> int:
    """The sampling seed of one round of one query: independent of batching, resumes and `full`."""
    return derive_seed(run_seed, "mine", query_index, round_index)


def attempt_key(query_index: int, number: int, keep: int) -> int:
    """A kept failed attempt's number in its run, whatever its window: what its chain and screen
    samples are seeded by."""
    return query_index * keep + number


def _round_one(task: Task, failed: FailedAttempt, index: int) -> Turn | None:
    """Round 1 after a kept failed attempt, as an episode numbered `index` (which its seeds name): the
    chat `r3 eval` and `r3 train` reflect in."""
    first = failed.episode
    return next_turn(task, Episode(index, first.example, first.attempt, first.attempt_verdict))


def chain_sampling(task: Task, config: MineConfig) -> EpisodeSampling:
    """The chains' settings, under a parent seed of their own."""
    return config.episode_options(seed=derive_seed(config.seed, "mine-chain")).build(task)


def mine_chains(
    task: Task, kept: list[list[FailedAttempt]], generator: Generator, config: MineConfig
) -> None:
    """Continue each kept failed attempt of a window by at most `rounds - 1` rounds while its retries
    fail (`episode.run_rounds`, one generate call per step for the window). Episodes are numbered by
    `attempt_key`, so their seeds do not depend on the window. With a generator that knows its context
    (`fits`), an episode whose last retry failed is stopped when the next reflection chat, the one
    `r3 train` would reflect in, does not fit."""
    sampling = chain_sampling(task, config)
    fits = getattr(generator, "fits", None)
    episodes = [failed.episode for attempts in kept for failed in attempts]
    run_rounds(task, generator, episodes, sampling, config.rounds - 1, fits=fits)
    budget = sampling.reflection.max_new_tokens
    for episode in episodes:
        if fits is not None and episode.stopped is None and episode.solved_round is None:
            next_turn(task, episode, fits=fits, max_new_tokens=budget)


def screen_sampling(task: Task, config: MineConfig) -> EpisodeSampling:
    """The screen's settings: retries at `screen_retry_temperature`, under a parent seed of their own
    (a screen sample never replays a chain's round)."""
    seed = derive_seed(config.seed, "mine-screen")
    return config.episode_options(seed, retry_temperature=config.screen_retry_temperature).build(task)


def mine_screen(
    task: Task, kept: list[list[FailedAttempt]], generator: Generator, config: MineConfig
) -> None:
    """Give every kept failed attempt of a window its `Screen`: K = `config.screen` rounds 1
    (`episode.reflect_and_retry`, the group GRPO would draw) and how many retries succeeded. Sample j
    of attempt `key` is the episode numbered `key * K + j`, so its seeds do not depend on the window."""
    samples = config.screen
    attempts = [failed for group in kept for failed in group]
    turns: list[Turn] = []
    owners: list[int] = []
    for n, failed in enumerate(attempts):
        for j in range(samples):
            if (turn := _round_one(task, failed, failed.episode.index * samples + j)) is not None:
                turns.append(turn)
                owners.append(n)
    done = reflect_and_retry(task, generator, turns, screen_sampling(task, config)) if turns else []
    successes = [0] * len(attempts)
    for n, result in zip(owners, done, strict=True):
        successes[n] += result is not None and result.retry_verdict.ok
    for failed, won in zip(attempts, successes, strict=True):
        failed.screen = Screen(samples, won, config.screen_retry_temperature)


def mine_window(
    task: Task, examples: Sequence[Example], indices: Sequence[int], generator: Generator, config: MineConfig
) -> list[FailureRecord]:
    """Mine a window of queries together: one generate call per round for every query still drawing,
    each with its own seeds (`query_seed`), so each gets the samples it would get alone."""
    base = config.sampling(task)
    prompts = [task.prompt(example) for example in examples]
    count = len(examples)
    samples, successes, tokens = [0] * count, [0] * count, [0] * count
    kept: list[list[FailedAttempt]] = [[] for _ in range(count)]
    active = list(range(count))
    round_index = 0
    while active:
        # Every active query has drawn the same number of samples (they all started together).
        n = min(config.round_size, config.budget - samples[active[0]])
        seeds = tuple(query_seed(config.seed, indices[q], round_index) for q in active)
        groups = generator.generate([prompts[q] for q in active], n, base.with_(seeds=seeds))
        still = []
        for q, group in zip(active, groups, strict=True):
            if len(group) != n:
                raise RuntimeError(f"generator returned {len(group)} completions, expected {n}")
            for completion in group:
                tokens[q] += completion.num_tokens
                verdict = safe_verify(task, examples[q], completion.text)
                if verdict.ok:
                    successes[q] += 1
                elif len(kept[q]) < config.keep:
                    key = attempt_key(indices[q], len(kept[q]), config.keep)
                    kept[q].append(FailedAttempt(Episode(key, examples[q], completion, verdict)))
            samples[q] += n
            done = samples[q] >= config.budget or (not config.full and len(kept[q]) >= config.keep)
            if not done:
                still.append(q)
        active = still
        round_index += 1
    if config.rounds > 1:
        mine_chains(task, kept, generator, config)
    if config.screen > 0:
        mine_screen(task, kept, generator, config)
    return [
        FailureRecord(task.name, indices[q], examples[q], kept[q], samples[q], successes[q], tokens[q])
        for q in range(count)
    ]


# --------------------------------------------------------------------------------------------------
# The output folder


def run_fingerprint(
    task: Task,
    examples: Sequence[Example],
    config: MineConfig,
    *,
    batching: Mapping[str, Any] | None = None,
    **identity: Any,
) -> dict[str, Any]:
    """Mining's `run.json`: everything that decides which rows a run writes. `identity` adds model,
    data, backend ...; `batching` the window and batch size where rows depend on their batch. The
    examples count by number and digest (not `--limit`); the round and screen fields only when used."""
    omit = ["window"]
    if config.rounds == 1:
        omit.append("rounds")
    if config.rounds == 1 and config.screen == 0:
        omit.append("reflection_max_new_tokens")
    if config.screen == 0:
        omit += ["screen", "screen_retry_temperature"]
    settings = {
        "task": task.name,
        "task_class": f"{type(task).__module__}:{type(task).__qualname__}",
        **identity,
        "num_queries": len(examples),
        "stop": list(task.stop),
        # A folder of an older format is refused rather than resumed into mixed rows.
        "failures_format": FAILURES_FORMAT,
        **config.settings(),
    }
    return rundir.fingerprint(
        "mine",
        settings,
        examples_sha256=examples_digest(task, examples),
        omit=omit,
        batching=batching,
        paths=("data", "model"),
    )


class RunStore:
    """The output folder of one mining run: a `RunFolder` and the queries committed to its failures
    file. `RunStore.open` reads no model, so a refused folder fails fast."""

    def __init__(self, run: RunFolder, num_queries: int) -> None:
        self.run = run
        self.folder = run.folder
        self.fingerprint = run.fingerprint
        #: Time spent mining in earlier sessions, as their last summary says.
        self.earlier_seconds = _earlier_seconds(run.path(SUMMARY_FILE))
        #: The rows already committed, by query index.
        self.done: dict[int, dict[str, Any]] = {}
        for row in run.rows(FAILURES_FILE):
            index = row.get("query_index")
            if not isinstance(index, int) or not 0 <= index < num_queries:
                raise R3Error(
                    f"{run.path(FAILURES_FILE)}: bad query_index {index!r}; use --overwrite to start afresh"
                )
            self.done[index] = row

    @classmethod
    def open(
        cls, output_dir: str | Path, fingerprint: dict[str, Any], *, overwrite: bool = False
    ) -> RunStore:
        run = RunFolder.open(
            output_dir, fingerprint, OWNED_FILES, command="mine", overwrite=overwrite, new_keys=BATCHING_KEYS
        )
        try:
            return cls(run, fingerprint["num_queries"])
        except BaseException:
            run.close()
            raise

    def commit(self, row: dict[str, Any]) -> None:
        """Durably record one finished query."""
        self.run.append(FAILURES_FILE, [row])
        self.done[row["query_index"]] = row

    def close(self) -> None:
        self.run.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _earlier_seconds(summary: Path) -> float:
    """The mining time of the earlier sessions (0 for a new run or an unreadable summary)."""
    try:
        return float(json.loads(summary.read_text(encoding="utf-8"))["wall_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


# --------------------------------------------------------------------------------------------------
# The run


#: Called after every committed query with its record, the queries seen and the queries kept so far.
ProgressCallback = Callable[[FailureRecord, int, int], None]


def _screen_counts(screens: Iterable[Screen | None]) -> tuple[int, int]:
    """Attempts screened and, of them, learnable (None: an attempt that was not screened)."""
    found = [s for s in screens if s is not None]
    return len(found), sum(s.learnable for s in found)


def _stored_screens(row: Mapping[str, Any]) -> list[Screen | None]:
    """The screens of a stored row's failed attempts."""
    return [Screen(**a["screen"]) if a.get("screen") else None for a in row["failed_attempts"]]


def summarize(
    store: RunStore, total: int, config: MineConfig, model: str, session_seconds: float, session_queries: int
) -> MineSummary:
    rows = list(store.done.values())
    rates = [r["successes"] / r["samples_drawn"] for r in rows if r.get("samples_drawn")]
    screens = [_screen_counts(_stored_screens(r)) for r in rows]
    return MineSummary(
        queries_total=total,
        queries_seen=len(rows),
        queries_kept=sum(1 for r in rows if r["failed_attempts"]),
        samples=sum(int(r["samples_drawn"]) for r in rows),
        tokens=sum(int(r.get("sampled_tokens", 0)) for r in rows),
        wall_seconds=store.earlier_seconds + session_seconds,
        session_wall_seconds=session_seconds,
        session_queries=session_queries,
        complete=len(rows) == total,
        model=model,
        config=dict(store.fingerprint),
        # Only the full protocol samples every query the same way; adaptive rates are biased low.
        mean_success_rate=(sum(rates) / len(rates) if rates else None) if config.full else None,
        attempts_screened=sum(s for s, _ in screens) if config.screen > 0 else None,
        attempts_learnable=sum(n for _, n in screens) if config.screen > 0 else None,
    )


def mine(
    task: Task,
    examples: Sequence[Example],
    generator: Generator,
    output_dir: str | Path | RunStore,
    config: MineConfig,
    *,
    identity: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool | ProgressCallback = False,
) -> MineSummary:
    """Mine `examples` into `output_dir` (or an already opened `RunStore`) and return the summary.

    Resumes where a previous run with the same fingerprint stopped. `identity` (model, data, backend
    ...) goes into the fingerprint when `output_dir` is a path. `progress=True` shows a progress bar on
    stderr; a callable is called after every query instead."""
    if not examples:
        raise R3Error("no queries to mine (the data is empty, or --limit is 0)")
    if isinstance(output_dir, RunStore):
        store = output_dir
        owns_store = False
    else:
        fingerprint = run_fingerprint(task, examples, config, **dict(identity or {}))
        store = RunStore.open(output_dir, fingerprint, overwrite=overwrite)
        owns_store = True
    model = str(getattr(generator, "model_name", "") or "")
    started = time.perf_counter()
    session_queries = 0
    seen = len(store.done)
    kept = sum(1 for r in store.done.values() if r["failed_attempts"])

    def write_summary() -> MineSummary:
        seconds = time.perf_counter() - started
        summary = summarize(store, len(examples), config, model, seconds, session_queries)
        with contextlib.suppress(OSError):
            store.run.write_json(SUMMARY_FILE, summary.to_json())
        return summary

    screening = None
    if config.screen > 0:
        counts = [_screen_counts(_stored_screens(r)) for r in store.done.values()]
        screening = [sum(s for s, _ in counts), sum(n for _, n in counts)]
    try:
        with _progress_display(progress, len(examples), seen, kept, screening) as report:
            for start in range(0, len(examples), config.window):
                window = range(start, min(start + config.window, len(examples)))
                if all(i in store.done for i in window):
                    continue
                # The whole window, even if part of it was committed before an interruption: the
                # same batch gives the same rows, so a resume writes what the full run would have.
                records = mine_window(task, [examples[i] for i in window], list(window), generator, config)
                for record in records:
                    if record.query_index in store.done:
                        continue
                    store.commit(record.to_json(task))
                    session_queries += 1
                    seen += 1
                    kept += bool(record.failed_attempts)
                    report(record, seen, kept)
                # After every window, so that a kill loses at most one window's time.
                write_summary()
    finally:
        summary = write_summary()
        if owns_store:
            store.close()
    return summary


@contextlib.contextmanager
def _progress_display(
    progress: bool | ProgressCallback, total: int, seen: int, kept: int, screening: list[int] | None = None
) -> Iterator[ProgressCallback]:
    """The caller's callback, or a `ProgressReport` (queries seen, kept, samples/s and, when screening,
    attempts screened and learnable so far), or nothing."""
    if callable(progress):
        yield progress
        return
    session_samples = 0
    session_started = time.perf_counter()
    fields: dict[str, Any] = {"kept": kept, "samples/s": "-"}
    if screening is not None:
        fields.update(screened=screening[0], learnable=screening[1])
    with ProgressReport("mine", total, fields, done=seen, enabled=bool(progress)) as bar:

        def report(record: FailureRecord, seen: int, kept: int) -> None:
            nonlocal session_samples
            session_samples += record.samples_drawn
            elapsed = time.perf_counter() - session_started
            rate = f"{session_samples / elapsed:.1f}" if elapsed > 0 else "-"
            more: dict[str, Any] = {}
            if screening is not None:
                screened, learnable = _screen_counts(a.screen for a in record.failed_attempts)
                screening[0] += screened
                screening[1] += learnable
                more = {"screened": screening[0], "learnable": screening[1]}
            bar.advance(seen - bar.done, kept=kept, **{"samples/s": rate}, **more)

        yield report

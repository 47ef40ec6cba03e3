"""Mine the dataset of failures: adaptive, seeded, resumable.

For every query the model attempts the task in *rounds* of `round_size` samples, up to `budget`
samples (64 in the paper). The paper keeps a query iff some attempt within the budget fails. The
adaptive rule (the default) stops drawing as soon as it holds `keep` failures, so with `keep=1` it
stops at the first round that contains a failure. Because round `r` of query `i` is always sampled
with the seed `query_seed(seed, i, r)`, the rounds drawn by the adaptive rule are exactly the first
rounds the full protocol would draw, hence:

* adaptive and `full=True` keep the *same* queries, with the *same* failed attempts (the first
  `keep` failures in sampling order); only `samples_drawn` / `successes` differ;
* a query that never fails costs the whole budget either way; a query that fails early costs one
  round instead of `budget` samples, which is where the savings come from when the model fails often.

`full=True` draws the whole budget for every query (the paper's protocol), so `successes /
samples_drawn` is an unbiased per-query success rate.

`rounds=K > 1` also mines the contexts of later rounds: each kept failed attempt starts an `Episode`,
continued by the episode's own rounds (`episode.run_rounds`, as `r3 eval --rounds` runs them, sampled
like the attempts) while its retry fails, up to K-1 rounds; each failed retry is one more context to
reflect on. The episode is stored as the failed attempt (`failures.jsonl`) and `r3 train` trains a
reflection on every context of it. A model that knows its context (`fits`) stops the episode where
`r3 eval` would, and also after its last round when the next context no longer fits, so training never
gets a chat the model cannot hold. Its seeds come from the query and the attempt's place, like the
rounds', so resumes and `full` keep it identical.

`screen=K > 0` screens every kept failed attempt by its reflections: K reflections are sampled for it
(like the chains' first round: the mining temperature, `reflection_max_new_tokens`), each followed by one
retry at `screen_retry_temperature` (which must be `r3 train`'s `retry_temperature`), through the same
`episode.reflect_and_retry`. The attempt stores `"screen": {"samples": K, "successes": s,
"retry_temperature": T}`, so that training refuses a selection screened at another temperature. GRPO learns
only from groups whose retries disagree, so an attempt with 0 < s < K is *learnable*
(`records.learnable`), one with s = 0 or s = K would most likely give a group without signal. Each
sample is seeded by the query, the attempt's place and the sample's number (`mine_screen`), so resumes,
windows and `full` keep it identical too.

Files in the output folder, and why they cannot lose or duplicate a query
-------------------------------------------------------------------------

    run.json        the run's fingerprint (task, data digest, model, backend, sampling, budget ...).
                    A later run into the same folder must match it, or it is refused.
    failures.jsonl  one self-contained row per kept query (`FailureRecord.to_json`), ascending
                    `query_index`; what `r3 train` reads.
    progress.jsonl  one line per *finished* query, kept or not: the commit log of the run.
    summary.json    totals over all sessions (rewritten at the end of every session).
    .lock           an advisory `flock`, so two processes never write into one folder at once.

A query is committed in two appends, each flushed and fsync'd before the next starts: first its
failure row (only if kept), then its progress line. The progress line is the commit point. On
resume, a partially written trailing line of either file is cut off, and failure rows of queries
without a progress line (killed between the two appends) are dropped; the queries not in the
progress log are then mined again, in ascending order, with the same per-round seeds. Queries are
processed one at a time and in order, so the committed queries always form a prefix and the resumed
run writes byte-for-byte the rows an uninterrupted run would have written.

One query per `generate` call: `SamplingConfig` carries one seed per call, and backends batch
prompts in ways that change the random stream, so batching queries would make the rows depend on
how the run was interrupted.
"""

from __future__ import annotations

import contextlib
import inspect
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
from r3.mining.records import FailedAttempt, FailureRecord, Screen, learnable
from r3.progress import ProgressReport
from r3.run_options import RunFields
from r3.rundir import RunFolder, examples_digest
from r3.tasks.base import Example, Task

FAILURES_FILE = "failures.jsonl"
PROGRESS_FILE = "progress.jsonl"
SUMMARY_FILE = "summary.json"
#: Files this module owns in an output folder (`--overwrite` removes exactly these and run.json).
OWNED_FILES = (FAILURES_FILE, PROGRESS_FILE, SUMMARY_FILE)


@dataclass
class MineConfig(RunFields):
    """Everything `r3 mine` takes: the shared task, model and output groups (`RunFields`) and the mining
    rule's settings. The command parses it, `mine` runs it. `max_new_tokens`, `temperature`, `top_p` go
    to the sampler; stop is the task's."""

    budget: int = field(default=64, metadata={"help": "most attempts per query (paper: 64)"})
    round_size: int = field(default=8, metadata={"help": "attempts sampled per generation call"})
    keep: int = field(default=1, metadata={"help": "failed attempts kept per failed query"})
    full: bool = field(default=False, metadata={"help": "always draw the whole budget (paper's protocol)"})
    max_new_tokens: int = field(default=256, metadata={"help": "an attempt's token budget"})
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
    window: int = field(
        default=16,
        metadata={
            "help": "queries mined together, one batched generate call per sampling round (each query keeps "
            "its own seeds: on CPU in float32 the rows do not depend on it; elsewhere it is part of the run)"
        },
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
    batch_size: int = field(
        default=128,
        metadata={
            "help": "rows per generation batch: window x round-size fills one (--backend openai: "
            "requests in flight at once)"
        },
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
        """The mining rule, as run.json and summary.json hold it (`run_fingerprint`): the seed and every
        field this class declares but `batch_size`, which counts only where rows depend on their batch
        (`batching`)."""
        names = [name for name in inspect.get_annotations(MineConfig) if name != "batch_size"]
        names.insert(names.index("max_new_tokens"), "seed")  # where every run.json has held it
        return {name: getattr(self, name) for name in names}

    def identity(self) -> dict[str, Any]:
        """Which task options, data and model the command mines with: `run_fingerprint`'s `identity`
        (a model given only to `mine` as a generator is named by the caller instead)."""
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
        """Mining's episode settings under the parent `seed` (`EpisodeSamplingOptions`, whose rules every
        command shares). The chains retry at the mining temperature (`retry_temperature` None): later
        rounds are trained on their failed retries, so a chain must sample diverse ones; the screen passes
        `screen_retry_temperature`, to retry as training will."""
        return EpisodeSamplingOptions(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            reflection_max_new_tokens=self.reflection_max_new_tokens,
            top_p=self.top_p,
            retry_temperature=retry_temperature,
            seed=seed,
        )

    def sampling(self, task: Task) -> SamplingConfig:
        """The first attempts' settings (each query's round then has its own seeds, `query_seed`)."""
        return self.episode_options().build(task).attempt


@dataclass(frozen=True)
class QueryResult:
    """The outcome of mining one query."""

    query_index: int
    samples: int
    successes: int
    failures: int
    tokens: int
    seconds: float
    failed_attempts: list[FailedAttempt] = field(default_factory=list)
    #: With screening (`MineConfig.screen > 0`): attempts screened and, of them, learnable ones.
    #: None without it, so that unscreened runs write the progress lines they always wrote.
    screened: int | None = None
    learnable: int | None = None

    @property
    def kept(self) -> bool:
        return bool(self.failed_attempts)

    def progress_line(self) -> dict[str, Any]:
        line = {
            "query_index": self.query_index,
            "kept": self.kept,
            "samples": self.samples,
            "successes": self.successes,
            "failures": self.failures,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 4),
        }
        if self.screened is not None:
            line.update(screened=self.screened, learnable=self.learnable or 0)
        return line


@dataclass
class MineSummary:
    """What `summary.json` holds: totals over every session of the run.

    `wall_seconds` is the time spent mining queries (sampling and verifying), summed over every
    session, so it stays meaningful across resumes; model loading is left out. `session_*` cover
    the last session only. `mean_success_rate` is set only with `full` (adaptive rates are biased).
    `attempts_screened` / `attempts_learnable` (0 < successes < samples) are set only with screening,
    the second being how many GRPO groups are expected to carry signal."""

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
            del out["attempts_screened"], out["attempts_learnable"]  # no screening: the summary as before
        else:
            learnable = self.attempts_learnable or 0
            screened = self.attempts_screened
            out["learnable_rate"] = round(learnable / screened, 4) if screened else None
        return out


# --------------------------------------------------------------------------------------------------
# Sampling one query


#: Fingerprint keys present only where rows depend on their batch (`models.batch_invariant`), compared
#: only when both sides hold them (`rundir.fingerprint`).
BATCHING_KEYS = ("window", "batch_size")


def query_seed(run_seed: int, query_index: int, round_index: int) -> int:
    """The sampling seed of one round of one query (`base.derive_seed`): independent of batching,
    resumes and `full`."""
    return derive_seed(run_seed, "mine", query_index, round_index)


def attempt_key(query_index: int, number: int, keep: int) -> int:
    """The number of a kept failed attempt in its run (the `number`-th kept of its query), distinct for
    every attempt of a run whatever its window: what its chain and screen samples are seeded by."""
    return query_index * keep + number


def _round_one(task: Task, failed: FailedAttempt, index: int) -> Turn | None:
    """Round 1 after a kept failed attempt, as an episode numbered `index` (which its seeds name): the
    chat `r3 eval` and `r3 train` reflect in (`episode.next_turn`). Not checked against the context, as
    in `r3 eval`, so there is always a turn; None would mean a stopped one."""
    first = failed.episode
    return next_turn(task, Episode(index, first.example, first.attempt, first.attempt_verdict))


def chain_sampling(task: Task, config: MineConfig) -> EpisodeSampling:
    """The chains' settings: reflections and retries as `r3 eval` draws them from the mining settings
    (so retries at the mining temperature), under a parent seed of their own."""
    return config.episode_options(seed=derive_seed(config.seed, "mine-chain")).build(task)


def mine_chains(
    task: Task, kept: list[list[FailedAttempt]], generator: Generator, config: MineConfig
) -> None:
    """Continue each kept failed attempt of a window by at most `rounds - 1` rounds while its retries
    fail: the episode's own rounds (`episode.run_rounds`, as `r3 eval --rounds` runs them, with
    `chain_sampling`: retries at the mining temperature), every episode of the window in one generate
    call per step. An attempt's episode is numbered by its query and place (`attempt_key`), so its
    reflection and retry of round k are seeded by `derive_seed(chain seed, step, that number, k)`
    whatever its window.

    With a generator that knows its context (`fits`), rounds after the first are checked as `r3 eval`
    checks them, and an episode whose last round failed is stopped when the context that failed retry
    opens (the next reflection chat, which `r3 train` reflects in) does not fit."""
    sampling = chain_sampling(task, config)
    fits = getattr(generator, "fits", None)
    episodes = [failed.episode for attempts in kept for failed in attempts]
    run_rounds(task, generator, episodes, sampling, config.rounds - 1, fits=fits)
    budget = sampling.reflection.max_new_tokens
    for episode in episodes:
        if fits is not None and episode.stopped is None and episode.solved_round is None:
            next_turn(task, episode, fits=fits, max_new_tokens=budget)


def screen_sampling(task: Task, config: MineConfig) -> EpisodeSampling:
    """The screen's settings: reflections as the chains sample them (the mining temperature and top-p,
    `reflection_max_new_tokens`, no stop string), retries with the attempt's budget and stop strings at
    `screen_retry_temperature`; both under a parent seed of their own, so that a screen sample is never
    a replay of a chain's round."""
    seed = derive_seed(config.seed, "mine-screen")
    return config.episode_options(seed, retry_temperature=config.screen_retry_temperature).build(task)


def mine_screen(
    task: Task, kept: list[list[FailedAttempt]], generator: Generator, config: MineConfig
) -> None:
    """Screen every kept failed attempt of a window by `config.screen` sampled reflections, each
    followed by one retry, and give the attempt its `Screen`: how many of the K retries succeeded, at
    which retry temperature.

    These are the groups GRPO would draw for the attempt: a reflection and its retry are the episode's
    own round 1 (`episode.reflect_and_retry`, the chat `r3 train` reflects in). Every sample of the
    window is one turn of one call per step (reflection, retry). Sample j of the attempt numbered `key`
    (`attempt_key`) is the episode numbered `key * K + j`, so its reflection and retry are seeded by
    `derive_seed(derive_seed(seed, "mine-screen"), step, key * K + j, 1)`: by the query, the attempt's
    place and j, whatever its window or session."""
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
        # No `fits` is passed, so every turn has a result; a missing one would count as a failure.
        successes[n] += result is not None and result.retry_verdict.ok
    for failed, won in zip(attempts, successes, strict=True):
        failed.screen = Screen(samples, won, config.screen_retry_temperature)


def screened_counts(attempts: Sequence[FailedAttempt]) -> tuple[int, int]:
    """How many of a query's kept attempts were screened, and how many of those are learnable."""
    verdicts = [learnable(a) for a in attempts]
    return sum(v is not None for v in verdicts), sum(v is True for v in verdicts)


def mine_window(
    task: Task, examples: Sequence[Example], indices: Sequence[int], generator: Generator, config: MineConfig
) -> list[QueryResult]:
    """Mine a window of queries together: one generate call per round for every query still drawing,
    each query with its own seed (`query_seed`), so that each query gets exactly the samples it would
    get alone. The adaptive rule is applied per query; the results come back in the window's order."""
    started = time.perf_counter()
    base = config.sampling(task)
    prompts = [task.prompt(example) for example in examples]
    count = len(examples)
    samples, successes, failures, tokens = [0] * count, [0] * count, [0] * count, [0] * count
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
                else:
                    failures[q] += 1
                    if len(kept[q]) < config.keep:
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
    share = (time.perf_counter() - started) / max(1, count)  # the window's time, split evenly
    results = []
    for q in range(count):
        screen = screened_counts(kept[q]) if config.screen > 0 else (None, None)
        results.append(
            QueryResult(indices[q], samples[q], successes[q], failures[q], tokens[q], share, kept[q], *screen)
        )
    return results


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
    """Mining's `run.json` (`rundir.fingerprint`): everything that decides which rows a run writes.
    `identity` adds e.g. model, data, backend (local paths stored absolute); `batching` the window and
    batch size where rows depend on their batch (`BATCHING_KEYS`, `models.batch_invariant`).

    `--limit` is not stored as such: the number and digest of the examples capture it, so that
    `--limit 100` and no limit on a 100-row file are the same run. Of the config, not `window` (each
    query keeps its seeds whatever its window, so on CPU in float32 a run may resume with another;
    where rows depend on the batch it comes in `batching`), the round fields only when rounds > 1 and
    the screen's only when screen > 0; the reflection budget counts when either samples reflections."""
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
    """The output folder of one mining run: a `RunFolder` (lock, fingerprint, `--overwrite`, durable
    appends) plus mining's commit protocol over its two logs (see `_recover`).

    Open it with `RunStore.open(...)` (cheap: it reads no model) before loading the model, so that a
    refused folder fails fast."""

    def __init__(self, run: RunFolder, done: dict[int, dict[str, Any]]) -> None:
        self.run = run
        self.folder = run.folder
        self.fingerprint = run.fingerprint
        #: Progress lines of the queries already committed, by query index.
        self.done = done

    @classmethod
    def open(
        cls, output_dir: str | Path, fingerprint: dict[str, Any], *, overwrite: bool = False
    ) -> RunStore:
        run = RunFolder.open(
            output_dir, fingerprint, OWNED_FILES, command="mine", overwrite=overwrite, new_keys=BATCHING_KEYS
        )
        try:
            return cls(run, _recover(run, fingerprint["num_queries"]))
        except BaseException:
            run.close()
            raise

    def commit(self, result: QueryResult, record: dict[str, Any] | None) -> None:
        """Durably record one finished query: the failure row first, then the progress line."""
        if record is not None:
            self.run.append(FAILURES_FILE, [record])
        self.run.append(PROGRESS_FILE, [result.progress_line()])
        self.done[result.query_index] = result.progress_line()

    def close(self) -> None:
        self.run.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recover(run: RunFolder, num_queries: int) -> dict[int, dict[str, Any]]:
    """Bring the two logs back to a consistent state after a crash and return the committed queries.

    A query is committed when its progress line is written (after its failure row). Failure rows
    written just before a crash, whose progress line never made it, are dropped: those queries will be
    mined again, with the same seeds, into the same rows."""
    done: dict[int, dict[str, Any]] = {}
    for row in run.rows(PROGRESS_FILE):
        index = row.get("query_index")
        if not isinstance(index, int) or not 0 <= index < num_queries:
            raise R3Error(
                f"{run.path(PROGRESS_FILE)}: bad query_index {index!r}; use --overwrite to start afresh"
            )
        done[index] = row
    rows = run.rows(FAILURES_FILE)
    keep = [r for r in rows if r.get("query_index") in done and done[r["query_index"]].get("kept")]
    if len(keep) != len(rows):
        run.rewrite(FAILURES_FILE, keep)
    have = {r["query_index"] for r in keep}
    missing = sorted(i for i, p in done.items() if p.get("kept") and i not in have)
    if missing:
        raise R3Error(
            f"{run.path(FAILURES_FILE)}: the failures of queries {missing[:5]} are missing although "
            f"{PROGRESS_FILE} lists them as kept; the folder was changed by hand. Use --overwrite to "
            "start afresh"
        )
    return done


# --------------------------------------------------------------------------------------------------
# The run


#: Called after every committed query with the result, queries seen and queries kept so far.
ProgressCallback = Callable[[QueryResult, int, int], None]


def summarize(
    store: RunStore, total: int, config: MineConfig, model: str, session_seconds: float, session_queries: int
) -> MineSummary:
    lines = list(store.done.values())
    rates = [p["successes"] / p["samples"] for p in lines if p.get("samples")]
    screened, learnable_ = _screen_totals(lines) if config.screen > 0 else (None, None)
    return MineSummary(
        queries_total=total,
        queries_seen=len(lines),
        queries_kept=sum(1 for p in lines if p.get("kept")),
        samples=sum(int(p.get("samples", 0)) for p in lines),
        tokens=sum(int(p.get("tokens", 0)) for p in lines),
        wall_seconds=sum(float(p.get("seconds", 0.0)) for p in lines),
        session_wall_seconds=session_seconds,
        session_queries=session_queries,
        complete=len(lines) == total,
        model=model,
        config=dict(store.fingerprint),
        # Only the full protocol samples every query the same way; adaptive rates are biased low.
        mean_success_rate=(sum(rates) / len(rates) if rates else None) if config.full else None,
        attempts_screened=screened,
        attempts_learnable=learnable_,
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
    ...) goes into the fingerprint when `output_dir` is a path. `progress=True` shows a rich progress
    bar on stderr; a callable is called after every query instead."""
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
    kept = sum(1 for p in store.done.values() if p.get("kept"))
    screening = _screen_totals(store.done.values()) if config.screen > 0 else None
    try:
        with _progress_display(progress, len(examples), seen, kept, screening) as report:
            for start in range(0, len(examples), config.window):
                window = range(start, min(start + config.window, len(examples)))
                if all(i in store.done for i in window):
                    continue
                # The whole window, even if part of it was committed before an interruption: the
                # same batch gives the same rows, so a resume writes what the full run would have.
                results = mine_window(task, [examples[i] for i in window], list(window), generator, config)
                for result in results:
                    if result.query_index in store.done:
                        continue
                    record = None
                    if result.kept:
                        record = FailureRecord(
                            task=task.name,
                            query_index=result.query_index,
                            example=examples[result.query_index],
                            failed_attempts=result.failed_attempts,
                            samples_drawn=result.samples,
                            successes=result.successes,
                        ).to_json(task)
                    store.commit(result, record)
                    session_queries += 1
                    seen += 1
                    kept += result.kept
                    report(result, seen, kept)
    finally:
        summary = summarize(
            store, len(examples), config, model, time.perf_counter() - started, session_queries
        )
        with contextlib.suppress(OSError):
            store.run.write_json(SUMMARY_FILE, summary.to_json())
        if owns_store:
            store.close()
    return summary


def _screen_totals(lines: Iterable[Mapping[str, Any]]) -> list[int]:
    """Attempts screened and learnable over committed progress lines: the summary's totals, and where
    a resumed run's progress display starts."""
    rows = list(lines)
    return [sum(int(p.get("screened", 0)) for p in rows), sum(int(p.get("learnable", 0)) for p in rows)]


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

        def report(result: QueryResult, seen: int, kept: int) -> None:
            nonlocal session_samples
            session_samples += result.samples
            elapsed = time.perf_counter() - session_started
            rate = f"{session_samples / elapsed:.1f}" if elapsed > 0 else "-"
            more: dict[str, Any] = {}
            if screening is not None:
                screening[0] += result.screened or 0
                screening[1] += result.learnable or 0
                more = {"screened": screening[0], "learnable": screening[1]}
            bar.advance(seen - bar.done, kept=kept, **{"samples/s": rate}, **more)

        yield report

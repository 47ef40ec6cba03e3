"""`r3 eval`: first-try and second-try accuracy. Writes `samples.jsonl` (one `Episode` per example,
appended chunk by chunk so a run resumes), `results.json` (accuracies with 95% Wilson intervals, the
config, versions) and `results.md` (the same as a table).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from r3 import rundir
from r3.episode import (
    Episode,
    EpisodeSampling,
    EpisodeSamplingOptions,
    check_rounds,
    check_second_try,
    run_episodes,
)
from r3.errors import check_numbers
from r3.evaluation.records import Accuracy, EvalResults
from r3.generation.base import Generator
from r3.progress import ProgressReport
from r3.provenance import git_commit, versions
from r3.run_options import RunFields
from r3.rundir import RunFolder, examples_digest
from r3.tasks.base import Task


@dataclass
class EvalConfig(RunFields):
    """Everything `r3 eval` takes: the shared groups (`RunFields`) and the episode's settings."""

    max_new_tokens: int = field(default=256, metadata={"help": "an attempt's (and a retry's) token budget"})
    reflection_max_new_tokens: int = field(default=256, metadata={"help": "a reflection's token budget"})
    temperature: float = field(default=0.0, metadata={"help": "0 means greedy (default)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling (1: off)"})
    second_try: str = field(
        default="reflect",
        metadata={"help": "reflect (the paper's protocol), resample (no reflection) or feedback"},
    )
    rounds: int = field(default=1, metadata={"help": "reflect-and-retry rounds per unsolved example"})

    def __post_init__(self) -> None:
        self.check_run_fields()
        check_second_try(self.second_try)
        check_rounds(self.rounds)
        check_numbers(self, {"max_new_tokens": 1, "reflection_max_new_tokens": 1})

    def settings(self) -> dict[str, Any]:
        """What determines the results: results.json's `config`, run.json's settings."""
        return {
            "task": self.task,
            "task_options": self.task_options(),
            "data": self.data,
            "limit": self.limit,
            "seed": self.seed,
            "model": self.model,
            "backend": self.backend,
            "base_url": self.server().get("base_url"),
            "dtype": self.dtype,
            "engine_args": self.engine_args,
            "device": self.device,
            "max_new_tokens": self.max_new_tokens,
            "reflection_max_new_tokens": self.reflection_max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "chunk_size": self.batch_size,
            "second_try": self.second_try,
            "rounds": self.rounds,
        }

    def sampling(self, task: Task) -> EpisodeSampling:
        """The episode's settings: the retry drawn like the attempt, the paper's protocol."""
        return EpisodeSamplingOptions(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            reflection_max_new_tokens=self.reflection_max_new_tokens,
            top_p=self.top_p,
            seed=self.seed,
        ).build(task)


SAMPLES_FILE = "samples.jsonl"
OUTPUTS = [SAMPLES_FILE, "results.json", "results.md"]


def open_output(
    config: EvalConfig,
    output_dir: str | Path,
    overwrite: bool = False,
    check_only: bool = False,
    digest: str | None = None,
) -> RunFolder:
    """Open the output folder (`rundir.RunFolder`): create it, or resume this same evaluation."""
    return RunFolder.open(
        output_dir,
        run_fingerprint(config, digest),
        OUTPUTS,
        command="eval",
        overwrite=overwrite,
        check_only=check_only,
        new_keys=("chunk_size", "examples_sha256"),
    )


def run_fingerprint(config: EvalConfig, digest: str | None = None) -> dict[str, Any]:
    """Eval's `run.json` (`rundir.fingerprint`): what changes what is sampled, and the examples' `digest`;
    a setting left at the paper's protocol or a local default is left out, batching where rows ignore it."""
    settings = config.settings()
    defaults = {"second_try": "reflect", "rounds": 1, "base_url": None, "engine_args": None}
    omit = ["device", "chunk_size", *(key for key, value in defaults.items() if settings[key] == value)]
    return rundir.fingerprint(
        "eval",
        settings,
        examples_sha256=digest,
        omit=omit,
        batching=None if config.batch_invariant() else {"chunk_size": config.batch_size},
        paths=("data", "model"),
    )


def evaluate(
    config: EvalConfig,
    task: Task,
    examples: list[dict[str, Any]],
    generator: Generator,
    output_dir: str | Path,
    overwrite: bool = False,
    progress: bool = True,
) -> EvalResults:
    """Run (or resume) an evaluation and write its files. Returns what results.json holds."""
    with open_output(config, output_dir, overwrite, digest=examples_digest(task, examples)) as run:
        where = str(run.path(SAMPLES_FILE))
        rows = [
            Episode.from_json(r, f"{where}, row {i}", task) for i, r in enumerate(run.rows(SAMPLES_FILE), 1)
        ]
        started = time.monotonic()
        sampling = config.sampling(task)
        with ProgressReport("eval", len(examples), enabled=progress) as report:
            report.advance(len(rows), **_running_status(rows))
            for start in range(len(rows), len(examples), config.batch_size):
                chunk = examples[start : start + config.batch_size]
                episodes = run_episodes(
                    task,
                    generator,
                    chunk,
                    sampling,
                    first_index=start,
                    second_try=config.second_try,
                    rounds=config.rounds,
                )
                run.append(SAMPLES_FILE, [ep.to_json(task) for ep in episodes])
                rows.extend(episodes)
                report.advance(len(chunk), **_running_status(rows))
        results = replace(
            summarise(config, rows, getattr(generator, "model_name", config.model or "embedded")),
            wall_seconds_this_run=round(time.monotonic() - started, 2),
            usage_this_run=dict(getattr(generator, "usage", None) or {}) or None,
        )
        run.write_json("results.json", results.to_json())
        run.path("results.md").write_text(results_markdown(results))
    return results


def _running_status(rows: list[Episode]) -> dict[str, str]:
    if not rows:
        return {"1st": "-", "2nd": "-"}
    n = len(rows)
    first = sum(r.first_try_ok for r in rows)
    second = sum(r.second_try_ok for r in rows)
    return {"1st": f"{first / n:.1%}", "2nd": f"{second / n:.1%}"}


SECOND_TRY_LABELS = {
    "reflect": "second try (reflect + retry)",
    "resample": "second try (resample, no reflection)",
    "feedback": "second try (reflect with verifier feedback + retry)",
}


def second_try_note(config: EvalConfig) -> str:
    """How the second attempt was drawn, for results.json and results.md."""
    if config.second_try == "resample":
        note = (
            "After a failed first attempt, a second independent attempt at the original prompt with no "
            f"reflection, sampled like the first (temperature {config.temperature}, top_p {config.top_p}, "
            f"max_new_tokens {config.max_new_tokens}) from seeds of its own (`episode.seeded`)."
        )
        if config.temperature <= 0:
            note += (
                " Greedy decoding (temperature 0): the second attempt repeats the first exactly (up to "
                "numerical noise from batching), so second-try accuracy is first-try accuracy; use "
                "--temperature > 0 for a real resample."
            )
        return note
    if config.second_try == "feedback":
        return (
            "After a failed first attempt, a reflection whose instruction also shows the verifier's "
            "reason for the failure, then a retry with the reflection in context."
        )
    return (
        "After a failed first attempt, a reflection (told only that the answer was wrong), then a retry "
        "with the reflection in context (the paper's protocol)."
    )


def summarise(config: EvalConfig, rows: list[Episode], model_name: str) -> EvalResults:
    n = len(rows)
    firsts = [r.first_round for r in rows if r.first_round is not None]
    reflection_tokens = [f.reflection.num_tokens for f in firsts if f.reflection is not None]
    failure_reasons = Counter(r.attempt_verdict.reason for r in rows if not r.first_try_ok)
    return EvalResults(
        task=config.task,
        model=model_name,
        n=n,
        first_try=Accuracy.of(sum(r.first_try_ok for r in rows), n),
        second_try=Accuracy.of(sum(r.second_try_ok for r in rows), n),
        second_try_protocol=config.second_try,
        rounds=[Accuracy.of(sum(r.solved_by(k) for r in rows), n) for k in range(1, config.rounds + 1)],
        second_try_note=second_try_note(config),
        retries=len(firsts),
        retry_fixed=sum(f.retry_verdict.ok for f in firsts),
        reflection_tokens_mean=sum(reflection_tokens) / len(reflection_tokens) if reflection_tokens else None,
        first_try_failure_reasons=dict(failure_reasons.most_common(10)),
        config=config.settings(),
        versions=versions(),
        git=git_commit(),
    )


def results_markdown(results: EvalResults) -> str:
    """A readable table of one evaluation."""
    n = results.n

    def cell(block: Accuracy) -> str:
        lo, hi = block.ci95
        return f"{block.accuracy:.1%} ({block.correct}/{n}) | [{lo:.1%}, {hi:.1%}]"

    mean = results.reflection_tokens_mean
    protocol = results.second_try_protocol
    lines = [
        f"# R3 evaluation: {results.task}",
        "",
        f"Model: `{results.model}`, {n} examples.",
        "",
        "| attempt | accuracy | 95% CI (Wilson) |",
        "|---|---|---|",
        f"| first try | {cell(results.first_try)} |",
        f"| {SECOND_TRY_LABELS.get(protocol, f'second try ({protocol})')} | {cell(results.second_try)} |",
        *[f"| after round {k} | {cell(block)} |" for k, block in results.by_round()[2:]],
        "",
        f"Retries: {results.retries}, fixed by the retry: {results.retry_fixed}. "
        f"Mean reflection length: {'-' if mean is None else f'{mean:.1f} tokens'}.",
        "",
    ]
    if results.second_try_note:
        lines += [f"Second try: {results.second_try_note}", ""]
    return "\n".join(lines)

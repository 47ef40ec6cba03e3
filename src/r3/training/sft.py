"""`r3 sft`: a supervised warm-start on solved examples, on TRL's `SFTTrainer`.

The paper's models under 1.5B parameters could not learn from R3 because they could not answer at all:
no retry ever succeeds, so no GRPO group has a signal. A short warm-start on the task's reference
answers gives a small model the base rate R3 needs; it is also the baseline R3 is compared with.

By default it trains **first attempts only**: the task prompt, rendered exactly as evaluation renders
it (`render_prompt`), followed by `Task.reference_answer(example)` and EOS. The loss covers the answer
tokens (the prompt is masked).

A warm-start on answers alone also teaches the model to answer when asked to reflect, which leaves R3
nothing to shape. With `primed_fraction` > 0 that fraction of the examples (fixed by `seed`) instead
shows the whole episode: a failed attempt (made by `Task.perturb`, or the model's own from a failures
file, `primed_failures`), a reflection written from the verifier's diagnosis (`Task.diagnose`, never
the answer), then the reference answer, the loss on the reflection and the answer
(`r3.training.priming`). An example the task cannot perturb or diagnose stays a first-attempt row.

    from r3.training.sft import SFTRunConfig, train_sft
    result = train_sft(SFTRunConfig(output_dir="out", task="countdown", limit=500, max_steps=60))
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import SFTConfig

from r3.errors import R3Error
from r3.generation.chat import render_prompt
from r3.training.common import CommonTrainingFields
from r3.training.console import use_step_lines
from r3.training.priming import Priming, Row, encode, primed_indices, primed_row

SUMMARY_FILE = "r3_sft.json"


@dataclass
class SFTRunConfig(SFTConfig, CommonTrainingFields):
    """TRL's `SFTConfig` plus R3's task, data, model and LoRA fields (see `CommonTrainingFields`)."""

    data: str | None = field(
        default=None,
        metadata={
            "help": "solved examples: a .json/.jsonl/.parquet file or hub dataset id (default: the task's "
            "own; Countdown generates `limit` rows from task_seed)"
        },
    )
    task_seed: int = field(
        default=0,
        metadata={
            "help": "seed of generated examples (Countdown with no data), as `r3 eval --seed`: keep it "
            "apart from the seeds you evaluate on"
        },
    )

    primed_fraction: float = field(
        default=0.0,
        metadata={
            "help": "fraction of the examples (chosen by `seed`) shown as a whole episode: a failed attempt, "
            "a reflection from the verifier's diagnosis, then the reference answer, the loss on the "
            "reflection and the answer (0: first attempts only)"
        },
    )
    primed_failures: str | None = field(
        default=None,
        metadata={
            "help": "a failures.jsonl written by `r3 mine`: its queries are the examples, and primed ones "
            "show the model's own failed attempts (default: attempts made by perturbing the reference)"
        },
    )

    def __post_init__(self) -> None:
        # Loss on the answer only; the dataset is tokenized here, so TRL must not pack or re-render it.
        if self.completion_only_loss is False:
            raise R3Error("r3 sft trains on the answer tokens only: completion_only_loss cannot be false")
        self.completion_only_loss = True
        super().__post_init__()
        self.check_common_fields()
        self.check_priming()

    def check_priming(self) -> None:
        """`primed_fraction` in [0, 1]; `primed_failures` only with priming on, and not with `data`."""
        if not 0.0 <= self.primed_fraction <= 1.0:
            raise R3Error(f"primed_fraction must be between 0 and 1 (got {self.primed_fraction})")
        if self.primed_failures is not None:
            if self.primed_fraction == 0:
                raise R3Error(
                    "primed_failures needs primed_fraction > 0: it is where primed attempts come from"
                )
            if self.data is not None:
                raise R3Error(
                    "give data or primed_failures, not both: the failures file's queries are the examples"
                )


@dataclass
class SFTExamples:
    """Tokenized warm-start rows and what became of the examples: `used` rows in all, of which
    `primed` whole episodes (the rest first attempts); `skipped` examples with no reference answer or
    too long; `unprimed` examples chosen for priming that stayed first attempts (no failed attempt the
    task could diagnose, a chat template that disagrees with itself, or too long)."""

    input_ids: list[list[int]]
    completion_mask: list[list[int]]
    used: int
    skipped: int
    primed: int = 0
    unprimed: int = 0

    @property
    def first_attempts(self) -> int:
        """Rows that are a first attempt only (prompt, then the reference answer)."""
        return self.used - self.primed


def first_attempt_row(task: Any, tokenizer: Any, example: dict[str, Any], answer: str) -> Row:
    """Prompt tokens (mask 0) + reference answer tokens + EOS (mask 1)."""
    prompt = encode(tokenizer, render_prompt(tokenizer, task.prompt(example)))
    completion = [*encode(tokenizer, answer), tokenizer.eos_token_id]
    return prompt + completion, [0] * len(prompt) + [1] * len(completion)


def build_sft_examples(
    task: Any,
    examples: list[dict[str, Any]],
    tokenizer: Any,
    max_length: int | None = None,
    priming: Priming | None = None,
) -> SFTExamples:
    """One row per solvable example: a first attempt (`first_attempt_row`) or, for the examples
    `priming` chooses, the whole episode (`r3.training.priming.primed_row`) when it can be built.

    Tokenized here, with `render_prompt` and no added special tokens, exactly as the generation
    backends encode prompts, so the model is trained on the token sequence it will see at inference."""
    if tokenizer.eos_token_id is None:
        raise R3Error("the tokenizer has no EOS token: cannot mark where an answer ends")
    chosen = primed_indices(len(examples), priming.fraction, priming.seed) if priming else set()
    rows = SFTExamples([], [], used=0, skipped=0)
    for index, example in enumerate(examples):
        answer = task.reference_answer(example)
        if not answer:
            rows.skipped += 1
            continue
        row = None
        if priming is not None and index in chosen:
            row = primed_row(task, tokenizer, example, index, answer, priming, max_length)
            if row is None:
                rows.unprimed += 1
            else:
                rows.primed += 1
        if row is None:
            row = first_attempt_row(task, tokenizer, example, answer)
        if max_length is not None and len(row[0]) > max_length:
            rows.skipped += 1  # a truncated answer would teach the model to stop mid-answer
            continue
        rows.input_ids.append(row[0])
        rows.completion_mask.append(row[1])
    if not rows.input_ids:
        raise R3Error(
            f"task '{task.name}' gave no reference answers for {len(examples)} examples: "
            "a warm-start needs solved examples (e.g. a 'reference' column for a custom task)"
        )
    rows.used = len(rows.input_ids)
    return rows


def load_examples(config: SFTRunConfig, task: Any) -> tuple[list[dict[str, Any]], Priming | None]:
    """The warm-start's examples and how to prime them: the task's data, or with `primed_failures`
    the mined queries (their failed attempts kept for priming), the first `limit` of them."""
    if config.primed_failures is None:
        examples = task.load(config.data, limit=config.limit, seed=config.task_seed)
        attempts = None
    else:
        from r3.mining.records import read_failures

        records = read_failures(config.primed_failures, task)[: config.limit]
        examples = [record.example for record in records]
        attempts = [[a["completion"] for a in record.failed_attempts] for record in records]
    if config.primed_fraction <= 0:
        return examples, None
    return examples, Priming(config.primed_fraction, config.seed, attempts)


def build_sft_trainer(
    config: SFTRunConfig, *, model: Any = None, tokenizer: Any = None
) -> tuple[Any, SFTExamples]:
    """A `SFTTrainer` on the task's reference answers, and what went into its dataset."""
    from datasets import Dataset
    from trl import SFTTrainer

    from r3.models import load_tokenizer
    from r3.training.trainer import load_policy, load_task

    task = load_task(config)  # type: ignore[arg-type]
    examples, priming = load_examples(config, task)
    if tokenizer is None:
        tokenizer = load_tokenizer(config.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = build_sft_examples(task, examples, tokenizer, config.max_length, priming)
    dataset = Dataset.from_dict({"input_ids": rows.input_ids, "completion_mask": rows.completion_mask})
    if model is None:
        model = load_policy(config)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*padding-free.*")
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=config.peft_config(),
        )
    use_step_lines(trainer, "sft")
    return trainer, rows


@dataclass
class SFTResult:
    """Where the warm-started model went, and what it was trained on."""

    output_dir: str
    global_step: int
    used: int
    skipped: int
    log_history: list[dict[str, Any]] = field(default_factory=list)
    adapter_dir: str | None = None
    primed: int = 0
    unprimed: int = 0


def write_summary(trainer: Any, config: SFTRunConfig, rows: SFTExamples) -> None:
    """`r3_sft.json`: the settings and the examples used, with the steps and the log history."""
    from r3.training.trainer import write_summary_file

    names = ("task", "task_args", "model", "data", "task_seed", "primed_fraction", "primed_failures", "seed")
    fields = {name: getattr(config, name) for name in names}
    counts = (rows.used, rows.skipped, rows.first_attempts, rows.primed, rows.unprimed)
    kinds = ("used", "skipped", "first_attempt", "primed", "unprimed")
    fields.update({f"examples_{kind}": count for kind, count in zip(kinds, counts, strict=True)})
    write_summary_file(trainer, Path(config.output_dir) / SUMMARY_FILE, fields)


def train_sft(config: SFTRunConfig, **pieces: Any) -> SFTResult:
    """Check the output folder (as `r3 train` does: `training.folder`), build, train (resuming if
    asked), save in Hugging Face format, write `r3_sft.json`."""
    from r3.training.folder import training_folder
    from r3.training.interrupt import train_until_stopped, uninterrupted_save
    from r3.training.trainer import resume_target, save_final

    with training_folder(config, "sft", SUMMARY_FILE):
        trainer, rows = build_sft_trainer(config, **pieces)
        train_until_stopped(trainer, resume_target(config))  # type: ignore[arg-type]
        with uninterrupted_save():  # the summary last: its presence says the model beside it is whole
            adapter_dir = save_final(trainer, config)  # type: ignore[arg-type]
            write_summary(trainer, config, rows)
    return SFTResult(
        output_dir=str(config.output_dir),
        global_step=trainer.state.global_step,
        used=rows.used,
        skipped=rows.skipped,
        log_history=list(trainer.state.log_history),
        adapter_dir=adapter_dir,
        primed=rows.primed,
        unprimed=rows.unprimed,
    )

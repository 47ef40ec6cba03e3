"""`r3 sft`: a supervised warm-start on the task's reference answers, on TRL's `SFTTrainer`: models too
small to ever answer give GRPO no signal. It trains first attempts (the task prompt as eval renders it,
then `Task.reference_answer` and EOS), the prompt masked from the loss.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import SFTConfig

from r3.errors import R3Error
from r3.generation.base import encode_prompts
from r3.training.common import CommonTrainingFields
from r3.training.console import use_step_lines

SUMMARY_FILE = "r3_sft.json"


@dataclass
class SFTRunConfig(SFTConfig, CommonTrainingFields):
    """TRL's `SFTConfig` plus R3's task, data, model and LoRA fields (see `CommonTrainingFields`)."""

    data: str | None = field(
        default=None,
        metadata={"help": "solved examples: .json, .jsonl or .parquet file, or hub id (default: the task's)"},
    )
    task_seed: int = field(
        default=0,
        metadata={"help": "Countdown with no data: seed of its generated examples, apart from eval's seeds"},
    )

    def __post_init__(self) -> None:
        if self.completion_only_loss is False:
            raise R3Error("r3 sft trains on the answer tokens only: completion_only_loss cannot be false")
        self.completion_only_loss = True
        super().__post_init__()
        self.check_common_fields()


@dataclass
class SFTExamples:
    """Tokenized warm-start rows: `used` examples, and `skipped` ones (no reference answer, or too long)."""

    input_ids: list[list[int]]
    completion_mask: list[list[int]]
    used: int
    skipped: int


def build_sft_examples(
    task: Any,
    examples: list[dict[str, Any]],
    tokenizer: Any,
    max_length: int | None = None,
) -> SFTExamples:
    """One row per solvable example: its prompt's tokens (mask 0), then the reference answer's and EOS
    (mask 1), encoded as the generation backends encode, so the model trains on what it sees at inference."""
    if tokenizer.eos_token_id is None:
        raise R3Error("the tokenizer has no EOS token: cannot mark where an answer ends")
    rows = SFTExamples([], [], used=0, skipped=0)
    for example in examples:
        answer = task.reference_answer(example)
        if answer:
            prompt = encode_prompts(tokenizer, [task.prompt(example)])[0]
            completion = [*tokenizer(answer, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
        if not answer or (max_length is not None and len(prompt) + len(completion) > max_length):
            rows.skipped += 1  # a truncated answer would teach the model to stop mid-answer
            continue
        rows.input_ids.append([*prompt, *completion])
        rows.completion_mask.append([0] * len(prompt) + [1] * len(completion))
    if not rows.input_ids:
        raise R3Error(
            f"task '{task.name}' gave no reference answers for {len(examples)} examples: "
            "a warm-start needs solved examples (e.g. a 'reference' column for a custom task)"
        )
    rows.used = len(rows.input_ids)
    return rows


def build_sft_trainer(
    config: SFTRunConfig, *, model: Any = None, tokenizer: Any = None
) -> tuple[Any, SFTExamples]:
    """A `SFTTrainer` on the task's reference answers, and what went into its dataset."""
    from datasets import Dataset
    from trl import SFTTrainer

    from r3.models import load_tokenizer
    from r3.training.trainer import load_policy, load_task

    task = load_task(config)  # type: ignore[arg-type]
    examples = task.load(config.data, limit=config.limit, seed=config.task_seed)
    if tokenizer is None:
        tokenizer = load_tokenizer(config.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = build_sft_examples(task, examples, tokenizer, config.max_length)
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


def write_summary(trainer: Any, config: SFTRunConfig, rows: SFTExamples) -> None:
    """`r3_sft.json`: the settings and the examples used, with the steps and the log history."""
    from r3.training.trainer import write_summary_file

    names = ("task", "task_args", "model", "data", "task_seed", "seed")
    fields = {name: getattr(config, name) for name in names}
    fields.update(examples_used=rows.used, examples_skipped=rows.skipped)
    write_summary_file(trainer, Path(config.output_dir) / SUMMARY_FILE, fields)


def train_sft(config: SFTRunConfig, **pieces: Any) -> SFTResult:
    """Check the output folder (`training.folder`), build, train (resuming if asked), save, and write
    `r3_sft.json`."""
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
    )

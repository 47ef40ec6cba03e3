"""`r3 sft`: a supervised warm-start on solved examples, on TRL's `SFTTrainer`.

The paper's models under 1.5B parameters could not learn from R3 because they could not answer at all:
no retry ever succeeds, so no GRPO group has a signal. A short warm-start on the task's reference
answers gives a small model the base rate R3 needs; it is also the baseline R3 is compared with.

It trains **first attempts only**: the task prompt, rendered exactly as evaluation renders it
(`render_prompt`), followed by `Task.reference_answer(example)` and EOS. The loss covers the answer
tokens (the prompt is masked). Reflections and retries are never shown: those are what R3 trains.

    from r3.training.sft import SFTRunConfig, train_sft
    result = train_sft(SFTRunConfig(output_dir="out", task="countdown", limit=500, max_steps=60))
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import SFTConfig

from r3.errors import R3Error
from r3.training.common import CommonTrainingFields

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

    def __post_init__(self) -> None:
        # Loss on the answer only; the dataset is tokenized here, so TRL must not pack or re-render it.
        if self.completion_only_loss is False:
            raise R3Error("r3 sft trains on the answer tokens only: completion_only_loss cannot be false")
        self.completion_only_loss = True
        super().__post_init__()
        self.check_common_fields()


@dataclass
class SFTExamples:
    """Tokenized warm-start rows and how many examples had no reference answer."""

    input_ids: list[list[int]]
    completion_mask: list[list[int]]
    used: int
    skipped: int


def build_sft_examples(
    task: Any, examples: list[dict[str, Any]], tokenizer: Any, max_length: int | None = None
) -> SFTExamples:
    """Prompt tokens (mask 0) + reference answer tokens + EOS (mask 1), one row per solvable example.

    Tokenized here, with `render_prompt` and no added special tokens, exactly as the generation
    backends encode prompts, so the model is trained on the token sequence it will see at inference."""
    from r3.generation.chat import render_prompt

    eos = tokenizer.eos_token_id
    if eos is None:
        raise R3Error("the tokenizer has no EOS token: cannot mark where an answer ends")
    ids: list[list[int]] = []
    masks: list[list[int]] = []
    skipped = 0
    for example in examples:
        answer = task.reference_answer(example)
        if not answer:
            skipped += 1
            continue
        prompt = tokenizer(render_prompt(tokenizer, task.prompt(example)), add_special_tokens=False)[
            "input_ids"
        ]
        completion = [*tokenizer(answer, add_special_tokens=False)["input_ids"], eos]
        if max_length is not None and len(prompt) + len(completion) > max_length:
            skipped += 1  # a truncated answer would teach the model to stop mid-answer
            continue
        ids.append(prompt + completion)
        masks.append([0] * len(prompt) + [1] * len(completion))
    if not ids:
        raise R3Error(
            f"task '{task.name}' gave no reference answers for {len(examples)} examples: "
            "a warm-start needs solved examples (e.g. a 'reference' column for a custom task)"
        )
    return SFTExamples(ids, masks, used=len(ids), skipped=skipped)


def build_sft_trainer(
    config: SFTRunConfig, *, model: Any = None, tokenizer: Any = None
) -> tuple[Any, SFTExamples]:
    """A `SFTTrainer` on the task's reference answers, and what went into its dataset."""
    from datasets import Dataset
    from trl import SFTTrainer

    from r3.models import load_tokenizer
    from r3.training.trainer import load_policy, load_task, lora_config

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
            peft_config=lora_config(config) if config.use_peft else None,  # type: ignore[arg-type]
        )
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


def train_sft(config: SFTRunConfig, **pieces: Any) -> SFTResult:
    """Build, train (resuming if asked), save in Hugging Face format, write `r3_sft.json`."""
    from r3.training.trainer import resume_target, save_final

    trainer, rows = build_sft_trainer(config, **pieces)
    trainer.train(resume_from_checkpoint=resume_target(config))  # type: ignore[arg-type]
    adapter_dir = save_final(trainer, config)  # type: ignore[arg-type]
    if trainer.accelerator.is_main_process:
        summary = {
            "task": config.task,
            "task_args": config.task_args,
            "model": config.model,
            "data": config.data,
            "task_seed": config.task_seed,
            "examples_used": rows.used,
            "examples_skipped": rows.skipped,
            "global_step": trainer.state.global_step,
            "log_history": trainer.state.log_history,
        }
        path = Path(config.output_dir) / SUMMARY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=1, default=str))
    return SFTResult(
        output_dir=str(config.output_dir),
        global_step=trainer.state.global_step,
        used=rows.used,
        skipped=rows.skipped,
        log_history=list(trainer.state.log_history),
        adapter_dir=adapter_dir,
    )

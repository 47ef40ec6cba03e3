"""Fields and checks shared by the training configs (`r3 train`, `r3 sft`): the task group
(`r3.tasks.options.TaskFields`, as for eval and mine), TRL's `ModelConfig` for the model and LoRA, and
resuming. Every field has a default, so the mixin composes with TRL's configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from trl import ModelConfig

from r3.errors import R3Error
from r3.tasks.options import TaskFields
from r3.threads import ThreadFields

#: `ModelConfig` settings R3 does not apply, with the one value it runs with: R3 loads the model
#: itself (`trainer.load_policy`, and the tokenizer and vLLM by the same name), unquantized.
UNSUPPORTED_MODEL_SETTINGS: dict[str, object] = {
    "model_revision": "main",
    "load_in_8bit": False,
    "load_in_4bit": False,
}


@dataclass
class CommonTrainingFields(ThreadFields, TaskFields, ModelConfig):
    """Task, model, LoRA and checkpoint fields of every R3 training config. Unlike `ModelConfig`: `model`
    is the key (`model_name_or_path` the same setting), `dtype` defaults to `auto`, LoRA adapts every
    linear layer by default, and `UNSUPPORTED_MODEL_SETTINGS` are refused away from their default."""

    min_limit: ClassVar[int] = 1  # a training run on no example is a mistake, refused at once

    model: str | None = field(
        default=None,
        metadata={"help": "hub id or local folder to train (default: the embedded SmolLM2-135M-Instruct)"},
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "auto (bfloat16 when bf16 is on, else float32), float32, bfloat16, float16"},
    )

    # LoRA: TRL's fields (use_peft, lora_r, lora_alpha, lora_dropout, ...), R3's default target.
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "LoRA target modules (default: every linear layer, PEFT's all-linear)"},
    )
    merge_lora: bool = field(
        default=False,
        metadata={"help": "LoRA: save the merged model in output_dir too (the adapter: output_dir/adapter)"},
    )

    resume: bool = field(
        default=False,
        metadata={"help": "continue output_dir's run from its last checkpoint (same settings but max_steps)"},
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "remove the previous run's files from output_dir and start afresh (else refused)"},
    )

    def check_common_fields(self) -> None:
        """Normalise and check the shared fields; called from the config's `__post_init__`, since TRL's
        does not reach `ModelConfig`'s."""
        self.check_task_fields()
        if self.model_name_or_path is not None:
            if self.model is not None and self.model != self.model_name_or_path:
                raise R3Error(
                    f"model ({self.model}) and model_name_or_path ({self.model_name_or_path}) are one "
                    "setting: give one of them"
                )
            self.model = self.model_name_or_path
        for name, value in UNSUPPORTED_MODEL_SETTINGS.items():
            if getattr(self, name) != value:
                raise R3Error(f"{name}: r3 supports only {value!r} (got {getattr(self, name)!r})")
        if self.lora_target_modules is None or self.lora_target_modules == ["all-linear"]:
            self.lora_target_modules = "all-linear"  # type: ignore[assignment]  # PEFT's shorthand
        if self.merge_lora and not self.use_peft:
            raise R3Error("merge_lora needs use_peft")
        if (self.resume or getattr(self, "resume_from_checkpoint", None)) and self.overwrite:
            raise R3Error(
                "give --resume (continue the run in output_dir) or --overwrite (start afresh), not both"
            )

    def peft_config(self) -> Any:
        """The LoRA adapter's config (None without `use_peft`), as TRL's scripts build it."""
        from trl import get_peft_config

        return get_peft_config(self)

"""Fields and checks shared by every training command's config (`r3 train`, `r3 sft`).

Both configs are TRL config dataclasses (`GRPOConfig`, `SFTConfig`) plus these fields, parsed the same
way (YAML recipe, flag overrides), so that the task, the model, LoRA and resuming are spelled and
checked once. A mixin dataclass: every field has a default, so it composes with TRL's in any order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from r3.errors import R3Error


@dataclass
class CommonTrainingFields:
    """Task, model, LoRA and checkpoint fields of every R3 training config."""

    # --- task ------------------------------------------------------------------------------------
    task: str = field(
        default="countdown",
        metadata={"help": "countdown, function_calling, custom, or a dotted path pkg.module:TaskClass"},
    )
    verifier: str | None = field(
        default=None, metadata={"help": "custom task: the verifier as pkg.module:function"}
    )
    task_args: dict | str | None = field(
        default=None,
        metadata={
            "help": "options of the task's constructor: a mapping in the recipe "
            "(task_args: {min_nums: 4}); on the command line a mapping string or KEY=VALUE, "
            "as r3 eval and r3 mine take them"
        },
    )
    limit: int | None = field(default=None, metadata={"help": "use only the first N rows"})

    # --- model -----------------------------------------------------------------------------------
    model: str | None = field(
        default=None,
        metadata={"help": "hub id or local folder to train (default: the embedded SmolLM2-135M-Instruct)"},
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "auto (bfloat16 when bf16 is on, else float32), float32, bfloat16, float16"},
    )

    # --- LoRA ------------------------------------------------------------------------------------
    use_peft: bool = field(default=False, metadata={"help": "train a LoRA adapter instead of all weights"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "modules to adapt (default: all linear layers)"}
    )
    merge_lora: bool = field(
        default=False,
        metadata={
            "help": "LoRA: also save the merged model in output_dir (the adapter goes to output_dir/adapter)"
        },
    )

    # --- checkpoints -------------------------------------------------------------------------------
    resume: bool = field(
        default=False,
        metadata={"help": "continue from the last checkpoint in output_dir (or from resume_from_checkpoint)"},
    )

    def check_common_fields(self) -> None:
        """Normalise `task_args` and check the shared fields; call from the config's `__post_init__`."""
        from r3.tasks.registry import parse_task_args

        self.task_args = parse_task_args(self.task_args) if self.task_args is not None else None
        if self.limit is not None and self.limit < 1:
            raise R3Error(f"limit must be at least 1 (got {self.limit})")
        if self.merge_lora and not self.use_peft:
            raise R3Error("merge_lora needs use_peft")

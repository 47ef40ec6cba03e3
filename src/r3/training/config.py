"""`R3Config`: TRL's `GRPOConfig` plus the fields R3 needs.

Every `GRPOConfig` / `TrainingArguments` field keeps its TRL meaning and can be set in a YAML recipe
or overridden on the command line (`--max_steps 2`, `--learning-rate 1e-6`). The reflection is the
completion GRPO samples, so TRL's own sampling fields apply to it: `temperature`, `top_p`, `top_k`
and `max_completion_length` (the reflection's token budget). The retry and the online first attempt
have their own fields below.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from r3.errors import R3Error

FIRST_ATTEMPT_MODES = ("stored", "online")


@dataclass
class R3Config(GRPOConfig):
    """GRPO configuration for training self-reflections (see docs/training.md)."""

    # --- task and data -------------------------------------------------------------------------
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
            "(task_args: {min_nums: 4}), a YAML/JSON mapping string on the command line"
        },
    )
    failures: str | None = field(
        default=None, metadata={"help": "the failures file written by `r3 mine` (failures.jsonl)"}
    )
    limit: int | None = field(default=None, metadata={"help": "use only the first N failure records"})
    max_attempts_per_query: int | None = field(
        default=None,
        metadata={"help": "stored mode: use at most this many failed attempts per query (default: all)"},
    )

    # --- model -----------------------------------------------------------------------------------
    model: str | None = field(
        default=None,
        metadata={"help": "hub id or local folder to train (default: the embedded SmolLM2-135M-Instruct)"},
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "auto (bfloat16 when bf16 is on, else float32), float32, bfloat16, float16"},
    )

    # --- the three generation steps ------------------------------------------------------------------
    first_attempt: str = field(
        default="stored",
        metadata={
            "help": "stored: the failed attempt from the failures file; online: sample a fresh first attempt "
            "with the current policy (groups whose fresh attempt succeeds carry no gradient)"
        },
    )
    attempt_max_new_tokens: int = field(default=256, metadata={"help": "online first attempt: token budget"})
    attempt_temperature: float = field(
        default=1.0, metadata={"help": "online first attempt: sampling temperature (0 = greedy)"}
    )
    retry_max_new_tokens: int = field(
        default=256, metadata={"help": "the retry's token budget (it also stops at the task's stop strings)"}
    )
    retry_temperature: float = field(
        default=0.0,
        metadata={
            "help": "the retry's sampling temperature; 0 (default) is greedy, so the reward measures the "
            "reflection rather than the luck of the retry's sampling"
        },
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

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.task_args, str):
            import yaml

            try:
                self.task_args = yaml.safe_load(self.task_args) or {}
            except yaml.YAMLError as exc:
                raise R3Error(f"task_args: not a YAML mapping ({str(exc).splitlines()[0]})") from None
        if self.task_args is not None and not isinstance(self.task_args, dict):
            raise R3Error(f"task_args must be a mapping, got {type(self.task_args).__name__}")
        if self.first_attempt not in FIRST_ATTEMPT_MODES:
            raise R3Error(
                f"first_attempt must be one of {', '.join(FIRST_ATTEMPT_MODES)}, not '{self.first_attempt}'"
            )
        for name in ("retry_max_new_tokens", "attempt_max_new_tokens"):
            if getattr(self, name) < 1:
                raise R3Error(f"{name} must be at least 1")
        if self.retry_temperature < 0 or self.attempt_temperature < 0:
            raise R3Error("retry_temperature and attempt_temperature must be >= 0")
        if self.first_attempt == "online":
            # One fresh first attempt is shared by a group, so a group must not be split across processes.
            local = self.per_device_train_batch_size * self.steps_per_generation
            if local % self.num_generations != 0:
                raise R3Error(
                    "first_attempt=online needs per_device_train_batch_size * steps_per_generation "
                    f"({local}) to be a multiple of num_generations ({self.num_generations})"
                )
        if self.merge_lora and not self.use_peft:
            raise R3Error("merge_lora needs use_peft")

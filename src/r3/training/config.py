"""`R3Config`: TRL's `GRPOConfig`, every field with its TRL meaning, plus the fields R3 needs."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from r3.episode import EpisodeSampling, EpisodeSamplingOptions
from r3.errors import R3Error
from r3.tasks.base import Task
from r3.training.common import CommonTrainingFields


def _check_one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise R3Error(f"{name} must be one of {', '.join(choices)}, not '{value}'")


@dataclass
class R3Config(GRPOConfig, CommonTrainingFields):
    """GRPO configuration for training self-reflections (see docs/training.md)."""

    failures: str | None = field(
        default=None, metadata={"help": "the failures file written by `r3 mine` (failures.jsonl)"}
    )
    max_attempts_per_query: int | None = field(
        default=None,
        metadata={"help": "stored mode: use at most this many failed attempts per query (default: all)"},
    )
    min_successes: int = field(
        default=0,
        metadata={"help": "train only on queries mining saw solved at least this often (r3 mine --full)"},
    )
    selection: str = field(
        default="all",
        metadata={"help": "all, or learnable: attempts screened (`r3 mine --screen`) with mixed retries"},
    )
    mode: str = field(
        default="r3",
        metadata={"help": "r3: train the reflection; grpo: plain GRPO on first attempts; combined: both"},
    )
    dynamic_sampling_rounds: int = field(
        default=0,
        metadata={"help": "tries per step to replace groups without signal by fresh ones (0: off; DAPO's)"},
    )
    replacements: str = field(
        default="pool",
        metadata={"help": "dynamic sampling's replacements: pool (at random) or unseen (no query twice)"},
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["retry_success"],
        metadata={"help": "retry_success[_shuffled], attempt_success, turn_success, or pkg.module:function"},
    )
    first_attempt: str = field(
        default="stored",
        metadata={"help": "stored: the failures file's; online: a fresh first attempt by the current policy"},
    )
    attempt_max_new_tokens: int = field(default=256, metadata={"help": "online first attempt: token budget"})
    attempt_temperature: float = field(
        default=1.0, metadata={"help": "online first attempt: sampling temperature (0 = greedy)"}
    )
    reflection_max_new_tokens: int | None = field(
        default=None, metadata={"help": "the reflection's token budget: TRL's max_completion_length"}
    )
    retry_max_new_tokens: int = field(
        default=256, metadata={"help": "the retry's token budget (it also stops at the task's stop strings)"}
    )
    retry_temperature: float = field(
        default=0.0,
        metadata={"help": "the retry's temperature; 0, greedy: the reward measures the reflection, not luck"},
    )

    def __post_init__(self) -> None:
        if self.reflection_max_new_tokens is not None:
            if self.reflection_max_new_tokens < 1:
                raise R3Error("reflection_max_new_tokens must be at least 1")
            self.max_completion_length = self.reflection_max_new_tokens
        super().__post_init__()
        self.check_common_fields()
        if isinstance(self.reward_funcs, str):
            self.reward_funcs = [self.reward_funcs]
        from r3.training.rewards import BUILTIN_REWARDS, MODE_REWARDS
        from r3.training.rollout import TRAIN_MODES

        for name in self.reward_funcs:
            if name not in BUILTIN_REWARDS and ":" not in name:
                known = ", ".join(BUILTIN_REWARDS)
                raise R3Error(f"unknown reward '{name}': use one of {known}, or pkg.module:function")
        _check_one_of("mode", self.mode, TRAIN_MODES)
        if self.reward_funcs == ["retry_success"]:
            self.reward_funcs = [MODE_REWARDS[self.mode][0]]  # the default, for the mode's own outcome
        wrong = [n for n in self.reward_funcs if n in BUILTIN_REWARDS and n not in MODE_REWARDS[self.mode]]
        if wrong:
            raise R3Error(
                f"reward '{wrong[0]}' does not score mode '{self.mode}': use "
                f"{', '.join(MODE_REWARDS[self.mode])}"
            )
        if self.dynamic_sampling_rounds < 0:
            raise R3Error("dynamic_sampling_rounds must be >= 0")
        _check_one_of("replacements", self.replacements, ("pool", "unseen"))
        if self.replacements == "unseen":
            self.shuffle_dataset = False  # the pool's order is R3's (`trainer.build_trainer`), front to back
        _check_one_of("selection", self.selection, ("all", "learnable"))
        _check_one_of("first_attempt", self.first_attempt, ("stored", "online"))
        for name in ("retry_max_new_tokens", "attempt_max_new_tokens"):
            if getattr(self, name) < 1:
                raise R3Error(f"{name} must be at least 1")
        if self.retry_temperature < 0 or self.attempt_temperature < 0:
            raise R3Error("retry_temperature and attempt_temperature must be >= 0")
        if self.first_attempt == "online" or self.dynamic_sampling_rounds or self.mode == "combined":
            # A group must not be split across processes: online, a group shares one fresh first attempt;
            # dynamic sampling replaces whole groups; combined mode trains one turn per group.
            local = self.per_device_train_batch_size * self.steps_per_generation
            if local % self.num_generations != 0:
                raise R3Error(
                    "first_attempt=online, dynamic sampling and mode combined need "
                    f"per_device_train_batch_size * steps_per_generation ({local}) to be a multiple of "
                    f"num_generations ({self.num_generations})"
                )

    def episode_sampling(self, task: Task) -> EpisodeSampling:
        """The three generation steps' settings, by the rules eval and mine share: TRL's sampling fields
        are the reflection's (the attempt's in `grpo` mode); the retry and online attempt have their own."""
        grpo = self.mode == "grpo"
        return EpisodeSamplingOptions(
            max_new_tokens=self.max_completion_length if grpo else self.attempt_max_new_tokens,
            temperature=self.temperature if grpo else self.attempt_temperature,
            reflection_max_new_tokens=self.max_completion_length,
            top_p=self.top_p,
            top_k=self.top_k or None,
            reflection_temperature=self.temperature,
            retry_temperature=self.retry_temperature,
            retry_max_new_tokens=self.retry_max_new_tokens,
        ).build(task)

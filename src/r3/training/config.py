"""`R3Config`: TRL's `GRPOConfig` plus the fields R3 needs.

Every `GRPOConfig` / `TrainingArguments` field keeps its TRL meaning. The reflection is the completion
GRPO samples, so TRL's `temperature`, `top_p`, `top_k` and `max_completion_length` apply to it
(`reflection_max_new_tokens`, the name eval and mine use, sets the last); the retry and the online
first attempt have their own fields. `episode_sampling` turns them into `episode.EpisodeSampling`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from r3.episode import EpisodeSampling, EpisodeSamplingOptions
from r3.errors import R3Error
from r3.tasks.base import Task
from r3.training.common import CommonTrainingFields

FIRST_ATTEMPT_MODES = ("stored", "online")
SELECTIONS = ("all", "learnable")
REPLACEMENTS = ("pool", "unseen")


@dataclass
class R3Config(GRPOConfig, CommonTrainingFields):
    """GRPO configuration for training self-reflections (see docs/training.md)."""

    # --- data ------------------------------------------------------------------------------------
    failures: str | None = field(
        default=None, metadata={"help": "the failures file written by `r3 mine` (failures.jsonl)"}
    )
    max_attempts_per_query: int | None = field(
        default=None,
        metadata={"help": "stored mode: use at most this many failed attempts per query (default: all)"},
    )

    min_successes: int = field(
        default=0,
        metadata={
            "help": "train only on queries that mining saw solved at least this many times (`successes` in "
            "the failures file; use `r3 mine --full` for comparable counts). A group on a query the model "
            "never solves rarely has a successful retry, so it carries no signal and wastes its compute"
        },
    )

    selection: str = field(
        default="all",
        metadata={
            "help": "all: every failed attempt; learnable: only attempts that `r3 mine --screen K` saw "
            "retried with mixed outcomes (0 < successes < K), the ones whose groups carry a signal"
        },
    )

    # --- what is trained -----------------------------------------------------------------------------
    mode: str = field(
        default="r3",
        metadata={
            "help": "r3: the completion is the reflection, rewarded by the retry's success; grpo: plain "
            "GRPO on first attempts of the same queries (the baseline), rewarded by the verifier "
            "(reward_funcs: [attempt_success]); TRL's temperature and max_completion_length then apply "
            "to the attempt; combined: both, group by group (half the groups train first attempts, "
            "half reflections on a fresh online attempt; reward_funcs: [turn_success]), the attempt "
            "sampled with attempt_temperature and attempt_max_new_tokens"
        },
    )
    dynamic_sampling_rounds: int = field(
        default=0,
        metadata={
            "help": "replace groups whose outcomes are all equal (no signal) by groups on prompts drawn "
            "from the training set, up to this many tries per step (0: off; DAPO's dynamic sampling)"
        },
    )
    replacements: str = field(
        default="pool",
        metadata={
            "help": "where dynamic sampling's replacement groups come from. pool: any training prompt, "
            "drawn at random (one may be trained on again). unseen: prompts the run trains on nowhere "
            "else, so that on a pool larger than the run each query is trained on at most once; the "
            "pool is put in an order drawn from seed, training takes its prompts from the front, in "
            "that order (TRL's shuffle is off), and replacements from the back"
        },
    )

    # --- rewards -----------------------------------------------------------------------------------
    reward_funcs: list[str] = field(
        default_factory=lambda: ["retry_success"],
        metadata={
            "help": "rewards by name: retry_success (R3's reward), retry_success_shuffled (the control: "
            "rewards shuffled within each group), attempt_success (mode grpo), turn_success (mode "
            "combined), or pkg.module:function with TRL's reward signature"
        },
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
    reflection_max_new_tokens: int | None = field(
        default=None,
        metadata={
            "help": "the reflection's token budget, as in r3 eval and r3 mine; sets TRL's "
            "max_completion_length (the same knob under TRL's name)"
        },
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

    def __post_init__(self) -> None:
        if self.reflection_max_new_tokens is not None:
            if self.reflection_max_new_tokens < 1:
                raise R3Error("reflection_max_new_tokens must be at least 1")
            self.max_completion_length = self.reflection_max_new_tokens
        super().__post_init__()
        self.check_common_fields()
        if isinstance(self.reward_funcs, str):
            self.reward_funcs = [self.reward_funcs]
        from r3.training.rewards import BUILTIN_REWARDS

        for name in self.reward_funcs:
            if name not in BUILTIN_REWARDS and ":" not in name:
                known = ", ".join(BUILTIN_REWARDS)
                raise R3Error(f"unknown reward '{name}': use one of {known}, or pkg.module:function")
        from r3.training.rewards import MODE_DEFAULT_REWARD, MODE_REWARDS
        from r3.training.rollout import TRAIN_MODES

        if self.mode not in TRAIN_MODES:
            raise R3Error(f"mode must be one of {', '.join(TRAIN_MODES)}, not '{self.mode}'")
        if self.reward_funcs == ["retry_success"]:
            self.reward_funcs = [MODE_DEFAULT_REWARD[self.mode]]  # the default, for the mode's own outcome
        wrong = [n for n in self.reward_funcs if n in BUILTIN_REWARDS and n not in MODE_REWARDS[self.mode]]
        if wrong:
            raise R3Error(
                f"reward '{wrong[0]}' does not score mode '{self.mode}': use "
                f"{', '.join(MODE_REWARDS[self.mode])}"
            )
        if self.dynamic_sampling_rounds < 0:
            raise R3Error("dynamic_sampling_rounds must be >= 0")
        if self.replacements not in REPLACEMENTS:
            raise R3Error(f"replacements must be one of {', '.join(REPLACEMENTS)}, not '{self.replacements}'")
        if self.replacements == "unseen":
            self.shuffle_dataset = False  # the pool's order is R3's (`trainer.pool_order`), front to back
        if self.selection not in SELECTIONS:
            raise R3Error(f"selection must be one of {', '.join(SELECTIONS)}, not '{self.selection}'")
        if self.first_attempt not in FIRST_ATTEMPT_MODES:
            raise R3Error(
                f"first_attempt must be one of {', '.join(FIRST_ATTEMPT_MODES)}, not '{self.first_attempt}'"
            )
        for name in ("retry_max_new_tokens", "attempt_max_new_tokens"):
            if getattr(self, name) < 1:
                raise R3Error(f"{name} must be at least 1")
        if self.retry_temperature < 0 or self.attempt_temperature < 0:
            raise R3Error("retry_temperature and attempt_temperature must be >= 0")
        if self.first_attempt == "online" or self.dynamic_sampling_rounds or self.mode == "combined":
            # A group must not be split across processes: online, one fresh first attempt is shared by
            # a group; dynamic sampling judges and replaces whole groups; combined mode trains one turn
            # per group.
            local = self.per_device_train_batch_size * self.steps_per_generation
            if local % self.num_generations != 0:
                raise R3Error(
                    "first_attempt=online, dynamic sampling and mode combined need "
                    "per_device_train_batch_size * "
                    "steps_per_generation "
                    f"({local}) to be a multiple of num_generations ({self.num_generations})"
                )

    def episode_sampling(self, task: Task) -> EpisodeSampling:
        """The three generation steps' settings, by the rules evaluation and mining share
        (`episode.EpisodeSamplingOptions`): the reflection with TRL's sampling fields and no stop string, the
        retry and the online attempt with their own budgets and temperatures, stopped at the task's stop
        strings. In `grpo` mode TRL's sampling fields are the attempt's."""
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

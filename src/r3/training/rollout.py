"""The R3 rollout: reflect, then retry, then verify; handed to TRL as `GRPOTrainer(rollout_func=...)`.

TRL (1.16) calls `rollout(prompts, trainer)` with this process's slice of the generation batch: every
dataset prompt already repeated `num_generations` times, consecutive copies forming one GRPO group.
For each prompt received we return exactly one completion:

    prompt_ids      the reflection prompt [task prompt, failed attempt, reflection instruction]; for a
                    later round (`r3 mine --rounds`) the whole history before the instruction
    completion_ids  the sampled reflection, ending with EOS when the model stopped by itself
    logprobs        None (transformers) or the sampled tokens' logprobs (vLLM)

How tokens are sampled (the trainer's model, colocated vLLM, or a vLLM server) is `engines.py`, each an
adapter of `r3.generation`'s token sampler. The settings are the episode's (`episode.EpisodeSampling`:
attempt, reflection, retry), built by `R3Config.episode_sampling`, and every call is seeded from the
run's seed, the global step and the process (`call_seed`), a seed per row from there as everywhere.

The completion TRL trains on is the reflection and nothing else: the first attempt is part of the
prompt (prompt tokens never enter the loss) and the retry never reaches TRL as tokens at all. It is
generated here with the reflection in context, verified, and only its outcome is passed on as extra
fields, which TRL forwards to the reward functions as keyword arguments (`retry_success`, ...).

First attempt, `stored` (default): taken from the failures file (the prompt already contains it).
`online`: the dataset prompt is the task prompt; one fresh attempt is sampled per group with the
current policy and verified. If it now succeeds, there is nothing to reflect on: the group gets a
one-token completion (EOS) and reward None, which TRL treats as unscorable (advantage 0, left out of
the reward statistics); `r3/first_attempt_solved` reports how often that happens. Online costs one
more generation per group and shrinks the useful batch as the model improves, but it trains on the
failures the current policy actually makes; stored is cheaper and matches the paper's setup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from r3.episode import EpisodeSampling, retry_after, safe_verify
from r3.generation.base import derive_seed
from r3.generation.chat import render_prompt
from r3.tasks.base import Task
from r3.training.dataset import PromptIndex
from r3.training.engines import Engine, choose_engine

#: Extra fields the rollout returns; TRL passes them to the reward functions as keyword arguments.
ROLLOUT_FIELDS = (
    "retry_success",  # bool, or None when the group has no reflection to score (online, solved)
    "retry_completion",  # the retry text (cut at the task's stop string)
    "retry_length",  # retry tokens
    "retry_clipped",  # the retry hit retry_max_new_tokens before a stop string or EOS
    "reflection_length",  # reflection tokens (EOS included)
    "first_attempt_text",  # the failed first attempt the reflection is about
    "first_attempt_solved",  # online: the fresh first attempt succeeded (no reflection needed)
)


def call_seed(seed: int, step: int, process: int) -> int:
    """The seed of one rollout call: a function of the run's seed, the global step and the process, so
    that a resumed run samples what the uninterrupted one would have and processes draw apart."""
    return derive_seed(seed, "rollout", step, process)


@dataclass
class RolloutBatch:
    """Everything one rollout call produced (kept on `R3Rollout.last` for tests and debugging)."""

    prompts: list[str]
    reflection_prompt_ids: list[list[int]]
    reflection_ids: list[list[int]]
    reflections: list[str]
    retry_prompts: list[str | None]
    retries: list[str]
    retry_success: list[bool | None]
    first_attempts: list[str]
    first_attempt_solved: list[bool]
    extra: dict[str, list[Any]] = field(default_factory=dict)


class R3Rollout:
    """The `rollout_func` for `GRPOTrainer`: `R3Rollout(task, index, sampling)(prompts, trainer)`."""

    def __init__(
        self,
        task: Task,
        index: PromptIndex,
        sampling: EpisodeSampling,
        first_attempt: str = "stored",
        engine: Engine | None = None,
    ) -> None:
        self.task = task
        self.index = index
        self.sampling = sampling
        self.first_attempt = first_attempt
        self.engine = engine
        self.last: RolloutBatch | None = None

    def _engine(self, trainer: Any) -> Engine:
        return self.engine if self.engine is not None else choose_engine(trainer)

    def _settings(self, trainer: Any) -> EpisodeSampling:
        """This call's settings: seeded by `call_seed`; logprobs asked for only where TRL uses them
        (vLLM's importance-sampling correction)."""
        args = getattr(trainer, "args", None)
        state = getattr(trainer, "state", None)
        accelerator = getattr(trainer, "accelerator", None)
        seed = call_seed(
            int(getattr(args, "seed", 0)),
            int(getattr(state, "global_step", 0)),
            int(getattr(accelerator, "process_index", 0)),
        )
        logprobs = bool(getattr(args, "use_vllm", False))
        s = self.sampling
        return EpisodeSampling(
            attempt=s.attempt.with_(seed=derive_seed(seed, "attempt")),
            reflection=s.reflection.with_(seed=derive_seed(seed, "reflection"), logprobs=logprobs),
            retry=s.retry.with_(seed=derive_seed(seed, "retry")),
        )

    def __call__(self, prompts: list[str], trainer: Any) -> dict[str, Any]:
        s = self._settings(trainer)
        task = self.task
        tokenizer = trainer.processing_class
        engine = self._engine(trainer)
        items = [self.index[p] for p in prompts]
        n = len(prompts)

        def encode(text: str) -> list[int]:
            # The rendered chat already holds the template's special tokens.
            return tokenizer(text, add_special_tokens=False)["input_ids"]

        # 1. First attempt: stored in the prompt, or sampled once per distinct prompt (one per group).
        solved = [False] * n
        if self.first_attempt == "online":
            distinct = list(dict.fromkeys(prompts))
            fresh = engine(trainer, [encode(p) for p in distinct], s.attempt)
            by_prompt = {}
            for p, completion in zip(distinct, fresh, strict=True):
                by_prompt[p] = (completion.text, safe_verify(task, self.index[p].example, completion.text).ok)
            attempts = [by_prompt[p][0] for p in prompts]
            solved = [by_prompt[p][1] for p in prompts]
            reflection_texts = [
                render_prompt(tokenizer, task.reflection_prompt(item.example, attempt))
                for item, attempt in zip(items, attempts, strict=True)
            ]
        else:
            attempts = [item.attempt or "" for item in items]
            reflection_texts = list(prompts)
        prompt_ids = [encode(t) for t in reflection_texts]

        # 2. Reflection: the completion GRPO trains on (EOS kept at its end).
        eos = tokenizer.eos_token_id
        todo = [i for i in range(n) if not solved[i]]
        reflection_ids: list[list[int]] = [[eos] for _ in range(n)]
        reflections = [""] * n
        logprobs: list[list[float | None]] | None = None
        # Engines are called on every process even with nothing to sample (see engines.py: collectives).
        sampled = engine(trainer, [prompt_ids[i] for i in todo], s.reflection)
        for i, completion in zip(todo, sampled, strict=True):
            reflection_ids[i] = list(completion.token_ids) or [eos]
            reflections[i] = completion.text
        if s.reflection.logprobs and all(c.logprobs is not None for c in sampled):
            logprobs = [[None] for _ in range(n)]  # None: no sampling logprob (TRL skips its correction)
            for i, completion in zip(todo, sampled, strict=True):
                logprobs[i] = list(completion.logprobs or ()) or [None]

        # 3. Retry with the reflection in context, stopped at the task's stop strings; 4. verify it.
        retry_prompts: list[str | None] = [None] * n
        retries = [""] * n
        retry_lengths = [0] * n
        retry_clipped = [False] * n
        success: list[bool | None] = [None] * n
        for i in todo:
            history = items[i].history
            chat = (
                retry_after(task, history, reflections[i])  # a later round: the whole history
                if history is not None
                else task.retry_prompt(items[i].example, attempts[i], reflections[i])
            )
            retry_prompts[i] = render_prompt(tokenizer, chat)
        sampled = engine(trainer, [encode(retry_prompts[i] or "") for i in todo], s.retry)
        for i, completion in zip(todo, sampled, strict=True):
            retries[i] = completion.text
            retry_lengths[i] = completion.num_tokens
            retry_clipped[i] = completion.finish_reason == "length"
            success[i] = safe_verify(task, items[i].example, completion.text).ok

        extra = {
            "retry_success": success,
            "retry_completion": retries,
            "retry_length": retry_lengths,
            "retry_clipped": retry_clipped,
            "reflection_length": [len(ids) for ids in reflection_ids],
            "first_attempt_text": attempts,
            "first_attempt_solved": solved,
        }
        self.last = RolloutBatch(
            prompts=list(prompts),
            reflection_prompt_ids=prompt_ids,
            reflection_ids=reflection_ids,
            reflections=reflections,
            retry_prompts=retry_prompts,
            retries=retries,
            retry_success=success,
            first_attempts=attempts,
            first_attempt_solved=solved,
            extra=extra,
        )
        return {"prompt_ids": prompt_ids, "completion_ids": reflection_ids, "logprobs": logprobs, **extra}

"""The R3 rollout: reflect, then retry, then verify; handed to TRL as `GRPOTrainer(rollout_func=...)`.

TRL (1.16) calls `rollout(prompts, trainer)` with this process's slice of the generation batch: every
dataset prompt already repeated `num_generations` times, consecutive copies forming one GRPO group.
For each prompt received we return exactly one completion:

    prompt_ids      the reflection prompt [task prompt, failed attempt, reflection instruction]; for a
                    later round (`r3 mine --rounds`) the whole history before the instruction
    completion_ids  the sampled reflection, ending with EOS when the model stopped by itself
    logprobs        None (transformers) or the sampled tokens' logprobs (vLLM)

The steps are the episode's own (`r3.episode`): an online first attempt is `episode.attempt`, and the
reflection, the retry chat, the retry and its verdict are `episode.reflect_and_retry`, the function
`r3 eval` and `r3 mine --rounds` run, on the same chats (`Task.reflection_prompt`, `Task.retry_prompt`,
`episode.retry_after` for later rounds) with the same settings type (`episode.EpisodeSampling`, built by
`R3Config.episode_sampling`). Only the sampler differs: the trainer's engine (`engines.py`: its own
model, colocated vLLM, or a vLLM server) bound to the trainer as a token sampler (`EngineSampler`).
Every call is seeded from the run's seed, the global step and the process (`call_seed`); each row from
there by its index and round, as the episode seeds every step.

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

from r3.episode import Episode, EpisodeSampling, Round, Turn, attempt, reflect_and_retry
from r3.generation.base import Completion, derive_seed, encode_prompts
from r3.generation.chat import render_prompt
from r3.tasks.base import Task, Verdict
from r3.training.dataset import PromptIndex, PromptItem
from r3.training.engines import Engine, EngineSampler, choose_engine

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
        """This call's settings: seeded by `call_seed` (each row then by its index and round, as the
        episode seeds every step); logprobs asked for only where TRL uses them (vLLM's
        importance-sampling correction)."""
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
            attempt=s.attempt.with_(seed=seed),
            reflection=s.reflection.with_(seed=seed, logprobs=logprobs),
            retry=s.retry.with_(seed=seed),
        )

    def _first_attempts(
        self, prompts: list[str], items: list[PromptItem], sampler: EngineSampler, s: EpisodeSampling
    ) -> list[Episode]:
        """One episode per row with its first attempt: stored (the failures file's, in the prompt), or
        online: `episode.attempt` once per distinct prompt (one per GRPO group), shared by the group."""
        if self.first_attempt != "online":
            stored = Verdict.failure("the stored first attempt")
            return [
                Episode(i, item.example, Completion(item.attempt or "", 0), stored)
                for i, item in enumerate(items)
            ]
        distinct = list(dict.fromkeys(prompts))
        example = {p: item.example for p, item in zip(prompts, items, strict=True)}
        firsts = [
            Episode(j, example[p], Completion("", 0), Verdict.failure("not attempted"))
            for j, p in enumerate(distinct)
        ]
        attempt(self.task, sampler, firsts, s.attempt)
        by_prompt = dict(zip(distinct, firsts, strict=True))
        return [
            Episode(i, item.example, by_prompt[p].attempt, by_prompt[p].attempt_verdict)
            for i, (p, item) in enumerate(zip(prompts, items, strict=True))
        ]

    def __call__(self, prompts: list[str], trainer: Any) -> dict[str, Any]:
        s = self._settings(trainer)
        task = self.task
        tokenizer = trainer.processing_class
        sampler = EngineSampler(self._engine(trainer), trainer)
        items = [self.index[p] for p in prompts]
        n = len(prompts)

        # 1. The first attempt, and the chat each row's reflection is asked in.
        episodes = self._first_attempts(prompts, items, sampler, s)
        turns = [
            Turn(ep, item.chat or task.reflection_prompt(ep.example, ep.attempt.text), item.round)
            for ep, item in zip(episodes, items, strict=True)
        ]
        prompt_ids = encode_prompts(tokenizer, [t.reflection_prompt for t in turns])

        # 2-4. The episode's round on every row still unsolved: reflect (the completion GRPO trains
        # on), retry with the reflection in context, verify. Its samplers are entered on every process
        # even with no row to sample (see engines.py: collectives).
        todo = [i for i in range(n) if not episodes[i].first_try_ok]
        done = reflect_and_retry(task, sampler, [turns[i] for i in todo], s, always_call=True)
        rounds: list[Round | None] = [None] * n
        for i, result in zip(todo, done, strict=True):
            rounds[i] = result

        eos = tokenizer.eos_token_id
        reflection_ids = [
            list(r.reflection.token_ids) or [eos] if r is not None and r.reflection else [eos] for r in rounds
        ]
        logprobs: list[list[float | None]] | None = None
        if s.reflection.logprobs and all(
            r.reflection.logprobs is not None for r in done if r and r.reflection
        ):
            # [None]: no sampling logprob (a row with nothing to reflect on); TRL skips its correction.
            logprobs = [
                list(r.reflection.logprobs or ()) or [None] if r is not None and r.reflection else [None]
                for r in rounds
            ]
        attempts = [ep.attempt.text for ep in episodes]
        solved = [ep.first_try_ok for ep in episodes]
        extra = {
            "retry_success": [r.retry_verdict.ok if r is not None else None for r in rounds],
            "retry_completion": [r.retry.text if r is not None else "" for r in rounds],
            "retry_length": [r.retry.num_tokens if r is not None else 0 for r in rounds],
            "retry_clipped": [r is not None and r.retry.finish_reason == "length" for r in rounds],
            "reflection_length": [len(ids) for ids in reflection_ids],
            "first_attempt_text": attempts,
            "first_attempt_solved": solved,
        }
        self.last = RolloutBatch(
            prompts=list(prompts),
            reflection_prompt_ids=prompt_ids,
            reflection_ids=reflection_ids,
            reflections=[r.reflection.text if r is not None and r.reflection else "" for r in rounds],
            retry_prompts=[
                render_prompt(tokenizer, r.retry_prompt) if r is not None else None for r in rounds
            ],
            retries=extra["retry_completion"],
            retry_success=extra["retry_success"],
            first_attempts=attempts,
            first_attempt_solved=solved,
            extra=extra,
        )
        return {"prompt_ids": prompt_ids, "completion_ids": reflection_ids, "logprobs": logprobs, **extra}

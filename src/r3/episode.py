"""One R3 episode: attempt -> (on failure) a second try, for a batch of examples.

The second try follows one of three protocols (`SECOND_TRY_MODES`), so that evaluation (and mining)
share one implementation and can be compared like with like:

- `reflect` (default, the paper's protocol): the model is shown its answer and asked to reflect
  (binary feedback only: the verifier's reason is *not* shown, as in the paper), then answers again
  with its reflection in context. Training uses the same prompts (`Task.reflection_prompt`,
  `Task.retry_prompt`).
- `resample`: a second, independent attempt at the original prompt with no reflection, sampled with
  the first attempt's settings but another seed. The same number of attempts without the reflection:
  the baseline that says whether reflecting helps at all. With greedy decoding (temperature 0) it
  repeats the first attempt exactly.
- `feedback`: as `reflect`, but the reflection instruction also shows the verifier's reason for the
  failure ("The checker said: number 7 used twice."), for tasks whose verifier says more than
  pass/fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from r3.errors import R3Error
from r3.generation.base import Completion, Generator, SamplingConfig
from r3.tasks.base import Example, Prompt, Task, Verdict

#: What follows a failed first attempt; `reflect` is the paper's protocol.
SECOND_TRY_MODES: tuple[str, ...] = ("reflect", "resample", "feedback")

#: Added to the first attempt's seed for a `resample` second attempt, so that with temperature > 0
#: it is an independent draw rather than a replay of the first. Not a multiple of the per-chunk seed
#: stride of `r3 eval` (7919), so it never equals another chunk's attempt seed either.
RESAMPLE_SEED_OFFSET = 104_729


@dataclass(frozen=True)
class EpisodeSampling:
    """Sampling settings for the three generation steps of an episode.

    A `resample` second attempt uses `attempt` (with another seed), not `retry`: the comparison with
    `reflect` is only fair if the extra attempt is drawn exactly like the first one."""

    attempt: SamplingConfig
    reflection: SamplingConfig
    retry: SamplingConfig


@dataclass
class Episode:
    """What happened to one example.

    `reflection_prompt` and `retry_prompt` are the chats the reflection and the second attempt were
    generated from (kept so that logs show exactly what the model saw, whatever the protocol). With
    `resample`, `reflection` stays None and `retry` holds the second attempt."""

    index: int
    example: Example
    attempt: Completion
    attempt_verdict: Verdict
    reflection: Completion | None = None
    retry: Completion | None = None
    retry_verdict: Verdict | None = None
    extra: dict[str, object] = field(default_factory=dict)
    reflection_prompt: Prompt | None = None
    retry_prompt: Prompt | None = None

    @property
    def first_try_ok(self) -> bool:
        return self.attempt_verdict.ok

    @property
    def second_try_ok(self) -> bool:
        """Solved on either attempt (the paper's second-try accuracy)."""
        return self.attempt_verdict.ok or bool(self.retry_verdict and self.retry_verdict.ok)


def check_second_try(mode: object) -> str:
    """Return `mode` if it names a protocol, else raise `R3Error` (values from YAML configs skip
    argparse's checks, so every entry point validates through here)."""
    if not isinstance(mode, str) or mode not in SECOND_TRY_MODES:
        raise R3Error(f"--second-try must be one of {', '.join(SECOND_TRY_MODES)} (got {mode!r})")
    return mode


def feedback_reflection_prompt(task: Task, example: Example, attempt: str, reason: str) -> Prompt:
    """`task.reflection_prompt` with the verifier's reason appended to the reflection instruction.

    Built from the task's own prompt (not a copy of its wording) so that a task's custom reflection
    chat carries over; only the last user turn gains the reason. With no reason (a verifier that says
    only pass/fail) the prompt is the task's unchanged."""
    prompt = task.reflection_prompt(example, attempt)
    reason = reason.strip()
    if not reason:
        return prompt
    messages = [dict(m) for m in prompt.messages]
    last = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    sentence = reason if reason.endswith((".", "!", "?")) else reason + "."
    messages[last]["content"] = f"{messages[last]['content']}\n\nThe checker said: {sentence}"
    return Prompt(messages, prompt.tools)


def safe_verify(task: Task, example: Example, completion: str) -> Verdict:
    """`task.verify`, with any exception turned into a failed verdict (a bug in a verifier must not
    end a long run; the reason records it)."""
    try:
        verdict = task.verify(example, completion)
    except Exception as exc:  # noqa: BLE001 - any verifier error is a failed attempt
        return Verdict.failure(f"verifier raised {type(exc).__name__}: {exc}"[:300])
    if not isinstance(verdict, Verdict):
        return Verdict.failure(f"verifier returned {type(verdict).__name__}, not a Verdict")
    return verdict


def run_episodes(
    task: Task,
    generator: Generator,
    examples: Sequence[Example],
    sampling: EpisodeSampling,
    first_index: int = 0,
    second_try: str = "reflect",
) -> list[Episode]:
    """Run the protocol on `examples` (one batched generate call per step).

    `second_try` picks what follows a failed first attempt (`SECOND_TRY_MODES`, see the module
    docstring); an unknown value raises `R3Error` before anything is generated."""
    check_second_try(second_try)
    attempts = [g[0] for g in generator.generate([task.prompt(e) for e in examples], 1, sampling.attempt)]
    episodes = [
        Episode(first_index + i, ex, att, safe_verify(task, ex, att.text))
        for i, (ex, att) in enumerate(zip(examples, attempts, strict=True))
    ]
    failed = [ep for ep in episodes if not ep.first_try_ok]
    if not failed:
        return episodes
    if second_try == "resample":
        for ep in failed:
            ep.retry_prompt = task.prompt(ep.example)
        resample = sampling.attempt.with_(seed=sampling.attempt.seed + RESAMPLE_SEED_OFFSET)
        seconds = generator.generate([ep.retry_prompt for ep in failed if ep.retry_prompt], 1, resample)
        _record_retries(task, failed, seconds)
        return episodes
    for ep in failed:
        ep.reflection_prompt = (
            feedback_reflection_prompt(task, ep.example, ep.attempt.text, ep.attempt_verdict.reason)
            if second_try == "feedback"
            else task.reflection_prompt(ep.example, ep.attempt.text)
        )
    reflections = generator.generate(
        [ep.reflection_prompt for ep in failed if ep.reflection_prompt], 1, sampling.reflection
    )
    for ep, group in zip(failed, reflections, strict=True):
        ep.reflection = group[0]
        if second_try == "reflect":  # the task's own chat, so that a task overriding it is honoured
            ep.retry_prompt = task.retry_prompt(ep.example, ep.attempt.text, ep.reflection.text)
        elif ep.reflection_prompt is not None:
            # Mirrors `Task.retry_prompt`, continuing from the chat the reflection was really asked in.
            ep.retry_prompt = ep.reflection_prompt.extend(
                {"role": "assistant", "content": ep.reflection.text},
                {"role": "user", "content": task.retry_instruction},
            )
    retries = generator.generate([ep.retry_prompt for ep in failed if ep.retry_prompt], 1, sampling.retry)
    _record_retries(task, failed, retries)
    return episodes


def _record_retries(task: Task, failed: list[Episode], groups: list[list[Completion]]) -> None:
    for ep, group in zip(failed, groups, strict=True):
        ep.retry = group[0]
        ep.retry_verdict = safe_verify(task, ep.example, ep.retry.text)

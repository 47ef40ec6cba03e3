"""One R3 episode: attempt -> (on failure) reflect -> retry, for a batch of examples.

This is the paper's protocol as used by evaluation: the model answers; if the verifier rejects the
answer, the model is shown its answer and asked to reflect (binary feedback only: the verifier's
reason is *not* shown, as in the paper), then answers again with its reflection in context.
Training uses the same prompts (`Task.reflection_prompt`, `Task.retry_prompt`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from r3.generation.base import Completion, Generator, SamplingConfig
from r3.tasks.base import Example, Task, Verdict


@dataclass(frozen=True)
class EpisodeSampling:
    """Sampling settings for the three generation steps of an episode."""

    attempt: SamplingConfig
    reflection: SamplingConfig
    retry: SamplingConfig


@dataclass
class Episode:
    """What happened to one example."""

    index: int
    example: Example
    attempt: Completion
    attempt_verdict: Verdict
    reflection: Completion | None = None
    retry: Completion | None = None
    retry_verdict: Verdict | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def first_try_ok(self) -> bool:
        return self.attempt_verdict.ok

    @property
    def second_try_ok(self) -> bool:
        """Solved on either attempt (the paper's second-try accuracy)."""
        return self.attempt_verdict.ok or bool(self.retry_verdict and self.retry_verdict.ok)


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
) -> list[Episode]:
    """Run the protocol on `examples` (one batched generate call per step)."""
    attempts = [g[0] for g in generator.generate([task.prompt(e) for e in examples], 1, sampling.attempt)]
    episodes = [
        Episode(first_index + i, ex, att, safe_verify(task, ex, att.text))
        for i, (ex, att) in enumerate(zip(examples, attempts, strict=True))
    ]
    failed = [ep for ep in episodes if not ep.first_try_ok]
    if not failed:
        return episodes
    reflections = generator.generate(
        [task.reflection_prompt(ep.example, ep.attempt.text) for ep in failed], 1, sampling.reflection
    )
    for ep, group in zip(failed, reflections, strict=True):
        ep.reflection = group[0]
    retries = generator.generate(
        [
            task.retry_prompt(ep.example, ep.attempt.text, ep.reflection.text)
            for ep in failed
            if ep.reflection
        ],
        1,
        sampling.retry,
    )
    for ep, group in zip(failed, retries, strict=True):
        ep.retry = group[0]
        ep.retry_verdict = safe_verify(task, ep.example, ep.retry.text)
    return episodes

"""One R3 episode: attempt -> (on failure) a second try, for a batch of examples.

Its steps are the only implementation of the protocol: `attempt` (sample and verify first attempts)
and `reflect_and_retry` (one round: the reflection, the retry chat, the retry, its verdict) are what
`r3 eval` runs here (`run_episodes`), what `r3 mine --rounds` runs for its chains, and what the
training rollout runs on its rows (`r3.training.rollout`, with the trainer's engine as the sampler).
A second reflection round, another prompt or another verdict is changed here once for all three.

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

**Rounds.** With `rounds=K > 1`, an example whose retry failed goes on: the model reflects again and
retries again, up to K rounds in all. Each round sees the whole history in one chat (the task, every
attempt and reflection so far, in order): round k's reflection prompt is round k-1's retry chat, plus
the failed retry as the assistant's turn and the reflection instruction (with that retry's reason, under
`feedback`). Under `resample`, a round is one more independent attempt at the original prompt (another
seed), so K rounds of resample and of reflect cost the same number of answers.

**When the history no longer fits.** The history is never cut: a chat that lost its task or its first
attempts would not be the protocol. Before each round after the first, a generator that knows its
model's context (`fits(prompt, max_new_tokens)`, the transformers backend) is asked whether the new
prompt plus its token budget fits; an example that does not fit stops there, unsolved, and its row says
so (`stopped`). A backend that cannot tell (vLLM, a server) sends the prompt and its own limit applies:
a server refuses it with an error, which ends the run with one line, rows done kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from r3.errors import R3Error
from r3.generation.base import Completion, Generator, SamplingConfig, derive_seed
from r3.tasks.base import Example, Prompt, Task, Verdict

#: What follows a failed first attempt; `reflect` is the paper's protocol.
SECOND_TRY_MODES: tuple[str, ...] = ("reflect", "resample", "feedback")


def seeded(
    sampling: SamplingConfig,
    step: str,
    episodes: Sequence[Episode],
    round_number: int | Sequence[int] = 1,
) -> SamplingConfig:
    """`sampling` with one seed per episode: `derive_seed(sampling.seed, step, example index, round)`
    (`round_number`: one for all, or one per episode).

    So an example's attempt, reflection and retry are drawn from seeds that name the example and the
    step, never its position in a batch: `r3 eval` gives the same rows whatever its batch size, a
    resumed run samples what the whole run would have, and a `resample` second attempt (its own step
    name) is an independent draw rather than a replay of the first."""
    rounds = [round_number] * len(episodes) if isinstance(round_number, int) else list(round_number)
    return sampling.with_(
        seeds=tuple(
            derive_seed(sampling.seed, step, ep.index, k) for ep, k in zip(episodes, rounds, strict=True)
        )
    )


@dataclass(frozen=True)
class EpisodeSampling:
    """Sampling settings for the three generation steps of an episode.

    A `resample` second attempt uses `attempt` (with another seed), not `retry`: the comparison with
    `reflect` is only fair if the extra attempt is drawn exactly like the first one."""

    attempt: SamplingConfig
    reflection: SamplingConfig
    retry: SamplingConfig


@dataclass
class Round:
    """One reflect-and-retry round: what was asked and answered. `reflect_and_retry` returns one per
    turn; an `Episode` keeps round 1 in its own fields and rounds 2, 3, ... in `later_rounds`.

    Under `resample`, `reflection_prompt` and `reflection` are None and `retry` is one more attempt."""

    number: int
    retry_prompt: Prompt
    retry: Completion
    retry_verdict: Verdict
    reflection_prompt: Prompt | None = None
    reflection: Completion | None = None


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
    reflection_prompt: Prompt | None = None
    retry_prompt: Prompt | None = None
    #: Rounds 2..K (`rounds > 1`), in order; round 1 is `reflection` and `retry` above.
    later_rounds: list[Round] = field(default_factory=list)
    #: Why the episode ended before its last round while unsolved (the history no longer fit).
    stopped: str | None = None

    @property
    def first_try_ok(self) -> bool:
        return self.attempt_verdict.ok

    @property
    def second_try_ok(self) -> bool:
        """Solved on either attempt (the paper's second-try accuracy)."""
        return self.attempt_verdict.ok or bool(self.retry_verdict and self.retry_verdict.ok)

    def solved_by(self, k: int) -> bool:
        """Solved on any attempt up to round `k` (0: the first attempt only)."""
        if k <= 0:
            return self.first_try_ok
        return self.second_try_ok or any(r.retry_verdict.ok for r in self.later_rounds if r.number <= k)

    @property
    def solved_round(self) -> int | None:
        """The round whose answer was right (0 for the first attempt), None if never."""
        if self.first_try_ok:
            return 0
        if self.retry_verdict is not None and self.retry_verdict.ok:
            return 1
        return next((r.number for r in self.later_rounds if r.retry_verdict.ok), None)

    @property
    def last_retry(self) -> tuple[Prompt, Completion, Verdict] | None:
        """The latest round's retry chat, answer and verdict (None before round 1 ran)."""
        if self.later_rounds:
            last = self.later_rounds[-1]
            return last.retry_prompt, last.retry, last.retry_verdict
        if self.retry_prompt is None or self.retry is None or self.retry_verdict is None:
            return None
        return self.retry_prompt, self.retry, self.retry_verdict


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
    return with_reason(task.reflection_prompt(example, attempt), reason)


def with_reason(prompt: Prompt, reason: str) -> Prompt:
    """`prompt` with "The checker said: <reason>." appended to its last user turn (unchanged if the
    reason is empty)."""
    reason = reason.strip()
    if not reason:
        return prompt
    messages = [dict(m) for m in prompt.messages]
    last = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    sentence = reason if reason.endswith((".", "!", "?")) else reason + "."
    messages[last]["content"] = f"{messages[last]['content']}\n\nThe checker said: {sentence}"
    return Prompt(messages, prompt.tools)


def reflection_after(task: Task, history: Prompt, failed: str, reason: str | None = None) -> Prompt:
    """The reflection chat of a round after the first: the previous round's retry chat `history`, its
    failed answer, and the reflection instruction (with the verifier's `reason` under `feedback`).
    Evaluation, mining and training all build later rounds through here."""
    prompt = history.extend(
        {"role": "assistant", "content": failed},
        {"role": "user", "content": task.reflection_instruction},
    )
    return with_reason(prompt, reason) if reason is not None else prompt


def retry_after(task: Task, reflection_chat: Prompt, reflection: str) -> Prompt:
    """The retry chat of a round after the first: its reflection chat, the reflection, and the retry
    instruction (round 1 uses `task.retry_prompt`, which a task may override)."""
    return reflection_chat.extend(
        {"role": "assistant", "content": reflection},
        {"role": "user", "content": task.retry_instruction},
    )


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


def check_rounds(rounds: object) -> int:
    """Return `rounds` if it is a whole number >= 1, else raise `R3Error` (as `check_second_try`)."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise R3Error(f"--rounds must be a whole number >= 1 (got {rounds!r})")
    return rounds


@dataclass(frozen=True)
class Turn:
    """Where a reflect-and-retry round starts: the episode, the chat its reflection is asked in (the
    failed answer and the reflection instruction at its end, any earlier rounds before them) and the
    round's number (1 is the paper's second try)."""

    episode: Episode
    reflection_prompt: Prompt
    number: int = 1


def run_episodes(
    task: Task,
    generator: Generator,
    examples: Sequence[Example],
    sampling: EpisodeSampling,
    first_index: int = 0,
    second_try: str = "reflect",
    rounds: int = 1,
) -> list[Episode]:
    """Run the protocol on `examples` (one batched generate call per step).

    `second_try` picks what follows a failed first attempt (`SECOND_TRY_MODES`, see the module
    docstring); `rounds` how many reflect-and-retry rounds an unsolved example gets. Bad values raise
    `R3Error` before anything is generated."""
    check_second_try(second_try)
    check_rounds(rounds)
    episodes = [
        Episode(first_index + i, ex, Completion("", 0), Verdict.failure("not attempted"))
        for i, ex in enumerate(examples)
    ]
    attempt(task, generator, episodes, sampling.attempt)
    failed = [ep for ep in episodes if not ep.first_try_ok]
    if failed and second_try == "resample":
        _resample(task, generator, failed, sampling, 1)
    elif failed:
        turns = [
            Turn(
                ep,
                feedback_reflection_prompt(task, ep.example, ep.attempt.text, ep.attempt_verdict.reason)
                if second_try == "feedback"
                else task.reflection_prompt(ep.example, ep.attempt.text),
            )
            for ep in failed
        ]
        reflect_and_retry(task, generator, turns, sampling, second_try=second_try)
    for k in range(2, rounds + 1):
        _next_round(task, generator, episodes, sampling, second_try, k)
    return episodes


def attempt(task: Task, generator: Generator, episodes: Sequence[Episode], sampling: SamplingConfig) -> None:
    """Sample and verify each episode's first attempt at its task prompt, seeded by episode
    (`seeded(..., "attempt", ...)`). Training's online first attempt is this same step."""
    answers = generator.generate(
        [task.prompt(ep.example) for ep in episodes], 1, seeded(sampling, "attempt", episodes)
    )
    for ep, group in zip(episodes, answers, strict=True):
        ep.attempt = group[0]
        ep.attempt_verdict = safe_verify(task, ep.example, ep.attempt.text)


def reflect_and_retry(
    task: Task,
    generator: Generator,
    turns: Sequence[Turn],
    sampling: EpisodeSampling,
    *,
    second_try: str = "reflect",
    fits: Callable[[Prompt, int], bool] | None = None,
    always_call: bool = False,
) -> list[Round | None]:
    """One reflect-and-retry round for each turn: sample the reflection in the turn's chat, build the
    retry chat, sample the retry, verify it. Evaluation, mining and the training rollout all run this.

    The retry chat of round 1 under `reflect` is the task's own (`Task.retry_prompt`, which a task may
    override); otherwise it continues the chat the reflection was asked in (`retry_after`). Row i's
    reflection and retry are seeded by its episode's index and its round (`seeded`).

    `fits(prompt, max_new_tokens)`: a retry chat that does not fit the model's context stops its
    episode (`Episode.stopped`) and its entry in the result is None. The result is recorded on each
    episode (round 1 in its own fields, later rounds in `later_rounds`) and returned, one `Round` per
    turn. `always_call`: call the generator for both steps even with nothing to sample, as training
    needs (a process's sampler may be a collective, entered by every process the same number of times)."""
    results: list[Round | None] = [None] * len(turns)
    if not turns and not always_call:
        return results
    episodes = [t.episode for t in turns]
    numbers = [t.number for t in turns]
    reflections = generator.generate(
        [t.reflection_prompt for t in turns], 1, seeded(sampling.reflection, "reflection", episodes, numbers)
    )
    retrying: list[tuple[int, Prompt, Completion]] = []
    for i, (turn, group) in enumerate(zip(turns, reflections, strict=True)):
        ep, reflection = turn.episode, group[0]
        if turn.number == 1 and second_try == "reflect":
            retry_prompt = task.retry_prompt(ep.example, ep.attempt.text, reflection.text)
        else:
            retry_prompt = retry_after(task, turn.reflection_prompt, reflection.text)
        if fits is not None and not fits(retry_prompt, sampling.retry.max_new_tokens):
            ep.stopped = f"round {turn.number}: the history no longer fits the model's context"
            continue
        retrying.append((i, retry_prompt, reflection))
    if not retrying and not always_call:
        return results
    chosen = [turns[i] for i, _, _ in retrying]
    retries = generator.generate(
        [prompt for _, prompt, _ in retrying],
        1,
        seeded(sampling.retry, "retry", [t.episode for t in chosen], [t.number for t in chosen]),
    )
    for (i, retry_prompt, reflection), group in zip(retrying, retries, strict=True):
        turn = turns[i]
        verdict = safe_verify(task, turn.episode.example, group[0].text)
        results[i] = Round(turn.number, retry_prompt, group[0], verdict, turn.reflection_prompt, reflection)
        _record(turn.episode, results[i])  # type: ignore[arg-type]
    return results


def _record(ep: Episode, done: Round) -> None:
    """Round 1 goes in the episode's own fields (the paper's second try), later rounds in order after."""
    if done.number > 1:
        ep.later_rounds.append(done)
        return
    ep.reflection_prompt, ep.reflection = done.reflection_prompt, done.reflection
    ep.retry_prompt, ep.retry, ep.retry_verdict = done.retry_prompt, done.retry, done.retry_verdict


def _resample(
    task: Task, generator: Generator, episodes: list[Episode], sampling: EpisodeSampling, k: int
) -> None:
    """Round `k` under `resample`: one more independent attempt at the task prompt, drawn like the first
    (the attempt's settings, its own step name and round in the seed)."""
    prompts = [task.prompt(ep.example) for ep in episodes]
    answers = generator.generate(prompts, 1, seeded(sampling.attempt, "resample", episodes, k))
    for ep, prompt, group in zip(episodes, prompts, answers, strict=True):
        _record(ep, Round(k, prompt, group[0], safe_verify(task, ep.example, group[0].text)))


def _next_round(
    task: Task,
    generator: Generator,
    episodes: list[Episode],
    sampling: EpisodeSampling,
    second_try: str,
    k: int,
) -> None:
    """Round `k` for every episode still unsolved: reflect on the last failed retry, then retry, with
    the whole history in the chat (under `resample`: one more independent attempt)."""
    pending = [ep for ep in episodes if ep.stopped is None and not ep.solved_by(k - 1)]
    pending = [ep for ep in pending if ep.last_retry is not None]
    if not pending:
        return
    if second_try == "resample":
        _resample(task, generator, pending, sampling, k)
        return
    fits = getattr(generator, "fits", None)
    turns: list[Turn] = []
    for ep in pending:
        history, retry, verdict = ep.last_retry  # type: ignore[misc]
        reason = verdict.reason if second_try == "feedback" else None
        prompt = reflection_after(task, history, retry.text, reason)
        if fits is not None and not fits(prompt, sampling.reflection.max_new_tokens):
            ep.stopped = f"round {k}: the history no longer fits the model's context"
            continue
        turns.append(Turn(ep, prompt, k))
    reflect_and_retry(task, generator, turns, sampling, second_try=second_try, fits=fits)

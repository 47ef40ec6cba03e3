"""One R3 episode, for a batch of examples: a first attempt and, on failure, up to `rounds` rounds of the
second-try protocol, each round's chat holding the whole history (`next_turn`); where the backend can tell
(`fits`), an example whose next chat no longer fits the model's context stops unsolved (`Episode.stopped`).
Implemented once, for `r3 eval` (`run_episodes`), `r3 mine`'s chains (`run_rounds`) and the training
rollout (`attempt`, `reflect_and_retry`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from r3.errors import R3Error
from r3.generation.base import Completion, Generator, SamplingConfig, derive_seed
from r3.tasks.base import Example, Prompt, Task, Verdict

#: What follows a failed first attempt: `reflect` (the paper's protocol: a reflection, told only that the
#: answer was wrong, then a retry with it in context), `resample` (an independent attempt drawn like the
#: first, the baseline that says whether reflecting helps) or `feedback` (`reflect`, shown the verifier's
#: reason).
SECOND_TRY_MODES: tuple[str, ...] = ("reflect", "resample", "feedback")


def seeded(
    sampling: SamplingConfig,
    step: str,
    episodes: Sequence[Episode],
    round_number: int | Sequence[int] = 1,
) -> SamplingConfig:
    """`sampling` with one seed per episode, `derive_seed(sampling.seed, step, example index, round)`
    (`round_number`: one for all, or one per episode): a row's seed names its example and step, never
    its place in a batch, so batch size and resuming do not change what is sampled."""
    rounds = [round_number] * len(episodes) if isinstance(round_number, int) else list(round_number)
    return sampling.with_(
        seeds=tuple(
            derive_seed(sampling.seed, step, ep.index, k) for ep, k in zip(episodes, rounds, strict=True)
        )
    )


@dataclass(frozen=True)
class EpisodeSampling:
    """Sampling settings for an episode's three steps (a `resample` round is drawn with `attempt`'s)."""

    attempt: SamplingConfig
    reflection: SamplingConfig
    retry: SamplingConfig

    def with_seed(self, seed: int) -> EpisodeSampling:
        """The three steps under one parent seed (each row's is derived from it by `seeded`)."""
        return EpisodeSampling(
            attempt=self.attempt.with_(seed=seed),
            reflection=self.reflection.with_(seed=seed),
            retry=self.retry.with_(seed=seed),
        )


@dataclass(frozen=True)
class EpisodeSamplingOptions:
    """The options every command builds an episode's settings from (`build`), so that how the three
    steps relate is decided once. The reflection has its own budget and no stop string (a task's stop
    string ends an answer; a reflection is not one); the retry is an answer, with the stop strings. The
    reflection and retry temperatures and the retry's budget are the attempt's unless given; `top_p`,
    `top_k` and `seed` (the parent of every row's seed, `seeded`) are shared. Each command picks the
    retry's temperature for its own reason (docs/training.md, "The retry's temperature")."""

    max_new_tokens: int
    temperature: float
    reflection_max_new_tokens: int
    top_p: float = 1.0
    top_k: int | None = None
    reflection_temperature: float | None = None
    retry_temperature: float | None = None
    retry_max_new_tokens: int | None = None
    seed: int = 0

    def build(self, task: Task) -> EpisodeSampling:
        """The three steps' settings for `task` (its stop strings), by the rules above."""
        attempt = SamplingConfig(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=tuple(task.stop),
            seed=self.seed,
            top_k=self.top_k,
        )
        reflection = attempt.with_(max_new_tokens=self.reflection_max_new_tokens, stop=())
        if self.reflection_temperature is not None:
            reflection = reflection.with_(temperature=self.reflection_temperature)
        retry = attempt
        if self.retry_max_new_tokens is not None:
            retry = retry.with_(max_new_tokens=self.retry_max_new_tokens)
        if self.retry_temperature is not None:
            retry = retry.with_(temperature=self.retry_temperature)
        return EpisodeSampling(attempt=attempt, reflection=reflection, retry=retry)


@dataclass
class Round:
    """One round: what was asked and answered (under `resample`, no reflection; `retry` is an attempt)."""

    number: int
    retry_prompt: Prompt
    retry: Completion
    retry_verdict: Verdict
    reflection_prompt: Prompt | None = None
    reflection: Completion | None = None

    def to_json(self) -> dict[str, Any]:
        """The round as `samples.jsonl` and the failures file hold it (chats as their messages)."""
        reflection = self.reflection
        return {
            "round": self.number,
            "reflection_prompt": None if self.reflection_prompt is None else self.reflection_prompt.messages,
            "reflection": None if reflection is None else reflection.text,
            "reflection_tokens": None if reflection is None else reflection.num_tokens,
            "retry_prompt": self.retry_prompt.messages,
            "retry": self.retry.text,
            "retry_tokens": self.retry.num_tokens,
            "retry_ok": self.retry_verdict.ok,
            "retry_reason": self.retry_verdict.reason,
        }

    @classmethod
    def from_json(cls, row: Any, where: str, tools: list[dict[str, Any]] | None = None) -> Round:
        """A round written by `to_json`; `tools`: the example's tool schemas, which the file leaves out."""
        if not isinstance(row, dict):
            raise R3Error(f"{where}: expected an object")
        get = partial(json_field, row, where=where)
        reflection_prompt = get("reflection_prompt", (list, NONE))
        reflection = get("reflection", (str, NONE))
        reflection_tokens = get("reflection_tokens", (int, NONE))
        return cls(
            number=get("round", int),
            retry_prompt=Prompt(get("retry_prompt", list), tools),
            retry=Completion(get("retry", str), get("retry_tokens", int)),
            retry_verdict=Verdict(get("retry_ok", bool), get("retry_reason", str)),
            reflection_prompt=None if reflection_prompt is None else Prompt(reflection_prompt, tools),
            reflection=None if reflection is None else Completion(reflection, reflection_tokens or 0),
        )


@dataclass
class Episode:
    """What happened to one example: its first attempt, then its rounds in order. The record every stage
    hands on; each round keeps the chats it was generated from, so logs show what the model saw."""

    index: int
    example: Example
    attempt: Completion
    attempt_verdict: Verdict
    rounds: list[Round] = field(default_factory=list)
    #: Why the episode ended before its last round while unsolved (the history no longer fit).
    stopped: str | None = None

    @property
    def first_try_ok(self) -> bool:
        return self.attempt_verdict.ok

    @property
    def second_try_ok(self) -> bool:
        """Solved on either attempt (the paper's second-try accuracy)."""
        return self.solved_by(1)

    def solved_by(self, k: int) -> bool:
        """Solved on any attempt up to round `k` (0: the first attempt only)."""
        return self.first_try_ok or any(r.retry_verdict.ok for r in self.rounds if r.number <= k)

    @property
    def solved_round(self) -> int | None:
        """The round whose answer was right (0 for the first attempt), None if never."""
        if self.first_try_ok:
            return 0
        return next((r.number for r in self.rounds if r.retry_verdict.ok), None)

    @property
    def first_round(self) -> Round | None:
        """Round 1 (the paper's second try), None when it did not run."""
        return next((r for r in self.rounds if r.number == 1), None)

    def to_json(self, task: Task | None = None) -> dict[str, Any]:
        """The episode as one JSON object. With `task`, a `samples.jsonl` row, led by the example
        (`Task.to_record`) and its first chat; without, a failures row's (whose example is the row's own).
        `first_try_ok`, `second_try_ok` and `solved_round` are for readers, never read back."""
        head: dict[str, Any] = {"index": self.index}
        if task is not None:
            head.update(example=task.to_record(self.example), prompt=task.prompt(self.example).messages)
        return {
            **head,
            "attempt": self.attempt.text,
            "attempt_tokens": self.attempt.num_tokens,
            "attempt_ok": self.attempt_verdict.ok,
            "attempt_reason": self.attempt_verdict.reason,
            "rounds": [r.to_json() for r in self.rounds],
            "stopped": self.stopped,
            "first_try_ok": self.first_try_ok,
            "second_try_ok": self.second_try_ok,
            "solved_round": self.solved_round,
        }

    @classmethod
    def from_json(
        cls, row: Any, where: str, task: Task | None = None, example: Example | None = None
    ) -> Episode:
        """An episode written by `to_json`; `where` names the file and line in errors. The example is
        `example` when given, else the row's own (checked by `task` when given, which also gives the
        chats their tool schemas back)."""
        if not isinstance(row, dict):
            raise R3Error(f"{where}: expected an object")
        if "rounds" not in row or "retry_ok" in row:
            raise R3Error(
                f"{where}: written by an older r3 (round 1 outside `rounds`); run it again with --overwrite"
            )
        get = partial(json_field, row, where=where)
        if example is None:
            example = get("example", dict)
            if task is not None:
                example = task.validate(example, get("index", int), where)
        tools = task.prompt(example).tools if task is not None else None
        raw_rounds = get("rounds", list)
        return cls(
            index=get("index", int),
            example=example,
            attempt=Completion(get("attempt", str), get("attempt_tokens", int)),
            attempt_verdict=Verdict(get("attempt_ok", bool), get("attempt_reason", str)),
            rounds=[Round.from_json(r, f"{where}, rounds[{k}]", tools) for k, r in enumerate(raw_rounds)],
            stopped=get("stopped", (str, NONE)),
        )


NONE = type(None)


def json_field(row: dict[str, Any], key: str, kinds: type | tuple[type, ...], where: str) -> Any:
    """`row[key]`, which must be there and of `kinds`, else an `R3Error` naming file, line and field.
    A bool is no number (a damaged file), and a whole number is a float (1.0 may be written as 1)."""
    if key not in row:
        raise R3Error(f"{where}: no field '{key}' (is this a file written by r3?)")
    value = row[key]
    wanted = kinds if isinstance(kinds, tuple) else (kinds,)
    ok = isinstance(value, wanted) and (bool in wanted or not isinstance(value, bool))
    if not (ok or (float in wanted and type(value) is int)):
        names = " or ".join("null" if k is NONE else k.__name__ for k in wanted)
        raise R3Error(f"{where}: field '{key}' should be {names} (got {json.dumps(value)[:60]})")
    return value


def check_second_try(mode: object) -> str:
    """`mode` if it names a protocol, else an `R3Error` (YAML configs skip argparse's checks)."""
    if not isinstance(mode, str) or mode not in SECOND_TRY_MODES:
        raise R3Error(f"--second-try must be one of {', '.join(SECOND_TRY_MODES)} (got {mode!r})")
    return mode


def with_reason(prompt: Prompt, reason: str) -> Prompt:
    """`prompt` with "The checker said: <reason>." appended to its last user turn (if any reason)."""
    reason = reason.strip()
    if not reason:
        return prompt
    messages = [dict(m) for m in prompt.messages]
    last = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    sentence = reason if reason.endswith((".", "!", "?")) else reason + "."
    messages[last]["content"] = f"{messages[last]['content']}\n\nThe checker said: {sentence}"
    return Prompt(messages, prompt.tools)


def safe_verify(task: Task, example: Example, completion: str) -> Verdict:
    """`task.verify`, any exception a failed verdict (a verifier's bug must not end a long run)."""
    try:
        verdict = task.verify(example, completion)
    except Exception as exc:  # noqa: BLE001 - any verifier error is a failed attempt
        return Verdict.failure(f"verifier raised {type(exc).__name__}: {exc}"[:300])
    if not isinstance(verdict, Verdict):
        return Verdict.failure(f"verifier returned {type(verdict).__name__}, not a Verdict")
    return verdict


def check_rounds(rounds: object) -> int:
    """`rounds` if it is a whole number >= 1, else an `R3Error`."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise R3Error(f"--rounds must be a whole number >= 1 (got {rounds!r})")
    return rounds


@dataclass(frozen=True)
class Turn:
    """Where a round starts: the episode, the chat its reflection is asked in, the round's number."""

    episode: Episode
    reflection_prompt: Prompt
    number: int = 1


#: Whether a model's context holds the prompt and that many new tokens.
Fits = Callable[[Prompt, int], bool]


def next_turn(
    task: Task,
    episode: Episode,
    *,
    second_try: str = "reflect",
    fits: Fits | None = None,
    max_new_tokens: int = 0,
) -> Turn | None:
    """The next round of `episode`, whose last answer failed: the one place a reflection chat is built
    (`Task.reflection_prompt`, then `Task.reflection_prompt_after` on the last retry chat). With `fits`, a
    chat without room for `max_new_tokens` stops the episode and None is returned."""
    example = episode.example
    if episode.rounds:
        last = episode.rounds[-1]
        number, verdict = last.number + 1, last.retry_verdict
        prompt = task.reflection_prompt_after(example, last.retry_prompt, last.retry.text)
    else:
        number, verdict = 1, episode.attempt_verdict
        prompt = task.reflection_prompt(example, episode.attempt.text)
    if second_try == "feedback":
        prompt = with_reason(prompt, verdict.reason)
    if fits is not None and not fits(prompt, max_new_tokens):
        episode.stopped = _no_room(number)
        return None
    return Turn(episode, prompt, number)


def retry_chat(task: Task, turn: Turn, reflection: str, second_try: str = "reflect") -> Prompt:
    """The chat a round's retry is asked in: `Task.retry_prompt` for round 1 under `reflect`, otherwise
    `Task.retry_prompt_after` on the turn's reflection chat."""
    example = turn.episode.example
    if turn.number == 1 and second_try == "reflect":
        return task.retry_prompt(example, turn.episode.attempt.text, reflection)
    return task.retry_prompt_after(example, turn.reflection_prompt, reflection)


def _no_room(number: int) -> str:
    return f"round {number}: the history no longer fits the model's context"


def run_episodes(
    task: Task,
    generator: Generator,
    examples: Sequence[Example],
    sampling: EpisodeSampling,
    first_index: int = 0,
    second_try: str = "reflect",
    rounds: int = 1,
) -> list[Episode]:
    """Run the protocol on `examples`, one batched generate call per step."""
    check_second_try(second_try)
    check_rounds(rounds)
    episodes = [
        Episode(first_index + i, ex, Completion("", 0), Verdict.failure("not attempted"))
        for i, ex in enumerate(examples)
    ]
    attempt(task, generator, episodes, sampling.attempt)
    run_rounds(task, generator, episodes, sampling, rounds, second_try, getattr(generator, "fits", None))
    return episodes


def run_rounds(
    task: Task,
    generator: Generator,
    episodes: Sequence[Episode],
    sampling: EpisodeSampling,
    rounds: int,
    second_try: str = "reflect",
    fits: Fits | None = None,
) -> None:
    """Rounds 1..`rounds` for episodes whose first attempt is done: round k runs, one call per step, on
    every episode that ran rounds 1..k-1 and is still unsolved and not stopped. Round 1 is sent
    unchecked; later rounds are checked with `fits`."""
    for k in range(1, rounds + 1):
        pending = [
            ep
            for ep in episodes
            if ep.stopped is None and len(ep.rounds) == k - 1 and not ep.solved_by(k - 1)
        ]
        if not pending:
            continue
        if second_try == "resample":  # one more independent attempt, drawn like the first
            prompts = [task.prompt(ep.example) for ep in pending]
            answers = generator.generate(prompts, 1, seeded(sampling.attempt, "resample", pending, k))
            for ep, prompt, group in zip(pending, prompts, answers, strict=True):
                ep.rounds.append(Round(k, prompt, group[0], safe_verify(task, ep.example, group[0].text)))
            continue
        check = fits if k > 1 else None
        budget = sampling.reflection.max_new_tokens
        turns = [
            next_turn(task, ep, second_try=second_try, fits=check, max_new_tokens=budget) for ep in pending
        ]
        ready = [turn for turn in turns if turn is not None]
        reflect_and_retry(task, generator, ready, sampling, second_try=second_try, fits=check)


def reflection_turns(task: Task, episode: Episode) -> list[Turn]:
    """The chats a stored episode reflected in (what `r3 train` trains reflections on), as `next_turn`
    built them: none after a solved retry, nor after a stopped episode's last round."""
    turns: list[Turn] = []
    if episode.first_try_ok:
        return turns
    for k in range(len(episode.rounds) + 1):
        done = episode.rounds[:k]
        if (done and done[-1].retry_verdict.ok) or (k == len(episode.rounds) and episode.stopped):
            break
        turn = next_turn(task, replace(episode, rounds=done, stopped=None))
        if turn is not None:
            turns.append(turn)
    return turns


def attempt(task: Task, generator: Generator, episodes: Sequence[Episode], sampling: SamplingConfig) -> None:
    """Sample and verify each episode's first attempt at its task prompt."""
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
    fits: Fits | None = None,
    always_call: bool = False,
) -> list[Round | None]:
    """One round per turn: the reflection in the turn's chat, then the retry in `retry_chat`, verified;
    each `Round` is appended to its episode and returned (None where the retry chat did not `fits`).
    `always_call`: call the generator even with nothing to sample (a sampler may be a collective)."""
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
        reflection = group[0]
        retry_prompt = retry_chat(task, turn, reflection.text, second_try)
        if fits is not None and not fits(retry_prompt, sampling.retry.max_new_tokens):
            turn.episode.stopped = _no_room(turn.number)
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
        done = Round(turn.number, retry_prompt, group[0], verdict, turn.reflection_prompt, reflection)
        turn.episode.rounds.append(done)
        results[i] = done
    return results

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
the failed retry and the reflection request (`Task.reflection_prompt_after`, with that retry's reason
under `feedback`), and its retry chat continues it (`Task.retry_prompt_after`; round 1's is
`Task.retry_prompt` under `reflect`). `next_turn` builds every round's chat, for evaluation, mining's
chains and training's prompts alike, so a task's own chats reach every round of all three. Under
`resample`, a round is one more independent attempt at the original prompt (another seed), so K rounds
of resample and of reflect cost the same number of answers.

**When the history no longer fits.** The history is never cut: a chat that lost its task or its first
attempts would not be the protocol. Before each round after the first, a generator that knows its
model's context (`fits(prompt, max_new_tokens)`, the transformers backend) is asked whether the new
prompt plus its token budget fits; an example that does not fit stops there, unsolved, and its row says
so (`stopped`). A backend that cannot tell (vLLM, a server) sends the prompt and its own limit applies:
a server refuses it with an error, which ends the run with one line, rows done kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

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

    def with_seed(self, seed: int) -> EpisodeSampling:
        """The three steps under one parent seed (each row's is then derived from it by `seeded`): how
        the training rollout seeds each call (`rollout.call_seed`) without rebuilding its settings."""
        return EpisodeSampling(
            attempt=self.attempt.with_(seed=seed),
            reflection=self.reflection.with_(seed=seed),
            retry=self.retry.with_(seed=seed),
        )


@dataclass(frozen=True)
class EpisodeSamplingOptions:
    """The one options group an episode's settings are built from (`build`). `r3 eval`
    (`EvalConfig.sampling`), `r3 mine`'s chains and screen (`MineConfig.episode_options`) and `r3 train`
    (`R3Config.episode_sampling`) fill it from their own flags, so that how the three steps relate is
    decided here once, not once per command:

    - the attempt: `max_new_tokens`, `temperature`, the task's stop strings;
    - the reflection: its own budget (`reflection_max_new_tokens`) and no stop string (a task's stop
      string ends an answer, and a reflection is not one); the attempt's temperature unless
      `reflection_temperature` is given (training samples it at TRL's `temperature`);
    - the retry: an answer again, so the task's stop strings; the attempt's budget and temperature unless
      `retry_max_new_tokens` / `retry_temperature` are given;
    - `top_p`, `top_k` and `seed` (the parent of every row's seed, see `seeded`) are shared by all three.

    The retry's temperature is the one setting the commands choose differently, each for its own reason:
    `r3 eval` retries at the attempt's temperature (greedy by default), the paper's protocol, where the
    second try is drawn like the first. `r3 mine`'s chains retry at the mining temperature, because later
    rounds are trained on their failed retries and a chain must sample diverse ones. `r3 train` makes it a
    recipe setting (`retry_temperature`): greedy retries make the reward a function of the reflection
    alone but leave most groups without signal, sampled ones make it an unbiased draw of the
    reflection's success (the validation run chose T = 1). `r3 mine --screen` retries at
    `screen_retry_temperature`, to score an attempt the way training will sample its groups."""

    max_new_tokens: int
    temperature: float
    reflection_max_new_tokens: int
    top_p: float = 1.0
    top_k: int | None = None
    #: None: the attempt's.
    reflection_temperature: float | None = None
    #: None: the attempt's.
    retry_temperature: float | None = None
    #: None: the attempt's.
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
    """One reflect-and-retry round: what was asked and answered. `reflect_and_retry` returns one per
    turn and appends it to its episode's `rounds`.

    Under `resample`, `reflection_prompt` and `reflection` are None and `retry` is one more attempt."""

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
        """A round written by `to_json`; `tools` are the example's tool schemas, which every chat of its
        episode carries and the file leaves out."""
        if not isinstance(row, dict):
            raise R3Error(f"{where}: expected an object")
        reflection_prompt = json_field(row, "reflection_prompt", (list, NONE), where)
        reflection = json_field(row, "reflection", (str, NONE), where)
        reflection_tokens = json_field(row, "reflection_tokens", (int, NONE), where)
        return cls(
            number=json_field(row, "round", int, where),
            retry_prompt=Prompt(json_field(row, "retry_prompt", list, where), tools),
            retry=Completion(
                json_field(row, "retry", str, where), json_field(row, "retry_tokens", int, where)
            ),
            retry_verdict=Verdict(
                json_field(row, "retry_ok", bool, where), json_field(row, "retry_reason", str, where)
            ),
            reflection_prompt=None if reflection_prompt is None else Prompt(reflection_prompt, tools),
            reflection=None if reflection is None else Completion(reflection, reflection_tokens or 0),
        )


@dataclass
class Episode:
    """What happened to one example: its first attempt, then its rounds in order (`rounds[0]` is round
    1, the paper's second try, when it ran). The one record every stage hands on: `r3 eval` writes it
    to `samples.jsonl`, `r3 mine` continues one from each kept failed attempt and stores it in the
    failures file, `r3 train` replays the stored ones, and the reports read them back (`to_json`,
    `from_json`).

    Each round keeps the chats its reflection and retry were generated from, so that logs show exactly
    what the model saw, whatever the protocol. With `resample`, a round's `reflection` is None and its
    `retry` is one more attempt."""

    index: int
    example: Example
    attempt: Completion
    attempt_verdict: Verdict
    #: Every round run, in order of their numbers.
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
        """The episode as one JSON object. With `task`, a `samples.jsonl` row: the example as the task
        stores it (`Task.to_record`) and its first chat lead. Without, the attempt and its rounds only:
        a failed attempt in a failures row, whose example is the row's own. `first_try_ok`,
        `second_try_ok` and `solved_round` are written for readers of the file, never read back."""
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
        `example` when given (a failures row's), else the row's own, checked by `task` when given
        (`Task.validate`). With `task` the chats get the example's tool schemas back. A row of the
        format before one record (round 1 in the row itself) is refused in one line."""
        if not isinstance(row, dict):
            raise R3Error(f"{where}: expected an object")
        if "rounds" not in row or "retry_ok" in row:
            raise R3Error(
                f"{where}: written by an older r3 (round 1 outside `rounds`); run it again with --overwrite"
            )
        if example is None:
            example = json_field(row, "example", dict, where)
            if task is not None:
                example = task.validate(example, json_field(row, "index", int, where), where)
        tools = task.prompt(example).tools if task is not None else None
        raw_rounds = json_field(row, "rounds", list, where)
        return cls(
            index=json_field(row, "index", int, where),
            example=example,
            attempt=Completion(
                json_field(row, "attempt", str, where), json_field(row, "attempt_tokens", int, where)
            ),
            attempt_verdict=Verdict(
                json_field(row, "attempt_ok", bool, where), json_field(row, "attempt_reason", str, where)
            ),
            rounds=[Round.from_json(r, f"{where}, rounds[{k}]", tools) for k, r in enumerate(raw_rounds)],
            stopped=json_field(row, "stopped", (str, NONE), where),
        )


NONE = type(None)


def json_field(row: dict[str, Any], key: str, kinds: type | tuple[type, ...], where: str) -> Any:
    """`row[key]`, which must be there and of `kinds`: one `R3Error` naming the file, line and field
    otherwise. A bool is not taken for a number (Python counts it an int: a damaged file), and a whole
    number is taken for a float (JSON writers may write 1.0 as 1)."""
    if key not in row:
        raise R3Error(f"{where}: no field '{key}' (is this a file written by r3?)")
    value = row[key]
    wanted = kinds if isinstance(kinds, tuple) else (kinds,)
    ok = isinstance(value, wanted) and not (isinstance(value, bool) and bool not in wanted)
    if not ok and float in wanted and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        names = " or ".join("null" if k is NONE else k.__name__ for k in wanted)
        raise R3Error(f"{where}: field '{key}' should be {names} (got {json.dumps(value)[:60]})")
    return value


def check_second_try(mode: object) -> str:
    """Return `mode` if it names a protocol, else raise `R3Error` (values from YAML configs skip
    argparse's checks, so every entry point validates through here)."""
    if not isinstance(mode, str) or mode not in SECOND_TRY_MODES:
        raise R3Error(f"--second-try must be one of {', '.join(SECOND_TRY_MODES)} (got {mode!r})")
    return mode


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


#: `fits(prompt, max_new_tokens)`: whether a model's context holds the prompt and that many new tokens.
Fits = Callable[[Prompt, int], bool]


def next_turn(
    task: Task,
    episode: Episode,
    *,
    second_try: str = "reflect",
    fits: Fits | None = None,
    max_new_tokens: int = 0,
) -> Turn | None:
    """The next round of `episode`, whose last answer failed: the one place a round's reflection chat
    is built, for `r3 eval`'s rounds, `r3 mine`'s chains and screens and `r3 train`'s prompts alike.

    Round 1 reflects on the first attempt (`Task.reflection_prompt`); round k+1 on round k's failed
    retry, after the whole history (`Task.reflection_prompt_after` on round k's retry chat). Under
    `feedback` the failed answer's reason is appended (`with_reason`). With `fits`, a chat that leaves
    no room for `max_new_tokens` (the reflection's budget) stops the episode (`Episode.stopped`) and
    None is returned: the history is never cut (docs/method.md, K rounds)."""
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
    """The chat a round's retry is asked in, once its `reflection` was sampled in `turn`'s chat:
    `Task.retry_prompt` for round 1 of the paper's protocol (a task may override it), otherwise
    `Task.retry_prompt_after` on the turn's reflection chat."""
    example = turn.episode.example
    if turn.number == 1 and second_try == "reflect":
        return task.retry_prompt(example, turn.episode.attempt.text, reflection)
    return task.retry_prompt_after(example, turn.reflection_prompt, reflection)


def _no_room(number: int) -> str:
    """Why an episode stopped before round `number` (its row's `stopped`)."""
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
    """Rounds 1..`rounds` for episodes whose first attempt is done: round k runs, in one call per step,
    on every episode that ran rounds 1..k-1 and is still unsolved and not stopped. `r3 eval` runs it
    on its examples, `r3 mine --rounds` on its kept failed attempts (their chains).

    Round 1, the paper's second try, is sent unchecked; with `fits`, a later round whose chats no
    longer fit the model's context stops its episode (`next_turn`, `reflect_and_retry`)."""
    for k in range(1, rounds + 1):
        _next_round(task, generator, list(episodes), sampling, second_try, k, fits if k > 1 else None)


def reflection_turns(task: Task, episode: Episode) -> list[Turn]:
    """The chats a stored episode reflects in, as `next_turn` built them: round 1's on its first
    attempt, then one after each failed round, with the history up to it. None after a solved retry,
    nor after the last round of a stopped episode (its next chat did not fit the model). What
    `r3 train` trains a reflection on, from each mined episode."""
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
    fits: Fits | None = None,
    always_call: bool = False,
) -> list[Round | None]:
    """One reflect-and-retry round for each turn: sample the reflection in the turn's chat, build the
    retry chat, sample the retry, verify it. Evaluation, mining and the training rollout all run this.

    The retry chat is `retry_chat`'s: the task's own for round 1 under `reflect` (`Task.retry_prompt`),
    otherwise the chat the reflection was asked in continued (`Task.retry_prompt_after`). Row i's
    reflection and retry are seeded by its episode's index and its round (`seeded`).

    `fits(prompt, max_new_tokens)`: a retry chat that does not fit the model's context stops its
    episode (`Episode.stopped`) and its entry in the result is None. The result is appended to each
    episode's `rounds` and returned, one `Round` per turn. `always_call`: call the generator for both
    steps even with nothing to sample, as training needs (a process's sampler may be a collective,
    entered by every process the same number of times)."""
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


def _resample(
    task: Task, generator: Generator, episodes: list[Episode], sampling: EpisodeSampling, k: int
) -> None:
    """Round `k` under `resample`: one more independent attempt at the task prompt, drawn like the first
    (the attempt's settings, its own step name and round in the seed)."""
    prompts = [task.prompt(ep.example) for ep in episodes]
    answers = generator.generate(prompts, 1, seeded(sampling.attempt, "resample", episodes, k))
    for ep, prompt, group in zip(episodes, prompts, answers, strict=True):
        ep.rounds.append(Round(k, prompt, group[0], safe_verify(task, ep.example, group[0].text)))


def _next_round(
    task: Task,
    generator: Generator,
    episodes: list[Episode],
    sampling: EpisodeSampling,
    second_try: str,
    k: int,
    fits: Fits | None,
) -> None:
    """Round `k` for every episode that ran rounds 1..k-1 and is still unsolved: reflect on its last
    failed answer, then retry, with the whole history in the chat (`next_turn`; under `resample`: one
    more independent attempt)."""
    pending = [
        ep for ep in episodes if ep.stopped is None and len(ep.rounds) == k - 1 and not ep.solved_by(k - 1)
    ]
    if not pending:
        return
    if second_try == "resample":
        _resample(task, generator, pending, sampling, k)
        return
    budget = sampling.reflection.max_new_tokens
    turns = [next_turn(task, ep, second_try=second_try, fits=fits, max_new_tokens=budget) for ep in pending]
    ready = [turn for turn in turns if turn is not None]
    reflect_and_retry(task, generator, ready, sampling, second_try=second_try, fits=fits)

"""The R3 rollout, TRL's `GRPOTrainer(rollout_func=...)`: the episode's own steps (`episode.attempt`,
`episode.reflect_and_retry`) on the trainer's engine, seeded by the run's seed, step and process. TRL
(1.16) passes this process's prompts, each repeated `num_generations` times in a row (one GRPO group),
and trains on the reflection's tokens only; the retry reaches it as its outcome, an extra field passed
to the reward functions. `mode="grpo"` trains first attempts instead, `mode="combined"` both
(`group_kind`); dynamic sampling replaces groups without signal (`replacement_slot`).
"""

from __future__ import annotations

import random
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import Any

from r3.episode import Episode, EpisodeSampling, Round, Turn, attempt, reflect_and_retry
from r3.errors import R3Error
from r3.generation.base import Completion, derive_seed, encode_prompts
from r3.generation.chat import render_prompt
from r3.tasks.base import Example, Task, Verdict
from r3.training.dataset import PromptIndex, PromptItem
from r3.training.engines import Engine, EngineSampler, choose_engine

#: What `r3 train` trains: reflections (R3), first attempts (plain GRPO), or both, group by group.
TRAIN_MODES = ("r3", "grpo", "combined")
#: The two kinds of group in combined mode, by the turn their completions are.
GROUP_KINDS = ("attempt", "reflection")
#: The one kind every group has in the single-turn modes.
MODE_KIND = {"r3": "reflection", "grpo": "attempt"}

#: Extra fields the rollout returns, with the `Row` attribute each is read from; TRL passes them to the
#: reward functions as keyword arguments. `group_seed` (a seed per group: the control's permutations)
#: and the call's counts (`groups_drawn`, ...) come with every mode.
ROW_FIELDS = {
    "retry_completion": "retry",  # the retry text (cut at the task's stop string)
    "retry_length": "retry_length",  # retry tokens
    "retry_clipped": "retry_clipped",  # the retry hit retry_max_new_tokens before a stop string or EOS
    "first_attempt_text": "first_attempt",  # the failed first attempt the reflection is about
    "first_attempt_solved": "first_attempt_solved",  # online: the fresh first attempt succeeded
    "attempt_completion": "completion",  # grpo: the attempt text
    "turn_kind": "kind",  # combined: "attempt" or "reflection", the turn the completion is
}
_RETRY = ("retry_completion", "retry_length", "retry_clipped", "first_attempt_text", "first_attempt_solved")
#: Each mode's extra fields: its outcome (None where nothing is scored), the completion's length in
#: tokens (EOS included), and the `ROW_FIELDS` it returns.
MODE_FIELDS = {
    "r3": ("retry_success", "reflection_length", _RETRY),
    "grpo": ("attempt_success", "attempt_length", ("attempt_completion",)),
    "combined": ("turn_success", "completion_length", ("turn_kind", *_RETRY)),
}
#: The extra fields of R3 mode.
ROLLOUT_FIELDS = ("retry_success", "reflection_length", *_RETRY, "group_seed")


def group_kind(call: int, group: int) -> str:
    """Combined mode: the turn group `group` of rollout call `call` trains; kinds alternate by group
    and by call, so a resumed run trains the same kinds."""
    return GROUP_KINDS[(call + group) % 2]


def call_seed(seed: int, step: int, process: int) -> int:
    """The seed of one rollout call, so that a resumed run samples what the uninterrupted one would
    have and processes draw apart."""
    return derive_seed(seed, "rollout", step, process)


@dataclass
class Row:
    """One rollout row: what TRL trains on, its outcome (None when there is nothing to score) and what
    the logs and reward functions see."""

    prompt: str
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float | None] | None = None
    success: bool | None = None
    completion: str = ""
    retry_prompt: str | None = None
    retry: str = ""
    retry_length: int = 0
    retry_clipped: bool = False
    first_attempt: str = ""
    first_attempt_solved: bool = False
    kind: str = "reflection"  # the turn the completion is (`GROUP_KINDS`)


@dataclass
class RolloutBatch:
    """Everything one rollout call produced (`R3Rollout.last`, for tests and debugging); `prompts` are
    the prompts sampled (a replaced group's are its replacement's)."""

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
    #: Dynamic sampling: groups replaced this call, and groups sampled in all (replacements included).
    resampled_groups: int = 0
    drawn_groups: int = 0
    drawn_with_signal: int = 0


def has_signal(outcomes: list[bool | None]) -> bool:
    """A group carries a GRPO signal iff its scored outcomes are not all equal."""
    return len({o for o in outcomes if o is not None}) > 1


def replacement_slot(
    step: int, call: int, process: int, attempt_number: int, group: int, shape: tuple[int, int, int, int]
) -> int:
    """The pool slot, counted from its back, of one replacement under `replacements="unseen"`: distinct
    for each (step, call, process, try, group), so no two replacements share a prompt. `shape` is (calls
    per step, processes, tries, groups per call)."""
    calls, processes, tries, groups = shape
    return (((step * calls + call) * processes + process) * tries + attempt_number - 1) * groups + group


def _unattempted(index: int, example: Example) -> Episode:
    return Episode(index, example, Completion("", 0), Verdict.failure("not attempted"))


def _step(trainer: Any) -> int:
    return int(getattr(getattr(trainer, "state", None), "global_step", 0))


@dataclass(eq=False)
class R3Rollout:
    """The `rollout_func` for `GRPOTrainer`: `R3Rollout(task, index, sampling)(prompts, trainer)`."""

    task: Task
    index: PromptIndex
    sampling: EpisodeSampling
    first_attempt: str = "stored"
    engine: Engine | None = None
    _: KW_ONLY
    mode: str = "r3"
    dynamic_sampling_rounds: int = 0
    replacements: str = "pool"
    last: RolloutBatch | None = field(default=None, init=False)
    #: (global step, calls made in it): `replacement_slot`'s call number.
    _calls: tuple[int, int] = field(default=(-1, 0), init=False, repr=False)

    def _settings(self, trainer: Any, seed: int, kind: str) -> EpisodeSampling:
        """Settings seeded by `seed`, with logprobs only where TRL uses them (vLLM's importance-sampling
        correction): on the completion trained on, the reflection or (`kind` "attempt") the attempt."""
        logprobs = bool(getattr(getattr(trainer, "args", None), "use_vllm", False))
        s = self.sampling.with_seed(seed)
        attempts = kind == "attempt"
        return replace(
            s,
            attempt=s.attempt.with_(logprobs=logprobs and attempts),
            reflection=s.reflection.with_(logprobs=logprobs and not attempts),
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
        examples = {p: item.example for p, item in zip(prompts, items, strict=True)}
        firsts = [_unattempted(j, example) for j, example in enumerate(examples.values())]
        attempt(self.task, sampler, firsts, s.attempt)
        by_prompt = dict(zip(examples, firsts, strict=True))
        return [
            Episode(i, item.example, by_prompt[p].attempt, by_prompt[p].attempt_verdict)
            for i, (p, item) in enumerate(zip(prompts, items, strict=True))
        ]

    def _r3_rows(self, prompts: list[str], sampler: EngineSampler, s: EpisodeSampling) -> list[Row]:
        """R3: the episode's round on every row still unsolved, its reflection the completion; a solved
        row (online) gets EOS and no outcome, so advantage 0."""
        tokenizer = sampler.tokenizer
        items = [self.index[p] for p in prompts]
        episodes = self._first_attempts(prompts, items, sampler, s)
        turns = [
            Turn(ep, item.chat or self.task.reflection_prompt(ep.example, ep.attempt.text), item.round)
            for ep, item in zip(episodes, items, strict=True)
        ]
        prompt_ids = encode_prompts(tokenizer, [t.reflection_prompt for t in turns])
        # Its samplers are entered on every process even with no row to sample (engines.py: collectives).
        todo = [i for i in range(len(prompts)) if not episodes[i].first_try_ok]
        done = reflect_and_retry(self.task, sampler, [turns[i] for i in todo], s, always_call=True)
        rounds: dict[int, Round] = dict(zip(todo, done, strict=True))
        eos = tokenizer.eos_token_id
        rows = []
        for i, (prompt, ids, ep) in enumerate(zip(prompts, prompt_ids, episodes, strict=True)):
            row = Row(prompt, ids, [eos], first_attempt=ep.attempt.text, first_attempt_solved=ep.first_try_ok)
            r = rounds.get(i)
            if r is not None:
                row.success = r.retry_verdict.ok
                row.retry_prompt = render_prompt(tokenizer, r.retry_prompt)
                row.retry = r.retry.text
                row.retry_length = r.retry.num_tokens
                row.retry_clipped = r.retry.finish_reason == "length"
            if r is not None and r.reflection is not None:
                row.completion_ids = list(r.reflection.token_ids) or [eos]
                row.completion = r.reflection.text
                if r.reflection.logprobs is not None:  # [None]: no logprob, TRL skips its correction
                    row.logprobs = list(r.reflection.logprobs) or [None]
            rows.append(row)
        return rows

    def _grpo_rows(self, prompts: list[str], sampler: EngineSampler, s: EpisodeSampling) -> list[Row]:
        """Plain GRPO: a first attempt per row is the completion, the verifier's verdict its outcome. One
        that ended on a stop string gets EOS appended: TRL counts a completion without EOS as truncated."""
        tokenizer = sampler.tokenizer
        items = [self.index[p] for p in prompts]
        episodes = [_unattempted(i, item.example) for i, item in enumerate(items)]
        attempt(self.task, sampler, episodes, s.attempt)
        prompt_ids = encode_prompts(tokenizer, [self.task.prompt(item.example) for item in items])
        eos = tokenizer.eos_token_id
        rows = []
        for prompt, ids, ep in zip(prompts, prompt_ids, episodes, strict=True):
            tokens = list(ep.attempt.token_ids)
            logprobs = list(ep.attempt.logprobs) if ep.attempt.logprobs is not None else None
            if ep.attempt.finish_reason == "stop" and (not tokens or tokens[-1] != eos):
                tokens.append(eos)
                if logprobs is not None:
                    logprobs.append(None)
            row = Row(prompt, ids, tokens, logprobs, ep.attempt_verdict.ok, ep.attempt.text, kind="attempt")
            row.first_attempt, row.first_attempt_solved = ep.attempt.text, ep.attempt_verdict.ok
            rows.append(row)
        return rows

    def _rows(
        self, prompts: list[str], sampler: EngineSampler, trainer: Any, seed: int, kinds: list[str]
    ) -> list[Row]:
        """The rows of `prompts`, each of the kind `kinds` names; combined mode samples each kind in one
        pass under its own seed (both passes run even when one is empty: a sampler may be a collective)."""
        make = {"attempt": self._grpo_rows, "reflection": self._r3_rows}
        if self.mode != "combined":
            kind = MODE_KIND[self.mode]
            return make[kind](prompts, sampler, self._settings(trainer, seed, kind))
        rows: list[Row | None] = [None] * len(prompts)
        for kind in GROUP_KINDS:
            picked = [i for i, k in enumerate(kinds) if k == kind]
            own = self._settings(trainer, derive_seed(seed, "kind", kind), kind)
            for i, row in zip(picked, make[kind]([prompts[i] for i in picked], sampler, own), strict=True):
                rows[i] = row
        return [row for row in rows if row is not None]

    def _replace_silent_groups(
        self, rows: list[Row], group: int, seed: int, sampler: EngineSampler, trainer: Any
    ) -> tuple[list[Row], int, int, int]:
        """Dynamic sampling: groups without signal replaced by fresh groups of the same kind, up to
        `dynamic_sampling_rounds` tries (with several processes every try runs: a sampler may be a
        collective). Returns the rows, the replacements, the groups sampled and those with signal."""
        groups = [rows[i : i + group] for i in range(0, len(rows), group)]
        with_signal = sum(has_signal([r.success for r in g]) for g in groups)
        pool = self.index.prompts() if self.dynamic_sampling_rounds else []
        collective = int(getattr(getattr(trainer, "accelerator", None), "num_processes", 1)) > 1
        replaced = 0
        for attempt_number in range(1, self.dynamic_sampling_rounds + 1):
            silent = [k for k, g in enumerate(groups) if not has_signal([r.success for r in g])]
            if not silent and not collective:
                break
            try_seed = derive_seed(seed, "dynamic", attempt_number)
            picks = self._replacements(pool, silent, try_seed, attempt_number, len(groups), trainer)
            kinds = [groups[k][0].kind for k in silent for _ in range(group)]
            fresh = self._rows([p for p in picks for _ in range(group)], sampler, trainer, try_seed, kinds)
            for n, k in enumerate(silent):
                groups[k] = fresh[n * group : (n + 1) * group]
                with_signal += has_signal([r.success for r in groups[k]])
            replaced += len(silent)
        return [r for g in groups for r in g], replaced, len(groups) + replaced, with_signal

    def _replacements(
        self, pool: list[str], silent: list[int], seed: int, attempt_number: int, groups: int, trainer: Any
    ) -> list[str]:
        """The prompts replacing the `silent` groups of this try: drawn at random from the pool, or
        (`unseen`) each from its own slot at the pool's back (`replacement_slot`)."""
        if self.replacements != "unseen":
            rng = random.Random(seed)
            return [pool[rng.randrange(len(pool))] for _ in silent]
        args = getattr(trainer, "args", None)
        accelerator = getattr(trainer, "accelerator", None)
        step = _step(trainer)
        accumulation = int(getattr(args, "gradient_accumulation_steps", 1) or 1)
        per_generation = int(getattr(args, "steps_per_generation", None) or accumulation)
        processes = int(getattr(accelerator, "num_processes", 1))
        shape = (-(-accumulation // per_generation), processes, self.dynamic_sampling_rounds, groups)
        call = self._calls[1] - 1 if self._calls[0] == step else 0
        process = int(getattr(accelerator, "process_index", 0))
        slots = [replacement_slot(step, call, process, attempt_number, k, shape) for k in silent]
        if max(slots) >= len(pool):
            raise R3Error(
                f"replacements unseen: the pool of {len(pool)} prompts is used up at step {step}; "
                "mine more queries, or train fewer steps"
            )
        return [pool[len(pool) - 1 - slot] for slot in slots]

    def __call__(self, prompts: list[str], trainer: Any) -> dict[str, Any]:
        step = _step(trainer)
        self._calls = (step, self._calls[1] + 1 if self._calls[0] == step else 1)
        args = getattr(trainer, "args", None)
        process = int(getattr(getattr(trainer, "accelerator", None), "process_index", 0))
        seed = call_seed(int(getattr(args, "seed", 0)), step, process)
        sampler = EngineSampler(self.engine if self.engine is not None else choose_engine(trainer), trainer)
        group = int(getattr(args, "num_generations", 0) or 0)
        rows = self._rows(list(prompts), sampler, trainer, seed, self._kinds(trainer, len(prompts), group))
        replaced, drawn, with_signal = 0, 0, 0
        if group > 1 and len(rows) % group == 0:  # whole groups: count their signal, replace if asked
            rows, replaced, drawn, with_signal = self._replace_silent_groups(
                rows, group, seed, sampler, trainer
            )
        group_seeds = [derive_seed(seed, "group", i // group if group > 0 else i) for i in range(len(rows))]
        return self._output(rows, group_seeds, replaced, drawn, with_signal)

    def _kinds(self, trainer: Any, n: int, group: int) -> list[str]:
        """The turn each of `n` rows trains: the mode's own, or each group's `group_kind` (TRL calls the
        rollout once per generation batch, `steps_per_generation` steps)."""
        if self.mode != "combined":
            return [MODE_KIND[self.mode]] * n
        per_generation = int(getattr(getattr(trainer, "args", None), "steps_per_generation", 1) or 1)
        call = _step(trainer) // max(1, per_generation)
        return [group_kind(call, i // max(1, group)) for i in range(n)]

    def _output(
        self, rows: list[Row], group_seeds: list[int], replaced: int, drawn: int, with_signal: int
    ) -> dict[str, Any]:
        """TRL's dict (`prompt_ids`, `completion_ids`, `logprobs`, extra fields), and `self.last`."""
        sampled = any(r.logprobs is not None for r in rows)
        logprobs = [r.logprobs or [None] for r in rows] if sampled else None
        outcome, length, names = MODE_FIELDS[self.mode]
        extra: dict[str, list[Any]] = {
            outcome: [r.success for r in rows],
            length: [len(r.completion_ids) for r in rows],
            **{name: [getattr(r, ROW_FIELDS[name]) for r in rows] for name in names},
            "group_seed": group_seeds,
            # The call's counts for the metrics (the same value on every row; rewards.py logs them once).
            "groups_drawn": [drawn] * len(rows),
            "groups_drawn_with_signal": [with_signal] * len(rows),
            "groups_resampled": [replaced] * len(rows),
        }
        self.last = RolloutBatch(
            prompts=[r.prompt for r in rows],
            reflection_prompt_ids=[r.prompt_ids for r in rows],
            reflection_ids=[r.completion_ids for r in rows],
            reflections=[r.completion for r in rows],
            retry_prompts=[r.retry_prompt for r in rows],
            retries=[r.retry for r in rows],
            retry_success=[r.success for r in rows],
            first_attempts=[r.first_attempt for r in rows],
            first_attempt_solved=[r.first_attempt_solved for r in rows],
            extra=extra,
            resampled_groups=replaced,
            drawn_groups=drawn,
            drawn_with_signal=with_signal,
        )
        return {
            "prompt_ids": [r.prompt_ids for r in rows],
            "completion_ids": [r.completion_ids for r in rows],
            "logprobs": logprobs,
            **extra,
        }

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
`Task.retry_prompt_after` for later rounds, through `episode.retry_chat`) with the same settings type
(`episode.EpisodeSampling`, built by `R3Config.episode_sampling`). Only the sampler differs: the
trainer's engine (`engines.py`: its own model, colocated vLLM, or a vLLM server) bound to the trainer
as a token sampler (`EngineSampler`).
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
the reward statistics); `r3/first_attempt_solved` reports how often that happens.

**Plain GRPO** (`mode="grpo"`, the baseline R3 must beat): the dataset prompt is the task prompt and
the completion is a first attempt, sampled by the same `episode.attempt` step, each row with its own
seed; its reward is the verifier's verdict (`attempt_success`). Same queries, same engine, same seeds,
same optimizer: only what is trained differs.

**Combined** (`mode="combined"`, as multi-attempt RL trains both turns): the dataset prompt is the task
prompt and each group trains one turn, chosen by `group_kind` from the rollout call and the group's
place in it (a function of the step, so a resumed run trains the same kinds): an *attempt group* is a
plain GRPO group (completions are first attempts, rewarded by the verifier), a *reflection group* is
an R3 group on one fresh online first attempt (completions are reflections, rewarded by the retry).
Half the groups of a call are of each kind; with one group per call the kinds alternate by call. The
reward is `turn_success`, the outcome of the turn the completion is; `turn_kind` says which.

**Dynamic sampling** (`dynamic_sampling_rounds=R > 0`, as DAPO's): a group whose outcomes are all
equal (every retry succeeded, or every one failed) has zero advantage, so its backward pass is wasted.
Such groups are replaced by groups on prompts drawn from the training pool, sampled afresh, up to R
times; a group still without signal after R tries is trained as it is (zero advantage: harmless).
Replacement prompts and their rows are seeded from the call's seed and the try (`derive_seed`), so a
resumed run draws exactly the groups the uninterrupted one would have. TRL still shows the original
dataset prompt in its completion logs; the tokens trained on (`prompt_ids`) are the replacement's.
`r3/groups_with_signal` (after replacement), `r3/groups_with_signal_drawn` (over every group sampled
this step: the pool's own rate) and `r3/resampled_groups` are logged. Replacements are drawn from the
whole pool (`replacements="pool"`), or (`"unseen"`) each from its own slot at the back of the pool,
named by the step, the call within it, the process, the try and the group (`replacement_slot`), while
training takes its prompts from the front: on a pool larger than the run, no query is trained twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

from r3.episode import Episode, EpisodeSampling, Round, Turn, attempt, reflect_and_retry
from r3.errors import R3Error
from r3.generation.base import Completion, derive_seed, encode_prompts
from r3.generation.chat import render_prompt
from r3.tasks.base import Task, Verdict
from r3.training.dataset import PromptIndex, PromptItem
from r3.training.engines import Engine, EngineSampler, choose_engine

#: What `r3 train` trains: reflections rewarded by the retry (R3), first attempts (plain GRPO), or
#: both, group by group (combined).
TRAIN_MODES = ("r3", "grpo", "combined")
#: The two kinds of group in combined mode, by the turn their completions are.
GROUP_KINDS = ("attempt", "reflection")
#: The one kind every group has in the single-turn modes.
MODE_KIND = {"r3": "reflection", "grpo": "attempt"}

#: Extra fields the rollout returns in R3 mode; TRL passes them to the reward functions as keyword arguments.
ROLLOUT_FIELDS = (
    "retry_success",  # bool, or None when the group has no reflection to score (online, solved)
    "retry_completion",  # the retry text (cut at the task's stop string)
    "retry_length",  # retry tokens
    "retry_clipped",  # the retry hit retry_max_new_tokens before a stop string or EOS
    "reflection_length",  # reflection tokens (EOS included)
    "first_attempt_text",  # the failed first attempt the reflection is about
    "first_attempt_solved",  # online: the fresh first attempt succeeded (no reflection needed)
    "group_seed",  # a seed per group from the run's seed scheme (step, process, group): the control's
)

#: Extra fields in plain GRPO mode.
GRPO_FIELDS = (
    "attempt_success",  # bool: the verifier accepted the attempt (the completion)
    "attempt_completion",  # the attempt text (cut at the task's stop string)
    "attempt_length",  # attempt tokens
    "group_seed",
)

#: Extra fields in combined mode (besides R3's retry fields, empty on attempt rows).
COMBINED_FIELDS = (
    "turn_success",  # bool, or None: the attempt's verdict (attempt group) or the retry's (reflection group)
    "turn_kind",  # "attempt" or "reflection": which turn the completion is
    "completion_length",  # completion tokens (EOS included)
    "group_seed",
)


def group_kind(call: int, group: int) -> str:
    """Combined mode: the turn group `group` of rollout call `call` trains, attempts and reflections
    in turn (`GROUP_KINDS`), so each call holds both kinds (or, one group per call, calls alternate)."""
    return GROUP_KINDS[(call + group) % 2]


def call_seed(seed: int, step: int, process: int) -> int:
    """The seed of one rollout call: a function of the run's seed, the global step and the process, so
    that a resumed run samples what the uninterrupted one would have and processes draw apart."""
    return derive_seed(seed, "rollout", step, process)


@dataclass
class Row:
    """One rollout row: what TRL gets for it (prompt and completion tokens, logprobs), its outcome
    (what the reward reads: the retry's success in R3 mode, the attempt's in GRPO mode; None when there
    is nothing to score) and what the logs and reward functions see."""

    prompt: str
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float | None] | None
    success: bool | None
    completion: str = ""
    retry_prompt: str | None = None
    retry: str = ""
    retry_length: int = 0
    retry_clipped: bool = False
    first_attempt: str = ""
    first_attempt_solved: bool = False
    #: The turn the completion is: "reflection" (R3) or "attempt" (plain GRPO).
    kind: str = "reflection"


@dataclass
class RolloutBatch:
    """Everything one rollout call produced (kept on `R3Rollout.last` for tests and debugging).

    `prompts` are the prompts actually sampled (a replaced group's are its replacement's)."""

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
    """The pool slot, counted from its back, of one replacement under `replacements="unseen"`: a
    distinct number for each (step, call in the step, process, try, group in the call), so that no two
    replacements of a run share a prompt and a resumed run draws the same ones. `shape` is (calls per
    step, processes, tries, groups per call)."""
    calls, processes, tries, groups = shape
    return (((step * calls + call) * processes + process) * tries + attempt_number - 1) * groups + group


class R3Rollout:
    """The `rollout_func` for `GRPOTrainer`: `R3Rollout(task, index, sampling)(prompts, trainer)`."""

    def __init__(
        self,
        task: Task,
        index: PromptIndex,
        sampling: EpisodeSampling,
        first_attempt: str = "stored",
        engine: Engine | None = None,
        *,
        mode: str = "r3",
        dynamic_sampling_rounds: int = 0,
        replacements: str = "pool",
    ) -> None:
        if mode not in TRAIN_MODES:
            raise R3Error(f"mode must be one of {', '.join(TRAIN_MODES)}, not '{mode}'")
        if dynamic_sampling_rounds < 0:
            raise R3Error("dynamic_sampling_rounds must be >= 0")
        self.task = task
        self.index = index
        self.sampling = sampling
        self.first_attempt = first_attempt
        self.engine = engine
        self.mode = mode
        self.dynamic_sampling_rounds = dynamic_sampling_rounds
        self.replacements = replacements
        self.last: RolloutBatch | None = None
        self._calls: tuple[int, int] = (-1, 0)  # (global step, calls made in it): `replacement_slot`

    def _engine(self, trainer: Any) -> Engine:
        return self.engine if self.engine is not None else choose_engine(trainer)

    def _seed(self, trainer: Any) -> int:
        """This call's seed (`call_seed`): the run's seed, the global step, the process."""
        args = getattr(trainer, "args", None)
        state = getattr(trainer, "state", None)
        accelerator = getattr(trainer, "accelerator", None)
        return call_seed(
            int(getattr(args, "seed", 0)),
            int(getattr(state, "global_step", 0)),
            int(getattr(accelerator, "process_index", 0)),
        )

    def _settings(self, trainer: Any, seed: int, kind: str) -> EpisodeSampling:
        """Settings seeded by `seed` (each row then by its index and round, as the episode seeds every
        step); logprobs asked for only where TRL uses them (vLLM's importance-sampling correction): on
        the completion TRL trains on, the reflection (`kind` "reflection") or the attempt ("attempt")."""
        logprobs = bool(getattr(getattr(trainer, "args", None), "use_vllm", False))
        s = self.sampling.with_seed(seed)
        attempts = kind == "attempt"
        return replace(
            s,
            attempt=s.attempt.with_(logprobs=logprobs and attempts),
            reflection=s.reflection.with_(logprobs=logprobs and not attempts),
        )

    # ------------------------------------------------------------------------------- the two modes

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

    def _r3_rows(self, prompts: list[str], sampler: EngineSampler, s: EpisodeSampling) -> list[Row]:
        """R3: the episode's round on every row still unsolved; the reflection is the completion."""
        task = self.task
        tokenizer = sampler.tokenizer
        items = [self.index[p] for p in prompts]
        episodes = self._first_attempts(prompts, items, sampler, s)
        turns = [
            Turn(ep, item.chat or task.reflection_prompt(ep.example, ep.attempt.text), item.round)
            for ep, item in zip(episodes, items, strict=True)
        ]
        prompt_ids = encode_prompts(tokenizer, [t.reflection_prompt for t in turns])
        # Its samplers are entered on every process even with no row to sample (engines.py: collectives).
        todo = [i for i in range(len(prompts)) if not episodes[i].first_try_ok]
        done = reflect_and_retry(task, sampler, [turns[i] for i in todo], s, always_call=True)
        rounds: list[Round | None] = [None] * len(prompts)
        for i, result in zip(todo, done, strict=True):
            rounds[i] = result
        eos = tokenizer.eos_token_id
        rows = []
        for prompt, ids, ep, r in zip(prompts, prompt_ids, episodes, rounds, strict=True):
            reflection = r.reflection if r is not None else None
            rows.append(
                Row(
                    prompt=prompt,
                    prompt_ids=ids,
                    completion_ids=list(reflection.token_ids) or [eos] if reflection else [eos],
                    # [None]: no sampling logprob (nothing to reflect on); TRL skips its correction.
                    logprobs=list(reflection.logprobs or ()) or [None]
                    if reflection is not None and reflection.logprobs is not None
                    else None,
                    success=r.retry_verdict.ok if r is not None else None,
                    completion=reflection.text if reflection else "",
                    retry_prompt=render_prompt(tokenizer, r.retry_prompt) if r is not None else None,
                    retry=r.retry.text if r is not None else "",
                    retry_length=r.retry.num_tokens if r is not None else 0,
                    retry_clipped=r is not None and r.retry.finish_reason == "length",
                    first_attempt=ep.attempt.text,
                    first_attempt_solved=ep.first_try_ok,
                )
            )
        return rows

    def _grpo_rows(self, prompts: list[str], sampler: EngineSampler, s: EpisodeSampling) -> list[Row]:
        """Plain GRPO: a first attempt per row (`episode.attempt`, each row its own seed) is the
        completion, the verifier's verdict its outcome. An attempt that ended on a stop string gets
        the end-of-turn token appended, so the completion ends as the model's turn does (TRL counts a
        completion without EOS as truncated)."""
        tokenizer = sampler.tokenizer
        items = [self.index[p] for p in prompts]
        episodes = [
            Episode(i, item.example, Completion("", 0), Verdict.failure("not attempted"))
            for i, item in enumerate(items)
        ]
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
            rows.append(
                Row(
                    prompt=prompt,
                    prompt_ids=ids,
                    completion_ids=tokens,
                    logprobs=logprobs,
                    success=ep.attempt_verdict.ok,
                    completion=ep.attempt.text,
                    first_attempt=ep.attempt.text,
                    first_attempt_solved=ep.attempt_verdict.ok,
                    kind="attempt",
                )
            )
        return rows

    def _rows(
        self, prompts: list[str], sampler: EngineSampler, trainer: Any, seed: int, kinds: list[str]
    ) -> list[Row]:
        """The rows of `prompts`, each trained on the turn `kinds` names (`GROUP_KINDS`), seeded from
        `seed`: R3 and GRPO modes have one kind; combined mode samples each kind's rows in one pass, under
        its own seed (both passes run even when one is empty: a sampler may be a collective)."""
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

    # ------------------------------------------------------------------------------- dynamic sampling

    def _replace_silent_groups(
        self, rows: list[Row], group: int, seed: int, sampler: EngineSampler, trainer: Any
    ) -> tuple[list[Row], int, int, int]:
        """Dynamic sampling: groups without signal replaced by fresh groups on prompts drawn from the
        pool, up to `dynamic_sampling_rounds` tries (none when it is 0: the groups are only counted). A
        replacement trains the same turn as the group it replaces.
        Returns the rows, the replacements drawn, and the groups sampled in all with how many had signal.

        With several processes every try is run (empty where nothing is left to replace), because a
        sampler may be a collective that every process must enter the same number of times."""
        groups = [rows[i : i + group] for i in range(0, len(rows), group)]
        drawn, with_signal = len(groups), sum(has_signal([r.success for r in g]) for g in groups)
        pool = self.index.prompts() if self.dynamic_sampling_rounds else []
        collective = int(getattr(getattr(trainer, "accelerator", None), "num_processes", 1)) > 1
        replaced = 0
        for attempt_number in range(1, self.dynamic_sampling_rounds + 1):
            silent = [k for k, g in enumerate(groups) if not has_signal([r.success for r in g])]
            if not silent and not collective:
                break
            try_seed = derive_seed(seed, "dynamic", attempt_number)
            picks = self._replacements(pool, silent, try_seed, attempt_number, len(groups), trainer)
            fresh = self._rows(
                [p for p in picks for _ in range(group)],
                sampler,
                trainer,
                try_seed,
                [groups[k][0].kind for k in silent for _ in range(group)],
            )
            for n, k in enumerate(silent):
                groups[k] = fresh[n * group : (n + 1) * group]
                with_signal += has_signal([r.success for r in groups[k]])
            replaced += len(silent)
            drawn += len(silent)
        return [r for g in groups for r in g], replaced, drawn, with_signal

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
        step = int(getattr(getattr(trainer, "state", None), "global_step", 0))
        accumulation = int(getattr(args, "gradient_accumulation_steps", 1) or 1)
        per_generation = int(getattr(args, "steps_per_generation", None) or accumulation)
        shape = (
            -(-accumulation // per_generation),
            int(getattr(accelerator, "num_processes", 1)),
            self.dynamic_sampling_rounds,
            groups,
        )
        call = self._calls[1] - 1 if self._calls[0] == step else 0
        slots = [
            replacement_slot(
                step, call, int(getattr(accelerator, "process_index", 0)), attempt_number, k, shape
            )
            for k in silent
        ]
        if max(slots) >= len(pool):
            raise R3Error(
                f"replacements unseen: the pool of {len(pool)} prompts is used up at step {step}; "
                "mine more queries, or train fewer steps"
            )
        return [pool[len(pool) - 1 - slot] for slot in slots]

    # ------------------------------------------------------------------------------- the call

    def __call__(self, prompts: list[str], trainer: Any) -> dict[str, Any]:
        step = int(getattr(getattr(trainer, "state", None), "global_step", 0))
        self._calls = (step, self._calls[1] + 1 if self._calls[0] == step else 1)
        seed = self._seed(trainer)
        sampler = EngineSampler(self._engine(trainer), trainer)
        group = int(getattr(getattr(trainer, "args", None), "num_generations", 0) or 0)
        rows = self._rows(list(prompts), sampler, trainer, seed, self._kinds(trainer, len(prompts), group))
        replaced, drawn, with_signal = 0, 0, 0
        if group > 1 and len(rows) % group == 0:  # whole groups: count their signal, replace if asked
            rows, replaced, drawn, with_signal = self._replace_silent_groups(
                rows, group, seed, sampler, trainer
            )
        group_seeds = [derive_seed(seed, "group", i // group if group > 0 else i) for i in range(len(rows))]
        return self._output(rows, group_seeds, replaced, drawn, with_signal)

    def _kinds(self, trainer: Any, n: int, group: int) -> list[str]:
        """The turn each of `n` rows trains: the mode's own, or in combined mode each group's
        `group_kind` for this call (the global step over the steps per generation: TRL calls the
        rollout once per generation batch)."""
        if self.mode != "combined":
            return [MODE_KIND[self.mode]] * n
        args = getattr(trainer, "args", None)
        step = int(getattr(getattr(trainer, "state", None), "global_step", 0))
        call = step // max(1, int(getattr(args, "steps_per_generation", 1) or 1))
        return [group_kind(call, i // max(1, group)) for i in range(n)]

    def _output(
        self, rows: list[Row], group_seeds: list[int], replaced: int, drawn: int, with_signal: int
    ) -> dict[str, Any]:
        """TRL's dict (`prompt_ids`, `completion_ids`, `logprobs`, extra fields), and `self.last`."""
        logprobs = (
            [r.logprobs or [None] for r in rows]
            if rows and any(r.logprobs is not None for r in rows)
            else None
        )
        if self.mode == "combined":
            extra: dict[str, list[Any]] = {
                "turn_success": [r.success for r in rows],
                "turn_kind": [r.kind for r in rows],
                "completion_length": [len(r.completion_ids) for r in rows],
                "retry_completion": [r.retry for r in rows],
                "retry_length": [r.retry_length for r in rows],
                "retry_clipped": [r.retry_clipped for r in rows],
                "first_attempt_text": [r.first_attempt for r in rows],
                "first_attempt_solved": [r.first_attempt_solved for r in rows],
            }
        elif self.mode == "grpo":
            extra = {
                "attempt_success": [r.success for r in rows],
                "attempt_completion": [r.completion for r in rows],
                "attempt_length": [len(r.completion_ids) for r in rows],
            }
        else:
            extra = {
                "retry_success": [r.success for r in rows],
                "retry_completion": [r.retry for r in rows],
                "retry_length": [r.retry_length for r in rows],
                "retry_clipped": [r.retry_clipped for r in rows],
                "reflection_length": [len(r.completion_ids) for r in rows],
                "first_attempt_text": [r.first_attempt for r in rows],
                "first_attempt_solved": [r.first_attempt_solved for r in rows],
            }
        extra["group_seed"] = group_seeds
        # Per-call counts for the metrics (the same value on every row; rewards.py logs them once).
        extra["groups_drawn"] = [drawn] * len(rows)
        extra["groups_drawn_with_signal"] = [with_signal] * len(rows)
        extra["groups_resampled"] = [replaced] * len(rows)
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

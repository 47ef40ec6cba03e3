"""Primed warm-start rows: a whole episode (failed attempt, diagnosis, corrected answer) as one row.

A warm-start on answers alone teaches a small model to answer, and to answer again when asked to
reflect: its reflections become answer lines and its retries copy them, so R3 has nothing to shape
(docs/method.md). A primed row shows the episode R3 trains instead: the task prompt, a failed attempt,
the reflection instruction, a reflection written from the verifier's diagnosis of that attempt
(`Task.diagnose`: what is wrong, never the answer), the retry instruction, then the reference answer.

The row is the token sequence inference sees. The chat is built with the task's own prompt builders
(`Task.retry_prompt`, the chat evaluation's retry is sampled in) and rendered by `render_prompt`; the
loss covers the reflection and the corrected answer, each with the end-of-turn token the model must
emit to stop (EOS, as first-attempt rows end with it). Everything else (the prompt, the instructions,
the failed attempt) is masked. At inference the reflection is sampled after the rendered reflection
chat and the retry after the rendered retry chat; the row is kept only when the two agree token for
token (the retry chat's tokens start with the reflection chat's, then the reflection's own and EOS),
so that one row is exactly both steps. A chat template that does not end an assistant turn with EOS,
or that rewrites earlier turns, leaves the example a first-attempt row.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from r3.episode import safe_verify
from r3.generation.base import derive_seed
from r3.generation.chat import render_prompt
from r3.tasks.base import Example, Task

#: A tokenized row: the token ids and the loss mask (1 where the model is trained).
Row = tuple[list[int], list[int]]


@dataclass(frozen=True)
class Priming:
    """Which examples of a warm-start become whole episodes, and where their failed attempts come from.

    `fraction` of the examples (chosen by `seed`) are primed. `failed_attempts`, one list per example
    (the model's own, mined by `r3 mine`), or None to make one with `Task.perturb`, seeded by `seed`
    and the example's index."""

    fraction: float = 0.0
    seed: int = 0
    failed_attempts: Sequence[Sequence[str]] | None = None


def primed_indices(count: int, fraction: float, seed: int) -> set[int]:
    """The `round(fraction * count)` indices to prime, fixed by `seed`: those whose hash
    `derive_seed(seed, "sft-primed", index)` is smallest, so that an example's turn depends on its
    index and the seed, not on a shuffle of the whole list."""
    chosen = round(fraction * count)
    order = sorted(range(count), key=lambda index: derive_seed(seed, "sft-primed", index))
    return set(order[:chosen])


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of `text` as the generation backends encode prompts (no special tokens added)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def failed_attempt(task: Task, example: Example, index: int, priming: Priming) -> tuple[str, str] | None:
    """A failed attempt at `example` and its diagnosis, or None when there is none to show.

    Mined attempts are tried in an order seeded by the index, a perturbed one is made with a generator
    seeded by it; an attempt the verifier accepts, or one the task cannot diagnose, is passed over."""
    rng = random.Random(derive_seed(priming.seed, "sft-attempt", index))
    if priming.failed_attempts is None:
        candidates = [_safely(task.perturb, example, rng)]
    else:
        candidates = list(priming.failed_attempts[index])
        rng.shuffle(candidates)
    for attempt in candidates:
        if not isinstance(attempt, str) or not attempt or safe_verify(task, example, attempt).ok:
            continue
        reflection = _safely(task.diagnose, example, attempt)
        if isinstance(reflection, str) and reflection.strip():
            return attempt, reflection
    return None


def _safely(hook: Any, example: Example, argument: Any) -> Any:
    """An optional hook's result, None if it raises: a task's bug costs the example its priming only."""
    try:
        return hook(example, argument)
    except Exception:  # noqa: BLE001 - any error means the hook has nothing to offer
        return None


def episode_row(
    task: Task, tokenizer: Any, example: Example, attempt: str, reflection: str, answer: str
) -> Row | None:
    """The whole episode as one row, the reflection and the answer (each with EOS) in the loss; None
    when the rendered reflection chat and retry chat do not agree token for token (see the module
    docstring)."""
    eos = tokenizer.eos_token_id
    head = encode(tokenizer, render_prompt(tokenizer, task.reflection_prompt(example, attempt)))
    retry = encode(tokenizer, render_prompt(tokenizer, task.retry_prompt(example, attempt, reflection)))
    said = [*encode(tokenizer, reflection), eos]
    if retry[: len(head)] != head or retry[len(head) : len(head) + len(said)] != said:
        return None
    corrected = [*encode(tokenizer, answer), eos]
    between = len(retry) - len(head) - len(said)
    mask = [0] * len(head) + [1] * len(said) + [0] * between + [1] * len(corrected)
    return retry + corrected, mask


def primed_row(
    task: Task,
    tokenizer: Any,
    example: Example,
    index: int,
    answer: str,
    priming: Priming,
    max_length: int | None = None,
) -> Row | None:
    """The example's episode row, or None when it cannot be primed: the reference answer fails
    `verify` (a corrected answer must be correct), no failed attempt with a diagnosis, the chat
    template disagrees with itself, or the row is longer than `max_length` (a cut row would teach
    stopping mid-answer)."""
    if not safe_verify(task, example, answer).ok:
        return None
    found = failed_attempt(task, example, index, priming)
    if found is None:
        return None
    row = episode_row(task, tokenizer, example, found[0], found[1], answer)
    if row is None or (max_length is not None and len(row[0]) > max_length):
        return None
    return row

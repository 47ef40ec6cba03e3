"""Failure records -> the prompts GRPO trains on: stored first attempts, one reflection chat per failed
attempt and round (`episode.reflection_turns`), rendered as eval and mine render it; online, one task
prompt per query. TRL hands `rollout_func` only prompt strings, so `PromptIndex` maps each text back to
what it came from (examples rendering alike share the first one's entry: `PromptIndex.collisions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from r3.episode import reflection_turns
from r3.errors import R3Error
from r3.generation.chat import render_prompt
from r3.mining.records import FailureRecord
from r3.tasks.base import Example, Prompt, Task


@dataclass(frozen=True)
class PromptItem:
    """What a training prompt stands for: the example and, in stored mode, the failed attempt and the
    reflection chat the prompt was rendered from, with its round number."""

    example: Example
    attempt: str | None
    round: int = 1
    chat: Prompt | None = None


class PromptIndex:
    """Prompt text -> `PromptItem`."""

    def __init__(self) -> None:
        self._items: dict[str, PromptItem] = {}
        self.collisions = 0

    def add(self, text: str, item: PromptItem) -> None:
        old = self._items.get(text)
        if old is None:
            self._items[text] = item
        elif old.example != item.example:
            self.collisions += 1

    def __getitem__(self, text: str) -> PromptItem:
        try:
            return self._items[text]
        except KeyError:
            raise R3Error(
                "rollout received a prompt that is not in the training set (was the dataset changed after "
                f"the trainer was built?): {text[:80]!r}..."
            ) from None

    def prompts(self) -> list[str]:
        """Every distinct training prompt, in dataset order: the pool dynamic sampling draws from."""
        return list(self._items)


def build_prompts(
    records: Sequence[FailureRecord],
    task: Task,
    tokenizer: Any,
    first_attempt: str = "stored",
    max_attempts_per_query: int | None = None,
) -> tuple[list[dict[str, Any]], PromptIndex]:
    """The dataset rows (`prompt`, `query_index`, `attempt_index`) and the index to resolve them."""
    rows: list[dict[str, Any]] = []
    index = PromptIndex()
    for record in records:
        if first_attempt == "online":
            text = render_prompt(tokenizer, task.prompt(record.example))
            index.add(text, PromptItem(record.example, None))
            rows.append({"prompt": text, "query_index": record.query_index, "attempt_index": -1, "round": 1})
            continue
        for number, failed in enumerate(record.failed_attempts[:max_attempts_per_query]):
            for turn in reflection_turns(task, failed.episode):
                chat = turn.reflection_prompt
                text = render_prompt(tokenizer, chat)
                attempt = failed.episode.attempt.text
                index.add(text, PromptItem(record.example, attempt, turn.number, chat))
                rows.append(
                    {
                        "prompt": text,
                        "query_index": record.query_index,
                        "attempt_index": number,
                        "round": turn.number,
                    }
                )
    if not rows:
        raise R3Error("the failures file produced no training prompts")
    return rows, index


def build_dataset(
    records: Sequence[FailureRecord],
    task: Task,
    tokenizer: Any,
    first_attempt: str = "stored",
    max_attempts_per_query: int | None = None,
) -> tuple[Any, PromptIndex]:
    """`build_prompts` as a Hugging Face `Dataset` (standard, not conversational: prompts are rendered)."""
    from datasets import Dataset

    rows, index = build_prompts(records, task, tokenizer, first_attempt, max_attempts_per_query)
    return Dataset.from_list(rows), index

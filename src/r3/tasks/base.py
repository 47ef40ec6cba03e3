"""The Task contract: load examples, render prompts, verify completions.

Every step (eval, mine, train) talks to tasks only through `Task`, so a new task is one subclass. A
verifier never executes model output: it parses it and answers with a `Verdict` quickly, whatever the input.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from r3.errors import DataError

Message = dict[str, str]
Example = dict[str, Any]

# The paper's wording (see docs/method.md). Tasks pick the one that fits.
MATH_REFLECTION = (
    "You tried solving the problem and got the wrong answer. Reflect on what went wrong and write a "
    "short explanation that will help you do better next time."
)
TOOL_REFLECTION = (
    "You tried performing the task, but failed in generating the correct tool call. Reflect on what "
    "went wrong and write a short explanation that will help you do better next time."
)
DEFAULT_RETRY = "Now try again. Use your reflection and give a new answer in the required format."


@dataclass(frozen=True)
class Verdict:
    """A verifier's answer: success or failure, and a short reason when it failed."""

    ok: bool
    reason: str = ""

    @classmethod
    def success(cls) -> Verdict:
        return cls(True, "")

    @classmethod
    def failure(cls, reason: str) -> Verdict:
        return cls(False, reason)


@dataclass(frozen=True)
class Prompt:
    """A chat to continue: the messages, plus tool schemas for templates that take `tools=`."""

    messages: list[Message]
    tools: list[dict[str, Any]] | None = None

    def extend(self, *messages: Message) -> Prompt:
        """The same chat with more turns appended (tools carried over)."""
        return Prompt([*self.messages, *messages], self.tools)


class Task(ABC):
    """A verifiable task. Subclasses set `name` and implement the abstract methods."""

    name: str = "task"
    #: Generation stops after any of these strings (kept in the completion).
    stop: tuple[str, ...] = ()
    #: The instruction that asks for a self-reflection after a failed attempt.
    reflection_instruction: str = MATH_REFLECTION
    #: The instruction that asks for the second attempt, after the reflection.
    retry_instruction: str = DEFAULT_RETRY
    #: Fields a row must have (checked before any generation starts).
    required_fields: tuple[str, ...] = ()

    @abstractmethod
    def load(self, data: str | None, limit: int | None = None, seed: int = 0) -> list[Example]:
        """Return validated examples from `data` (a file or hub id), or the task's default set."""

    @abstractmethod
    def prompt(self, example: Example) -> Prompt:
        """The first-attempt chat for one example."""

    @abstractmethod
    def verify(self, example: Example, completion: str) -> Verdict:
        """Check a completion. Must not raise and must not execute the completion."""

    def reference_answer(self, example: Example) -> str | None:
        """A correct completion for `example` that passes `verify` (`r3 sft` trains on it), or None."""
        return None

    def answer_text(self, completion: str) -> str | None:
        """The part of `completion` that is its answer (the same text for the same answer), for reports;
        None when it gives none."""
        return None

    def validate(self, row: Any, index: int, source: str) -> Example:
        """Check one raw row and return it normalised; raise `DataError` naming row and field."""
        if not isinstance(row, dict):
            raise DataError(source, index, None, f"expected an object, got {type(row).__name__}")
        for field in self.required_fields:
            if field not in row:
                raise DataError(source, index, field, "missing")
        return dict(row)

    def to_record(self, example: Example) -> Example:
        """The example as stored in output files (JSONL for `datasets`): the inverse of `validate`."""
        return dict(example)

    def reflection_prompt(self, example: Example, attempt: str) -> Prompt:
        """The chat asking for a reflection on a failed first `attempt`."""
        return self.reflection_prompt_after(example, self.prompt(example), attempt)

    def retry_prompt(self, example: Example, attempt: str, reflection: str) -> Prompt:
        """The chat asking for the second attempt (`retry_prompt_after` on round 1's reflection chat)."""
        return self.retry_prompt_after(example, self.reflection_prompt(example, attempt), reflection)

    def reflection_prompt_after(self, example: Example, history: Prompt, failed: str) -> Prompt:
        """`history` (the task prompt, or the previous retry chat) with its `failed` answer and the
        `reflection_instruction` appended; every round is built through here."""
        return history.extend(
            {"role": "assistant", "content": failed},
            {"role": "user", "content": self.reflection_instruction},
        )

    def retry_prompt_after(self, example: Example, reflection_chat: Prompt, reflection: str) -> Prompt:
        """`reflection_chat` with its `reflection` and the `retry_instruction` appended."""
        return reflection_chat.extend(
            {"role": "assistant", "content": reflection},
            {"role": "user", "content": self.retry_instruction},
        )


def load_rows(task: Task, data: str, limit: int | None = None) -> list[Example]:
    """Read `data` and validate every row (not only the first `limit`: a bad row fails before the run
    starts); no rows is an error too."""
    from r3.tasks.files import read_rows

    rows, source = read_rows(data)
    examples = [task.validate(row, number, source) for number, row in rows]
    if not examples:
        raise DataError(source, None, None, "contains no rows")
    return examples[:limit] if limit is not None else examples

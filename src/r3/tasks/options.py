"""The task group every command's options start from (which task, its options, how many examples), so
that `task_args` is written the same ways in `r3 eval`, `r3 mine`, `r3 sft` and `r3 train`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from r3.errors import check_numbers
from r3.tasks.registry import parse_task_args


@dataclass
class TaskFields:
    """Which task, its options, and how many of its examples."""

    #: The smallest `limit`: 0 for eval and mine (nothing to do), 1 for training commands.
    min_limit: ClassVar[int] = 0

    task: str = field(
        default="countdown",
        metadata={"help": "countdown, function_calling, custom, or a dotted path pkg.module:TaskClass"},
    )
    verifier: str | None = field(
        default=None, metadata={"help": "custom task: the verifier as pkg.module:function"}
    )
    # A mapping once parsed; before, KEY=VALUE flags or a mapping string (TRL's parser keeps the `str`).
    task_args: dict[str, Any] | str | list[str] | None = field(
        default=None,
        metadata={
            "aliases": ["--task-arg"],
            "metavar": "KEY=VALUE",
            "nargs": "+",
            "help": "an option of the task's constructor, repeatable (e.g. min_nums=4); VALUE read as YAML",
        },
    )
    limit: int | None = field(
        default=None,
        metadata={"help": "use only the first N examples (r3 train: the failures file's first N queries)"},
    )

    def check_task_fields(self) -> None:
        """`task_args` as a mapping (None when empty), and `limit` checked: each command's `__post_init__`."""
        check_numbers(self, {"limit": self.min_limit})
        self.task_args = parse_task_args(self.task_args) or None

    def task_options(self) -> dict[str, Any]:
        """Keyword arguments for `get_task`: `task_args`, and `verifier` for the custom task."""
        options = parse_task_args(self.task_args)
        if self.verifier:
            options["verifier"] = self.verifier
        return options

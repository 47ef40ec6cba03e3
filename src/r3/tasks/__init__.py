"""Tasks: what the model must solve and how a program checks it (docs/python_api.md shows their use).

A new task: subclass `Task` (see `base.py`), then either add it to `BUILTIN_TASKS` in `registry.py`
or pass its dotted path (`my_pkg.tasks:MyTask`) wherever a task name is accepted.
"""

from r3.tasks.base import Example, Message, Prompt, Task, Verdict
from r3.tasks.registry import available_tasks, get_task, import_object

__all__ = ["Example", "Message", "Prompt", "Task", "Verdict", "available_tasks", "get_task", "import_object"]

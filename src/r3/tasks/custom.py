"""The `custom` task: your rows plus your verifier function, with no Task subclass to write.

A row holds `prompt` (the user turn) or `messages` (a chat ending with a user turn), and optionally
`system`, `tools`, `reflection_instruction` and `reference` (a correct completion, for `r3 sft`); other
fields reach the verifier untouched (docs/custom_tasks.md). The verifier,
`verify(example, completion) -> bool | Verdict`, runs in a worker process under a time limit
(`r3.workers`), so one that raises, hangs or crashes costs one failed attempt, not the run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from r3.errors import DataError, R3Error
from r3.tasks.base import Example, Prompt, Task, Verdict, load_rows
from r3.tasks.registry import import_object
from r3.workers import Guarded, Portable, pickled

#: The paper's reflection request, with the task-specific words made generic.
GENERIC_REFLECTION = (
    "You tried performing the task and your answer was wrong. Reflect on what went wrong and write a "
    "short explanation that will help you do better next time."
)

VerifierFn = Callable[[Example, str], Any]

_ROLES = ("system", "user", "assistant")


def load_verifier(spec: str | VerifierFn | None) -> VerifierFn:
    """Resolve `spec` (a callable, `package.module:function` or `path/to/file.py:function`) to a callable.
    A module not on `sys.path` is retried from the current directory, which the `r3` script omits."""
    if callable(spec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise R3Error(
            "the custom task needs a verifier: pass --verifier package.module:function, a function "
            "(example, completion) -> bool or Verdict (see docs/custom_tasks.md)"
        )
    spec = spec.strip()
    if (file_spec := _file_spec(spec)) is not None:
        obj = _load_from_file(*file_spec, spec)
    else:
        try:
            obj = import_object(spec, "verifier")
        except R3Error as exc:
            cwd = os.getcwd()
            if not isinstance(exc.__cause__, ModuleNotFoundError) or cwd in sys.path:
                raise
            sys.path.append(cwd)
            importlib.invalidate_caches()
            obj = import_object(spec, "verifier")
    if not callable(obj):
        raise R3Error(f"verifier '{spec}' is not callable (it is a {type(obj).__name__})")
    return obj


def _file_spec(spec: str) -> tuple[str, str] | None:
    """`(file, function)` when `spec` names a file (`path/to/file.py:function`), else None."""
    module_part, sep, attr = spec.rpartition(":")
    if sep and (module_part.endswith(".py") or "/" in module_part or os.sep in module_part):
        return module_part, attr
    return None


def _portable(source: str | VerifierFn, fn: VerifierFn) -> Portable | None:
    """How a worker process finds the function loaded from `source`: `load_verifier` on the spec (a
    file's path made absolute), else the pickled callable (None when it cannot be pickled)."""
    if not isinstance(source, str):
        return pickled(fn)
    spec = source.strip()
    if (file_spec := _file_spec(spec)) is not None:
        spec = f"{Path(file_spec[0]).expanduser().resolve()}:{file_spec[1]}"
    return Portable(load_verifier, spec)


def _load_from_file(file: str, attr: str, spec: str) -> Any:
    path = Path(file).expanduser()
    if not path.is_file():
        raise R3Error(f"cannot import verifier '{spec}': no such file '{file}'")
    module_name = f"_r3_custom_verifier_{abs(hash(str(path.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise R3Error(f"cannot import verifier '{spec}': not a Python file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise R3Error(f"cannot import verifier '{spec}': {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, attr):
        raise R3Error(f"cannot import verifier '{spec}': '{file}' has no '{attr}'")
    return getattr(module, attr)


def to_verdict(result: Any) -> Verdict:
    """A verifier's return value as a Verdict; anything but a bool or a Verdict is a failure."""
    if isinstance(result, Verdict):
        if result.ok:
            return Verdict.success()
        return Verdict.failure(result.reason or "verifier returned a failure")
    if isinstance(result, bool):
        return Verdict.success() if result else Verdict.failure("verifier returned False")
    return Verdict.failure(f"verifier returned {type(result).__name__}, expected bool or Verdict")


class CustomTask(Task):
    """A task made of a user's rows and a user's verifier function (see the module docstring)."""

    name = "custom"

    def __init__(
        self,
        verifier: str | VerifierFn | None = None,
        *,
        timeout_s: float | None = 10.0,
        stop: Sequence[str] | str | None = None,
        reflection_instruction: str | None = None,
        retry_instruction: str | None = None,
    ) -> None:
        """`verifier`: a callable or `pkg.module:function`; `timeout_s`: seconds per verifier call in a
        worker process (None or 0: inline with no limit, fastest, but a hang or a crash takes the run);
        `stop`: strings that end generation; the two instructions replace the defaults."""
        if timeout_s is not None and (not isinstance(timeout_s, (int, float)) or timeout_s < 0):
            raise R3Error(f"the custom task's timeout_s must be a number of seconds >= 0, got {timeout_s!r}")
        self.verifier: VerifierFn = load_verifier(verifier)
        self.timeout_s: float | None = float(timeout_s) if timeout_s else None
        self.stop = (stop,) if isinstance(stop, str) else tuple(stop or ())
        self.reflection_instruction = reflection_instruction or GENERIC_REFLECTION
        if retry_instruction:
            self.retry_instruction = retry_instruction
        where = _portable(verifier, self.verifier) if self.timeout_s is not None else None
        self._verify = Guarded(self.verifier, where, self.timeout_s, "verifier")

    def load(self, data: str | None, limit: int | None = None, seed: int = 0) -> list[Example]:
        """The validated rows of `data`, in file order (`seed` is unused). There is no default set."""
        if data is None:
            raise R3Error(
                "the custom task needs --data: a .jsonl, .json or .parquet file of rows "
                "(see docs/custom_tasks.md)"
            )
        return load_rows(self, data, limit)

    def validate(self, row: Any, index: int, source: str) -> Example:
        """Check `prompt` or `messages`, `system`, `tools` and `reference`; keep every other field."""
        example = super().validate(row, index, source)
        has_prompt, has_messages = "prompt" in example, "messages" in example
        if has_prompt == has_messages:
            both = "give either 'prompt' or 'messages', not both"
            problem = both if has_prompt else "missing (or give 'messages')"
            raise DataError(source, index, "prompt", problem)
        if has_prompt and not isinstance(example["prompt"], str):
            kind = type(example["prompt"]).__name__
            raise DataError(source, index, "prompt", f"expected a string, got {kind}")
        if has_messages:
            _check_messages(example["messages"], index, source)
        for field in ("system", "reflection_instruction", "reference"):
            value = example.get(field)
            if value is not None and not isinstance(value, str):
                raise DataError(source, index, field, f"expected a string, got {type(value).__name__}")
        if example.get("system") is not None and has_messages and example["messages"][0]["role"] == "system":
            raise DataError(source, index, "system", "'messages' already starts with a system turn")
        tools = example.get("tools")
        if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
            raise DataError(source, index, "tools", "expected a list of objects")
        return example

    def reference_answer(self, example: Example) -> str | None:
        """The row's `reference` completion, or None when it has none (missing, null or empty)."""
        reference = example.get("reference")
        return reference if isinstance(reference, str) and reference else None

    def prompt(self, example: Example) -> Prompt:
        """`system` (if any) then `prompt` as the user turn, or the row's `messages` as given."""
        if "messages" in example:
            messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in example["messages"]]
        else:
            messages = [{"role": "user", "content": str(example["prompt"])}]
        if example.get("system"):
            messages.insert(0, {"role": "system", "content": str(example["system"])})
        return Prompt(messages, tools=example.get("tools") or None)

    def reflection_prompt_after(self, example: Example, history: Prompt, failed: str) -> Prompt:
        """As in `Task`, but a row's own `reflection_instruction` wins over the task's, in every round."""
        instruction = example.get("reflection_instruction") or self.reflection_instruction
        return history.extend(
            {"role": "assistant", "content": failed},
            {"role": "user", "content": str(instruction)},
        )

    def verify(self, example: Example, completion: str) -> Verdict:
        """Call the user's verifier under the time limit; exceptions, hangs, crashes and odd returns fail."""
        outcome = self._verify(example, completion)
        if outcome.failure is not None:
            return Verdict.failure(outcome.failure)
        return to_verdict(outcome.value)


def _check_messages(messages: Any, index: int, source: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise DataError(source, index, "messages", "expected a non-empty list of {role, content}")
    for number, message in enumerate(messages, start=1):
        if (
            not isinstance(message, dict)
            or message.get("role") not in _ROLES
            or not isinstance(message.get("content"), str)
        ):
            shape = '{"role": "system"|"user"|"assistant", "content": str}'
            raise DataError(source, index, "messages", f"message {number} is not {shape}")
    if messages[-1]["role"] != "user":
        raise DataError(source, index, "messages", "the last message must be a user turn")

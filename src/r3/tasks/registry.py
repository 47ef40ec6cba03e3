"""Find a task by name: built-ins by short name (imported lazily, so `r3 --help` stays fast), a user's
task by dotted path `pkg.module:Attr`.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import yaml

from r3.errors import R3Error
from r3.tasks.base import Task

BUILTIN_TASKS: dict[str, str] = {
    "countdown": "r3.tasks.countdown:CountdownTask",
    "function_calling": "r3.tasks.function_calling:FunctionCallingTask",
    "custom": "r3.tasks.custom:CustomTask",
}


def available_tasks() -> list[str]:
    """Names accepted by `get_task` besides dotted paths."""
    return sorted(BUILTIN_TASKS)


def import_object(path: str, what: str = "object") -> Any:
    """Import `package.module:attr` (or `package.module.attr`), with one-line errors that name the form
    when a path without a colon fails (a module named without its function is the usual slip)."""
    colon = ":" in path
    module_name, _, attr = path.partition(":") if colon else path.rpartition(".")
    noun = "TaskClass" if what == "task" else "function"
    form = "" if colon else f" (the form is package.module:{noun}, with a colon)"
    if not module_name or not attr:
        raise R3Error(f"cannot import {what} '{path}': the form is package.module:{noun}, with a colon")
    if not colon and _is_module(path):
        raise R3Error(f"{what} '{path}' is a module: name the {noun} in it after a colon, '{path}:NAME'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise R3Error(f"cannot import {what} '{path}': {exc}{form}") from exc
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise R3Error(
                f"cannot import {what} '{path}': module '{module_name}' has no '{attr}'{form}"
            ) from exc
    return obj


def _is_module(path: str) -> bool:
    """Whether `path` imports as a module."""
    try:
        importlib.import_module(path)
    except Exception:  # noqa: BLE001 - any failure means it is not a module to name
        return False
    return True


def get_task(name: str, **options: Any) -> Task:
    """Return a task instance. `options` go to the task's constructor (e.g. `verifier=` for custom)."""
    if name in BUILTIN_TASKS:
        target = import_object(BUILTIN_TASKS[name], "task")
    elif ":" in name or "." in name:
        target = import_object(name, "task")
    else:
        close = difflib.get_close_matches(name, available_tasks(), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise R3Error(
            f"unknown task '{name}'.{hint} Known tasks: {', '.join(available_tasks())}, "
            "or a dotted path 'package.module:TaskClass'."
        )
    if isinstance(target, Task):
        if options:
            raise R3Error(f"task '{name}' is an instance and takes no options")
        return target
    if isinstance(target, type) and issubclass(target, Task):
        try:
            return target(**options)
        except TypeError as exc:
            raise R3Error(f"task '{name}': {exc}") from exc
    raise R3Error(f"'{name}' is not a Task subclass or instance")


def parse_task_args(raw: list[str] | dict[str, Any] | str | None) -> dict[str, Any]:
    """Task options (the keyword arguments of `get_task`), as every command reads them."""
    return parse_key_values(raw, name="task_args", flag="--task-arg")


def parse_key_values(raw: list[str] | dict[str, Any] | str | None, *, name: str, flag: str) -> dict[str, Any]:
    """Keyword arguments from repeatable `KEY=VALUE` flags (VALUE read as YAML), a mapping, or a mapping
    string; `name` and `flag` name it in errors."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return {str(k): v for k, v in raw.items()}
    if isinstance(raw, list | tuple) and len(raw) == 1 and str(raw[0]).lstrip().startswith(("{", "[")):
        raw = str(raw[0])  # a mapping string after a flag that takes several values (`--task_args '{...}'`)
    if isinstance(raw, str):
        if raw.lstrip().startswith(("{", "[")):
            try:
                loaded = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise R3Error(f"{name}: not a YAML mapping ({str(exc).splitlines()[0]})") from None
            if not isinstance(loaded, dict):
                raise R3Error(f"{name} must be a mapping, got {type(loaded).__name__}: {raw.strip()}")
            return {str(k): v for k, v in loaded.items()}
        raw = [raw]
    if not isinstance(raw, list | tuple):
        raise R3Error(f"{name} must be a mapping, got {type(raw).__name__}")
    options: dict[str, Any] = {}
    for item in raw:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise R3Error(f"{flag} expects KEY=VALUE, got '{item}'")
        try:
            options[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            options[key.strip()] = value
    return options

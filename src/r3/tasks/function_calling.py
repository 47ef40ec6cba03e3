"""Function calling in the APIGen / xLAM format (the paper's first task).

A row is `{"query": str, "tools": [...], "answers": [...]}` (the hub's `Salesforce/xlam-function-calling-60k`
stores `tools` and `answers` as JSON strings; `validate` parses them). `answers` are the reference calls;
the model answers with a JSON list of calls, which `r3.tasks.tool_calls` finds and compares exactly.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from r3.errors import DataError, R3Error
from r3.tasks.base import TOOL_REFLECTION, Example, Prompt, Task, Verdict, load_rows
from r3.tasks.tool_calls import call_problem, canonical, extract_calls, schema_defaults, verify_calls

SAMPLE_FILE = "function_calling_sample.jsonl"

SYSTEM_PROMPT = (
    "You are an assistant that answers requests by calling tools. Use only the tools you are given, "
    "with their exact names and parameter names. Reply with only a JSON list of the calls needed, "
    'in this form: [{"name": "tool_name", "arguments": {"parameter": value}}]. Include one entry per '
    "call (several when the request asks for several things), give each value its proper JSON type, "
    "and optionally wrap the list in a ```json code block. Write nothing else."
)


def sample_path() -> str:
    """The path of the small built-in sample (package data), used when no `data` is given."""
    return str(resources.files("r3.tasks").joinpath("data", SAMPLE_FILE))


def _list_field(row: dict[str, Any], field: str, index: int, source: str, items: str) -> list[Any]:
    """The row's `field`, a list of `items` (parsed when it is a JSON string); DataError otherwise."""
    value = row[field]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
            raise DataError(source, index, field, f"not valid JSON ({detail})") from None
    if not isinstance(value, list):
        raise DataError(source, index, field, f"expected a list of {items}, got {type(value).__name__}")
    return value


def parse_tools(row: dict[str, Any], index: int, source: str) -> list[dict[str, Any]]:
    """The row's tools as a list of objects with a `name`; DataError otherwise."""
    tools = _list_field(row, "tools", index, source, "tools")
    for number, tool in enumerate(tools, start=1):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            raise DataError(source, index, "tools", f"tool {number} is not an object with a 'name'")
    return tools


def parse_answers(row: dict[str, Any], index: int, source: str) -> list[dict[str, Any]]:
    """The row's reference calls as a list of `{name, arguments}`; DataError otherwise."""
    answers = _list_field(row, "answers", index, source, "calls")
    for number, call in enumerate(answers, start=1):
        if problem := call_problem(call, number):
            raise DataError(source, index, "answers", problem)
        try:
            canonical(call["arguments"])
        except (ValueError, RecursionError):
            problem = f"call {number} has arguments that are not JSON values"
            raise DataError(source, index, "answers", problem) from None
    return answers


class FunctionCallingTask(Task):
    """Call the right tools with exactly the right arguments (APIGen / xLAM rows). `defaults_as_omitted`
    (default False, the paper's strict rule): an argument equal to its schema `default` counts as omitted."""

    name = "function_calling"
    reflection_instruction = TOOL_REFLECTION
    required_fields = ("query", "tools", "answers")

    def __init__(self, defaults_as_omitted: bool = False) -> None:
        if not isinstance(defaults_as_omitted, bool):
            raise R3Error(
                f"function_calling: defaults_as_omitted must be true or false, got {defaults_as_omitted!r}"
            )
        self.defaults_as_omitted = defaults_as_omitted

    def load(self, data: str | None, limit: int | None = None, seed: int = 0) -> list[Example]:
        """Rows of `data` (file or hub id), or the built-in sample; in file order (`seed` is unused)."""
        return load_rows(self, data if data is not None else sample_path(), limit)

    def validate(self, row: Any, index: int, source: str) -> Example:
        """Check the row and return it with `tools` and `answers` parsed into lists."""
        example = super().validate(row, index, source)
        if not isinstance(example["query"], str) or not example["query"].strip():
            raise DataError(source, index, "query", "expected a non-empty string")
        example["tools"] = parse_tools(example, index, source)
        example["answers"] = parse_answers(example, index, source)
        return example

    def to_record(self, example: Example) -> Example:
        """`tools` and `answers` as JSON strings again, as in xLAM: `datasets` would load them as one
        struct of every tool's parameters."""
        record = dict(example)
        for key in ("tools", "answers"):
            if not isinstance(record.get(key), str):
                record[key] = json.dumps(record[key], ensure_ascii=False)
        return record

    def prompt(self, example: Example) -> Prompt:
        """A system turn with the answer format, the query as the user turn, and the tools alongside."""
        tools = example.get("tools")
        if isinstance(tools, str):  # an unvalidated row straight from the hub
            tools = parse_tools(example, 0, "example")
        return Prompt(
            [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": str(example["query"])},
            ],
            tools=list(tools) if tools else None,
        )

    def reference_answer(self, example: Example) -> str | None:
        """The row's `answers` as the compact JSON list the system prompt asks for; None when the row has
        no usable `answers`."""
        try:
            answers = parse_answers(example, 0, "example")
        except Exception:  # DataError, or no "answers" key: no known answer
            return None
        calls = [{"name": call["name"], "arguments": call["arguments"]} for call in answers]
        text = json.dumps(calls, ensure_ascii=False)
        # Odd values (NaN, say) do not survive JSON both ways.
        return text if self.verify(example, text).ok else None

    def answer_text(self, completion: str) -> str | None:
        """The calls `completion` makes (one at least, an object with a `"name"`), as JSON with sorted
        keys: the same calls written with other spacing or key order read the same."""
        calls = extract_calls(completion).calls
        if not calls or not any(isinstance(call, dict) and "name" in call for call in calls):
            return None
        return json.dumps(calls, sort_keys=True, ensure_ascii=False)

    def verify(self, example: Example, completion: str) -> Verdict:
        """Exact, order-free match of the completion's calls against `example["answers"]`. Never raises."""
        what = "reference answers"
        try:
            reference = parse_answers(example, 0, "example")
            defaults = None
            if self.defaults_as_omitted:
                what = "tools"
                defaults = schema_defaults(parse_tools(example, 0, "example"))
        except DataError as exc:
            return Verdict.failure(f"bad {what}: {exc.problem}")
        except Exception as exc:  # e.g. a missing key: still answer, never raise
            return Verdict.failure(f"bad {what} ({type(exc).__name__})")
        return verify_calls(completion, reference, defaults)

"""The function-calling task: data validation, prompts, call extraction and strict comparison."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from r3.errors import DataError, R3Error
from r3.generation.chat import render_prompt
from r3.tasks import get_task
from r3.tasks.base import TOOL_REFLECTION, Prompt
from r3.tasks.function_calling import FunctionCallingTask, sample_path
from r3.tasks.registry import parse_task_args
from r3.tasks.tool_calls import (
    MAX_TEXT_CHARS,
    canonical,
    extract_calls,
    json_equal,
    schema_defaults,
    strip_think,
)

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "parameters": {"city": {"type": "str"}, "units": {"type": "str", "default": "metric"}},
}
TIME = {"name": "get_time", "description": "Local time.", "parameters": {"zone": {"type": "str"}}}


def row(answers: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A validated example with the given reference calls."""
    raw = {"query": "q", "tools": json.dumps(tools or [WEATHER, TIME]), "answers": json.dumps(answers)}
    return FunctionCallingTask().validate(raw, 1, "test")


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


@pytest.fixture(scope="module")
def task() -> FunctionCallingTask:
    return get_task("function_calling")  # type: ignore[return-value]


PARIS = row([call("get_weather", city="Paris")])
TWO = row([call("get_weather", city="Paris"), call("get_time", zone="Europe/Paris")])


# --- the public API and the sample -------------------------------------------------------------------


def test_get_task_returns_the_task(task: FunctionCallingTask) -> None:
    assert isinstance(task, FunctionCallingTask)
    assert task.name == "function_calling"
    assert task.reflection_instruction == TOOL_REFLECTION
    assert task.stop == ()


def test_sample_loads_and_every_reference_passes(task: FunctionCallingTask) -> None:
    examples = task.load(None)
    assert 30 <= len(examples) <= 60
    assert Path(sample_path()).is_file()
    multi = 0
    for example in examples:
        assert isinstance(example["tools"], list) and 1 <= len(example["tools"]) <= 4
        assert isinstance(example["answers"], list) and example["answers"]
        multi += len(example["answers"]) > 1
        verdict = task.verify(example, json.dumps(example["answers"]))
        assert verdict.ok, (example["query"], verdict.reason)
        assert verdict.reason == ""
        reversed_calls = "```json\n" + json.dumps(example["answers"][::-1], indent=2) + "\n```"
        assert task.verify(example, reversed_calls).ok
    assert multi >= 10


def test_sample_is_stored_as_json_strings() -> None:
    first = json.loads(Path(sample_path()).read_text().splitlines()[0])
    assert isinstance(first["tools"], str) and isinstance(first["answers"], str)


def test_limit(task: FunctionCallingTask) -> None:
    assert len(task.load(None, limit=3)) == 3


def test_verify_accepts_unvalidated_rows(task: FunctionCallingTask) -> None:
    raw = {
        "query": "q",
        "tools": json.dumps([WEATHER]),
        "answers": json.dumps([call("get_weather", city="Oslo")]),
    }
    assert task.verify(raw, '[{"name": "get_weather", "arguments": {"city": "Oslo"}}]').ok
    assert not task.verify({"query": "q"}, "[]").ok  # no reference: a failure, not an exception


# --- validation ------------------------------------------------------------------------------------


def write_rows(tmp_path: Path, rows: list[Any]) -> str:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


GOOD = {
    "query": "weather in Rome",
    "tools": json.dumps([WEATHER]),
    "answers": json.dumps([call("get_weather", city="Rome")]),
}


def test_tools_not_json_names_file_row_and_field(task: FunctionCallingTask, tmp_path: Path) -> None:
    path = write_rows(tmp_path, [GOOD, {**GOOD, "tools": "[{'name': 'get_weather'}]"}])
    with pytest.raises(DataError) as info:
        task.load(path)
    message = str(info.value)
    assert path in message and "row 2" in message and "'tools'" in message and "not valid JSON" in message
    assert info.value.row == 2 and info.value.field == "tools"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tools": json.dumps({"name": "x"})}, "tools"),
        ({"tools": json.dumps([{"description": "no name"}])}, "tools"),
        ({"tools": json.dumps(["get_weather"])}, "tools"),
        ({"answers": "not json"}, "answers"),
        ({"answers": json.dumps({"name": "get_weather", "arguments": {}})}, "answers"),
        ({"answers": json.dumps([{"name": "get_weather"}])}, "answers"),
        ({"answers": json.dumps([{"name": "get_weather", "arguments": '{"city": "Rome"}'}])}, "answers"),
        ({"answers": json.dumps([{"arguments": {}}])}, "answers"),
        ({"query": 3}, "query"),
    ],
)
def test_malformed_rows(task: FunctionCallingTask, change: dict[str, Any], field: str) -> None:
    with pytest.raises(DataError) as info:
        task.validate({**GOOD, **change}, 7, "f.jsonl")
    assert info.value.row == 7 and info.value.field == field


def test_missing_field(task: FunctionCallingTask) -> None:
    with pytest.raises(DataError, match="'answers'"):
        task.validate({"query": "q", "tools": "[]"}, 1, "f")


def test_validate_accepts_parsed_lists(task: FunctionCallingTask) -> None:
    parsed = {"query": "q", "tools": [WEATHER], "answers": [call("get_weather", city="Rome")], "id": 9}
    example = task.validate(parsed, 1, "f")
    assert example["tools"] == [WEATHER] and example["answers"] == [call("get_weather", city="Rome")]
    assert example["id"] == 9
    from_strings = task.validate(GOOD, 1, "f")
    assert from_strings["tools"] == [WEATHER]


# --- prompts ---------------------------------------------------------------------------------------


def test_prompt_has_format_query_and_tools(task: FunctionCallingTask) -> None:
    prompt = task.prompt(PARIS)
    assert [m["role"] for m in prompt.messages] == ["system", "user"]
    assert '"arguments"' in prompt.messages[0]["content"] and "JSON" in prompt.messages[0]["content"]
    assert prompt.messages[1]["content"] == "q"
    assert prompt.tools == [WEATHER, TIME]
    reflection = task.reflection_prompt(PARIS, "[]")
    assert reflection.messages[-1] == {"role": "user", "content": TOOL_REFLECTION}
    assert reflection.tools == [WEATHER, TIME]


class FakeTokenizer:
    """Just enough of a tokenizer for `render_prompt`: records what the template was given."""

    def __init__(self, chat_template: str) -> None:
        self.chat_template = chat_template
        self.calls: list[dict[str, Any]] = []

    def apply_chat_template(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        self.calls.append({"messages": messages, **kwargs})
        tools = kwargs.get("tools")
        text = "".join(f"[{m['role']}]{m['content']}" for m in messages)
        return text + (f"[tools]{json.dumps(tools)}" if tools else "") + "[assistant]"


def test_render_with_a_template_that_takes_tools(task: FunctionCallingTask) -> None:
    tokenizer = FakeTokenizer("{% if tools %}{{ tools | tojson }}{% endif %}{{ messages }}")
    text = render_prompt(tokenizer, task.prompt(PARIS))
    (used,) = tokenizer.calls
    assert used["tools"] == [WEATHER, TIME]
    assert "You have access" not in used["messages"][0]["content"]
    assert "get_weather" in text


def test_render_with_a_template_without_tools(task: FunctionCallingTask) -> None:
    tokenizer = FakeTokenizer("{% for m in messages %}{{ m.content }}{% endfor %}")
    render_prompt(tokenizer, task.prompt(PARIS))
    (used,) = tokenizer.calls
    assert "tools" not in used
    system = used["messages"][0]
    assert (
        system["role"] == "system"
        and "get_weather" in system["content"]
        and '"arguments"' in system["content"]
    )


# --- extraction ------------------------------------------------------------------------------------

REF = [call("get_weather", city="Paris")]
REF_JSON = json.dumps(REF)


@pytest.mark.parametrize(
    "completion",
    [
        REF_JSON,
        json.dumps(REF[0]),  # a single object is one call
        "  \n" + REF_JSON + "\n",
        "```json\n" + REF_JSON + "\n```",
        "```\n" + REF_JSON + "\n```",
        "Here you go:\n```json\n" + json.dumps(REF, indent=2) + "\n```\nDone.",
        "The call is " + REF_JSON + " which answers the question.",
        "I will check the weather. " + json.dumps(REF[0]),
        "<tool_call>\n" + json.dumps(REF[0]) + "\n</tool_call>",
        "<tool_call>" + REF_JSON + "</tool_call>",
        "<tool_call>\n```json\n" + json.dumps(REF[0]) + "\n```\n</tool_call>",
        "<tool_call>\n" + json.dumps(REF[0]),  # an unclosed last tag runs to the end
        "My first answer ```json\n[]\n``` was wrong. Corrected:\n```json\n" + REF_JSON + "\n```",
        "Numbers 1, 2: " + REF_JSON,
    ],
)
def test_accepted_forms(completion: str) -> None:
    verdict = FunctionCallingTask().verify(PARIS, completion)
    assert verdict.ok, verdict.reason


def test_several_tool_call_tags() -> None:
    text = "".join(f"<tool_call>{json.dumps(c)}</tool_call>\n" for c in TWO["answers"])
    assert FunctionCallingTask().verify(TWO, text).ok
    first_as_list, second = json.dumps(TWO["answers"][:1]), json.dumps(TWO["answers"][1])
    mixed = f"<tool_call>{first_as_list}</tool_call><tool_call>{second}</tool_call>"
    assert FunctionCallingTask().verify(TWO, mixed).ok


@pytest.mark.parametrize(
    ("completion", "reason"),
    [
        ("", "no tool call found"),
        ("I cannot help with that.", "no tool call found"),
        ("get_weather(city='Paris')", "no tool call found"),
        ("```python\nget_weather(city='Paris')\n```", "no tool call found"),
        ("<tool_call>get_weather(city='Paris')</tool_call>", "invalid JSON in <tool_call> block 1"),
        (
            '```json\n[{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
            "invalid JSON in code block",
        ),
        ("[]", "0 calls, expected 1"),
        ("[1, 2]", "call 1 is a number"),  # the whole text is JSON: the model meant it as its answer
        ('["get_weather"]', "call 1 is a string"),
        ("I would use [1, 2] here.", "no tool call found"),  # JSON in prose must look like calls
        ('{"tool": "get_weather"}', "call 1 has no 'name' string"),
    ],
)
def test_failure_reasons_for_extraction(completion: str, reason: str) -> None:
    verdict = FunctionCallingTask().verify(PARIS, completion)
    assert not verdict.ok
    assert verdict.reason.startswith(reason), verdict.reason


def test_extract_calls_reports_source() -> None:
    assert extract_calls("<tool_call>{}</tool_call>").source == "tag"
    assert extract_calls("```json\n[]\n```").source == "fence"
    assert extract_calls("[]").source == "bare"
    assert extract_calls(None).calls is None  # type: ignore[arg-type]


# --- real outputs: retries and drafts in plain text -------------------------------------------------

WRONG_CALL = json.dumps(call("get_weather", city="paris"))
RIGHT_CALL = json.dumps(REF[0])


@pytest.mark.parametrize(
    "completion",
    [
        # a retry that quotes its failed call, then gives the corrected one
        f'My call {WRONG_CALL} failed with {{"error": "unknown city"}}. Retrying: {RIGHT_CALL}',
        f"Previous attempt:\n{WRONG_CALL}\nCorrected call:\n{RIGHT_CALL}",
        # a draft list, then a corrected list
        f"Draft: {json.dumps([call('get_weather', city='paris')])}\nCorrected list: {REF_JSON}",
        f"Draft: {json.dumps([call('get_time', zone='CET'), REF[0]])}\nFinal: {REF_JSON}",
        # a draft that is not even valid JSON, then the answer
        f'Draft: [{{"name": "get_weather", "arguments": {{"city": "Paris"}} (unfinished)\nFinal: {REF_JSON}',
        # JSON after the answer that does not look like calls does not replace it
        f'{REF_JSON}\nExpected result: {{"temperature": 21}} and [1, 2].',
    ],
)
def test_the_last_call_shaped_value_in_plain_text_counts(completion: str) -> None:
    found = extract_calls(completion)
    assert found.source == "bare" and found.calls == REF, found
    assert FunctionCallingTask().verify(PARIS, completion).ok


def test_a_correct_call_followed_by_a_wrong_one_fails() -> None:
    verdict = FunctionCallingTask().verify(PARIS, f"First: {RIGHT_CALL}\nOn second thought: {WRONG_CALL}")
    assert verdict.reason == "argument 'city' of 'get_weather': expected \"Paris\", got \"paris\""
    draft_then_empty = f"Draft: {REF_JSON}\nNo tool is needed after all: []"
    assert FunctionCallingTask().verify(PARIS, draft_then_empty).reason == "0 calls, expected 1"


def test_a_draft_list_then_a_corrected_list_with_several_calls() -> None:
    draft = json.dumps(TWO["answers"][:1])
    corrected = json.dumps(TWO["answers"][::-1], indent=2)
    assert FunctionCallingTask().verify(TWO, f"Draft:\n{draft}\nCorrected:\n{corrected}\nDone.").ok
    assert not FunctionCallingTask().verify(TWO, f"Draft:\n{corrected}\nCorrected:\n{draft}").ok


def test_calls_inside_a_list_are_not_candidates_of_their_own() -> None:
    found = extract_calls("Calling: " + json.dumps(TWO["answers"]) + " now.")
    assert found.calls == TWO["answers"]


# --- reasoning models: <think> blocks --------------------------------------------------------------

LONDON = json.dumps([call("get_weather", city="London")])


@pytest.mark.parametrize(
    "completion",
    [
        f"<think>\nThe user wants Paris. A draft: {LONDON}. No, Paris.\n</think>\n\n{REF_JSON}",
        f"<think>I should answer with <tool_call> tags, maybe {LONDON}?</think>\n{REF_JSON}",
        f"<think>\n<tool_call>{json.dumps(call('get_weather', city='London'))}</tool_call>\n</think>\n"
        f"<tool_call>\n{RIGHT_CALL}\n</tool_call>",
        f"<think>Draft:\n```json\n{LONDON}\n```\n</think>\n```json\n{REF_JSON}\n```",
        f"<think>\nfirst thought {LONDON}\n</think>\n<think>second thought <tool_call></think>\n{REF_JSON}",
        f"  <think>unclosed <think> inside {LONDON}</think>{REF_JSON}",
        # the chat template opened the block (Qwen3-Thinking, DeepSeek-R1): only </think> is generated
        f"The user wants Paris. Draft: {LONDON}, or <tool_call>?\n</think>\n\n{REF_JSON}",
    ],
)
def test_closed_think_blocks_are_ignored(completion: str) -> None:
    verdict = FunctionCallingTask().verify(PARIS, completion)
    assert verdict.ok, verdict.reason


def test_calls_only_inside_a_think_block_do_not_count() -> None:
    verdict = FunctionCallingTask().verify(PARIS, f"<think>\n<tool_call>{RIGHT_CALL}</tool_call>\n</think>\n")
    assert verdict.reason == "no tool call found"
    assert FunctionCallingTask().verify(PARIS, f"<think>{REF_JSON}</think>\nI cannot help.").reason == (
        "no tool call found"
    )


def test_an_unclosed_think_block_is_left_as_it_is() -> None:
    for text in (f"<think>\nI will call {REF_JSON}", "<think>" * 3, f"<think>{REF_JSON}<think>"):
        assert strip_think(text) == text
    assert FunctionCallingTask().verify(PARIS, f"<think>\nI will call {REF_JSON}").ok  # read as plain text
    verdict = FunctionCallingTask().verify(PARIS, "<think>\nmaybe <tool_call> then " + REF_JSON)
    assert verdict.reason.startswith("invalid JSON in <tool_call> block 1")


def test_think_tags_inside_json_strings_are_not_tags() -> None:
    """A <think> opens a block only at the start of a line, a lone </think> closes one only at the end
    of a line: JSON strings cannot hold a line break, so argument values are never cut into."""
    values = [
        {"city": "<think>", "units": "</think>"},
        {"city": "a </think>", "units": "<think> b"},
        {"city": "<think>x</think>", "units": "</think>"},
    ]
    for arguments in values:
        example = row([call("get_weather", **arguments)])
        calls = json.dumps(example["answers"])
        for text in (
            calls,
            "Calling:\n" + calls,
            "```json\n" + json.dumps(example["answers"], indent=2) + "\n```",
        ):
            assert strip_think(text) == text
            assert FunctionCallingTask().verify(example, text).ok
        thought = f"<think>\nLet me call {calls}\n</think>\n{calls}"
        assert FunctionCallingTask().verify(example, thought).ok
    assert strip_think("x</think>y <think>z</think>") == "x</think>y <think>z</think>"


def test_strip_think_rules() -> None:
    assert strip_think("<think>a</think>b") == "b"
    assert strip_think("<think>a</think><think>b</think>c") == "c"  # right after a cut counts as a line start
    assert strip_think("q\n  <think>x</think> y") == "q\n   y"
    assert strip_think("x <think>a</think>b") == "x <think>a</think>b"  # mid-line: text
    assert strip_think("reasoning\n</think>  \n[1]") == "  \n[1]"  # opened by the prompt
    assert strip_think("<think>a</think>b</think>\nc") == "b</think>\nc"  # a leftover </think> is text
    assert strip_think("<think>a <think> b</think>c</think>") == "c</think>"  # blocks do not nest


@pytest.mark.parametrize(
    "text",
    [
        "<think>" * 50_000,
        "\n<think>" * 50_000,
        "<think></think>" * 50_000,
        "\n<think>" * 50_000 + "</think>",
        "x<think>" * 50_000 + "</think>",
        " <think>" * 50_000 + "</think>" * 50_000,
        "</think>\n" * 50_000,
        "</think>" * 50_000,
        "<think>" + " " * 200_000 + "</think>",
        " " * 200_000 + "<think>" * 20_000,
    ],
)
def test_strip_think_is_linear(text: str) -> None:
    start = time.perf_counter()
    strip_think(text)
    assert time.perf_counter() - start < 0.5


# --- option defaults_as_omitted: a schema default counts as omitted ---------------------------------

LENIENT = FunctionCallingTask(defaults_as_omitted=True)
STRICT = FunctionCallingTask()
PARIS_METRIC = row([call("get_weather", city="Paris", units="metric")])


def test_strict_by_default_a_default_argument_is_still_an_argument() -> None:
    assert STRICT.defaults_as_omitted is False
    passed = json.dumps([call("get_weather", city="Paris", units="metric")])
    assert STRICT.verify(PARIS, passed).reason == "unexpected argument 'units' of 'get_weather'"
    omitted = json.dumps([call("get_weather", city="Paris")])
    assert STRICT.verify(PARIS_METRIC, omitted).reason == "missing argument 'units' of 'get_weather'"


def test_option_accepts_passing_or_omitting_the_default_on_either_side() -> None:
    passed = json.dumps([call("get_weather", city="Paris", units="metric")])
    omitted = json.dumps([call("get_weather", city="Paris")])
    assert LENIENT.verify(PARIS, passed).ok  # the reference omits it, the model passes the default
    assert LENIENT.verify(PARIS_METRIC, omitted).ok  # the reference passes it, the model omits it
    assert LENIENT.verify(PARIS, omitted).ok and LENIENT.verify(PARIS_METRIC, passed).ok


def test_option_still_rejects_a_value_other_than_the_default() -> None:
    imperial = json.dumps([call("get_weather", city="Paris", units="imperial")])
    assert LENIENT.verify(PARIS, imperial).reason == (
        "unexpected argument 'units' of 'get_weather' (expected its default, got \"imperial\")"
    )
    ref = row([call("get_weather", city="Paris", units="imperial")])
    omitted = json.dumps([call("get_weather", city="Paris")])
    assert LENIENT.verify(ref, omitted).reason == (
        "missing argument 'units' of 'get_weather' (expected \"imperial\", not its default)"
    )
    metric = json.dumps(
        [call("get_weather", city="Paris", units="metric")]
    )  # passing the default = omitting it
    assert LENIENT.verify(ref, metric).reason == LENIENT.verify(ref, omitted).reason
    celsius = json.dumps([call("get_weather", city="Paris", units="celsius")])
    assert LENIENT.verify(ref, celsius).reason == (
        "argument 'units' of 'get_weather': expected \"imperial\", got \"celsius\""
    )
    assert not LENIENT.verify(PARIS, json.dumps([call("get_weather", city="Lyon", units="metric")])).ok


def test_option_applies_only_to_the_tool_that_declares_the_default() -> None:
    ref = row([call("get_time", zone="CET")])
    verdict = LENIENT.verify(ref, json.dumps([call("get_time", zone="CET", units="metric")]))
    assert verdict.reason == "unexpected argument 'units' of 'get_time'"


def test_option_with_parallel_calls() -> None:
    ref = row([call("get_weather", city="Paris"), call("get_weather", city="Oslo", units="imperial")])
    calls = [
        call("get_weather", city="Oslo", units="imperial"),
        call("get_weather", city="Paris", units="metric"),
    ]
    assert LENIENT.verify(ref, json.dumps(calls)).ok
    assert not STRICT.verify(ref, json.dumps(calls)).ok


COUNT_TOOL = {
    "name": "search",
    "parameters": {
        "q": {"type": "str"},
        "limit": {"type": "int", "default": "10"},  # xLAM writes many defaults as strings
        "safe": {"type": "bool", "default": "true"},
        "page": {"type": "int", "default": 1},
        "lang": {"type": "str", "default": None},
    },
}


@pytest.mark.parametrize(
    ("arguments", "ok"),
    [
        ({"limit": 10}, True),  # the string default "10" spells the number 10
        ({"limit": "10"}, True),  # and is the string "10"
        ({"limit": 10.0}, True),
        ({"limit": 11}, False),
        ({"limit": " 10"}, False),  # only the default's own text, or the scalar it spells
        ({"safe": True}, True),
        ({"safe": "true"}, True),
        ({"safe": 1}, False),
        ({"page": 1}, True),
        ({"page": "1"}, False),  # a number default is not its string: only string defaults are read
        ({"lang": None}, True),  # a null default is a default
        ({"lang": "en"}, False),
    ],
)
def test_option_default_equality(arguments: dict[str, Any], ok: bool) -> None:
    ref = row([call("search", q="cats")], tools=[COUNT_TOOL])
    verdict = LENIENT.verify(ref, json.dumps([call("search", q="cats", **arguments)]))
    assert verdict.ok is ok, verdict.reason
    assert not STRICT.verify(ref, json.dumps([call("search", q="cats", **arguments)])).ok


def test_option_with_json_schema_parameters() -> None:
    tool = {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "units": {"type": "string", "default": "metric"}},
            "required": ["city"],
        },
    }
    ref = row([call("get_weather", city="Paris")], tools=[tool])
    assert LENIENT.verify(ref, json.dumps([call("get_weather", city="Paris", units="metric")])).ok
    assert not LENIENT.verify(ref, json.dumps([call("get_weather", city="Paris", units="imperial")])).ok


def test_schema_defaults_shapes() -> None:
    xlam_with_awkward_names = {
        "name": "t",
        "parameters": {
            "type": {"type": "str", "default": "a"},
            "properties": {"type": "str", "default": "b"},
        },
    }
    found = schema_defaults([xlam_with_awkward_names])
    assert set(found["t"]) == {"type", "properties"}
    assert found["t"]["type"] == {canonical("a")}
    assert schema_defaults([COUNT_TOOL])["search"]["limit"] == {canonical("10"), canonical(10)}
    first_wins = schema_defaults(
        [WEATHER, {"name": "get_weather", "parameters": {"units": {"default": "x"}}}]
    )
    assert first_wins["get_weather"]["units"] == {canonical("metric")}
    odd = [
        "not a tool",
        {"name": "n", "parameters": {"a": {"default": float("nan")}, "b": "str", "c": {"default": [1]}}},
        {"name": "m", "parameters": [1, 2]},
        {"name": "k"},
    ]
    assert schema_defaults(odd) == {"n": {"c": frozenset({canonical([1])})}, "m": {}, "k": {}}
    assert schema_defaults(None) == {} and schema_defaults("tools") == {}


def test_option_reaches_the_constructor_from_the_cli_and_recipes() -> None:
    for options in (
        parse_task_args(["defaults_as_omitted=true"]),
        parse_task_args({"defaults_as_omitted": True}),
    ):
        task = get_task("function_calling", **options)
        assert isinstance(task, FunctionCallingTask) and task.defaults_as_omitted is True
    assert get_task("function_calling").defaults_as_omitted is False  # type: ignore[attr-defined]
    with pytest.raises(R3Error, match="defaults_as_omitted must be true or false"):
        get_task("function_calling", defaults_as_omitted="metric")
    with pytest.raises(R3Error, match="function_calling"):
        get_task("function_calling", default_as_omitted=True)


def test_option_needs_readable_tools() -> None:
    raw = {"query": "q", "answers": json.dumps(REF)}
    assert LENIENT.verify(raw, REF_JSON).reason == "bad tools (KeyError)"
    assert LENIENT.verify({**raw, "tools": "not json"}, REF_JSON).reason.startswith(
        "bad tools: not valid JSON"
    )
    assert STRICT.verify(raw, REF_JSON).ok  # strict matching does not read the tools


def test_option_sample_references_still_pass() -> None:
    for example in LENIENT.load(None):
        assert LENIENT.verify(example, json.dumps(example["answers"])).ok
        assert LENIENT.reference_answer(example) is not None


# --- strict comparison: one test per rule ----------------------------------------------------------


def verdict_for(reference: dict[str, Any], calls: Any) -> Any:
    return FunctionCallingTask().verify(reference, json.dumps(calls))


def test_call_order_is_ignored() -> None:
    assert verdict_for(TWO, TWO["answers"][::-1]).ok


def test_key_order_is_ignored() -> None:
    ref = row([call("get_weather", city="Paris", units="metric")])
    text = '[{"arguments": {"units": "metric", "city": "Paris"}, "name": "get_weather"}]'
    assert FunctionCallingTask().verify(ref, text).ok


def test_int_equals_float() -> None:
    ref = row([call("get_time", zone=1)])
    assert FunctionCallingTask().verify(ref, '[{"name": "get_time", "arguments": {"zone": 1.0}}]').ok
    ref_float = row([call("get_time", zone=2.5)])
    assert FunctionCallingTask().verify(ref_float, '[{"name": "get_time", "arguments": {"zone": 2.50}}]').ok
    assert (
        not FunctionCallingTask()
        .verify(ref_float, '[{"name": "get_time", "arguments": {"zone": 2.5001}}]')
        .ok
    )


def test_string_is_not_a_number() -> None:
    ref = row([call("get_time", zone=1)])
    verdict = verdict_for(ref, [call("get_time", zone="1")])
    assert verdict.reason == "argument 'zone' of 'get_time': expected 1, got \"1\""


def test_bool_is_not_a_number() -> None:
    ref = row([call("get_time", zone=True)])
    verdict = verdict_for(ref, [call("get_time", zone=1)])
    assert verdict.reason == "argument 'zone' of 'get_time': expected true, got 1"
    ref_zero = row([call("get_time", zone=0)])
    assert not verdict_for(ref_zero, [call("get_time", zone=False)]).ok
    assert not verdict_for(ref_zero, [call("get_time", zone=None)]).ok


def test_lists_keep_their_order() -> None:
    ref = row([call("get_time", zone=[1, 2, 3])])
    assert verdict_for(ref, [call("get_time", zone=[1.0, 2, 3])]).ok
    assert not verdict_for(ref, [call("get_time", zone=[3, 2, 1])]).ok


def test_nested_objects() -> None:
    ref = row([call("get_time", zone={"a": [1, {"b": True}], "c": None})])
    assert verdict_for(ref, [call("get_time", zone={"c": None, "a": [1.0, {"b": True}]})]).ok
    assert not verdict_for(ref, [call("get_time", zone={"c": None, "a": [1, {"b": 1}]})]).ok


def test_no_fuzzy_string_matching() -> None:
    verdict = verdict_for(PARIS, [call("get_weather", city="paris")])
    assert verdict.reason == "argument 'city' of 'get_weather': expected \"Paris\", got \"paris\""
    assert not verdict_for(PARIS, [call("get_weather", city="Paris ")]).ok


def test_names_must_match_exactly() -> None:
    assert (
        verdict_for(PARIS, [call("Get_Weather", city="Paris")]).reason
        == "call 'Get_Weather' not in the reference"
    )


def test_unexpected_argument() -> None:
    verdict = verdict_for(PARIS, [call("get_weather", city="Paris", units="metric")])
    assert verdict.reason == "unexpected argument 'units' of 'get_weather'"


def test_missing_argument() -> None:
    ref = row([call("get_weather", city="Paris", units="metric")])
    assert (
        verdict_for(ref, [call("get_weather", city="Paris")]).reason
        == "missing argument 'units' of 'get_weather'"
    )


def test_missing_call() -> None:
    assert verdict_for(TWO, TWO["answers"][1:]).reason == "missing call 'get_weather'"


def test_extra_call_and_duplicates() -> None:
    assert verdict_for(PARIS, TWO["answers"]).reason == "call 'get_time' not in the reference"
    assert verdict_for(PARIS, REF * 2).reason == "2 calls, expected 1"
    assert not verdict_for(row(REF * 2), REF).ok


def test_parallel_calls_to_one_tool_pair_up() -> None:
    ref = row([call("get_weather", city="Paris"), call("get_weather", city="London")])
    assert verdict_for(ref, [call("get_weather", city="London"), call("get_weather", city="Paris")]).ok
    verdict = verdict_for(ref, [call("get_weather", city="Londn"), call("get_weather", city="Paris")])
    assert verdict.reason == "argument 'city' of 'get_weather': expected \"London\", got \"Londn\""


@pytest.mark.parametrize(
    ("calls", "reason"),
    [
        (
            [{"name": "get_weather", "parameters": {"city": "Paris"}}],
            "uses 'parameters'; expected 'arguments'",
        ),
        ([{"name": "get_weather", "arguments": '{"city": "Paris"}'}], "'arguments' is a string"),
        ([{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "c1"}], "unexpected key 'id'"),
        ([{"name": "get_weather"}], "has no 'arguments'"),
        ([{"type": "function", "function": {"name": "get_weather"}}], "has no 'name'"),
    ],
)
def test_calls_must_be_exactly_name_and_arguments(calls: list[Any], reason: str) -> None:
    verdict = verdict_for(PARIS, calls)
    assert not verdict.ok and reason in verdict.reason, verdict.reason


def test_nan_and_infinity_are_not_json() -> None:
    assert not FunctionCallingTask().verify(PARIS, '[{"name": "get_weather", "arguments": {"city": NaN}}]').ok


def test_canonical_rules() -> None:
    assert canonical(1) == canonical(1.0)
    assert canonical(True) != canonical(1)
    assert canonical(False) != canonical(0)
    assert canonical("1") != canonical(1)
    assert canonical(None) != canonical(0)
    assert canonical({"a": 1, "b": 2}) == canonical({"b": 2, "a": 1})
    assert canonical([1, 2]) != canonical([2, 1])
    assert canonical(10**20) == canonical(1e20)
    assert canonical(2**63 + 1) != canonical(float(2**63 + 1))
    assert json_equal([{"x": 1.0}], [{"x": 1}])
    assert not json_equal(object(), object())


# --- robustness ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion",
    [
        "[" * 100_000,
        "{" * 50_000,
        '{"a":' * 20_000,
        "[" * 500 + "]" * 500,
        '[{"name": "get_weather", "arguments": ' + "[" * 5000 + "]" * 5000 + "}]",
        "```" * 30_000,
        "<tool_call>" * 8_000,
        "<tool_call>[</tool_call>" * 4_000,
        "[1," * 33_000,
        '["' + "a" * 99_000,
        "{}" * 50_000,
        "[{" * 50_000,
        "x" * (MAX_TEXT_CHARS + 1),
        "\x00\ud800\uffff",
        '[{"name": "get_weather", "arguments": {"city": 1' + "0" * 5000 + "}}]",
        "<think>" * 28_000,
        "\n<think>" * 24_000 + "</think>",
        "<think></think>" * 13_000,
        "x<think>" * 24_000 + "</think>",
        "</think>\n" * 22_000,
        "<think>" + "[" * 100_000 + "</think>" + "[" * 90_000,
        ("<think>" + RIGHT_CALL + "</think>\n") * 3_000,
        (WRONG_CALL + " ") * 3_000,
        "[" + ",".join([RIGHT_CALL] * 1_000) + "] " + "{" * 100_000,
        "[" * 64 + '"a",' * 49_000,  # 64 starts each scan to the end: only the token budget keeps it fast
    ],
)
def test_hostile_inputs_are_fast_and_never_raise(completion: str) -> None:
    for task in (STRICT, LENIENT):
        start = time.perf_counter()
        verdict = task.verify(PARIS, completion)
        assert not verdict.ok and verdict.reason
        assert time.perf_counter() - start < 2.0


def test_non_string_completion() -> None:
    assert not FunctionCallingTask().verify(PARIS, None).ok  # type: ignore[arg-type]


def test_depth_is_checked_before_parsing_whatever_the_recursion_limit() -> None:
    """Python's json parser recurses once per level up to the interpreter's recursion limit; a program
    that raises the limit must not turn deep input into a slow rejection or a C stack overflow."""
    code = (
        "import sys; sys.setrecursionlimit(1_000_000)\n"
        "from r3.tasks.function_calling import FunctionCallingTask\n"
        "from test_function_calling import PARIS\n"
        "for text in ['[' * 150_000, '{\"a\":' * 30_000, '<tool_call>' + '[' * 150_000]:\n"
        "    print(FunctionCallingTask().verify(PARIS, text).reason)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    reasons = done.stdout.splitlines()
    assert len(reasons) == 3 and all("nested too deeply" in reason for reason in reasons), reasons


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = "[" * 300 + "]" * 5
    example = row([call("get_weather", city=text)])
    assert FunctionCallingTask().verify(example, json.dumps([call("get_weather", city=text)])).ok
    escaped = 'say \\"[[[' * 40  # escaped quotes keep the string open; its brackets stay text
    example = row([call("get_weather", city=escaped)])
    assert FunctionCallingTask().verify(example, json.dumps([call("get_weather", city=escaped)])).ok


def test_nesting_limit_and_token_budget() -> None:
    deep = {"x": 1}
    for _ in range(70):
        deep = {"x": deep}
    verdict = FunctionCallingTask().verify(PARIS, json.dumps([call("get_weather", city=deep)]))
    assert not verdict.ok and verdict.reason == "tool call JSON nested too deeply"
    shallow = {"x": 1}
    for _ in range(50):
        shallow = {"x": shallow}
    verdict = FunctionCallingTask().verify(PARIS, json.dumps([call("get_weather", city=shallow)]))
    assert not verdict.ok and "nested" not in verdict.reason  # parsed, then compared: wrong value
    unclosed = "[" + '"a",' * 40_000  # every start scans to the end: the per-completion budget stops it
    verdict = FunctionCallingTask().verify(PARIS, unclosed)
    assert not verdict.ok and verdict.reason.startswith("too much JSON to check")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_text_never_raises(text: str) -> None:
    verdict = FunctionCallingTask().verify(PARIS, text)
    assert isinstance(verdict.ok, bool) and (verdict.ok or verdict.reason)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_random_json_never_raises(value: Any) -> None:
    text = json.dumps(value)
    for completion in (text, f"<tool_call>{text}</tool_call>", f"```json\n{text}\n```", "ok " + text):
        verdict = FunctionCallingTask().verify(PARIS, completion)
        assert isinstance(verdict.ok, bool)


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in a random order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


calls_strategy = st.lists(
    st.builds(
        lambda name, arguments: {"name": name, "arguments": arguments},
        st.sampled_from(["a", "b", "get_weather", "search"]),
        st.dictionaries(st.text(min_size=1, max_size=6), json_values, max_size=4),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=100, deadline=None)
@given(calls_strategy, st.randoms(use_true_random=False), st.sampled_from(["bare", "fence", "tags", "prose"]))
def test_reference_in_any_order_with_shuffled_keys_passes(
    calls: list[Any], rng: random.Random, form: str
) -> None:
    reference = FunctionCallingTask().validate({"query": "q", "tools": [WEATHER], "answers": calls}, 1, "t")
    again = shuffled(calls, rng)
    rng.shuffle(again)
    if form == "bare":
        text = json.dumps(again)
    elif form == "fence":
        text = "```json\n" + json.dumps(again, indent=2) + "\n```"
    elif form == "tags":
        text = "\n".join(f"<tool_call>{json.dumps(c)}</tool_call>" for c in again)
    else:
        text = "Calling the tools now.\n" + json.dumps(again) + "\nThat is all."
    verdict = FunctionCallingTask().verify(reference, text)
    assert verdict.ok, verdict.reason


@settings(max_examples=50, deadline=None)
@given(calls_strategy, st.randoms(use_true_random=False))
def test_under_the_option_the_reference_still_passes(calls: list[Any], rng: random.Random) -> None:
    tools = [WEATHER, COUNT_TOOL]
    reference = LENIENT.validate({"query": "q", "tools": tools, "answers": calls}, 1, "t")
    again = shuffled(calls, rng)
    rng.shuffle(again)
    for text in (json.dumps(again), "<think>\nhm\n</think>\n" + json.dumps(again)):
        verdict = LENIENT.verify(reference, text)
        assert verdict.ok, verdict.reason


@settings(max_examples=100, deadline=None)
@given(calls_strategy, st.data())
def test_a_changed_argument_fails(calls: list[Any], data: st.DataObject) -> None:
    reference = FunctionCallingTask().validate({"query": "q", "tools": [WEATHER], "answers": calls}, 1, "t")
    changed = json.loads(json.dumps(calls))
    target = data.draw(st.sampled_from(changed))
    target["arguments"]["__extra__"] = data.draw(json_values)
    assert not FunctionCallingTask().verify(reference, json.dumps(changed)).ok


def test_prompt_type() -> None:
    assert isinstance(FunctionCallingTask().prompt(PARIS), Prompt)


def test_three_backticks_inside_an_argument_do_not_close_the_fence() -> None:
    """Found by the property test above: an argument named or valued ``` in a fenced block."""
    calls = [{"name": "a", "arguments": {"```": None, "b": "x```"}}]
    reference = FunctionCallingTask().validate({"query": "q", "tools": [WEATHER], "answers": calls}, 1, "t")
    text = "```json\n" + json.dumps(calls, indent=2) + "\n```"
    assert FunctionCallingTask().verify(reference, text).ok
    assert extract_calls('```json\n[{"name": "a", "arguments": {}}]```').calls == [
        {"name": "a", "arguments": {}}
    ]

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

from r3.errors import DataError
from r3.generation.chat import render_prompt
from r3.tasks import get_task
from r3.tasks.base import TOOL_REFLECTION, Prompt
from r3.tasks.function_calling import FunctionCallingTask, sample_path
from r3.tasks.tool_calls import MAX_TEXT_CHARS, canonical, extract_calls, json_equal

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
    ],
)
def test_hostile_inputs_are_fast_and_never_raise(completion: str) -> None:
    start = time.perf_counter()
    verdict = FunctionCallingTask().verify(PARIS, completion)
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

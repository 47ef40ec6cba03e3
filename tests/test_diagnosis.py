"""`Task.diagnose` and `Task.perturb`: the right diagnosis for hand-written failed attempts, never the
answer in it, never an exception; perturbed attempts that fail, deterministically."""

from __future__ import annotations

import json
import random
import re
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from r3.errors import R3Error
from r3.tasks import get_task
from r3.tasks.base import Example, Prompt, Task, Verdict
from r3.tasks.countdown import CountdownTask, check_equation, extract_answer, generate_countdown
from r3.tasks.countdown_diagnosis import FALLBACK
from r3.tasks.custom import CustomTask
from r3.tasks.function_calling import FunctionCallingTask

COUNTDOWN = CountdownTask()
CALLS = FunctionCallingTask()
EQUATION_CHARS = set("0123456789+-*/()= \t\r\n")


# --------------------------------------------------------------------------------------------------
# Leak checks, written here independently of the code under test


def verifying_stretches(nums: list[int], target: int, text: str) -> list[str]:
    """Every substring of `text` the verifier accepts as an answer. Any substring holding another
    character cannot tokenize, so extending one past such a character is pointless."""
    found = []
    for start in range(len(text)):
        for end in range(start + 1, len(text) + 1):
            if text[end - 1] not in EQUATION_CHARS:
                break
            if check_equation(nums, target, text[start:end]).ok:
                found.append(text[start:end])
    return found


def assert_countdown_safe(example: Example, diagnosis: str) -> None:
    """The diagnosis holds neither the reference equation nor any correct equation."""
    reference = COUNTDOWN.reference_answer(example)
    if reference is not None:
        equation = extract_answer(reference)
        assert equation is not None and equation.strip() not in diagnosis, diagnosis
    assert not verifying_stretches(example["nums"], example["target"], diagnosis), diagnosis


def scalar_values(value: Any) -> list[Any]:
    """The value and every value nested in it."""
    if isinstance(value, dict):
        return [value, *(v for item in value.values() for v in scalar_values(item))]
    if isinstance(value, list):
        return [value, *(v for item in value for v in scalar_values(item))]
    return [value]


def assert_calls_safe(example: Example, diagnosis: str) -> None:
    """No reference argument value appears in the diagnosis, serialized as JSON or (strings) bare.
    Small whole numbers are left out: a diagnosis counts calls ("needs 2 calls")."""
    answers = example["answers"] if isinstance(example["answers"], list) else json.loads(example["answers"])
    for call in answers:
        for value in scalar_values(call["arguments"]):
            if isinstance(value, bool) or value is None or isinstance(value, dict | list):
                assert json.dumps(value) not in diagnosis, (value, diagnosis)
            elif isinstance(value, str):
                assert json.dumps(value, ensure_ascii=False) not in diagnosis, (value, diagnosis)
                if len(value) >= 3:
                    assert value not in diagnosis, (value, diagnosis)
            elif not (isinstance(value, int) and abs(value) < 10):
                assert not re.search(rf"(?<![\d.]){re.escape(json.dumps(value))}(?![\d])", diagnosis), (
                    value,
                    diagnosis,
                )


# --------------------------------------------------------------------------------------------------
# Countdown


ROW = {"nums": [9, 4, 6], "target": 7}


@pytest.mark.parametrize(
    ("example", "completion", "expected"),
    [
        (
            ROW,
            "<answer> 9 + 4 * 6 </answer>",
            "My equation 9 + 4 * 6 evaluates to 33, not 7: 26 too high, so I need another way to combine "
            "the numbers.",
        ),
        (
            ROW,
            "<answer> 4 / 6 * 9 </answer>",
            "My equation 4 / 6 * 9 evaluates to 6, not 7: 1 too low, so I need another way to combine "
            "the numbers.",
        ),
        (
            ROW,
            "<answer> 9 + 9 - 6 </answer>",
            "My equation 9 + 9 - 6 uses 9 twice, but the list has it once. Each number must be used "
            "exactly as often as the list has it.",
        ),
        (
            ROW,
            "<answer> 9 + 5 - 6 </answer>",
            "My equation 9 + 5 - 6 uses 5, which is not in the list [9, 4, 6]. I may use only the given "
            "numbers.",
        ),
        (
            ROW,
            "<answer> 9 - 4 </answer>",
            "My equation 9 - 4 leaves out 6, but every number in the list must be used exactly once.",
        ),
        (
            {"nums": [4, 4, 9], "target": 9},
            "<answer> 9 / (4 - 4) </answer>",
            "My equation 9 / (4 - 4) divides by zero, which has no value. I need another way to combine "
            "the numbers.",
        ),
        (
            ROW,
            "I think it is 9 + 4 - 6.",
            "I did not put a final equation inside <answer> </answer> tags, so there was nothing to check. "
            "I must end with one equation in those tags.",
        ),
        (
            ROW,
            "<answer> 9 + 4",
            "I opened <answer> but never closed it with </answer>, so my equation could not be read. "
            "I must end with one equation inside <answer> </answer> tags.",
        ),
        (ROW, "<answer> </answer>", "My <answer> tags were empty. I must put one equation between them."),
        (
            ROW,
            "<answer> 9 x 4 - 6 </answer>",
            "My equation is not a valid equation (character 'x' is not allowed), so it could not be "
            "checked. I must write one equation using only the given numbers, + - * / and parentheses.",
        ),
        (ROW, "<answer> 9 + 4 - 6 = 8 </answer>", "I wrote = 8 at the end, but the target is 7."),
    ],
)
def test_countdown_diagnoses_each_kind_of_failure(example: Example, completion: str, expected: str) -> None:
    assert not COUNTDOWN.verify(example, completion).ok
    diagnosis = COUNTDOWN.diagnose(example, completion)
    assert diagnosis == expected
    assert_countdown_safe(example, diagnosis)


def test_countdown_quotes_no_equation_that_holds_a_solution() -> None:
    """`9 + 4 - 6 + 9` uses 9 twice, but its first part `9 + 4 - 6` is right: quoting it would give the
    answer away, so the diagnosis describes the mistake without the quote."""
    diagnosis = COUNTDOWN.diagnose(ROW, "<answer> 9 + 4 - 6 + 9 </answer>")
    assert diagnosis is not None and "uses 9 twice" in diagnosis and "9 + 4" not in diagnosis
    assert_countdown_safe(ROW, diagnosis)
    claimed = COUNTDOWN.diagnose(ROW, "<answer> 9 + 4 - 6 = 7 = 7 </answer>")  # unparsable, holds one
    assert claimed is not None and "not a valid equation" in claimed and "9 + 4" not in claimed


def test_countdown_falls_back_to_a_diagnosis_without_digits() -> None:
    """With one number equal to the target, that number alone is the answer: every wording that names
    it would leak, so the diagnosis names none."""
    example = {"nums": [7], "target": 7}
    assert COUNTDOWN.diagnose(example, "<answer> 7 + 7 </answer>") == FALLBACK
    assert not re.search(r"\d", FALLBACK)


def test_countdown_has_nothing_to_diagnose_in_a_correct_or_unusable_attempt() -> None:
    assert COUNTDOWN.diagnose(ROW, "<answer> 9 + 4 - 6 </answer>") is None
    assert COUNTDOWN.diagnose(ROW, "<answer> (9 - 6) + 4 = 7 </answer>") is None
    assert COUNTDOWN.diagnose({"nums": "no"}, "<answer> 1 </answer>") is None  # invalid row
    assert COUNTDOWN.diagnose(ROW, None) is None  # type: ignore[arg-type]
    assert COUNTDOWN.diagnose(None, "<answer> 1 </answer>") is None  # type: ignore[arg-type]


def test_countdown_diagnosis_is_fast_on_long_input() -> None:
    long_equation = "<answer> " + " + ".join(["9"] * 400) + " </answer>"
    junk = "<answer>" * 20_000 + "9 + 4"
    started = time.perf_counter()
    for completion in (long_equation, junk, "(" * 50_000, "1" * 100_000):
        assert isinstance(COUNTDOWN.diagnose(ROW, completion), str)
    assert time.perf_counter() - started < 5


def random_attempt(example: Example, rng: random.Random) -> str:
    """A failed-looking attempt: the reference equation edited at random (an operator, a number, a
    character dropped or added, parentheses, a claimed result, the tags), or a perturbed one."""
    reference = COUNTDOWN.reference_answer(example)
    assert reference is not None
    equation = extract_answer(reference).strip()  # type: ignore[union-attr]
    edit = rng.randrange(8)
    if edit == 0:
        return COUNTDOWN.perturb(example, rng) or reference
    if edit == 1 and len(equation) > 1:
        at = rng.randrange(len(equation))
        equation = equation[:at] + equation[at + 1 :]
    elif edit == 2:
        at = rng.randrange(len(equation) + 1)
        equation = equation[:at] + rng.choice("0123456789+-*/() x") + equation[at:]
    elif edit == 3:
        equation = f"{equation} {rng.choice('+-*/')} {rng.choice(example['nums'])}"
    elif edit == 4:
        equation = f"{equation} = {example['target'] + rng.choice((-3, -1, 0, 1, 5))}"
    elif edit == 5:
        return f"The answer is {equation}."
    elif edit == 6:
        equation = " ".join(reversed(equation.split()))
    else:
        equation = f"({equation}) * {rng.choice(example['nums'])} / {rng.choice(example['nums'])}"
    return f"<answer> {equation} </answer>"


def test_countdown_diagnoses_many_random_failures_without_the_answer() -> None:
    rows = generate_countdown(150, seed=11, min_nums=2, max_nums=4, max_number=30)
    rows += generate_countdown(50, seed=12, min_nums=1, max_nums=2, max_number=12, max_target=30)
    rng = random.Random(5)
    diagnosed = 0
    for example in rows:
        for _ in range(4):
            attempt = random_attempt(example, rng)
            diagnosis = COUNTDOWN.diagnose(example, attempt)
            if COUNTDOWN.verify(example, attempt).ok:
                assert diagnosis is None, (example, attempt)
                continue
            assert isinstance(diagnosis, str) and diagnosis, (example, attempt)
            assert_countdown_safe(example, diagnosis)
            diagnosed += 1
    assert diagnosed > 600


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nums=st.lists(st.integers(0, 30), min_size=1, max_size=4),
    target=st.integers(-5, 60),
    text=st.text(alphabet="0123456789+-*/() =<>answer/x\n", max_size=60),
)
def test_countdown_diagnose_never_raises_and_never_leaks(nums: list[int], target: int, text: str) -> None:
    example = {"nums": nums, "target": target}
    for completion in (text, f"<answer>{text}</answer>"):
        diagnosis = COUNTDOWN.diagnose(example, completion)
        if COUNTDOWN.verify(example, completion).ok:
            assert diagnosis is None
        else:
            assert isinstance(diagnosis, str)
            assert not verifying_stretches(nums, target, diagnosis), (example, completion, diagnosis)


def test_countdown_perturb_fails_verification_and_is_deterministic() -> None:
    rows = generate_countdown(200, seed=21)
    made = 0
    for index, example in enumerate(rows):
        attempt = COUNTDOWN.perturb(example, random.Random(index))
        assert attempt == COUNTDOWN.perturb(example, random.Random(index))
        if attempt is None:
            continue
        made += 1
        assert extract_answer(attempt) is not None and attempt.startswith("<answer> ")
        assert not COUNTDOWN.verify(example, attempt).ok
        diagnosis = COUNTDOWN.diagnose(example, attempt)
        assert diagnosis is not None
        assert_countdown_safe(example, diagnosis)
    assert made >= 195


def test_countdown_perturb_makes_every_kind_of_mistake() -> None:
    example = {"nums": [25, 3, 7, 100], "target": 50}
    kinds = set()
    for seed in range(60):
        diagnosis = COUNTDOWN.diagnose(example, COUNTDOWN.perturb(example, random.Random(seed)) or "")
        assert diagnosis is not None
        kinds.add(
            next(k for k in ("evaluates to", "not in the list", "twice", "divides by zero") if k in diagnosis)
        )
    assert {"evaluates to", "not in the list", "twice"} <= kinds


def test_countdown_perturb_without_a_reference_is_none() -> None:
    assert COUNTDOWN.perturb({"nums": [1, 1, 1], "target": 100}, random.Random(0)) is None
    assert COUNTDOWN.perturb({"target": 3}, random.Random(0)) is None


# --------------------------------------------------------------------------------------------------
# Function calling

TOOLS = [
    {
        "name": "get_weather",
        "parameters": {"city": {"type": "str"}, "units": {"type": "str", "default": "metric"}},
    },
    {"name": "get_forecast", "parameters": {"city": {"type": "str"}, "days": {"type": "int"}}},
    {"name": "get_time", "parameters": {"zone": {"type": "str"}}},
]
ONE = {
    "query": "Weather in Lisbon in Fahrenheit, and its forecast for 17 days?",
    "tools": TOOLS,
    "answers": [
        {"name": "get_weather", "arguments": {"city": "Lisbon", "units": "imperial"}},
        {"name": "get_forecast", "arguments": {"city": "Lisbon", "days": 17}},
    ],
}


def calls(*items: tuple[str, dict[str, Any]]) -> str:
    return json.dumps([{"name": name, "arguments": arguments} for name, arguments in items])


WEATHER = ("get_weather", {"city": "Lisbon", "units": "imperial"})
FORECAST = ("get_forecast", {"city": "Lisbon", "days": 17})


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (
            "I would call the weather tool.",
            "I did not write any tool call as JSON, so nothing could be checked. I must reply with only a "
            'JSON list of calls, each {"name": ..., "arguments": {...}}.',
        ),
        ("[]", "I made no tool call, but the request needs 2 calls."),
        (
            calls(WEATHER, ("get_time", {"zone": "Europe/Lisbon"})),
            "I called 'get_time', but that is not the tool this request needs: I should pick the tool whose "
            "description matches what is asked.",
        ),
        (
            calls(WEATHER, ("forecast_weather", {"city": "Lisbon"})),
            "I called 'forecast_weather', which is not one of the tools I was given: I must use only the "
            "listed tools, with their exact names.",
        ),
        (
            calls(WEATHER, ("get_forecast", {"city": "Lisbon"})),
            "My call to 'get_forecast' leaves out the argument 'days', which the request needs.",
        ),
        (
            calls(WEATHER, ("get_forecast", {"city": "Lisbon", "days": 17, "hourly": True})),
            "My call to 'get_forecast' passes the argument 'hourly', which this call should not have.",
        ),
        (
            calls(WEATHER, ("get_forecast", {"city": "Lisbon", "days": "17"})),
            "My call to 'get_forecast' gives 'days' as a string, but it must be a number.",
        ),
        (
            calls(WEATHER, ("get_forecast", {"city": "Lisboa", "days": 17})),
            "My call to 'get_forecast' has the wrong value for 'city': I should take it from the request "
            "exactly as asked.",
        ),
        (calls(WEATHER), "I made 1 call, but the request needs 2."),
        (calls(WEATHER, FORECAST, FORECAST), "I made 3 calls, but the request needs 2."),
        (
            calls(WEATHER, WEATHER),
            "I called 'get_weather' twice, but the request needs it once: another of my calls should use a "
            "different tool.",
        ),
        (
            json.dumps([{"name": "get_weather", "parameters": {"city": "Lisbon"}}]),
            "My call 1 is not in the right form (call 'get_weather' uses 'parameters'; expected "
            '\'arguments\'). Each call must be an object with exactly a "name" string and an "arguments" '
            "object.",
        ),
    ],
)
def test_function_calling_diagnoses_each_kind_of_failure(completion: str, expected: str) -> None:
    example = CALLS.validate(dict(ONE), 1, "test")
    assert not CALLS.verify(example, completion).ok
    diagnosis = CALLS.diagnose(example, completion)
    assert diagnosis == expected
    assert_calls_safe(example, diagnosis)


def test_function_calling_never_names_the_tool_that_should_have_been_called() -> None:
    example = CALLS.validate(
        {
            "query": "Time in Lisbon?",
            "tools": TOOLS,
            "answers": [{"name": "get_time", "arguments": {"zone": "WET"}}],
        },
        1,
        "test",
    )
    for wrong in ("get_weather", "get_forecast"):
        diagnosis = CALLS.diagnose(example, calls((wrong, {"city": "Lisbon"})))
        assert diagnosis is not None and "get_time" not in diagnosis and wrong in diagnosis


def test_function_calling_names_several_problems_of_one_call() -> None:
    example = CALLS.validate(
        {
            "query": "q",
            "tools": TOOLS,
            "answers": [{"name": "get_forecast", "arguments": {"city": "Porto", "days": 12}}],
        },
        1,
        "test",
    )
    diagnosis = CALLS.diagnose(example, calls(("get_forecast", {"town": "Porto", "days": 11})))
    assert diagnosis == (
        "My call to 'get_forecast' leaves out the argument 'city', which the request needs. "
        "My call to 'get_forecast' passes the argument 'town', which this call should not have. "
        "My call to 'get_forecast' has the wrong value for 'days': I should take it from the request "
        "exactly as asked."
    )
    assert_calls_safe(example, diagnosis)


def test_function_calling_does_not_give_away_a_null_by_its_type() -> None:
    example = CALLS.validate(
        {"query": "q", "tools": TOOLS, "answers": [{"name": "get_time", "arguments": {"zone": None}}]},
        1,
        "test",
    )
    diagnosis = CALLS.diagnose(example, calls(("get_time", {"zone": "UTC"})))
    assert diagnosis == "My call to 'get_time' gives 'zone' a value of the wrong type."


def test_function_calling_has_nothing_to_diagnose_in_a_correct_or_unusable_answer() -> None:
    example = CALLS.validate(dict(ONE), 1, "test")
    assert CALLS.diagnose(example, calls(FORECAST, WEATHER)) is None
    assert CALLS.diagnose(example, "```json\n" + calls(WEATHER, FORECAST) + "\n```") is None
    assert CALLS.diagnose({"query": "q"}, "[]") is None  # no answers
    assert CALLS.diagnose(example, None) is None  # type: ignore[arg-type]  # not text: nothing to say
    relaxed = FunctionCallingTask(defaults_as_omitted=True)
    at_default = calls(("get_weather", {"city": "Lisbon", "units": "metric"}))
    row = relaxed.validate(
        {"query": "q", "tools": TOOLS, "answers": [{"name": "get_weather", "arguments": {"city": "Lisbon"}}]},
        1,
        "t",
    )
    assert relaxed.diagnose(row, at_default) is None
    assert CALLS.diagnose(row, at_default) == (
        "My call to 'get_weather' passes the argument 'units', which this call should not have."
    )


def test_function_calling_diagnose_never_raises() -> None:
    example = CALLS.validate(dict(ONE), 1, "test")
    for completion in (
        None,
        5,
        "[" * 100_000,
        "{" * 10,
        '[{"name": 1}]',
        '[{"name": "a", "arguments": {"x": NaN}}]',
    ):
        result = CALLS.diagnose(example, completion)  # type: ignore[arg-type]
        assert result is None or isinstance(result, str)
    assert CALLS.diagnose({"answers": "not json", "tools": []}, "[]") is None


def test_function_calling_perturb_fails_and_never_leaks_on_the_sample() -> None:
    examples = CALLS.load(None)
    seen: set[str] = set()
    for index, example in enumerate(examples):
        for seed in range(6):
            attempt = CALLS.perturb(example, random.Random(seed * 1000 + index))
            assert attempt == CALLS.perturb(example, random.Random(seed * 1000 + index))
            assert attempt is not None, example
            assert isinstance(json.loads(attempt), list)
            assert not CALLS.verify(example, attempt).ok
            diagnosis = CALLS.diagnose(example, attempt)
            assert diagnosis is not None
            assert_calls_safe(example, diagnosis)
            seen.add(re.sub(r"'[^']*'", "'_'", diagnosis))
    assert {
        "My call to '_' leaves out the argument '_', which the request needs.",
        "My call to '_' has the wrong value for '_': I should take it from the request exactly as asked.",
    } <= seen
    assert any("but it must be" in s for s in seen)


def test_function_calling_perturb_respects_defaults_as_omitted() -> None:
    """Dropping an argument that sits at its default is no mistake under the option: perturb must
    find another."""
    relaxed = FunctionCallingTask(defaults_as_omitted=True)
    row = relaxed.validate(
        {
            "query": "q",
            "tools": TOOLS,
            "answers": [{"name": "get_weather", "arguments": {"units": "metric"}}],
        },
        1,
        "t",
    )
    for seed in range(20):
        attempt = relaxed.perturb(row, random.Random(seed))
        assert attempt is not None and not relaxed.verify(row, attempt).ok


def test_function_calling_perturb_repeats_a_call_without_arguments() -> None:
    row = CALLS.validate(
        {"query": "q", "tools": [{"name": "now"}], "answers": [{"name": "now", "arguments": {}}]}, 1, "t"
    )
    attempt = CALLS.perturb(row, random.Random(0))
    assert attempt is not None and len(json.loads(attempt)) == 2
    assert CALLS.diagnose(row, attempt) == "I made 2 calls, but the request needs 1."


# --------------------------------------------------------------------------------------------------
# Custom task and the default


def custom_verify(example: Example, completion: str) -> bool:
    return completion.strip() == str(example["answer"])


def custom_diagnose(example: Example, completion: str) -> str:
    return "My number was too high." if int(completion) > example["answer"] else "My number was too low."


def custom_perturb(example: Example, rng: random.Random) -> str:
    return str(example["answer"] + rng.choice((-2, -1, 1, 2)))


def test_custom_task_takes_diagnose_and_perturb_functions() -> None:
    task = get_task("custom", verifier=custom_verify, diagnose=custom_diagnose, perturb=custom_perturb)
    example = {"prompt": "2 + 2?", "answer": 4}
    assert task.diagnose(example, "9") == "My number was too high."
    attempt = task.perturb(example, random.Random(3))
    assert attempt == task.perturb(example, random.Random(3)) and attempt != "4"
    assert not task.verify(example, attempt).ok  # type: ignore[arg-type]


def test_custom_task_hooks_fail_quietly() -> None:
    def raises(example: Example, value: object) -> str:
        raise ValueError("boom")

    def hangs(example: Example, value: object) -> str:
        time.sleep(2)
        return "late"

    def passes(example: Example, rng: random.Random) -> str:
        return str(example["answer"])  # a correct "failed attempt" must be refused

    example = {"prompt": "2 + 2?", "answer": 4}
    assert CustomTask(custom_verify).diagnose(example, "5") is None  # no function given
    assert CustomTask(custom_verify).perturb(example, random.Random(0)) is None
    assert CustomTask(custom_verify, diagnose=raises, perturb=raises).diagnose(example, "5") is None
    assert CustomTask(custom_verify, diagnose=lambda e, c: 3).diagnose(example, "5") is None  # not text
    assert CustomTask(custom_verify, diagnose=lambda e, c: " ").diagnose(example, "5") is None
    assert CustomTask(custom_verify, timeout_s=0.2, diagnose=hangs).diagnose(example, "5") is None
    assert CustomTask(custom_verify, perturb=passes).perturb(example, random.Random(0)) is None
    assert (
        CustomTask(custom_verify, timeout_s=None, perturb=raises).perturb(example, random.Random(0)) is None
    )


def test_custom_task_hooks_load_from_a_file(tmp_path: Any) -> None:
    module = tmp_path / "hooks.py"
    module.write_text(
        "def diagnose(example, completion):\n    return 'I answered ' + str(len(completion)) + ' chars.'\n"
    )
    task = CustomTask(custom_verify, diagnose=f"{module}:diagnose")
    assert task.diagnose({"prompt": "p", "answer": 1}, "22") == "I answered 2 chars."
    with pytest.raises(R3Error, match="cannot import diagnose"):
        CustomTask(custom_verify, diagnose=f"{module}:nothing")
    with pytest.raises(R3Error, match="perturb"):
        CustomTask(custom_verify, perturb="")


class BareTask(Task):
    name = "bare"

    def load(self, data: str | None, limit: int | None = None, seed: int = 0) -> list[Example]:
        return [{"x": 1}]

    def prompt(self, example: Example) -> Prompt:
        return Prompt([{"role": "user", "content": "x"}])

    def verify(self, example: Example, completion: str) -> Verdict:
        return Verdict.failure("never")


def test_a_task_without_the_hooks_cannot_diagnose_or_perturb() -> None:
    task = BareTask()
    assert task.diagnose({"x": 1}, "y") is None
    assert task.perturb({"x": 1}, random.Random(0)) is None

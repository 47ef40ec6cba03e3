"""Hand-written cases for the Countdown task: every verifier rule, rows, generator, registry."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from r3.errors import DataError, R3Error
from r3.tasks import Prompt, Verdict, get_task
from r3.tasks.base import MATH_REFLECTION
from r3.tasks.countdown import (
    CountdownTask,
    GeneratorConfig,
    check_equation,
    extract_answer,
    generate_countdown,
    normalize_row,
)
from r3.tasks.countdown_expr import (
    MAX_DEPTH,
    MAX_EXPRESSION_CHARS,
    ExpressionError,
    evaluate,
    evaluate_program,
    parse_answer,
)

EX = {"nums": [1, 2, 3, 4], "target": 24}


@pytest.fixture(scope="module")
def task() -> CountdownTask:
    return CountdownTask()


def answer(text: str) -> str:
    return f"Let me think.\n<answer>{text}</answer>"


def check(task: CountdownTask, text: str, example: dict = EX) -> Verdict:
    return task.verify(example, answer(text))


# ---------------------------------------------------------------- correct answers


@pytest.mark.parametrize(
    "text",
    [
        "1 * 2 * 3 * 4",
        "4*3*2*1",
        " (1 + 2 + 3) * 4 ",
        "((1 + 2) + 3) * 4",
        "4 * (3 + 2 + 1)",
        "(1 + 3) * (2 + 4)",
        "4 / (1 / 2 / 3)",  # exact fractions on the way: 1/6 then 24
        "(1 + 2 + 3) * 4 = 24",
        "(1+2+3)*4=24",
        "(1 + 2 + 3) * 4 = +24",
        "\n(1 + 2 + 3)\t* 4\n",
        "-(-1 - 2 - 3) * 4",  # unary minus: "-1" uses the number 1
        "+1 * 2 * 3 * +4",
        "--4 * 3 * 2 * 1",
        "(((((1 * 2))))) * 3 * 4",
    ],
)
def test_correct_equations_pass(task: CountdownTask, text: str) -> None:
    assert check(task, text) == Verdict(True, "")


def test_repeated_numbers_in_list() -> None:
    assert check_equation([3, 3, 8, 8], 24, "8 / (3 - 8 / 3)").ok
    assert check_equation([3, 3, 8, 8], 24, "8 / (3 - 8 / 8)").reason == (
        "number 8 used 3 times, but the list has it twice"
    )
    assert check_equation([3, 3, 8, 8], 24, "8 * 3").reason == "number 3 used once, but the list has it twice"


def test_zero_in_list_and_divisions_exact() -> None:
    assert check_equation([0, 5, 5], 25, "5 * 5 + 0").ok
    assert check_equation([7, 2, 2], 7, "7 / 2 * 2").ok  # a float checker could say 7.000000001


# ---------------------------------------------------------------- answer tag


def test_last_answer_counts(task: CountdownTask) -> None:
    completion = "<answer> 1 + 2 + 3 + 4 </answer> oops, wrong. <answer> 1 * 2 * 3 * 4 </answer>"
    assert task.verify(EX, completion).ok
    swapped = "<answer> 1 * 2 * 3 * 4 </answer> hmm <answer> 1 + 2 + 3 + 4 </answer>"
    assert task.verify(EX, swapped) == Verdict(False, "evaluates to 10, not 24")


def test_unclosed_or_missing_tag(task: CountdownTask) -> None:
    assert task.verify(EX, "1 * 2 * 3 * 4") == Verdict(False, "no <answer> tag")
    assert task.verify(EX, "<answer> 1 * 2 * 3 * 4") == Verdict(False, "no <answer> tag")
    assert task.verify(EX, "1 * 2 * 3 * 4 </answer>") == Verdict(False, "no <answer> tag")
    assert task.verify(EX, "") == Verdict(False, "no <answer> tag")
    # a closed earlier answer still counts when a later one was left open
    assert task.verify(EX, "<answer>4*3*2*1</answer> <answer> 1 +").ok


def test_extract_answer() -> None:
    assert extract_answer("a <answer>x</answer> b <answer> y </answer>") == " y "
    assert extract_answer("<answer><answer>1</answer>") == "1"
    assert extract_answer("no tags") is None


def test_non_str_completion_fails(task: CountdownTask) -> None:
    for bad in (None, 42, b"<answer>1*2*3*4</answer>", ["<answer>1*2*3*4</answer>"]):
        verdict = task.verify(EX, bad)  # type: ignore[arg-type]
        assert not verdict.ok and "not text" in verdict.reason


def test_bad_example_fails_without_raising(task: CountdownTask) -> None:
    assert task.verify({"nums": "1,2", "target": 3}, answer("1+2")).reason.startswith("invalid example")
    assert not task.verify({}, answer("1+2")).ok
    assert not task.verify(None, answer("1+2")).ok  # type: ignore[arg-type]


# ---------------------------------------------------------------- wrong answers, with reasons


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1 + 2 + 3 + 4", "evaluates to 10, not 24"),
        ("(1 + 2) / 4 * 3", "evaluates to 9/4, not 24"),
        ("(1 + 2 + 3) * 4 = 25", "equation says = 25, but the target is 24"),
        ("(1 + 2 + 3) * 4 = 24 = 24", "more than one '='"),
        ("(1 + 2 + 3) * 4 = twenty-four", "after '=' only the target number may follow"),
        ("(1 + 2 + 3) * 4 =", "after '=' only the target number may follow"),
        ("1 * 2 * 3 * 4 * 4", "number 4 used twice"),
        ("1 * 2 * 3 * 3 * 3 * 4", "number 3 used 3 times"),
        ("2 * 12", "number 12 not in the list"),
        ("1 * 2 * 12", "number 12 not in the list"),
        ("2 * 3 * 4", "number 1 not used"),
        ("2 * 3 * 4 * 1.0", "decimal numbers are not allowed"),
        ("2 * 3 * 4 * .5", "decimal numbers are not allowed"),
        ("1 * 2 * 3 * 4,0", "decimal numbers are not allowed"),
        ("4 / (3 - 2 - 1)", "division by zero"),
        ("1 * 2 * 3 * x", "character 'x' is not allowed"),
        ("1 * 2 * 3 * 4_0", "character '_' is not allowed"),
        ("1 * 2 ** 3 * 4", "'**' is not allowed (only + - * /)"),
        ("(1 + 2) // 3 * 4", "'//' is not allowed (only + - * /)"),
        ("4 ^ 3 * 2 * 1", "character '^' is not allowed (powers are not allowed)"),
        ("4 × 3 × 2 × 1", "character '×' is not allowed (use * for multiplication)"),
        ("import os", "character 'i' is not allowed"),
        ("__import__('os').system('echo hi')", "character '_' is not allowed"),
        ("1 * 2 * 3 * 04", "number 04 has a leading zero"),
        ("1234567 * 2 * 3 * 4", "number 1234567 is too long (more than 6 digits)"),
        ("", "empty answer"),
        ("   ", "empty answer"),
        ("1 * 2 * 3 *", "expression ends with an operator"),
        ("* 1 * 2 * 3 * 4", "unexpected '*'"),
        ("1 * 2 3 * 4", "missing operator before 3"),
        ("4 (1 + 2 + 3)", "missing operator before '('"),
        ("(1 + 2 + 3 * 4", "missing ')'"),
        ("1 + 2) * 3 * 4", "unmatched ')'"),
        ("() + 1 * 2 * 3 * 4", "empty parentheses"),
    ],
)
def test_wrong_answers_have_reasons(task: CountdownTask, text: str, reason: str) -> None:
    assert check(task, text) == Verdict(False, reason)


def test_multiset_checked_before_evaluation() -> None:
    # Many literals would be expensive (and divide by zero); the number check answers first.
    text = "1 / (2 - 2)" + " * 99" * 100
    assert check_equation([1, 2, 3, 4], 24, text).reason == "number 2 used twice"


def test_unary_minus_uses_the_number(task: CountdownTask) -> None:
    example = {"nums": [3, 5], "target": 2}
    assert check(task, "-3 + 5", example).ok
    assert check(task, "5 - 3", example).ok
    assert check(task, "-(3 - 5)", example).ok
    assert check(task, "- - 5 - 3", example).ok
    assert check(task, "-3 - 5", example).reason == "evaluates to -8, not 2"


def test_negative_target(task: CountdownTask) -> None:
    example = {"nums": [3, 5], "target": -2}
    assert check(task, "3 - 5", example).ok
    assert check(task, "3 - 5 = -2", example).ok
    assert check(task, "3 - 5 = 2", example).reason == "equation says = 2, but the target is -2"


# ---------------------------------------------------------------- hostile inputs


def test_ten_thousand_nested_parens(task: CountdownTask) -> None:
    text = "(" * 10_000 + "1 * 2 * 3 * 4" + ")" * 10_000
    verdict = check(task, text)
    assert not verdict.ok and "too long" in verdict.reason


def test_nesting_depth_cap() -> None:
    ok = "(" * MAX_DEPTH + "1 * 2 * 3 * 4" + ")" * MAX_DEPTH
    assert check_equation([1, 2, 3, 4], 24, ok).ok
    deep = "(" * (MAX_DEPTH + 1) + "1 * 2 * 3 * 4" + ")" * (MAX_DEPTH + 1)
    assert "too deeply nested" in check_equation([1, 2, 3, 4], 24, deep).reason
    unbalanced = "(" * 500
    assert not check_equation([1], 1, unbalanced).ok


def test_long_unary_chain_does_not_recurse() -> None:
    text = "-" * (MAX_EXPRESSION_CHARS - 20) + "1 * 2 * 3 * 4"
    assert len(text) <= MAX_EXPRESSION_CHARS
    assert check_equation([1, 2, 3, 4], 24, text).ok  # an even number of minus signs


def test_huge_literal(task: CountdownTask) -> None:
    verdict = check(task, "9" * 50_000)
    assert not verdict.ok and "too long" in verdict.reason
    verdict = check(task, "9" * 900)
    assert verdict.reason.startswith("number 999999999999... is too long")


@pytest.mark.parametrize(
    "garbage",
    [
        "a" * 100_000,
        "(" * 100_000,
        "<answer>" * 12_000,
        "</answer>" * 11_000,
        "<answer>" + "1+" * 50_000 + "</answer>",
        "<answer>" + "\x00\ud800" * 40_000 + "</answer>",
        ("<answer>" + "(" * 200 + "1" + ")" * 200 + "</answer>") * 200,
    ],
)
def test_100kb_garbage_fails_cleanly(task: CountdownTask, garbage: str) -> None:
    verdict = task.verify(EX, garbage)
    assert isinstance(verdict, Verdict) and not verdict.ok and verdict.reason


def test_intermediate_value_cap() -> None:
    with pytest.raises(ExpressionError, match="too large"):
        evaluate("*".join(["999999"] * 140))  # about 2,800 bits
    assert evaluate("999999 * 999999") == 999999**2


def test_parser_api() -> None:
    expression, claim = parse_answer("(10 - 4) / 4 = 3")
    assert expression.numbers == (10, 4, 4)
    assert expression.evaluate() == Fraction(3, 2)
    assert claim == 3
    assert evaluate("2 - 3 - 4") == -5  # left associative
    assert evaluate("24 / 4 / 2") == 3
    assert evaluate("2 * -3 + 1") == -5
    assert evaluate("-2 * 3") == -6
    with pytest.raises(ExpressionError, match="malformed"):
        evaluate_program(("+",))


# ---------------------------------------------------------------- rows


def test_normalize_row_keeps_extras_and_copies() -> None:
    row = {"nums": (3, 4), "target": 7, "id": "x"}
    out = normalize_row(row)
    assert out == {"nums": [3, 4], "target": 7, "id": "x"}
    assert out is not row and type(out["nums"]) is list


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"target": 3}, "nums", "missing"),
        ({"nums": [1, 2]}, "target", "missing"),
        ({"nums": "1 2", "target": 3}, "nums", "expected a list of integers"),
        ({"nums": [], "target": 3}, "nums", "is empty"),
        ({"nums": [1, True], "target": 3}, "nums", "item 2 is True (a bool)"),
        ({"nums": [1, 2.0], "target": 3}, "nums", "item 2 is 2.0 (float)"),
        ({"nums": [1, "2"], "target": 3}, "nums", "item 2 is '2' (str)"),
        ({"nums": [1, -2], "target": 3}, "nums", "must be 0 or more"),
        ({"nums": [1, 10**7], "target": 3}, "nums", "more than 6 digits"),
        ({"nums": list(range(1, 30)), "target": 3}, "nums", "at most"),
        ({"nums": [1, 2], "target": 3.0}, "target", "(float), expected an integer"),
        ({"nums": [1, 2], "target": False}, "target", "(a bool)"),
        ({"nums": [1, 2], "target": "3"}, "target", "(str)"),
    ],
)
def test_bad_rows_raise_data_error(row: dict, field: str, words: str) -> None:
    with pytest.raises(DataError) as info:
        CountdownTask().validate(row, 7, "rows.jsonl")
    assert info.value.field == field and info.value.row == 7
    assert words in str(info.value) and "rows.jsonl, row 7" in str(info.value)


def test_non_dict_row() -> None:
    with pytest.raises(DataError, match="expected an object"):
        CountdownTask().validate([1, 2], 1, "rows.json")


def test_jsonl_with_bad_row_names_file_row_field(tmp_path: Path) -> None:
    path = tmp_path / "countdown.jsonl"
    lines = [
        json.dumps({"nums": [1, 2, 3], "target": 6}),
        json.dumps({"nums": [4, 5], "target": 9}),
        json.dumps({"nums": [1, "two"], "target": 3}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        CountdownTask().load(str(path))
    message = str(info.value)
    assert str(path) in message and "row 3" in message and "'nums'" in message


def test_load_json_file_with_limit(tmp_path: Path) -> None:
    path = tmp_path / "countdown.json"
    rows = [{"nums": [1, 2, 3], "target": 6, "extra": 1}, {"nums": [4, 5], "target": 9}]
    path.write_text(json.dumps(rows), encoding="utf-8")
    task = CountdownTask()
    assert task.load(str(path)) == rows
    assert task.load(str(path), limit=1) == rows[:1]
    for row in task.load(str(path)):
        assert task.verify(row, answer("1 + 2 + 3" if row["target"] == 6 else "4 + 5")).ok


# ---------------------------------------------------------------- generator and load()


def test_generator_deterministic() -> None:
    assert generate_countdown(20, seed=3) == generate_countdown(20, seed=3)
    assert generate_countdown(20, seed=3) != generate_countdown(20, seed=4)
    assert generate_countdown(20, seed=3)[:5] == generate_countdown(5, seed=3)
    assert generate_countdown(0, seed=3) == []


def test_generated_rows_are_valid_and_solvable() -> None:
    task = CountdownTask()
    rows = generate_countdown(300, seed=11)
    for row in rows:
        assert 3 <= len(row["nums"]) <= 4
        assert all(1 <= n <= 99 for n in row["nums"])
        assert 1 <= row["target"] <= 100
        assert task.validate(row, 1, "generated") == row
        assert task.verify(row, answer(row["solution"])).ok, row
        assert task.verify(row, answer(f"{row['solution']} = {row['target']}")).ok
    # the verifier does not trust the solution field
    row = dict(rows[0], solution="1")
    assert task.verify(row, answer("1")).ok is False


def test_generator_ranges() -> None:
    rows = generate_countdown(
        50, seed=0, min_nums=2, max_nums=6, min_number=1, max_number=9, min_target=10, max_target=50
    )
    for row in rows:
        assert 2 <= len(row["nums"]) <= 6 and all(1 <= n <= 9 for n in row["nums"])
        assert 10 <= row["target"] <= 50
        assert check_equation(row["nums"], row["target"], row["solution"]).ok
    assert {len(row["nums"]) for row in rows} >= {2, 6}


def test_generator_bad_options() -> None:
    with pytest.raises(R3Error, match="min_nums"):
        GeneratorConfig(min_nums=5, max_nums=4)
    with pytest.raises(R3Error, match="min_number"):
        GeneratorConfig(min_number=0)
    with pytest.raises(R3Error, match="min_target"):
        GeneratorConfig(min_target=10, max_target=5)
    with pytest.raises(R3Error, match="must be an integer"):
        GeneratorConfig(max_number=9.5)  # type: ignore[arg-type]
    with pytest.raises(R3Error, match="could not generate"):
        generate_countdown(1, min_nums=1, max_nums=1, max_number=9, min_target=500, max_target=600)
    with pytest.raises(R3Error, match=">= 0"):
        generate_countdown(-1)


def test_load_generates(task: CountdownTask) -> None:
    assert len(task.load(None)) == 100
    assert task.load(None, limit=7, seed=5) == generate_countdown(7, seed=5)
    assert task.load(None, limit=7, seed=5) != task.load(None, limit=7, seed=6)
    assert len(CountdownTask(num_examples=12).load(None)) == 12
    small = CountdownTask(max_number=9, max_target=20).load(None, limit=30)
    assert all(max(row["nums"]) <= 9 and row["target"] <= 20 for row in small)
    with pytest.raises(R3Error):
        task.load(None, limit=-1)


# ---------------------------------------------------------------- task contract and registry


def test_task_attributes_and_prompt(task: CountdownTask) -> None:
    assert task.name == "countdown"
    assert task.stop == ("</answer>",)
    assert task.reflection_instruction == MATH_REFLECTION
    assert "<answer>" in task.retry_instruction
    with pytest.raises(DataError, match="target"):  # its own validation names the missing field
        task.validate({"nums": [1, 2]}, 3, "rows.jsonl")
    prompt = task.prompt({"nums": [19, 36, 55, 7], "target": 65})
    assert isinstance(prompt, Prompt) and prompt.tools is None
    assert [m["role"] for m in prompt.messages] == ["system", "user"]
    user = prompt.messages[-1]["content"]
    assert "[19, 36, 55, 7]" in user and "equals 65" in user
    assert "<answer> </answer>" in user and "<answer> (1 + 2) / 3 </answer>" in user
    assert "exactly once" in user
    no_system = CountdownTask(system_prompt=None).prompt({"nums": [1], "target": 1})
    assert [m["role"] for m in no_system.messages] == ["user"]


def test_reflection_and_retry_prompts(task: CountdownTask) -> None:
    retry = task.retry_prompt(EX, "<answer>1+2+3+4</answer>", "I added instead of multiplying.")
    roles = [m["role"] for m in retry.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert retry.messages[3]["content"] == MATH_REFLECTION


def test_registry() -> None:
    task = get_task("countdown")
    assert type(task) is CountdownTask
    assert get_task("countdown", num_examples=5).num_examples == 5
    with pytest.raises(R3Error, match="countdown"):
        get_task("countdwn")
    with pytest.raises(R3Error, match="countdown"):
        get_task("countdown", no_such_option=1)
    with pytest.raises(R3Error, match="num_examples"):
        get_task("countdown", num_examples=0)


def test_public_api_shape() -> None:
    task = get_task("countdown")
    verdict = task.verify({"nums": [2, 3], "target": 6}, "<answer>2*3</answer>")
    assert verdict.ok is True and verdict.reason == ""
    verdict = task.verify({"nums": [2, 3], "target": 6}, "<answer>2+3</answer>")
    assert verdict.ok is False and isinstance(verdict.reason, str) and verdict.reason


def test_huge_values_in_rows_and_results() -> None:
    with pytest.raises(DataError, match="too large"):
        normalize_row({"nums": [1], "target": 10**5000})
    with pytest.raises(DataError, match="more than 6 digits"):
        normalize_row({"nums": [10**5000], "target": 1})
    reason = check_equation([999999] * 40, 1, "*".join(["999999"] * 40)).reason
    assert reason.startswith("evaluates to") and len(reason) < 100


def test_a_long_claimed_result_is_clipped_in_the_reason(task: CountdownTask) -> None:
    verdict = check(task, "3 + 5 = " + "9" * 300)
    assert not verdict.ok and verdict.reason.startswith("equation says = 999999999999... (300 digits)")
    assert len(verdict.reason) < 80

"""Reference answers (for the supervised warm-start): every built-in task's answer passes its own verifier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from r3.errors import DataError
from r3.tasks import Prompt, Task, Verdict
from r3.tasks.countdown import CountdownTask
from r3.tasks.custom import CustomTask
from r3.tasks.function_calling import FunctionCallingTask, sample_path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DATA = REPO / "examples" / "custom_task" / "data.jsonl"
EXAMPLE_VERIFIER = "examples.custom_task.verifier:verify"


@pytest.fixture(autouse=True)
def repo_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """`examples.custom_task` imports from the repo root, as with `PYTHONPATH=.` on the command line."""
    monkeypatch.syspath_prepend(str(REPO))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


# --- the default ------------------------------------------------------------------------------------


class _NoAnswers(Task):
    def load(self, data: str | None, limit: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
        return [{}]

    def prompt(self, example: dict[str, Any]) -> Prompt:
        return Prompt([{"role": "user", "content": "?"}])

    def verify(self, example: dict[str, Any], completion: str) -> Verdict:
        return Verdict.failure("never")


def test_a_task_knows_no_answer_by_default() -> None:
    assert _NoAnswers().reference_answer({}) is None


# --- countdown ---------------------------------------------------------------------------------------


def test_countdown_generated_rows_use_their_solution() -> None:
    task = CountdownTask()
    for row in task.load(None, limit=200, seed=3):
        answer = task.reference_answer(row)
        assert answer == f"<answer> {row['solution']} </answer>"
        assert task.verify(row, answer).ok


def test_countdown_answer_is_one_short_line_ending_with_the_stop_string() -> None:
    task = CountdownTask()
    answer = task.reference_answer({"nums": [1, 3, 4, 6], "target": 24})
    assert answer == "<answer> 6 / (1 - 3 / 4) </answer>"
    assert answer.endswith(task.stop)
    assert "\n" not in answer


def test_countdown_row_without_solution_is_solved() -> None:
    task = CountdownTask()
    for row in task.load(None, limit=100, seed=4):
        del row["solution"]
        answer = task.reference_answer(row)
        assert answer is not None
        assert task.verify(row, answer).ok


@pytest.mark.parametrize("solution", ["1 + 2", "not an equation", 42, "1 </answer> <answer> 2 * 3 * 4"])
def test_countdown_bad_solution_falls_back_to_the_solver(solution: Any) -> None:
    task = CountdownTask()
    row = {"nums": [2, 3, 4], "target": 24, "solution": solution}
    answer = task.reference_answer(row)
    assert answer == "<answer> 4 * 3 * 2 </answer>"
    assert task.verify(row, answer).ok


def test_countdown_solution_spread_over_lines_is_put_on_one() -> None:
    row = {"nums": [2, 3, 4], "target": 24, "solution": " (2 *\n 3)\t* 4 "}
    assert CountdownTask().reference_answer(row) == "<answer> (2 * 3) * 4 </answer>"


def test_countdown_rows_from_a_file(tmp_path: Path) -> None:
    task = CountdownTask()
    data = write_jsonl(tmp_path / "rows.jsonl", [{"nums": [25, 50, 75, 100], "target": 125}])
    (row,) = task.load(data)
    answer = task.reference_answer(row)
    assert answer is not None
    assert task.verify(row, answer).ok


@pytest.mark.parametrize(
    "row",
    [
        {"nums": [1, 1, 1], "target": 100},
        {"nums": [2, 2], "target": 7, "solution": "2 + 2"},
        {"nums": [1] * 7, "target": 7},  # more numbers than the solver searches
        {"nums": [1, 2], "target": "3"},  # not a valid row
        {"target": 3},
    ],
)
def test_countdown_no_known_answer(row: dict[str, Any]) -> None:
    assert CountdownTask().reference_answer(row) is None


# --- function calling ----------------------------------------------------------------------------------


def test_function_calling_sample_answers_verify() -> None:
    task = FunctionCallingTask()
    rows = task.load(sample_path())
    assert rows
    for row in rows:
        answer = task.reference_answer(row)
        assert answer is not None
        assert task.verify(row, answer).ok, (row, answer)
        calls = json.loads(answer)
        assert calls == [{"name": c["name"], "arguments": c["arguments"]} for c in row["answers"]]
        assert "\n" not in answer


def test_function_calling_answer_is_compact_and_keeps_unicode() -> None:
    task = FunctionCallingTask()
    row = {
        "query": "Weather in Zürich?",
        "tools": [{"name": "weather", "parameters": {"city": {"type": "str"}}}],
        "answers": [{"name": "weather", "arguments": {"city": "Zürich"}}],
    }
    answer = task.reference_answer(row)
    assert answer == '[{"name": "weather", "arguments": {"city": "Zürich"}}]'
    assert task.verify(row, answer).ok


def test_function_calling_stored_records_still_have_answers() -> None:
    """Rows written back as JSON strings (`to_record`, e.g. mined files) give the same answer."""
    task = FunctionCallingTask()
    for row in task.load(None, limit=5):
        record = task.to_record(row)
        assert isinstance(record["answers"], str)
        assert task.reference_answer(record) == task.reference_answer(row)


@pytest.mark.parametrize("answers", ["not json", [{"name": "x"}], None])
def test_function_calling_unusable_answers(answers: Any) -> None:
    row = {"query": "q", "tools": [{"name": "x"}], "answers": answers}
    assert FunctionCallingTask().reference_answer(row) is None
    assert FunctionCallingTask().reference_answer({"query": "q"}) is None


# --- custom ----------------------------------------------------------------------------------------------


def example_rows() -> list[dict[str, Any]]:
    lines = EXAMPLE_DATA.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_custom_references_verify(tmp_path: Path) -> None:
    rows = [{**row, "reference": f"The result is <answer>{row['answer']}</answer>"} for row in example_rows()]
    task = CustomTask(EXAMPLE_VERIFIER)
    examples = task.load(write_jsonl(tmp_path / "rows.jsonl", rows))
    assert len(examples) == len(rows)
    for example in examples:
        answer = task.reference_answer(example)
        assert answer == example["reference"]
        assert task.verify(example, answer).ok


@pytest.mark.parametrize("extra", [{}, {"reference": None}, {"reference": ""}])
def test_custom_row_without_reference(tmp_path: Path, extra: dict[str, Any]) -> None:
    task = CustomTask(EXAMPLE_VERIFIER)
    (example,) = task.load(write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "1 + 1?", "answer": 2, **extra}]))
    assert task.reference_answer(example) is None


@pytest.mark.parametrize("reference", [2, ["<answer>2</answer>"], {"text": "x"}, True])
def test_custom_reference_of_wrong_type_is_a_data_error(tmp_path: Path, reference: Any) -> None:
    rows = [{"prompt": "1 + 1?", "answer": 2}, {"prompt": "1 + 1?", "answer": 2, "reference": reference}]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    with pytest.raises(DataError) as error:
        CustomTask(EXAMPLE_VERIFIER).load(path)
    assert (error.value.source, error.value.row, error.value.field) == (path, 2, "reference")
    assert "rows.jsonl, row 2, field 'reference'" in str(error.value)

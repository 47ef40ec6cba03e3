"""The custom task: a user's rows plus a user's verifier, with failures contained."""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from r3.cli import main
from r3.errors import DataError, R3Error
from r3.generation.chat import render_prompt
from r3.tasks import Verdict, get_task
from r3.tasks.custom import GENERIC_REFLECTION, CustomTask, load_verifier

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DATA = REPO / "examples" / "custom_task" / "data.jsonl"


@pytest.fixture(autouse=True)
def repo_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """`examples.custom_task` imports from the repo root, as with `PYTHONPATH=.` on the command line."""
    monkeypatch.syspath_prepend(str(REPO))


def returns(value: Any, example: dict[str, Any], completion: str) -> Any:
    return value


def always(value: Any) -> Callable[[dict[str, Any], str], Any]:
    """A verifier that returns `value` whatever it is given (it pickles, so it runs in a worker)."""
    return functools.partial(returns, value)


def equals_answer(example: dict[str, Any], completion: str) -> bool:
    return completion.strip() == str(example["answer"])


def boom(example: dict[str, Any], completion: str) -> bool:
    raise ValueError("cannot parse 'x'")


def leave(example: dict[str, Any], completion: str) -> bool:
    sys.exit(3)


def show_example(example: dict[str, Any], completion: str) -> Verdict:
    """Fails with the row it was given, as JSON, for the test to read."""
    return Verdict.failure(json.dumps(example, sort_keys=True))


ROW = {"prompt": "2+2?", "answer": 4}


# --- verifier results ------------------------------------------------------------------------------


def test_bool_verifier() -> None:
    task = CustomTask(equals_answer)
    assert task.verify(ROW, "4") == Verdict(True, "")
    assert task.verify(ROW, "5") == Verdict(False, "verifier returned False")


def test_verdict_verifier() -> None:
    assert CustomTask(always(Verdict.failure("off by one"))).verify(ROW, "x") == Verdict(False, "off by one")
    assert CustomTask(always(Verdict(False))).verify(ROW, "x").reason == "verifier returned a failure"
    assert CustomTask(always(Verdict(True, "noise"))).verify(ROW, "x") == Verdict(True, "")


def test_raising_verifier_is_a_failed_attempt() -> None:
    verdict = CustomTask(boom).verify(ROW, "x")
    assert verdict == Verdict(False, "verifier raised ValueError: cannot parse 'x'")
    verdict = CustomTask(boom, timeout_s=None).verify(ROW, "x")
    assert verdict == Verdict(False, "verifier raised ValueError: cannot parse 'x'")


def test_system_exit_in_a_verifier_is_contained() -> None:
    assert CustomTask(leave).verify(ROW, "x").reason == "verifier raised SystemExit: 3"


def test_a_verifier_that_cannot_run_in_a_worker_is_refused_in_one_line() -> None:
    """A closure cannot be pickled for a worker process, and a thread could not stop its hangs: the
    task is refused, naming the form that works, unless it is called inline (timeout_s=0)."""

    def closure(example: dict[str, Any], completion: str) -> bool:
        return completion == "4"

    with pytest.raises(R3Error, match="'package.module:function'") as refused:
        get_task("custom", verifier=closure)
    assert "\n" not in str(refused.value) and "cannot be pickled" in str(refused.value)
    assert get_task("custom", verifier=closure, timeout_s=0).verify(ROW, "4").ok


def test_an_unpicklable_verifier_on_the_command_line_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A task named by `--task pkg:Class` that hands the custom task a lambda."""
    (tmp_path / "lambda_tasks.py").write_text(
        "from r3.tasks.custom import CustomTask\n\n\n"
        "class LambdaTask(CustomTask):\n"
        "    def __init__(self, **options):\n"
        "        super().__init__(lambda example, completion: True, **options)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["eval", "--task", "lambda_tasks:LambdaTask", "--data", str(EXAMPLE_DATA), "--limit", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("r3: error: verifier '") and "<lambda>' cannot run in a worker process" in err
    assert "give it as 'package.module:function'" in lines[0]


@pytest.mark.parametrize("value", [1, 0, None, "yes", [True], (True, "")])
def test_other_return_values_fail(value: Any) -> None:
    verdict = CustomTask(always(value)).verify(ROW, "x")
    assert not verdict.ok
    assert verdict.reason == f"verifier returned {type(value).__name__}, expected bool or Verdict"


def test_inline_mode_without_timeout() -> None:
    task = CustomTask(equals_answer, timeout_s=0)
    assert task.timeout_s is None
    assert task.verify(ROW, "4").ok and not task.verify(ROW, "3").ok


def test_many_calls_are_cheap() -> None:
    task = CustomTask(equals_answer)
    assert task._verify.portable is not None  # a worker process, reused
    start = time.perf_counter()
    for _ in range(2000):
        task.verify(ROW, "4")
    assert time.perf_counter() - start < 2.0


def test_concurrent_callers() -> None:
    task = CustomTask(equals_answer)
    results: list[bool] = []

    def run(answer: str) -> None:
        for _ in range(50):
            results.append(task.verify(ROW, answer).ok == (answer == "4"))

    threads = [threading.Thread(target=run, args=(a,)) for a in ("4", "5", "4", "6")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 200 and all(results)


# --- construction ----------------------------------------------------------------------------------


def test_missing_verifier() -> None:
    with pytest.raises(R3Error, match="needs a verifier"):
        get_task("custom")


def test_bad_verifier_paths() -> None:
    with pytest.raises(R3Error, match="cannot import verifier"):
        get_task("custom", verifier="no_such_module_xyz:verify")
    with pytest.raises(R3Error, match="has no 'nope'"):
        get_task("custom", verifier="examples.custom_task.verifier:nope")
    with pytest.raises(R3Error, match="not callable"):
        get_task("custom", verifier="examples.custom_task.verifier:_ANSWER")
    with pytest.raises(R3Error, match="timeout_s"):
        CustomTask(equals_answer, timeout_s=-1)


def test_example_verifier_by_dotted_path() -> None:
    task = get_task("custom", verifier="examples.custom_task.verifier:verify")
    assert isinstance(task, CustomTask)
    examples = task.load(str(EXAMPLE_DATA))
    assert len(examples) == 10
    for example in examples:
        assert task.verify(example, f"Working... <answer>{example['answer']}</answer>").ok
        assert not task.verify(example, f"<answer>{example['answer'] + 1}</answer>").ok
        assert not task.verify(example, "no idea").ok


def test_verifier_from_a_file_path() -> None:
    task = CustomTask(f"{REPO / 'examples' / 'custom_task' / 'verifier.py'}:verify")
    assert task.verify({"answer": 7}, "<answer>7</answer>").ok


def test_current_directory_is_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_checks_cwd.py").write_text(
        "def verify(example, completion):\n    return completion == 'ok'\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    verifier = load_verifier("my_checks_cwd:verify")
    assert verifier({}, "ok") is True


def test_options_stop_and_instructions() -> None:
    task = CustomTask(
        equals_answer, stop="</answer>", reflection_instruction="Why?", retry_instruction="Again."
    )
    assert task.stop == ("</answer>",)
    assert task.reflection_prompt(ROW, "5").messages[-1]["content"] == "Why?"
    assert task.retry_prompt(ROW, "5", "r").messages[-1]["content"] == "Again."
    default = CustomTask(equals_answer, stop=["a", "b"])
    assert default.stop == ("a", "b") and default.reflection_instruction == GENERIC_REFLECTION


# --- data and prompts ------------------------------------------------------------------------------


def test_no_data() -> None:
    with pytest.raises(R3Error, match="needs --data"):
        CustomTask(equals_answer).load(None)


def write(tmp_path: Path, rows: list[Any]) -> str:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"answer": 1}, "prompt"),
        ({"prompt": "a", "messages": [{"role": "user", "content": "a"}]}, "prompt"),
        ({"prompt": ["a"]}, "prompt"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "robot", "content": "a"}]}, "messages"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, "messages"),
        ({"prompt": "a", "system": 5}, "system"),
        (
            {
                "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}],
                "system": "t",
            },
            "system",
        ),
        ({"prompt": "a", "tools": {"name": "x"}}, "tools"),
        ({"prompt": "a", "reflection_instruction": 1}, "reflection_instruction"),
    ],
)
def test_bad_rows_name_file_row_and_field(tmp_path: Path, bad: dict[str, Any], field: str) -> None:
    path = write(tmp_path, [ROW, bad])
    with pytest.raises(DataError) as info:
        CustomTask(equals_answer).load(path)
    assert info.value.row == 2 and info.value.field == field
    assert path in str(info.value) and f"'{field}'" in str(info.value)


def test_not_an_object(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="row 1"):
        CustomTask(equals_answer).load(write(tmp_path, [[1, 2]]))


def test_prompt_forms() -> None:
    task = CustomTask(equals_answer)
    assert task.prompt({"prompt": "hi"}).messages == [{"role": "user", "content": "hi"}]
    with_system = task.prompt({"prompt": "hi", "system": "be brief"})
    assert with_system.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    chat = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    assert task.prompt({"messages": chat}).messages == chat
    assert task.prompt({"messages": chat, "system": "s"}).messages[0] == {"role": "system", "content": "s"}
    assert task.prompt({"prompt": "hi"}).tools is None


def test_row_reflection_instruction_wins() -> None:
    task = CustomTask(equals_answer)
    assert task.reflection_prompt(ROW, "5").messages[-1]["content"] == GENERIC_REFLECTION
    own = {**ROW, "reflection_instruction": "Check the carry."}
    prompt = task.retry_prompt(own, "5", "I forgot the carry.")
    assert [m["content"] for m in prompt.messages[-3:]] == [
        "Check the carry.",
        "I forgot the carry.",
        task.retry_instruction,
    ]


def test_extra_fields_reach_the_verifier(tmp_path: Path) -> None:
    task = CustomTask(show_example)
    (example,) = task.load(write(tmp_path, [{"prompt": "p", "answer": [1, 2], "meta": {"k": "v"}}]))
    seen = json.loads(task.verify(example, "x").reason)
    assert seen["answer"] == [1, 2] and seen["meta"] == {"k": "v"}


class FakeTokenizer:
    def __init__(self, chat_template: str) -> None:
        self.chat_template = chat_template
        self.kwargs: dict[str, Any] = {}

    def apply_chat_template(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        self.kwargs = {"messages": messages, **kwargs}
        return "|".join(m["content"] for m in messages)


def test_rows_with_tools_render_through_the_template() -> None:
    tools = [{"name": "lookup", "description": "Look a word up.", "parameters": {}}]
    prompt = CustomTask(equals_answer).prompt({"prompt": "define cat", "tools": tools})
    assert prompt.tools == tools
    takes_tools = FakeTokenizer("{{ tools }}")
    render_prompt(takes_tools, prompt)
    assert takes_tools.kwargs["tools"] == tools
    plain = FakeTokenizer("{{ messages }}")
    text = render_prompt(plain, prompt)
    assert "tools" not in plain.kwargs and "lookup" in text


def test_example_data_uses_every_row_form() -> None:
    rows = [json.loads(line) for line in EXAMPLE_DATA.read_text().splitlines() if line.strip()]
    assert any("prompt" in r for r in rows) and any("messages" in r for r in rows)
    assert any("system" in r for r in rows)

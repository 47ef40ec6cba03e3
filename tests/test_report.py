"""`r3 report` on two evaluations written by the scripted generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from r3.errors import R3Error
from r3.evaluation.evaluate import EvalConfig, evaluate
from r3.generation.scripted import ScriptedGenerator
from r3.reports.compare import write_report
from r3.tasks import get_task

TASK = get_task("countdown")
EXAMPLES = [{"nums": [1, 2, 3], "target": 6}, {"nums": [2, 5, 7], "target": 14}]


def run_eval(folder: Path, retry_answer: str) -> None:
    def script(prompt, sampling, i):
        if prompt.messages[-1]["content"] == TASK.reflection_instruction:
            return (
                "Use every number exactly once."
                if "7 + 5" in retry_answer
                else "I was wrong, sorry about that."
            )
        if len(prompt.messages) > 2:
            return f"<answer> {retry_answer} </answer>"
        return "<answer> 1 + 2 </answer>"

    evaluate(EvalConfig(chunk_size=4), TASK, EXAMPLES, ScriptedGenerator(script), folder)


def test_report_compares_runs(tmp_path: Path) -> None:
    run_eval(tmp_path / "vanilla", "1 + 1")
    run_eval(tmp_path / "trained", "7 + 5 + 2")
    report = write_report([str(tmp_path / "vanilla"), str(tmp_path / "trained")], tmp_path / "rep")
    text = report.read_text()
    assert "| vanilla |" in text and "| trained |" in text
    assert "50.0% (+50.0%)" in text  # second try: the trained reflections fixed one of two
    assert "Use every number exactly once." in text and "I was wrong" in text
    assert (tmp_path / "rep" / "accuracy.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "reflection_lengths.png").is_file()


def test_report_errors(tmp_path: Path) -> None:
    with pytest.raises(R3Error, match="no results.json"):
        write_report([str(tmp_path)], tmp_path / "rep")
    run_eval(tmp_path / "a", "1 + 1")
    with pytest.raises(R3Error, match="names for"):
        write_report([str(tmp_path / "a")], tmp_path / "rep", labels=["x", "y"])


def test_report_of_runs_that_solve_nothing(tmp_path: Path) -> None:
    """0% everywhere, with n = 6 (where the Wilson bound used to round to just above 0)."""
    examples = EXAMPLES * 3

    def script(prompt, sampling, i):
        if prompt.messages[-1]["content"] == TASK.reflection_instruction:
            return "I should check the sum."
        return "<answer> 1 + 1 </answer>"

    for name in ("a", "b"):
        evaluate(EvalConfig(chunk_size=4), TASK, examples, ScriptedGenerator(script), tmp_path / name)
    report = write_report([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "rep")
    assert "0.0%" in report.read_text()
    assert (tmp_path / "rep" / "accuracy.png").stat().st_size > 1000


def test_report_shows_each_runs_protocol_when_they_differ(tmp_path: Path) -> None:
    """Reflect and resample of one model side by side: a protocol column, only when they differ."""

    def script(prompt, sampling, i):
        if prompt.messages[-1]["content"] == TASK.reflection_instruction:
            return "Use every number exactly once."
        return "<answer> 7 + 5 + 2 </answer>" if len(prompt.messages) > 2 else "<answer> 1 + 2 </answer>"

    for name, mode in (("reflect", "reflect"), ("resample", "resample"), ("again", "reflect")):
        config = EvalConfig(chunk_size=4, second_try=mode)
        evaluate(config, TASK, EXAMPLES, ScriptedGenerator(script), tmp_path / name, progress=False)
    text = write_report([str(tmp_path / "reflect"), str(tmp_path / "resample")], tmp_path / "rep").read_text()
    assert "| second-try protocol |" in text
    assert "| reflect | `scripted` | 2 | reflect |" in text
    assert "| resample | `scripted` | 2 | resample |" in text
    assert "resample = a second independent attempt" in text
    same = write_report([str(tmp_path / "reflect"), str(tmp_path / "again")], tmp_path / "rep2").read_text()
    assert "protocol" not in same

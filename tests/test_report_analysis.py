"""`r3.reports.analysis`: what the reflections did, on hand-written `samples.jsonl` rows."""

from __future__ import annotations

from typing import Any

import pytest

from r3.episode import Episode
from r3.evaluation.records import Accuracy, EvalResults
from r3.reports import analysis
from r3.reports.compare import EvalRun, behaviour_table
from r3.tasks.countdown import CountdownTask
from r3.tasks.function_calling import FunctionCallingTask

COUNTDOWN, CALLS = CountdownTask(), FunctionCallingTask()


def row(index: int, **fields: Any) -> Episode:
    """A `samples.jsonl` row as `r3 eval` writes it, read back as the report reads it; the round-1
    fields given flat (`reflection`, `retry`, ...) make its one round (none when `retry` is None)."""
    base: dict[str, Any] = {
        "index": index,
        "example": {"nums": [1, 2, 3], "target": 6},
        "prompt": [{"role": "user", "content": "..."}],
        "attempt_tokens": 5,
        "attempt": "<answer> 1 + 2 </answer>",
        "attempt_ok": False,
        "attempt_reason": "evaluates to 3, not 6",
        "reflection": "Multiply instead.",
        "reflection_tokens": 4,
        "retry": "<answer> 1 * 2 * 3 </answer>",
        "retry_ok": True,
        "retry_reason": "",
    }
    base.update(fields)
    names = ("reflection", "reflection_tokens", "retry", "retry_ok", "retry_reason")
    first = {name: base.pop(name) for name in names}
    base["rounds"] = []
    if first["retry"] is not None:
        prompt = [{"role": "user", "content": "..."}]
        base["rounds"].append(
            {"round": 1, "reflection_prompt": prompt, "retry_prompt": prompt, "retry_tokens": 5, **first}
        )
    base["stopped"] = None
    return Episode.from_json(base, f"row {index}")


SOLVED = {"attempt_ok": True, "attempt_reason": "", "reflection": None, "reflection_tokens": None,
          "retry": None, "retry_ok": None}  # fmt: skip


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        ("number 7 used twice", "number N used twice"),
        ("number 12 not in the list", "number N not in the list"),
        ("evaluates to 12, not 30", "evaluates to N, not N"),
        ("evaluates to -7/2, not 30", "evaluates to N, not N"),
        ("evaluates to 1.5, not 4", "evaluates to N, not N"),
        ("no <answer> tag", "no <answer> tag"),
        ("missing argument 'city' in call 1", "missing argument '…' in call N"),
        ('call "get_weather" not in the reference', "call '…' not in the reference"),
        ("  two\n lines ", "two lines"),
        (None, analysis.NO_REASON),
        ("", analysis.NO_REASON),
    ],
)
def test_reason_category(reason, category):
    assert analysis.reason_category(reason) == category


def test_reason_category_is_short():
    assert len(analysis.reason_category("x" * 500)) == 80


def test_fix_rates_by_reason_per_run_ordered_by_frequency():
    vanilla = [
        row(0, attempt_reason="number 7 used twice", retry_ok=False),
        row(1, attempt_reason="number 3 used twice", retry_ok=True),
        row(2, attempt_reason="no <answer> tag", retry_ok=False),
        row(3, **SOLVED),  # solved at once: no retry, not counted
        row(4, attempt_reason="evaluates to 2, not 6", retry=None, retry_ok=None),  # no retry made
    ]
    trained = [
        row(0, attempt_reason="number 7 used twice", retry_ok=True),
        row(1, attempt_reason="evaluates to 5, not 6", retry_ok=True),
        row(2, attempt_reason="number 1 used twice", retry_ok=True),
    ]
    table = analysis.fix_rates_by_reason([vanilla, trained])
    assert table == [
        ("number N used twice", [(1, 2), (2, 2)]),
        ("evaluates to N, not N", [(0, 0), (1, 1)]),
        ("no <answer> tag", [(0, 1), (0, 0)]),
    ]


def test_fix_rates_caps_categories_with_other():
    rows = [row(i, attempt_reason=f"reason {chr(97 + i)}", retry_ok=i % 2 == 0) for i in range(5)]
    rows += [row(10, attempt_reason="reason a", retry_ok=True)]
    table = analysis.fix_rates_by_reason([rows], top=2)
    assert table[0] == ("reason a", [(2, 2)])
    assert [c for c, _ in table] == ["reason a", "reason b", analysis.OTHER]
    assert table[-1][1] == [(2, 3)]  # reasons c, d, e: c and e fixed
    assert analysis.fix_rates_by_reason([[row(0, **SOLVED)]]) == []


def test_reflection_lengths_and_summary():
    rows = [row(i, reflection_tokens=n) for i, n in enumerate([10, 20, 30, 40, 100])]
    rows.append(row(9, **SOLVED))
    lengths = analysis.reflection_lengths(rows)
    assert lengths == [10, 20, 30, 40, 100]
    s = analysis.length_summary(lengths)
    assert s is not None
    assert (s["n"], s["mean"], s["min"], s["median"], s["max"]) == (5, 40, 10, 30, 100)
    assert (s["p25"], s["p75"]) == (20, 40)
    assert s["p90"] == pytest.approx(76)
    assert analysis.length_summary([]) is None
    assert analysis.length_summary([7])["median"] == 7  # type: ignore[index]


@pytest.mark.parametrize(
    ("task", "text", "answer"),
    [
        (COUNTDOWN, "Try multiplying: <answer> 1 * 2 * 3 </answer>", True),
        (COUNTDOWN, "Remember to close the <answer> tag.", False),
        (COUNTDOWN, "Use every number once; 7 + 5 was wrong.", False),
        (COUNTDOWN, '{"name": "get_weather", "arguments": {}}', False),  # not Countdown's format
        (CALLS, 'Call it as [{"name": "get_weather", "arguments": {"city": "Paris"}}]', True),
        (CALLS, '{"name": "get_weather", "arguments": {}}', True),
        (CALLS, "The list [1, 2, 3] has three numbers.", False),
        (CALLS, "Try multiplying: <answer> 1 * 2 * 3 </answer>", False),
        (COUNTDOWN, "", False),
        (CALLS, None, False),
    ],
)
def test_contains_answer_asks_the_task(task, text, answer):
    assert analysis.contains_answer(task, text) is answer


def test_the_same_answer_reads_the_same_text():
    """What a task reads as the answer: Countdown's last closed tag; the same calls written with other
    spacing or key order give one text, other calls another."""
    assert COUNTDOWN.answer_text("<answer>1 + 2</answer> no, <answer> 3 * 2 </answer>") == " 3 * 2 "
    one = CALLS.answer_text('[{"name": "f", "arguments": {"a": 1, "b": 2}}]')
    assert one is not None
    assert CALLS.answer_text('{"arguments": {"b": 2, "a": 1},  "name": "f"}') == one
    assert CALLS.answer_text('[{"name": "f", "arguments": {"a": 2, "b": 2}}]') != one


def results_of(task: str, task_options: dict[str, Any]) -> EvalResults:
    """A `results.json` of `task` run with `task_options` (the accuracies do not matter here)."""
    block = Accuracy(0, 0.0, (0.0, 1.0))
    return EvalResults(task, "model", 0, block, block, "reflect", [block], None, 0, 0, None, {},
                       config={"task_options": task_options})  # fmt: skip


def test_the_report_builds_the_evaluated_task_with_its_options(tmp_path):
    """The task comes from results.json, options included; one this machine cannot build (a custom
    verifier that is not importable here) leaves the answer count out as "-" instead of failing."""
    task = analysis.evaluated_task(results_of("function_calling", {"defaults_as_omitted": True}))
    assert isinstance(task, FunctionCallingTask) and task.defaults_as_omitted
    custom = results_of("custom", {"verifier": "not_a_module_here:verify"})
    assert analysis.evaluated_task(custom) is None
    rows = [row(0, reflection="The answer is <answer> 1 * 2 * 3 </answer>")]
    table = behaviour_table(
        [
            EvalRun("countdown", tmp_path, results_of("countdown", {}), rows),
            EvalRun("custom", tmp_path, custom, rows),
        ]
    )
    assert "| countdown | 1 | 1/1 (100%) |" in table
    assert "| custom | 1 | - |" in table


def test_repeats_attempt_ignores_whitespace_only():
    assert analysis.repeats_attempt(
        row(0, attempt="<answer> 1 + 2 </answer>", retry="<answer>  1 + 2\n</answer>")
    )
    assert not analysis.repeats_attempt(
        row(0, attempt="<answer> 1 + 2 </answer>", retry="<answer> 1+2 </answer>")
    )
    assert not analysis.repeats_attempt(row(0, **SOLVED))


def test_reflection_behaviour_counts():
    rows = [
        row(0, reflection="The answer is <answer> 1 * 2 * 3 </answer>"),
        row(1, retry="<answer> 1 + 2 </answer>", retry_ok=False),  # repeats the attempt
        row(2, reflection=None, reflection_tokens=None, retry="<answer> 2 + 2 </answer>", retry_ok=False),
        row(3, **SOLVED),
    ]
    assert analysis.reflection_behaviour(rows, COUNTDOWN) == {
        "reflections": 2,
        "with_answer": 1,
        "retries": 3,
        "fixed": 1,
        "repeats": 1,
    }


def test_fixed_only_by():
    vanilla = [
        row(0, retry_ok=False),
        row(1, retry_ok=True),  # vanilla fixed it too
        row(2, retry_ok=False),
        row(3, retry_ok=False),
        row(5, retry_ok=False),
    ]
    trained = [
        row(0, retry_ok=True),  # fixed only by trained
        row(1, retry_ok=True),
        row(2, retry_ok=False),
        row(3, **SOLVED),  # solved on the first try: not a fix
        row(4, retry_ok=True),  # vanilla has no such example
        row(5, retry_ok=True),
    ]
    assert analysis.fixed_only_by(trained, vanilla) == [0, 5]
    assert analysis.fixed_only_by(vanilla, trained) == []

"""Evaluation logic with a scripted generator: the paper's protocol, the files, resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r3.episode import run_episodes
from r3.errors import R3Error
from r3.evaluation.evaluate import EvalConfig, evaluate
from r3.generation.base import SamplingConfig
from r3.generation.scripted import ScriptedGenerator
from r3.tasks import Prompt, Verdict, get_task
from r3.tasks.base import Task

TASK = get_task("countdown")
EXAMPLES = [
    {"nums": [1, 2, 3], "target": 6},  # right first time
    {"nums": [2, 5, 7], "target": 14},  # wrong, then fixed by the retry
    {"nums": [3, 4, 9], "target": 3},  # wrong twice
]
RIGHT = {0: "1 + 2 + 3", 1: "(7 - 5) * 7", 2: "9 / 3 * 1"}  # 1: uses 7 twice on purpose


def script(prompt: Prompt, sampling: SamplingConfig, i: int) -> str:
    """Answers by looking at the chat: which example, and which step of the episode."""
    text = prompt.messages[1]["content"]
    idx = next(k for k, ex in enumerate(EXAMPLES) if str(ex["nums"]) in text)
    last = prompt.messages[-1]["content"]
    if last == TASK.reflection_instruction:
        return f"I must use each number once (example {idx})."
    if len(prompt.messages) > 2:  # the retry
        return "<answer> 7 + 5 + 2 </answer>" if idx == 1 else "<answer> 9 - 4 - 3 </answer>"
    if idx == 0:
        return f"<answer> {RIGHT[0]} </answer>"
    return f"<answer> {RIGHT[idx]} </answer> and more text that the stop string cuts"


def config(**kw) -> EvalConfig:
    return EvalConfig(task="countdown", max_new_tokens=32, reflection_max_new_tokens=16, batch_size=2, **kw)


def test_protocol_reflects_and_retries_only_failures() -> None:
    gen = ScriptedGenerator(script)
    eps = run_episodes(TASK, gen, EXAMPLES, config().sampling(TASK))
    assert [e.first_try_ok for e in eps] == [True, False, False]
    assert [e.second_try_ok for e in eps] == [True, True, False]
    assert eps[0].rounds == []
    first = eps[1].first_round
    assert first is not None and first.reflection is not None and "example 1" in first.reflection.text
    assert eps[1].attempt.text.endswith("</answer>")  # cut at the task's stop string
    assert "used twice" in eps[1].attempt_verdict.reason
    assert first.retry_verdict.ok
    assert "evaluates to" in eps[2].rounds[0].retry_verdict.reason


def test_second_try_counts_examples_solved_on_either_attempt(tmp_path: Path) -> None:
    res = evaluate(config(), TASK, EXAMPLES, ScriptedGenerator(script), tmp_path)
    assert res.n == 3
    assert res.first_try.correct == 1
    assert res.second_try.correct == 2
    assert res.retries == 2 and res.retry_fixed == 1
    lo, hi = res.first_try.ci95
    assert lo < 1 / 3 < hi


def test_files_written_and_loadable(tmp_path: Path) -> None:
    res = evaluate(config(), TASK, EXAMPLES, ScriptedGenerator(script), tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == res.to_json()
    for key in (
        "task",
        "model",
        "n",
        "first_try",
        "second_try",
        "reflection_tokens_mean",
        "config",
        "versions",
        "git",
    ):
        assert key in on_disk
    assert on_disk["config"]["max_new_tokens"] == 32
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2]
    first = rows[1]["rounds"][0]
    assert first["reflection"] and rows[1]["attempt_reason"] and first["retry_ok"]
    assert rows[2]["rounds"][0]["retry_reason"].startswith("evaluates to")
    assert rows[0]["rounds"] == []
    # The exact chats the reflection and the retry were generated from.
    assert first["reflection_prompt"][-1]["content"] == TASK.reflection_instruction
    assert first["reflection_prompt"][-2] == {"role": "assistant", "content": rows[1]["attempt"]}
    assert {"role": "assistant", "content": first["reflection"]} in first["retry_prompt"]
    assert "| first try |" in (tmp_path / "results.md").read_text()
    import datasets

    ds = datasets.load_dataset("json", data_files=str(tmp_path / "samples.jsonl"), split="train")
    assert len(ds) == 3


def test_interrupted_eval_resumes_to_the_same_rows(tmp_path: Path) -> None:
    full = tmp_path / "full"
    evaluate(config(), TASK, EXAMPLES, ScriptedGenerator(script), full)

    class Crash(Exception):
        pass

    calls = {"n": 0}

    def crashing(prompt: Prompt, sampling: SamplingConfig, i: int) -> str:
        calls["n"] += 1
        if calls["n"] > 6:  # the first chunk (2 examples: 2 attempts + 1 reflection + 1 retry) gets through
            raise Crash
        return script(prompt, sampling, i)

    part = tmp_path / "part"
    with pytest.raises(Crash):
        evaluate(config(), TASK, EXAMPLES, ScriptedGenerator(crashing), part)
    assert len((part / "samples.jsonl").read_text().splitlines()) == 2
    gen = ScriptedGenerator(script)
    evaluate(config(), TASK, EXAMPLES, gen, part)
    assert (part / "samples.jsonl").read_text() == (full / "samples.jsonl").read_text()
    assert gen.samples == 3  # only the last example was run again: attempt, reflection, retry


def test_refuses_to_mix_runs(tmp_path: Path) -> None:
    evaluate(config(), TASK, EXAMPLES, ScriptedGenerator(script), tmp_path)
    with pytest.raises(R3Error, match="another run"):
        evaluate(config(seed=1), TASK, EXAMPLES, ScriptedGenerator(script), tmp_path)
    res = evaluate(config(seed=1), TASK, EXAMPLES, ScriptedGenerator(script), tmp_path, overwrite=True)
    assert res.config["seed"] == 1


def test_raising_verifier_is_a_failed_attempt() -> None:
    class Broken(Task):
        name = "broken"

        def load(self, data, limit=None, seed=0):
            return [{"q": 1}]

        def prompt(self, example):
            return Prompt([{"role": "user", "content": "q"}])

        def verify(self, example, completion) -> Verdict:
            raise ZeroDivisionError("boom")

    eps = run_episodes(Broken(), ScriptedGenerator(lambda p, s, i: "x"), [{"q": 1}], config().sampling(TASK))
    assert not eps[0].first_try_ok
    assert "ZeroDivisionError" in eps[0].attempt_verdict.reason

"""`r3 eval --second-try`: reflect (the paper's protocol), resample (no reflection) and feedback
(the reflection is shown the verifier's reason), with a scripted generator that records what it saw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r3.cli import main
from r3.episode import run_episodes
from r3.errors import R3Error
from r3.evaluation.evaluate import EvalConfig, evaluate, open_output
from r3.generation.base import SamplingConfig, derive_seed
from r3.generation.scripted import ScriptedGenerator
from r3.tasks import Prompt, get_task

TASK = get_task("countdown")
EXAMPLES = [
    {"nums": [1, 2, 3], "target": 6},  # right first time
    {"nums": [2, 5, 7], "target": 14},  # wrong first ("number 7 used twice"), right on the second try
    {"nums": [3, 4, 9], "target": 3},  # wrong twice
]
FIRST = {0: "1 + 2 + 3", 1: "(7 - 5) * 7", 2: "9 / 3 * 1"}
SECOND = {1: "7 + 5 + 2", 2: "9 - 4 - 3"}
FEEDBACK = "The checker said: number 7 used twice."


class Recorder:
    """A script that answers by example and step, and keeps every (prompt, sampling) it was sent.

    A first-attempt prompt sampled with its example's attempt seed (`episode.seeded`) gets the first
    answer; with any other seed (a resample) or after a reflection (a retry) it gets the second answer,
    so a resample that reused the first seed would fail example 1 again."""

    def __init__(self, first_seed: int = 0) -> None:
        self.first_seed = first_seed
        self.seen: list[tuple[Prompt, SamplingConfig]] = []

    def __call__(self, prompt: Prompt, sampling: SamplingConfig, i: int) -> str:
        self.seen.append((prompt, sampling))
        idx = next(k for k, ex in enumerate(EXAMPLES) if str(ex["nums"]) in prompt.messages[1]["content"])
        last = prompt.messages[-1]["content"]
        if last.startswith(TASK.reflection_instruction):
            return f"I must use each number once (example {idx})."
        first = derive_seed(self.first_seed, "attempt", idx, 1)
        if len(prompt.messages) == 2 and (sampling.seed == first or idx == 0):
            return f"<answer> {FIRST[idx]} </answer>"
        return f"<answer> {SECOND[idx]} </answer>"


def config(**kw) -> EvalConfig:
    return EvalConfig(task="countdown", max_new_tokens=32, reflection_max_new_tokens=16, batch_size=3, **kw)


def rows_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]


def test_resample_sends_the_original_prompt_again_with_another_seed_and_no_reflection() -> None:
    rec = Recorder()
    sampling = config(temperature=0.7).sampling(TASK)
    eps = run_episodes(TASK, ScriptedGenerator(rec), EXAMPLES, sampling, second_try="resample")
    assert len(rec.seen) == 5  # 3 first attempts, 2 second attempts; no reflection
    firsts, seconds = rec.seen[:3], rec.seen[3:]
    assert [p for p, _ in seconds] == [TASK.prompt(EXAMPLES[1]), TASK.prompt(EXAMPLES[2])]
    assert all(TASK.reflection_instruction not in str(p.messages) for p, _ in rec.seen)
    for (_, attempt), (_, s) in zip(firsts[1:], seconds, strict=True):
        assert s.seed != attempt.seed  # its own seed: an independent draw, not a replay
        # The same sampling as the first attempt: a fair "sample twice" baseline.
        assert s.with_(seed=attempt.seed) == attempt
    assert [e.second_try_ok for e in eps] == [True, True, False]
    (second,) = eps[1].rounds
    assert second.reflection is None and second.retry_verdict.ok
    assert second.retry_prompt == TASK.prompt(EXAMPLES[1])


def test_resample_files_say_which_protocol_and_warn_about_greedy(tmp_path: Path) -> None:
    res = evaluate(
        config(second_try="resample", temperature=0.0),
        TASK,
        EXAMPLES,
        ScriptedGenerator(Recorder()),
        tmp_path / "resample",
        progress=False,
    )
    on_disk = json.loads((tmp_path / "resample" / "results.json").read_text())
    assert on_disk["second_try_protocol"] == "resample" and on_disk["config"]["second_try"] == "resample"
    assert "repeats the first exactly" in on_disk["second_try_note"]  # temperature 0
    assert res.retries == 2 and res.retry_fixed == 1 and res.reflection_tokens_mean is None
    rows = rows_of(tmp_path / "resample")
    (second,) = rows[1]["rounds"]
    assert second["reflection"] is None and second["reflection_prompt"] is None
    assert second["retry_prompt"] == rows[1]["prompt"] and second["retry_ok"] is True
    markdown = (tmp_path / "resample" / "results.md").read_text()
    assert "| second try (resample, no reflection) |" in markdown
    assert "reflect + retry" not in markdown
    warm = evaluate(
        config(second_try="resample", temperature=0.7),
        TASK,
        EXAMPLES,
        ScriptedGenerator(Recorder()),
        tmp_path / "warm",
        progress=False,
    )
    assert warm.second_try_note and "temperature 0.7" in warm.second_try_note
    assert "repeats" not in warm.second_try_note


def test_feedback_shows_the_verifiers_reason_in_the_reflection_prompt(tmp_path: Path) -> None:
    rec = Recorder()
    eps = run_episodes(TASK, ScriptedGenerator(rec), EXAMPLES, config().sampling(TASK), second_try="feedback")
    reflection_prompts = [
        p for p, _ in rec.seen if p.messages[-1]["content"].startswith(TASK.reflection_instruction)
    ]
    assert len(reflection_prompts) == 2
    expected = TASK.reflection_prompt(EXAMPLES[1], eps[1].attempt.text).messages
    sent = reflection_prompts[0].messages
    assert sent[:-1] == expected[:-1]  # the task's chat, only the last instruction extended
    assert sent[-1] == {"role": "user", "content": f"{TASK.reflection_instruction}\n\n{FEEDBACK}"}
    # The retry continues from the chat the reflection was really asked in.
    (second,) = eps[1].rounds
    assert second.reflection is not None
    assert second.retry_prompt.messages == [
        *sent,
        {"role": "assistant", "content": second.reflection.text},
        {"role": "user", "content": TASK.retry_instruction},
    ]
    assert second.retry_prompt in [p for p, _ in rec.seen]
    assert [e.second_try_ok for e in eps] == [True, True, False]

    evaluate(
        config(second_try="feedback"), TASK, EXAMPLES, ScriptedGenerator(Recorder()), tmp_path, progress=False
    )
    rows = rows_of(tmp_path)
    assert rows[1]["rounds"][0]["reflection_prompt"] == sent  # the log holds the prompt really sent
    assert rows[1]["rounds"][0]["retry_prompt"] == second.retry_prompt.messages
    # Each example's own reason.
    assert rows[2]["rounds"][0]["reflection_prompt"][-1]["content"].endswith(
        f"The checker said: {rows[2]['attempt_reason']}."
    )
    assert rows[2]["attempt_reason"] == "number 1 not in the list"
    assert "| second try (reflect with verifier feedback + retry) |" in (tmp_path / "results.md").read_text()


def test_reflect_is_unchanged(tmp_path: Path) -> None:
    rec = Recorder()
    sampling = config().sampling(TASK)
    eps = run_episodes(TASK, ScriptedGenerator(rec), EXAMPLES, sampling)  # the default
    prompts = [p for p, _ in rec.seen]
    reflection = TASK.reflection_prompt(EXAMPLES[1], eps[1].attempt.text)
    assert reflection in prompts and "The checker said" not in str(prompts)
    (second,) = eps[1].rounds
    assert second.reflection is not None
    assert TASK.retry_prompt(EXAMPLES[1], eps[1].attempt.text, second.reflection.text) in prompts
    # Each step drew from its own seeds (`episode.seeded`), none from a resample's.
    steps = {"attempt": sampling.attempt, "reflection": sampling.reflection, "retry": sampling.retry}
    allowed = {derive_seed(cfg.seed, step, i, 1) for step, cfg in steps.items() for i in range(len(EXAMPLES))}
    assert {s.seed for _, s in rec.seen} <= allowed
    assert [e.second_try_ok for e in eps] == [True, True, False]

    res = evaluate(config(), TASK, EXAMPLES, ScriptedGenerator(Recorder()), tmp_path, progress=False)
    assert res.second_try_protocol == "reflect" and res.retries == 2
    assert "| second try (reflect + retry) |" in (tmp_path / "results.md").read_text()
    # Folders written before --second-try existed hold reflect runs and still resume.
    assert "second_try" not in json.loads((tmp_path / "run.json").read_text())


def test_resuming_a_folder_with_another_protocol_is_refused(tmp_path: Path) -> None:
    evaluate(config(), TASK, EXAMPLES, ScriptedGenerator(Recorder()), tmp_path, progress=False)
    for mode in ("resample", "feedback"):
        with pytest.raises(R3Error, match="another run.*second_try"):
            open_output(config(second_try=mode), tmp_path, check_only=True)
        with pytest.raises(R3Error, match="another run.*second_try"):
            evaluate(config(second_try=mode), TASK, EXAMPLES, ScriptedGenerator(Recorder()), tmp_path)
    res = evaluate(
        config(second_try="resample"), TASK, EXAMPLES, ScriptedGenerator(Recorder()), tmp_path, overwrite=True
    )
    assert res.second_try_protocol == "resample"
    with pytest.raises(R3Error, match="another run.*second_try"):  # and back again
        evaluate(config(), TASK, EXAMPLES, ScriptedGenerator(Recorder()), tmp_path)
    assert open_output(config(second_try="resample"), tmp_path, check_only=True).resumed  # same: resumes


def test_unknown_protocol_is_refused_before_anything_runs() -> None:
    gen = ScriptedGenerator(Recorder())
    with pytest.raises(R3Error, match="--second-try must be one of reflect, resample, feedback"):
        run_episodes(TASK, gen, EXAMPLES, config().sampling(TASK), second_try="reflexion")
    assert gen.calls == 0
    with pytest.raises(R3Error, match="'reflexion'"):
        config(second_try="reflexion")


def test_cli_unknown_value_is_one_line_with_status_2(tmp_path: Path, capsys) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "R3_NO_PROGRESS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "r3.cli",
            "eval",
            "--second-try",
            "bogus",
            "--output-dir",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("r3: error:"), proc.stderr
    assert "--second-try" in lines[0] and "'bogus'" in lines[0] and "resample" in lines[0]
    assert not (tmp_path / "o").exists()
    # The same from a YAML config (which argparse does not check).
    cfg = tmp_path / "c.yaml"
    cfg.write_text("second_try: bogus\n")
    assert main(["eval", "--config", str(cfg), "--output-dir", str(tmp_path / "o")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--second-try" in err[0] and "'bogus'" in err[0]


def test_cli_flag_and_yaml_reach_the_evaluation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end through `r3 eval` with the model loader replaced by a script that always fails."""
    import r3.generation.loader

    def always_wrong(prompt: Prompt, sampling: SamplingConfig, i: int) -> str:
        if prompt.messages[-1]["content"].startswith(TASK.reflection_instruction):
            return "Check the numbers."
        return "<answer> 1 + 1 </answer>"

    monkeypatch.setattr(
        r3.generation.loader, "load_generator", lambda *a, **k: ScriptedGenerator(always_wrong)
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text("second_try: resample\nlimit: 2\ntemperature: 0.5\n")
    out = tmp_path / "yaml"
    assert main(["eval", "--config", str(cfg), "--output-dir", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["second_try_protocol"] == "resample" and results["config"]["second_try"] == "resample"
    rows = rows_of(out)
    assert all(
        r["rounds"][0]["reflection"] is None and r["rounds"][0]["retry_prompt"] == r["prompt"] for r in rows
    )

    out = tmp_path / "flag"
    argv = [
        "eval",
        "--config",
        str(cfg),
        "--second-try",
        "feedback",
        "--output-dir",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0  # the flag wins over the file
    results = json.loads((out / "results.json").read_text())
    assert results["second_try_protocol"] == "feedback"
    assert all(
        "The checker said: " in r["rounds"][0]["reflection_prompt"][-1]["content"] for r in rows_of(out)
    )

"""`r3 report` on two evaluations written by the scripted generator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r3.cli import main as r3_main
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


# ----------------------------------------------------------------------------- analysis sections


def test_report_analyses_the_reflections(tmp_path: Path) -> None:
    run_eval(tmp_path / "vanilla", "1 + 1")
    run_eval(tmp_path / "trained", "7 + 5 + 2")
    text = write_report([str(tmp_path / "vanilla"), str(tmp_path / "trained")], tmp_path / "rep").read_text()
    assert "## Reflection lengths" in text and "| run | reflections | mean | min |" in text
    assert "| vanilla | 2 | 0/2 (0%) | 2 | 0/2 (0%) | 0/2 (0%) |" in text  # what the reflections do
    # Fix rate by category of the first attempt's failure (numbers as N).
    assert "| number N not in the list | 0/1 (0%) | 1/1 (100%) |" in text
    assert (tmp_path / "rep" / "fix_rates.png").stat().st_size > 1000
    # Example 1 was fixed by the trained run only: both runs' reflections side by side.
    assert "### Fixed by trained, not by vanilla: 1 example" in text
    fixed = text.split("### Fixed by trained")[1].split("## Reflections")[0]
    assert '"target": 14' in fixed and "I was wrong" in fixed and "Use every number exactly once." in fixed
    assert "retry (right): `<answer> 7 + 5 + 2 </answer>`" in fixed


def write_training_folder(folder: Path, steps: int = 3) -> None:
    history = [
        {
            "step": step,
            "loss": 0.0,
            "r3/retry_success": 0.25 * step,
            "r3/groups_no_signal": 1.0 / step,
            "r3/reflection_length": 10.0 + step,
        }
        for step in range(1, steps + 1)
    ]
    history.append({"step": steps, "train_runtime": 1.0})  # the final summary row: no r3/ metrics
    folder.mkdir(parents=True)
    (folder / "r3_training.json").write_text(json.dumps({"task": "countdown", "log_history": history}))


def test_report_of_training_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_eval(tmp_path / "vanilla", "1 + 1")
    write_training_folder(tmp_path / "trained-run")
    rep = tmp_path / "rep"
    args = [str(tmp_path / "vanilla"), str(tmp_path / "trained-run"), "--output-dir", str(rep)]
    assert r3_main(["report", *args]) == 0
    text = (rep / "report.md").read_text()
    assert "| vanilla |" in text and "## Training" in text
    assert "| trained-run | 3 | 0.500 (0.750) | 0.61 (0.33) | 12.0 (13.0) |" in text
    assert (rep / "training_curves.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "| trained-run | 3 |" in out and "training_curves.png" in out
    # Training folders alone: only the training section.
    only = write_report([str(tmp_path / "trained-run")], tmp_path / "rep2").read_text()
    assert only.startswith("# R3 report: countdown") and "## Training" in only and "accuracy" not in only


def test_report_names_a_folder_that_is_neither(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(R3Error, match=r"empty: no results.json and no r3_training.json"):
        write_report([str(tmp_path / "empty")], tmp_path / "rep")
    with pytest.raises(R3Error, match="missing: no such folder"):
        write_report([str(tmp_path / "missing")], tmp_path / "rep")


def test_a_training_summary_is_read_once_for_task_curves_and_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from r3.reports.training import read_training_summary

    write_training_folder(tmp_path / "run", steps=2)
    summary = read_training_summary(tmp_path / "run")
    assert summary is not None and summary.task == "countdown"
    assert summary.series["r3/retry_success"] == [(1, 0.25), (2, 0.5)]
    assert summary.optimizer_steps is None  # this file has no global_step: unknown, not 0
    (tmp_path / "run" / "r3_training.json").write_text('{"task": "countdown", "global_step": 4}')
    summary = read_training_summary(tmp_path / "run")
    assert summary is not None and summary.optimizer_steps == 4 and summary.series == {}
    assert read_training_summary(tmp_path / "untrained") is None
    # A summary that is there but broken is one line naming the file, from the report command too.
    (tmp_path / "run" / "r3_training.json").write_text('{"task": "count')
    with pytest.raises(R3Error, match=r"run/r3_training.json: not a training summary"):
        read_training_summary(tmp_path / "run")
    assert r3_main(["report", str(tmp_path / "run"), "--output-dir", str(tmp_path / "rep")]) != 0
    err = capsys.readouterr().err
    assert "r3_training.json: not a training summary" in err and "Traceback" not in err


def test_training_summary_file_name_matches_the_trainer() -> None:
    from r3.reports.training import SUMMARY_FILE
    from r3.training.trainer import SUMMARY_FILE as TRAINER_FILE

    assert SUMMARY_FILE == TRAINER_FILE


# ----------------------------------------------------------------------------- watching a run


def test_training_writes_tensorboard_events_and_completions(tmp_path: Path) -> None:
    """Two tiny R3 steps with report_to=tensorboard and log_completions: the event files hold the
    `r3/...` scalars (read back with TensorBoard's own reader), each logging step writes a table of
    reflections with their retries, and `r3 report` plots the run."""
    pytest.importorskip("tensorboard")
    import pandas as pd
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from r3.training.trainer import train
    from test_training_support import ToyTask, make_model, make_tokenizer, records, tiny_config

    tokenizer = make_tokenizer()
    config = tiny_config(
        tmp_path,
        num_generations=4,
        per_device_train_batch_size=8,
        max_steps=2,
        report_to="tensorboard",
        log_completions=True,
    )
    train(config, model=make_model(tokenizer), tokenizer=tokenizer, task=ToyTask(), records=records())

    out = Path(config.output_dir)
    events = sorted(out.glob("runs/*/events.out.tfevents.*"))  # transformers' default: <output_dir>/runs/
    assert events, sorted(p.relative_to(out) for p in out.rglob("*"))
    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    scalars = set(accumulator.Tags()["scalars"])
    for tag in ("train/r3/retry_success", "train/r3/groups_no_signal", "train/r3/reflection_length"):
        assert tag in scalars, sorted(scalars)
        assert [e.step for e in accumulator.Scalars(tag)] == [1, 2]
    assert "train/reward" in scalars

    tables = sorted((out / "completions").glob("completions_*.parquet"))
    assert len(tables) == 2  # one per logging step
    table = pd.read_parquet(tables[-1])
    assert {"prompt", "completion", "retry", "retry_success", "advantage"} <= set(table.columns)
    assert len(table) == 8 and all(isinstance(r, str) for r in table["retry"])

    text = write_report([str(out)], tmp_path / "rep").read_text()
    assert "| out | 2 |" in text and (tmp_path / "rep" / "training_curves.png").is_file()


def test_each_training_mode_is_tabled_by_the_success_its_reward_scores() -> None:
    """R3 logs the retry's success, plain GRPO the attempt's, the combined mode both kinds' and every
    turn's: the table (and the plot's success panel, by the same `success_key`) shows the reward's."""
    from r3.reports.training import success_key, training_table

    r3 = {"r3/retry_success": [(1, 0.25), (2, 0.5)]}
    grpo = {"r3/attempt_success": [(1, 0.5), (2, 0.75)]}
    combined = {
        "r3/attempt_success": [(1, 0.5)],
        "r3/retry_success": [(2, 0.125)],
        "r3/turn_success": [(1, 0.5), (2, 0.125)],
    }
    assert [success_key(s) for s in (r3, grpo, combined, {})] == [
        "r3/retry_success", "r3/attempt_success", "r3/turn_success", "r3/retry_success",
    ]  # fmt: skip
    table = training_table({"r3": r3, "grpo": grpo, "combined": combined})
    assert "| r3 | 2 | 0.375 (0.500) |" in table
    assert "| grpo | 2 | 0.625 (0.750) |" in table
    assert "| combined | 2 | 0.312 (0.125) |" in table

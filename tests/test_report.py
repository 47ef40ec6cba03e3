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


def run_eval(
    folder: Path, retry_answer: str, examples: list[dict] | None = None, model_name: str = "scripted"
) -> None:
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

    generator = ScriptedGenerator(script, model_name=model_name)
    evaluate(EvalConfig(batch_size=4), TASK, examples or EXAMPLES, generator, folder, progress=False)


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
        evaluate(EvalConfig(batch_size=4), TASK, examples, ScriptedGenerator(script), tmp_path / name)
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
        config = EvalConfig(batch_size=4, second_try=mode)
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


# ----------------------------------------------------------------------------- comparable runs


def test_runs_of_different_sizes_are_said_not_comparable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_eval(tmp_path / "vanilla", "1 + 1", EXAMPLES + [{"nums": [3, 4, 5], "target": 12}])
    run_eval(tmp_path / "trained", "7 + 5 + 2")
    rep = tmp_path / "rep"
    folders = [str(tmp_path / "vanilla"), str(tmp_path / "trained")]
    assert r3_main(["report", *folders, "--output-dir", str(rep)]) == 0
    sentence = "Not comparable row by row: vanilla has 3 problems, trained 2 (2 in common)"
    assert sentence in (rep / "report.md").read_text()
    assert sentence in capsys.readouterr().out
    # The two problems both hold are still paired: the trained run fixed example 1, vanilla did not.
    assert "### Fixed by trained, not by vanilla: 1 example" in (rep / "report.md").read_text()


def test_runs_of_different_problems_are_not_paired(tmp_path: Path) -> None:
    """Same size, same indices, another second problem: the sentence, and example 1 (fixed by the
    trained run on its own problem) is not counted against vanilla's different problem 1."""
    other = [EXAMPLES[0], {"nums": [2, 5, 8], "target": 15}]
    run_eval(tmp_path / "vanilla", "1 + 1", other)
    run_eval(tmp_path / "trained", "7 + 5 + 2")
    text = write_report([str(tmp_path / "vanilla"), str(tmp_path / "trained")], tmp_path / "rep").read_text()
    assert "Not comparable row by row: the runs evaluated different problems (1 of 2 in common)" in text
    assert "### Fixed by trained, not by vanilla: 0 examples" in text
    # Reflections side by side: only the shared problem 0, never vanilla's problem 1 beside trained's.
    side_by_side = text.split("## Reflections")[1]
    assert "### Example 0" in side_by_side and "### Example 1" not in side_by_side


def test_runs_of_the_same_problems_carry_no_sentence(tmp_path: Path) -> None:
    run_eval(tmp_path / "vanilla", "1 + 1")
    run_eval(tmp_path / "trained", "7 + 5 + 2")
    text = write_report([str(tmp_path / "vanilla"), str(tmp_path / "trained")], tmp_path / "rep").read_text()
    assert "Not comparable" not in text


def test_the_report_names_no_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Absolute folders, an absolute output folder and a model given as an absolute path: report.md
    and report.html name runs by label and the model relative to the report's folder."""
    model = tmp_path / "models" / "warmstart"
    run_eval(tmp_path / "runs" / "vanilla", "1 + 1", model_name=str(model))
    run_eval(tmp_path / "runs" / "trained", "7 + 5 + 2", model_name=str(model))
    write_training_folder(tmp_path / "runs" / "trained-run")
    rep = tmp_path / "out" / "rep"
    folders = [str(tmp_path / "runs" / name) for name in ("vanilla", "trained", "trained-run")]
    monkeypatch.chdir(tmp_path / "runs")  # another working directory than the report's
    assert r3_main(["report", *folders, "--output-dir", str(rep), "--html"]) == 0
    text = (rep / "report.md").read_text()
    assert "| vanilla | `../../models/warmstart` |" in text
    for name in ("report.md", "report.html"):
        assert str(tmp_path) not in (rep / name).read_text()


def test_default_labels_tell_folders_of_one_name_apart(tmp_path: Path) -> None:
    run_eval(tmp_path / "a" / "eval", "1 + 1")
    run_eval(tmp_path / "b" / "eval", "7 + 5 + 2")
    folders = [str(tmp_path / "a" / "eval"), str(tmp_path / "b" / "eval")]
    text = write_report(folders, tmp_path / "rep").read_text()
    assert "| a/eval |" in text and "| b/eval |" in text
    assert "### Fixed by b/eval, not by a/eval: 1 example" in text


# ----------------------------------------------------------------------------- plots


def fix_rate_runs(tmp_path: Path) -> list:
    from r3.reports.compare import load_run

    run_eval(tmp_path / "vanilla", "1 + 1")
    run_eval(tmp_path / "trained", "7 + 5 + 2")
    return [load_run(tmp_path / "vanilla"), load_run(tmp_path / "trained")]


def test_the_fix_rate_axis_fits_small_rates(tmp_path: Path) -> None:
    """Rates of at most 7% get an axis a little above 7%, not one to 100% (the bars would be slivers);
    a rate of 100% still gets room for its count beside the bar."""
    import matplotlib.pyplot as plt

    from r3.reports.compare import plot_fix_rates

    runs = fix_rate_runs(tmp_path)
    small = [("evaluates to N, not N", [(15, 229), (7, 100)]), ("number N used twice", [(0, 4), (0, 195)])]
    fig = plot_fix_rates(runs, small)
    assert fig is not None
    low, high = fig.axes[0].get_xlim()
    plt.close(fig)
    assert low == 0 and 7.0 < high < 12
    fig = plot_fix_rates(runs, [("evaluates to N, not N", [(3, 3), (0, 2)])])
    assert fig is not None and fig.axes[0].get_xlim()[1] > 100
    plt.close(fig)


def test_the_accuracy_axis_fits_the_intervals(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from r3.reports.compare import plot_accuracy

    runs = fix_rate_runs(tmp_path)  # 0% and 50% on two problems: the interval of 50% reaches 90.5%
    fig = plot_accuracy(runs)
    top = fig.axes[0].get_ylim()[1]
    plt.close(fig)
    highest = max(run.results.second_try.ci95[1] for run in runs) * 100
    assert highest < top <= 100


def test_axis_top() -> None:
    from r3.reports.plots import axis_top

    assert axis_top(7.0) == pytest.approx(8.05)  # 15% headroom
    assert axis_top(0.0) == 5.0  # nothing to show: still a readable axis
    assert axis_top(95.0) == 100.0  # a percentage axis ends at 100
    assert axis_top(100.0, headroom=0.3, ceiling=None) == pytest.approx(130.0)  # room for a label


def test_two_reasons_with_a_long_common_prefix_get_distinct_labels(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from r3.reports.compare import plot_fix_rates
    from r3.reports.plots import distinct_labels

    prefix = "number N used N times, but the list has it "
    reasons = [prefix + "N times only", prefix + "once, in the given numbers"]
    fig = plot_fix_rates(fix_rate_runs(tmp_path), [(r, [(0, 1), (1, 2)]) for r in reasons])
    assert fig is not None
    shown = [tick.get_text() for tick in fig.axes[0].get_yticklabels()]
    plt.close(fig)
    assert len(shown) == 2 and shown[0] != shown[1]
    assert [" ".join(label.split()) for label in shown] == reasons  # wrapped, not cut
    # Where even wrapping must cut, the clashing labels are told apart by their row in the table.
    assert distinct_labels(reasons, width=30, max_lines=1) == [
        "number N used N times, but th… (row 1)",
        "number N used N times, but th… (row 2)",
    ]
    assert distinct_labels(["short", "short too"], width=30, max_lines=1) == ["short", "short too"]


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

"""The `r3` command line: end to end on a tiny model, and one clear line for every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r3.cli import main

#: A guard against a hung command, not a speed limit (those are benchmarks'): the embedded-model eval
#: takes ~20 s alone and went past 300 s on a 2-core machine shared with three training processes.
CLI_TIMEOUT_S = 1200


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "R3_NO_PROGRESS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "r3.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=CLI_TIMEOUT_S,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("r3: error:")
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_eval_end_to_end_on_a_tiny_model(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            "--model",
            str(tiny_model_dir),
            "--limit",
            "3",
            "--max-new-tokens",
            "8",
            "--reflection-max-new-tokens",
            "8",
            "--output-dir",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 3 and results["model"] == str(tiny_model_dir)
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    # a random model fails countdown: every row carries a reflection and a retry
    assert all(r["rounds"][0]["reflection"] is not None for r in rows if not r["first_try_ok"])
    assert "second try" in capsys.readouterr().out


def test_config_file_sets_defaults_and_flags_override(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"model: {tiny_model_dir}\nlimit: 2\nmax_new_tokens: 4\nreflection_max_new_tokens: 4\n")
    out = tmp_path / "eval"
    assert main(["eval", "--config", str(cfg), "--limit", "1", "--output-dir", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 1 and results["config"]["max_new_tokens"] == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("modle: x\n")
    assert_one_line_error(
        run_cli("eval", "--config", str(bad)), "bad.yaml: unknown key 'modle' (did you mean 'model'?)"
    )


def test_unknown_task_suggests_the_closest() -> None:
    assert_one_line_error(run_cli("eval", "--task", "countdwn"), "unknown task 'countdwn'", "countdown")


def test_missing_data_file(tmp_path: Path) -> None:
    assert_one_line_error(
        run_cli("eval", "--data", str(tmp_path / "nope.jsonl")), "nope.jsonl", "no such file"
    )


def test_malformed_row_names_file_row_and_field(tmp_path: Path) -> None:
    data = tmp_path / "cd.jsonl"
    data.write_text('{"nums": [1, 2, 3], "target": 6}\n{"nums": [1, 2], "target": "six"}\n')
    assert_one_line_error(run_cli("eval", "--data", str(data)), "cd.jsonl", "row 2", "target")


def test_not_json_line(tmp_path: Path) -> None:
    data = tmp_path / "cd.jsonl"
    data.write_text('{"nums": [1, 2, 3], "target": 6}\n{"nums": [1, 2\n')
    assert_one_line_error(run_cli("eval", "--data", str(data)), "row 2", "not valid JSON")


def test_tools_that_are_not_json(tmp_path: Path) -> None:
    data = tmp_path / "fc.jsonl"
    row = {"query": "q", "tools": "[{not json", "answers": "[]"}
    data.write_text(json.dumps(row) + "\n")
    assert_one_line_error(
        run_cli("eval", "--task", "function_calling", "--data", str(data)), "row 1", "tools"
    )


def in_process_error(capsys, *argv: str) -> str:
    """Run `r3 argv` in this process; it must fail with status 2 and one line on stderr."""
    assert main(list(argv)) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("r3: error:"), lines
    return lines[0]


def test_data_files_that_are_not_utf8_or_nested_too_deeply(tmp_path: Path, capsys) -> None:
    data = tmp_path / "cd.jsonl"
    data.write_bytes(b'{"nums": [1, 2, 3], "target": 6}\n{"nums": [1, 2], "target": "\xff\xfe"}\n')
    line = in_process_error(capsys, "eval", "--data", str(data))
    assert "cd.jsonl, row 2" in line and "not UTF-8" in line
    data.write_text("[" * 100_000 + "\n")
    line = in_process_error(capsys, "eval", "--data", str(data))
    assert "cd.jsonl, row 1" in line and "nested too deeply" in line
    whole = tmp_path / "cd.json"
    whole.write_bytes(b"[\xff]")
    assert "not UTF-8" in in_process_error(capsys, "eval", "--data", str(whole))


def test_counts_must_be_positive_from_flags_and_yaml(tmp_path: Path, capsys) -> None:
    line = in_process_error(capsys, "eval", "--batch-size", "0", "--limit", "1")
    assert "--batch-size must be at least 1 (got 0)" in line
    assert "--limit must be at least 0" in in_process_error(capsys, "eval", "--limit", "-1")
    assert "no examples to evaluate" in in_process_error(capsys, "eval", "--limit", "0")
    config = tmp_path / "c.yaml"
    config.write_text("max_new_tokens: 0\n")
    assert "--max-new-tokens must be at least 1" in in_process_error(capsys, "eval", "--config", str(config))
    assert "--batch-size" in in_process_error(capsys, "mine", "--batch-size", "0", "--output-dir", "x")


def test_eval_refuses_another_runs_folder_before_loading_the_model(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"task": "function_calling"}))
    # The model folder does not exist: reaching the loader would be a different error.
    line = in_process_error(
        capsys, "eval", "--limit", "1", "--model", str(tmp_path / "no-model"), "--output-dir", str(out)
    )
    assert "holds another run's output" in line
    # A mistyped model leaves no trace in a new folder: the corrected command is not refused.
    fresh = tmp_path / "fresh"
    assert "no-model" in in_process_error(
        capsys, "eval", "--limit", "1", "--model", str(tmp_path / "no-model"), "--output-dir", str(fresh)
    )
    assert not fresh.exists()


def test_missing_model_folder(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("eval", "--model", str(tmp_path / "no-model"), "--limit", "1"), "no-model")


def test_no_command_prints_help() -> None:
    proc = run_cli()
    assert proc.returncode == 1 and "eval" in proc.stdout


@pytest.mark.slow
def test_eval_on_the_embedded_model(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    proc = run_cli(
        "eval",
        "--limit",
        "2",
        "--max-new-tokens",
        "48",
        "--reflection-max-new-tokens",
        "32",
        "--output-dir",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "first try" in proc.stdout and "second try" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["model"].startswith("SmolLM2-135M-Instruct") and results["n"] == 2
    assert 0.0 <= results["second_try"]["accuracy"] <= 1.0
    assert results["first_try"]["correct"] <= results["second_try"]["correct"]


def test_task_args_reach_the_task_constructor(tmp_path: Path, capsys) -> None:
    from r3.cli.eval_cmd import parse
    from r3.tasks import get_task

    args = parse(["--task-arg", "min_nums=4", "--task-arg", "max_nums=4", "--task-arg=system_prompt=null"])
    options = args.task_options()
    assert options == {"min_nums": 4, "max_nums": 4, "system_prompt": None}
    # One naming convention: the flag, its underscore spelling, and the YAML mapping are one field.
    assert parse(["--task_args", "min_nums=4", "max_nums=4"]).task_options() == {"min_nums": 4, "max_nums": 4}
    config = tmp_path / "eval.yaml"
    config.write_text("task_args: {min_nums: 4}\n")
    assert parse(["--config", str(config)]).task_options() == {"min_nums": 4}
    task = get_task("countdown", **options)
    assert all(len(row["nums"]) == 4 for row in task.load(None, limit=20))
    assert task.prompt(task.load(None, limit=1)[0]).messages[0]["role"] == "user"  # no system turn

    line = in_process_error(capsys, "eval", "--task-arg", "min_nums")
    assert "--task-arg expects KEY=VALUE" in line
    line = in_process_error(capsys, "eval", "--task-arg", "min_num=4", "--limit", "1")
    assert "task 'countdown'" in line and "min_num" in line


def test_task_args_from_a_config_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("task_args: {min_nums: 5, max_nums: 5}\nlimit: 2\nmax_new_tokens: 2\n")
    out = tmp_path / "eval"
    argv = ["eval", "--config", str(config), "--model", str(tiny_model_dir), "--output-dir", str(out)]
    assert main([*argv, "--reflection-max-new-tokens", "2", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(len(row["example"]["nums"]) == 5 for row in rows)
    assert json.loads((out / "results.json").read_text())["config"]["task_options"] == {
        "min_nums": 5,
        "max_nums": 5,
    }


def test_report_takes_its_folders_first_and_checks_labels(capsys) -> None:
    from r3.cli.report_cmd import positional_runs

    assert positional_runs(["a", "b", "--html"]) == ["--runs", "a", "b", "--html"]
    assert positional_runs(["--runs", "a"]) == ["--runs", "a"]
    line = in_process_error(capsys, "report", "a", "b", "--labels", "x")
    assert "--labels names 1 folders, but 2 were given" in line
    assert "needs at least one folder" in in_process_error(capsys, "report")


def test_repeated_task_args_are_merged_in_place() -> None:
    from r3.cli.parser import merge_repeated

    names = ("--task-arg", "--task_args")
    argv = ["--limit", "3", "--task-arg", "a=1", "--seed", "2", "--task_args=b=2", "--task-arg", "c=3", "d=4"]
    assert merge_repeated(argv, names) == [
        "--limit",
        "3",
        "--task-arg",
        "a=1",
        "b=2",
        "c=3",
        "d=4",
        "--seed",
        "2",
    ]
    assert merge_repeated(["--limit", "3"], names) == ["--limit", "3"]

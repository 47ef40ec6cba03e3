"""What long jobs print: progress lines off a terminal (with a heartbeat), one line per training step,
and the thread setting every command takes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from r3.errors import R3Error
from r3.progress import ProgressReport
from r3.threads import apply_threads, thread_count
from r3.training.console import StepLines, step_fields
from test_training_support import make_tokenizer, tiny_config, toy_trainer


@pytest.fixture(autouse=True)
def progress_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R3_NO_PROGRESS", "0")  # the suite's default silences progress


def test_heartbeat_prints_while_nothing_advances(capsys: pytest.CaptureFixture[str]) -> None:
    with ProgressReport("eval", 10, heartbeat=0.2) as report:
        time.sleep(0.9)  # a long batch: nothing advances
        report.advance(2)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("eval: ")]
    assert len([line for line in lines if line.startswith("eval: 0/10")]) >= 2, lines
    assert lines[-1].startswith("eval: 2/10"), lines


def test_interval_zero_prints_every_advance_and_quiet_prints_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with ProgressReport("train", 3, interval=0, heartbeat=0) as report:
        for step in range(3):
            report.advance(1, reward=f"{step / 2:.3f}")
    err = capsys.readouterr().err.splitlines()
    assert [line.split("  ")[0] for line in err] == ["train: 1/3", "train: 2/3", "train: 3/3"]
    assert "reward 1.000" in err[-1]
    with ProgressReport("train", 3, interval=0, enabled=False) as report:
        report.advance(3)
    assert capsys.readouterr().err == ""


def test_step_fields_pick_the_run_success_and_skip_the_closing_log() -> None:
    logs = {"loss": 0.01, "reward": 0.25, "r3/retry_success": 0.25, "r3/groups_with_signal": 1.0, "kl": 3.0}
    assert step_fields(logs) == {
        "loss": "0.010",
        "reward": "0.250",
        "retry success": "0.250",
        "groups with signal": "1.000",
    }
    assert step_fields({"train_runtime": 12.0, "train_loss": 0.1}) == {}


def test_training_prints_one_line_per_step_and_no_dicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokenizer = make_tokenizer()
    config = tiny_config(tmp_path, max_steps=3, logging_steps=1, save_steps=100)
    trainer = toy_trainer(config, tokenizer)
    assert [type(c) for c in trainer.callback_handler.callbacks if isinstance(c, StepLines)] == [StepLines]
    trainer.train()
    out = capsys.readouterr()
    lines = [line for line in out.err.splitlines() if line.startswith("train: ")]
    assert [line.split("  ")[0] for line in lines] == ["train: 1/3", "train: 2/3", "train: 3/3"], out.err
    assert all("reward " in line and "retry success " in line and "s/step " in line for line in lines)
    assert "{'loss'" not in out.out + out.err and "'train_runtime'" not in out.out + out.err


def test_thread_count_from_option_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("R3_THREADS", raising=False)
    assert thread_count(None) is None
    monkeypatch.setenv("R3_THREADS", "2")
    assert thread_count(None) == 2
    assert thread_count(1) == 1  # the option wins
    monkeypatch.setenv("R3_THREADS", "many")
    with pytest.raises(R3Error, match="R3_THREADS must be a whole number"):
        thread_count(None)
    with pytest.raises(R3Error, match="--threads must be at least 1"):
        thread_count(0)


def test_apply_threads_sets_torch_and_child_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.delenv("R3_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", str(before))
    try:
        assert apply_threads(1) == 1
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)


def test_a_command_sleeps_idle_threads_unless_the_user_chose() -> None:
    """`r3` sets OMP_WAIT_POLICY before torch loads (seen from the process that ran `r3 --version`);
    a user's own value is kept."""
    probe = (
        "import os\nfrom r3.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    shown = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert shown.stdout.splitlines()[-1] == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    shown = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert shown.stdout.splitlines()[-1] == "ACTIVE"


def test_threads_option_parses_for_every_model_command() -> None:
    from r3.cli.eval_cmd import parse as parse_eval
    from r3.cli.mine_cmd import parse as parse_mine

    before = torch.get_num_threads()
    try:
        assert parse_eval(["--threads", "1", "--limit", "1"]).threads == 1
        assert torch.get_num_threads() == 1
        assert parse_mine(["--threads", "1", "--output-dir", "x"]).threads == 1
        with pytest.raises(R3Error, match=re.escape("--threads must be at least 1")):
            parse_eval(["--threads", "0"])
    finally:
        torch.set_num_threads(before)

"""The README's quick start runs, command by command, as the README writes it, only smaller.

The shell block under "## Quick start" is read from README.md, so a change there changes what runs
here. Each `r3` line keeps every flag the README gives; the test appends small limits (flags given
later win), points the warm-start's base model at the tiny random model of conftest.py, and puts
every `runs/...` folder under tmp_path. The commands run in order through `r3.cli.main`, each reading
what the one before it wrote, so a quick start whose steps do not connect fails here.

One setting is changed beyond size: the tiny random model never solves a Countdown problem, so no
screened attempt has mixed retry outcomes and `--selection learnable` would (rightly) refuse the
failures file; the training here uses `--selection all`.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from r3.cli import main as r3_main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Appended to each command of the quick start: the same steps, small enough for seconds on a CPU.
SHRINK = {
    "sft": ["--max_steps", "2", "--limit", "8", "--save_strategy", "no"],
    "eval": ["--limit", "2", "--max-new-tokens", "8", "--reflection-max-new-tokens", "8", "--no-progress"],
    "mine": [
        *["--limit", "3", "--budget", "2", "--round-size", "2", "--max-new-tokens", "8"],
        *["--screen", "2", "--reflection-max-new-tokens", "8", "--no-progress"],
    ],
    "train": [
        *["--max_steps", "1", "--save_strategy", "no", "--selection", "all"],
        *["--num_generations", "2", "--per_device_train_batch_size", "2"],
        *["--max_completion_length", "8", "--retry_max_new_tokens", "8"],
    ],
    "report": [],
}


def quickstart_block(text: str) -> str:
    """The first ```bash block of the README's "## Quick start" section."""
    section = re.search(r"^## Quick start\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert section, "README.md has no '## Quick start' section"
    block = re.search(r"^```bash\n(.*?)^```", section.group(1), re.MULTILINE | re.DOTALL)
    assert block, "the quick start has no ```bash block"
    return block.group(1)


def shell_lines(block: str) -> list[str]:
    """The block's commands, with backslash continuations joined."""
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def quickstart_commands(block: str) -> list[list[str]]:
    """Each `r3 ...` line as an argument list, after the block's own `NAME="..."` assignments are
    substituted for `$NAME` (the words a shell would split them into)."""
    variables: dict[str, str] = {}
    commands = []
    for line in shell_lines(block):
        assignment = re.fullmatch(r"([A-Za-z_]\w*)=(.*)", line)
        if assignment:
            (value,) = shlex.split(assignment.group(2))
            variables[assignment.group(1)] = value
            continue
        words = []
        for word in shlex.split(line):
            name = re.fullmatch(r"\$\{?(\w+)\}?", word)
            words += variables[name.group(1)].split() if name else [word]
        if words[0] == "r3":
            commands.append(words[1:])
        else:
            assert words[0] in {"make", "."}, (
                f"the quick start runs something this test does not know: {line}"
            )
    return commands


def shrink(command: list[str], tmp_path: Path, base_model: Path) -> list[str]:
    """The README's command with its run folders under tmp_path and small limits appended."""
    args = [str(tmp_path / word) if word.startswith("runs/") else word for word in command]
    extra = list(SHRINK[args[0]])
    if args[0] == "sft":
        extra += ["--model", str(base_model)]
    return args + extra


def test_the_quick_start_is_found_and_shares_one_task_setting():
    commands = quickstart_commands(quickstart_block(README.read_text(encoding="utf-8")))
    assert [c[0] for c in commands] == ["sft", "eval", "mine", "train", "eval", "report"]

    def task_settings(command: list[str]) -> list[tuple[str, str]]:
        return sorted((w, command[i + 1]) for i, w in enumerate(command) if w in ("--task", "--task-arg"))

    first = task_settings(commands[0])
    assert ("--task", "countdown") in first and len(first) > 1
    for command in commands[1:-1]:  # every command but the report names the same task settings
        assert task_settings(command) == first, command
    # the warm-start is what eval, mine and train start from
    for command in commands[1:4]:
        assert command[command.index("--model") + 1] == "runs/warmstart", command


@pytest.mark.slow
def test_the_quick_start_runs_shrunk(tmp_path: Path, tiny_model_dir: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(ROOT)  # the README's recipe paths are relative to the repository
    commands = quickstart_commands(quickstart_block(README.read_text(encoding="utf-8")))
    for command in commands:
        args = shrink(command, tmp_path, tiny_model_dir)
        assert r3_main(args) == 0, f"r3 {shlex.join(args)}"

    runs = tmp_path / "runs"
    assert (runs / "warmstart" / "config.json").is_file()
    assert json.loads((runs / "warmstart" / "r3_sft.json").read_text())

    evals = [runs / c[c.index("--output-dir") + 1].removeprefix("runs/") for c in commands if c[0] == "eval"]
    assert len(evals) == 2
    for folder, model in zip(evals, [runs / "warmstart", runs / "trained"], strict=True):
        results = json.loads((folder / "results.json").read_text())
        assert results["model"] == str(model)
        assert results["n"] == 2
        assert 0.0 <= results["first_try"]["accuracy"] <= results["second_try"]["accuracy"] <= 1.0

    failures = [json.loads(line) for line in (runs / "mine" / "failures.jsonl").read_text().splitlines()]
    assert failures and any(row["failed_attempts"] for row in failures)

    training = json.loads((runs / "trained" / "r3_training.json").read_text())
    assert training["global_step"] == 1
    assert (runs / "trained" / "config.json").is_file()

    report = (runs / "report" / "report.md").read_text()
    assert "| warm-start |" in report and "| R3 |" in report

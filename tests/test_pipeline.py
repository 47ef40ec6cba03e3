"""The whole loop through the command line, as `make demo` runs it, on the tiny random model.

eval -> mine -> train (on the mined failures) -> eval of the trained model -> report, for Countdown
and for function calling. Each step reads
only what the one before it wrote, so this catches a broken hand-over (a failures file that training
refuses, a checkpoint that eval cannot load, results that the report cannot plot) in seconds rather
than in the ten minutes of `make demo` on the embedded model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r3.cli import main as r3_main

ROOT = Path(__file__).resolve().parents[1]
CPU_RECIPE = ROOT / "recipes" / "smollm2_countdown_cpu.yaml"
GEN = ["--max-new-tokens", "8", "--reflection-max-new-tokens", "8"]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["countdown", "function_calling"])
def test_eval_mine_train_eval_report(task: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    model = str(tiny_model_dir)
    vanilla, mined, trained, after, report = (
        tmp_path / name for name in ("eval-vanilla", "mine", "trained", "eval-trained", "report")
    )
    common = ["--task", task, "--limit", "6", "--no-progress"]

    assert r3_main(["eval", *common, *GEN, "--model", model, "--output-dir", str(vanilla)]) == 0
    before = json.loads((vanilla / "results.json").read_text())
    assert before["n"] == 6

    mine = ["mine", *common, "--model", model, "--budget", "4", "--round-size", "2"]
    assert r3_main([*mine, "--max-new-tokens", "8", "--output-dir", str(mined)]) == 0
    failures = mined / "failures.jsonl"
    rows = [json.loads(line) for line in failures.read_text().splitlines()]
    assert rows and any(row["failed_attempts"] for row in rows)

    train = [
        "train",
        "--config",
        str(CPU_RECIPE),
        "--task",
        task,
        "--model",
        model,
        "--failures",
        str(failures),
    ]
    train += ["--output_dir", str(trained), "--max_steps", "2", "--save_strategy", "no"]
    train += ["--max_completion_length", "8", "--retry_max_new_tokens", "8"]
    assert r3_main(train) == 0
    assert json.loads((trained / "r3_training.json").read_text())["global_step"] == 2

    assert r3_main(["eval", *common, *GEN, "--model", str(trained), "--output-dir", str(after)]) == 0
    assert json.loads((after / "results.json").read_text())["model"] == str(trained)

    labels = ["--labels", "vanilla", "trained"]
    assert r3_main(["report", str(vanilla), str(after), *labels, "--output-dir", str(report)]) == 0
    text = (report / "report.md").read_text()
    assert "| vanilla |" in text and "| trained |" in text
    assert (report / "accuracy.png").stat().st_size > 1000
    assert (report / "reflection_lengths.png").is_file()

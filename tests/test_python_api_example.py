"""`examples/python_api.py`, the loop driven from Python (docs/python_api.md), run as a user runs it.

The script fills in the dataclasses the `r3` commands parse (`EvalConfig`, `MineConfig`,
`R3Config`, `ReportArguments`) and calls the commands' functions: eval -> mine -> train -> eval ->
report on the tiny random model, in a fresh interpreter. The test checks that every file the script's
docstring promises is there, that the accuracies it prints are the ones in the results files, and that
the trained model loads with transformers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "python_api.py"


@pytest.mark.slow
def test_python_api_example_runs_the_loop(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "R3_NO_PROGRESS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, str(SCRIPT), str(tiny_model_dir), "--output-dir", str(out), "--limit", "6"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    before = json.loads((out / "eval-before" / "results.json").read_text())
    after = json.loads((out / "eval-after" / "results.json").read_text())
    assert before["n"] == after["n"] == 6
    assert before["model"] == str(tiny_model_dir)
    assert after["model"] == str(out / "trained")  # the second evaluation is of the trained model
    for folder in ("eval-before", "eval-after"):
        rows = (out / folder / "samples.jsonl").read_text().splitlines()
        assert len(rows) == 6
        assert (out / folder / "results.md").is_file()

    # The printed accuracies are the ones the evaluations wrote.
    for name in ("first_try", "second_try"):
        line = re.search(
            rf"^{name.replace('_', ' ')}: before (\S+)% -> after (\S+)% \(6 examples\)$", done.stdout, re.M
        )
        assert line, done.stdout[-2000:]
        assert float(line.group(1)) == pytest.approx(100 * before[name]["accuracy"], abs=0.05)
        assert float(line.group(2)) == pytest.approx(100 * after[name]["accuracy"], abs=0.05)

    failures = [json.loads(row) for row in (out / "mine" / "failures.jsonl").read_text().splitlines()]
    assert len(failures) == 6 and any(row["failed_attempts"] for row in failures)
    assert json.loads((out / "mine" / "summary.json").read_text())["queries_seen"] == 6

    training = json.loads((out / "trained" / "r3_training.json").read_text())
    assert training["global_step"] == 2
    assert training["failures"] == str(out / "mine" / "failures.jsonl")

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out / "trained")
    tokenizer = AutoTokenizer.from_pretrained(out / "trained")
    assert model.config.num_hidden_layers == 2 and len(tokenizer) == model.config.vocab_size

    report = (out / "report" / "report.md").read_text()
    assert "| before |" in report and "| after |" in report
    assert (out / "report" / "training_curves.png").is_file()
    assert f"report: {out / 'report' / 'report.md'}" in done.stdout

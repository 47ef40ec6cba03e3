"""benchmarks/gpu_bare_check.py, the check meant for a bare GPU machine, run here on the CPU.

No GPU is at hand in CI, so its `--device cpu` mode (the same steps in float32) is what keeps the
script working until it runs on one; `--skip-install` uses this environment's TRL and `datasets`
instead of the carried wheels, which CI does not have.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_bare_check.py"


def run_script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.fixture
def bare_check(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The script as a module (its import of `gpu_check` needs benchmarks/ on the path)."""
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("gpu_bare_check")


def test_without_wheels_it_says_how_to_get_them(tmp_path: Path) -> None:
    proc = run_script("--wheels", str(tmp_path / "none"), "--output", str(tmp_path / "out"), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--skip-install" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the refusal is for machines without it")
def test_cuda_without_a_gpu_is_refused_in_one_line(tmp_path: Path) -> None:
    proc = run_script("--skip-install", "--output", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--device cpu" in lines[0], proc.stderr


def test_a_failing_step_is_recorded_with_its_traceback(bare_check: ModuleType) -> None:
    results: dict = {}

    def broken() -> None:
        raise ValueError("no tokenizer")

    assert bare_check.timed_call("build_model", broken, results) is False
    step = results["build_model"]
    assert step["exit"] == 1 and "ValueError: no tokenizer" in step["tail"]


def test_a_step_whose_output_is_wrong_fails_though_it_exited_0(bare_check: ModuleType) -> None:
    results = {"eval": {"exit": 0}, "mine": {"exit": 0}}
    bare_check.check(results, "eval", False, "results.json: n = 3 of 4")
    bare_check.check(results, "mine", True, "summary.json: 4 queries kept")
    assert results["eval"] == {"exit": 2, "check": "FAILED: results.json: n = 3 of 4"}
    assert results["mine"] == {"exit": 0, "check": "summary.json: 4 queries kept"}


def test_the_tiny_tokenizer_round_trips_any_text_through_its_chat_template(
    bare_check: ModuleType, tmp_path: Path
) -> None:
    from transformers import AutoConfig, AutoTokenizer

    bare_check.build_tiny_model(tmp_path, hidden=16)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    text = "Using 3, 7, 12 → 16: <answer>(12 - 3) + 7</answer> é"
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
    )
    assert rendered == f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == rendered and tokenizer.unk_token_id not in ids
    assert ids.count(tokenizer.eos_token_id) == 1  # `<|im_end|>` is one token, the EOS
    assert AutoConfig.from_pretrained(tmp_path).vocab_size == len(tokenizer)


@pytest.mark.slow
def test_eval_mine_train_and_sft_pass_on_the_cpu(tmp_path: Path) -> None:
    """The whole script at its smallest (about a minute on 2 busy cores)."""
    out, report = tmp_path / "work", tmp_path / "report.json"
    proc = run_script(
        "--device", "cpu", "--skip-install", "--output", str(out), "--json", str(report),
        "--limit", "2", "--steps", "1", "--max-new-tokens", "4", "--hidden", "16",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(report.read_text())
    assert result["passed"] is True and result["device"] == "cpu"
    steps = result["steps"]
    assert list(steps) == ["build_model", "eval", "mine", "train", "sft"]
    assert all(step["exit"] == 0 for step in steps.values()), steps
    assert steps["eval"]["check"] == "results.json: n = 2 of 2"
    assert steps["mine"]["check"] == "summary.json: 2 queries kept"  # a random model fails every query
    assert steps["train"]["check"] == "r3_training.json: global_step = 1 of 1"
    assert steps["sft"]["check"] == "r3_sft.json: global_step = 2 of 2"
    assert result["versions"]["trl"] == "1.16.0"
    assert (out / "train" / "config.json").is_file()

"""`r3 sft`: answer-only loss, end to end on the tiny model, errors; (slow) a real warm-start helps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r3.cli import main as r3_main
from r3.cli.sft_cmd import main as sft_main
from r3.errors import R3Error
from r3.training.sft import SFTRunConfig, build_sft_examples, build_sft_trainer

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "smollm2_countdown_sft.yaml"
SMALL = {"min_nums": 3, "max_nums": 3, "max_number": 20, "max_target": 60}


def tiny_config(tmp_path: Path, model: Path, **overrides: object) -> SFTRunConfig:
    fields: dict[str, object] = {
        "output_dir": str(tmp_path / "out"),
        "model": str(model),
        "task": "countdown",
        "task_args": SMALL,
        "limit": 8,
        "use_cpu": True,
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "report_to": "none",
        "save_strategy": "no",
    }
    fields.update(overrides)
    return SFTRunConfig(**fields)  # type: ignore[arg-type]


def test_only_answer_tokens_carry_loss(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Labels come from TRL's own collator: -100 on every prompt token, the token ids on the answer
    and its EOS. Fails if the prompt were trained on, or if the answer lost its EOS."""
    from transformers import AutoTokenizer

    from r3.generation.chat import render_prompt
    from r3.tasks import get_task

    config = tiny_config(tmp_path, tiny_model_dir)
    trainer, rows = build_sft_trainer(config)
    assert rows.used == 8 and rows.skipped == 0
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    task = get_task("countdown", **SMALL)
    example = task.load(None, limit=1, seed=config.task_seed)[0]
    prompt_len = len(
        tokenizer(render_prompt(tokenizer, task.prompt(example)), add_special_tokens=False)["input_ids"]
    )
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    assert all(label == -100 for label in labels[:prompt_len])
    answer = [(i, t) for i, t in zip(ids[prompt_len:], labels[prompt_len:], strict=True) if t != -100]
    assert [t for _, t in answer] == [i for i, _ in answer] and answer  # labels equal the tokens
    assert answer[-1][1] == tokenizer.eos_token_id
    text = tokenizer.decode([t for _, t in answer][:-1])
    assert text == task.reference_answer(example)
    assert task.verify(example, text).ok


def test_rows_without_reference_are_skipped_and_counted(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from r3.tasks import get_task

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    task = get_task("countdown")
    rows = [{"nums": [3, 5, 8], "target": 16}, {"nums": [1, 1, 1], "target": 100}]
    built = build_sft_examples(task, rows, tokenizer)
    assert (built.used, built.skipped) == (1, 1)
    with pytest.raises(R3Error, match="no reference answers"):
        build_sft_examples(task, rows[1:], tokenizer)


def test_sft_cli_end_to_end_lora_merged(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The recipe plus overrides, LoRA merged, a model folder that `transformers` and `r3 eval` load."""
    from transformers import AutoModelForCausalLM

    out = tmp_path / "warm"
    code = sft_main(
        [
            "--config", str(RECIPE), "--model", str(tiny_model_dir), "--output_dir", str(out),
            "--max_steps", "2", "--limit", "8", "--save_steps", "1",
        ]
    )  # fmt: skip
    assert code == 0
    summary = json.loads((out / "r3_sft.json").read_text())
    assert summary["examples_used"] == 8 and summary["global_step"] == 2
    assert (out / "adapter" / "adapter_config.json").is_file()
    AutoModelForCausalLM.from_pretrained(out)  # merged weights in Hugging Face format
    code = r3_main(
        [
            "eval", "--model", str(out), "--limit", "2", "--max-new-tokens", "4",
            "--reflection-max-new-tokens", "4", "--output-dir", str(tmp_path / "eval"), "--device", "cpu",
        ]
    )  # fmt: skip
    assert code == 0


def test_resume_continues_from_the_checkpoint(tmp_path: Path, tiny_model_dir: Path) -> None:
    from r3.training.sft import train_sft

    first = train_sft(tiny_config(tmp_path, tiny_model_dir, save_strategy="steps", save_steps=2))
    assert first.global_step == 2 and (tmp_path / "out" / "checkpoint-2").is_dir()
    again = train_sft(
        tiny_config(tmp_path, tiny_model_dir, save_strategy="steps", save_steps=2, max_steps=3, resume=True)
    )
    assert again.global_step == 3
    assert len([r for r in again.log_history if "train_runtime" in r]) == 1  # one (resumed) run


def test_a_ctrl_c_during_the_final_save_waits_for_it(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """As `r3 train` (test_training_interrupt.py): the model and then `r3_sft.json` are written whole."""
    import signal
    import time

    from r3.training import trainer as trainer_module
    from r3.training.sft import SUMMARY_FILE, train_sft

    real_save = trainer_module.save_final

    def save_with_a_ctrl_c(trainer: object, config: object) -> object:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here, before the model is written
        return real_save(trainer, config)

    monkeypatch.setattr(trainer_module, "save_final", save_with_a_ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a terminal's Ctrl-C
    try:
        result = train_sft(tiny_config(tmp_path, tiny_model_dir))
    finally:
        signal.signal(signal.SIGINT, previous)
    out = tmp_path / "out"
    assert result.global_step == 2 and (out / "config.json").is_file()
    assert json.loads((out / SUMMARY_FILE).read_text())["global_step"] == 2
    assert "r3: finishing the final save first" in capfd.readouterr().err


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "R3_NO_PROGRESS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "r3.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_task_without_references_is_one_clear_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "2+2? Answer as <answer>N</answer>.", "answer": 4}\n')
    proc = run_cli(
        "sft", "--task", "custom", "--data", str(data), "--verifier", "examples.custom_task.verifier:verify",
        "--model", str(tiny_model_dir), "--output_dir", str(tmp_path / "o"), "--use_cpu", "true",
        "--report_to", "none",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert lines[-1].startswith("r3: error:") and "no reference answers" in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_field_is_one_clear_line(tmp_path: Path) -> None:
    proc = run_cli("sft", "--config", str(RECIPE), "--no_such_field", "1", "--output_dir", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "r3: error:" in proc.stderr


@pytest.mark.slow
def test_a_short_warm_start_lifts_the_embedded_model_above_zero(tmp_path: Path, embedded_dir: Path) -> None:
    """The point of `r3 sft`: the embedded model solves no Countdown problem; 40 LoRA steps on
    reference answers (about 4 minutes here) make it solve some held-out ones."""
    out = tmp_path / "sft"
    assert sft_main(
        ["--config", str(RECIPE), "--output_dir", str(out), "--max_steps", "40", "--limit", "320"]
    ) == 0  # fmt: skip
    results = {}
    for name, model in (("vanilla", None), ("warm-start", str(out))):
        argv = [
            "eval", "--limit", "40", "--seed", "7", "--max-new-tokens", "24",
            "--reflection-max-new-tokens", "8",
            "--batch-size", "20", "--output-dir", str(tmp_path / name), "--device", "cpu", "--no-progress",
            *[f"--task-arg={k}={v}" for k, v in SMALL.items()],
        ]  # fmt: skip
        if model:
            argv += ["--model", model]
        assert r3_main(argv) == 0
        results[name] = json.loads((tmp_path / name / "results.json").read_text())["first_try"]["correct"]
    assert results["warm-start"] > 0, results
    assert results["warm-start"] > results["vanilla"], results

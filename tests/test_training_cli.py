"""`r3 train`: recipes, command-line overrides, errors; and (slow) two real steps on the embedded model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from r3.cli import main as r3_main
from r3.cli.train_cmd import parse
from r3.errors import R3Error
from r3.mining.records import FailedAttempt, FailureRecord
from r3.tasks import get_task
from r3.training.config import R3Config

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
CPU_RECIPE = RECIPES / "smollm2_countdown_cpu.yaml"
#: The embedded model's recipes run on CPU; the others are the paper's GPU setups.
CPU_RECIPES = sorted(RECIPES.glob("smollm2_*.yaml"))
GPU_RECIPES = sorted(p for p in RECIPES.glob("*.yaml") if p not in CPU_RECIPES)
#: `r3 train` requires a failures file; parsing does not read it.
FAILURES = ["--failures", "f.jsonl"]


@pytest.mark.parametrize("recipe", CPU_RECIPES, ids=lambda p: p.stem)
def test_cpu_recipes_parse(recipe, tmp_path):
    """Every CPU recipe is a valid config of its command (`r3 sft` for the warm-start, else `r3 train`)."""
    from r3.cli.options import parse_trl_config
    from r3.training.sft import SFTRunConfig

    config_class = SFTRunConfig if recipe.stem.endswith("_sft") else R3Config
    config = parse_trl_config(config_class, ["--config", str(recipe), "--output_dir", str(tmp_path)], "r3")
    assert isinstance(config, config_class) and config.use_cpu and not config.bf16


def test_recipe_plus_overrides(tmp_path):
    config = parse(
        [
            "--config",
            str(CPU_RECIPE),
            "--model",
            "some/model",
            "--failures",
            "f.jsonl",
            "--output-dir",
            str(tmp_path),
            "--max_steps",
            "2",
            "--first-attempt",
            "online",
            "--retry_max_new_tokens",
            "32",
            "--learning-rate",
            "1e-5",
        ]
    )
    assert isinstance(config, R3Config)
    assert (config.task, config.model, config.failures) == ("countdown", "some/model", "f.jsonl")
    assert config.output_dir == str(tmp_path)
    assert (config.max_steps, config.first_attempt, config.retry_max_new_tokens) == (2, "online", 32)
    assert config.learning_rate == 1e-5
    # from the recipe
    assert config.use_cpu and not config.bf16 and not config.gradient_checkpointing
    assert (config.num_generations, config.per_device_train_batch_size, config.max_completion_length) == (
        4,
        4,
        64,
    )


def test_task_args_from_the_recipe_or_the_command_line(tmp_path):
    from r3.training.trainer import load_task

    recipe = tmp_path / "r.yaml"
    recipe.write_text(CPU_RECIPE.read_text() + "\ntask_args:\n  min_nums: 4\n  max_nums: 4\n")
    config = parse([*FAILURES, "--config", str(recipe), "--output-dir", str(tmp_path)])
    assert config.task_args == {"min_nums": 4, "max_nums": 4}
    assert load_task(config).config.min_nums == 4
    config = parse(
        [
            *FAILURES,
            "--config",
            str(CPU_RECIPE),
            "--output-dir",
            str(tmp_path),
            "--task_args",
            "{max_nums: 3}",
        ]
    )
    assert load_task(config).config.max_nums == 3
    with pytest.raises(R3Error, match="task_args must be a mapping"):
        parse(
            [*FAILURES, "--config", str(CPU_RECIPE), "--output-dir", str(tmp_path), "--task_args", "[1, 2]"]
        )


def test_unknown_keys_are_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(CPU_RECIPE.read_text() + "\nnot_a_field: 1\n")
    with pytest.raises(R3Error, match="not_a_field"):
        parse([*FAILURES, "--config", str(bad)])
    with pytest.raises(R3Error, match="unknown option --no-such-flag"):
        parse([*FAILURES, "--config", str(CPU_RECIPE), "--no-such-flag", "1"])
    with pytest.raises(R3Error, match="not found"):
        parse([*FAILURES, "--config", str(tmp_path / "missing.yaml")])
    with pytest.raises(R3Error, match="first_attempt"):
        parse([*FAILURES, "--config", str(CPU_RECIPE), "--first_attempt", "sometimes"])


def test_cli_reports_a_missing_failures_file(tmp_path, capsys):
    code = r3_main(
        [
            "train",
            "--config",
            str(CPU_RECIPE),
            "--failures",
            str(tmp_path / "none.jsonl"),
            "--output-dir",
            str(tmp_path / "o"),
            "--model",
            str(tmp_path / "nowhere"),
        ]
    )
    assert code == 2
    assert "r3: error:" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=lambda p: p.stem)
def test_gpu_recipes_follow_the_paper(recipe):
    """Parsed as YAML only: they need GPUs, bf16 and DeepSpeed. Every key must be an R3Config field."""
    values = yaml.safe_load(recipe.read_text())
    fields = {f.name for f in dataclasses.fields(R3Config)}
    assert set(values) <= fields, set(values) - fields
    assert values["beta"] == 0.001 and values["learning_rate"] == 5e-7
    assert values["lr_scheduler_type"] == "cosine" and values["max_steps"] == 1750
    assert values["use_vllm"] is True and values["vllm_mode"] == "colocate" and values["bf16"] is True
    stage = json.loads((ROOT / values["deepspeed"]).read_text())["zero_optimization"]["stage"]
    accel = yaml.safe_load((RECIPES / "accelerate" / f"zero{stage}.yaml").read_text())
    gpus = accel["num_processes"]
    assert values["per_device_train_batch_size"] * values["gradient_accumulation_steps"] * gpus == 256
    assert (ROOT / accel["deepspeed_config"]["deepspeed_config_file"]) == ROOT / values["deepspeed"]


# ----------------------------------------------------------------------------- slow: the embedded model


@pytest.mark.slow
def test_two_steps_on_the_embedded_model_then_eval(tmp_path, embedded_dir):
    failures = tmp_path / "failures.jsonl"
    attempts = [
        ({"nums": [3, 5, 7], "target": 22}, "<answer>3+5+7</answer>", "evaluates to 15"),
        ({"nums": [2, 4, 6], "target": 48}, "<answer>2*4</answer>", "not all numbers used"),
    ]
    with failures.open("w") as handle:
        for i, (example, text, reason) in enumerate(attempts):
            record = FailureRecord("countdown", i, example, [FailedAttempt.of(example, text, reason)], 1, 0)
            handle.write(json.dumps(record.to_json(get_task("countdown"))) + "\n")
    out = tmp_path / "trained"
    code = r3_main(
        [
            "train",
            "--config",
            str(CPU_RECIPE),
            "--failures",
            str(failures),
            "--output-dir",
            str(out),
            "--max_steps",
            "2",
            "--save_steps",
            "2",
            "--save_only_model",
            "true",
            "--max_completion_length",
            "16",
            "--retry_max_new_tokens",
            "16",
        ]
    )
    assert code == 0
    assert (out / "checkpoint-2").is_dir()
    assert (out / "config.json").is_file() and any(out.glob("*.safetensors"))
    assert (out / "tokenizer_config.json").is_file()
    summary = json.loads((out / "r3_training.json").read_text())
    steps = [row for row in summary["log_history"] if "reward" in row]
    assert summary["global_step"] == 2 and len(steps) == 2
    for row in steps:
        assert 0.0 <= row["rewards/retry_success/mean"] <= 1.0
        assert "r3/reflection_length" in row and "r3/retry_length" in row and "frac_reward_zero_std" in row

    code = r3_main(
        [
            "eval",
            "--task",
            "countdown",
            "--model",
            str(out),
            "--limit",
            "2",
            "--max-new-tokens",
            "16",
            "--reflection-max-new-tokens",
            "16",
            "--output-dir",
            str(tmp_path / "eval"),
        ]
    )
    assert code == 0


def test_task_args_read_like_evals(tmp_path):
    """`r3 train` reads task options through the function `r3 eval` and `r3 mine` use: KEY=VALUE works."""
    config = parse(
        [*FAILURES, "--config", str(CPU_RECIPE), "--output-dir", str(tmp_path), "--task_args", "min_nums=4"]
    )
    assert config.task_args == {"min_nums": 4}
    with pytest.raises(R3Error, match="KEY=VALUE"):
        parse(
            [*FAILURES, "--config", str(CPU_RECIPE), "--output-dir", str(tmp_path), "--task_args", "min_nums"]
        )

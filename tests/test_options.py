"""How the commands' options are composed: one task group (`TaskFields`) in every command, and one
dataclass per command, which the command parses and the library takes (`EvalConfig`, `MineConfig`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from r3.cli import eval_cmd, mine_cmd
from r3.cli.options import parse_trl_config
from r3.errors import R3Error
from r3.evaluation.evaluate import EvalConfig
from r3.mining.mine import MineConfig
from r3.tasks.options import TaskFields
from r3.training.config import R3Config
from r3.training.sft import SFTRunConfig

WANTED = {"min_nums": 4, "max_nums": 4, "system_prompt": None}
#: The options each command needs besides the task's (training runs on the CPU, logging nowhere).
ON_CPU = ["--output_dir", "unused", "--use_cpu", "true", "--bf16", "false", "--report_to", "none"]
#: What `r3 train`'s command line requires besides (parsing does not read the file).
FAILURES = ["--failures", "f.jsonl"]
COMMANDS: dict[str, tuple[type, list[str]]] = {
    "eval": (EvalConfig, []),
    "mine": (MineConfig, ["--output-dir", "unused"]),
    "sft": (SFTRunConfig, ON_CPU),
    "train": (R3Config, ON_CPU),
}


def written_every_way(tmp_path: Path) -> dict[str, list[str]]:
    """The same options as KEY=VALUE flags (three spellings), YAML in --config, and mapping strings."""
    recipe = tmp_path / "task.yaml"
    recipe.write_text("task_args: {min_nums: 4, max_nums: 4, system_prompt: null}\n")
    return {
        "repeated flags": [
            "--task-arg",
            "min_nums=4",
            "--task-arg=max_nums=4",
            "--task_args",
            "system_prompt=null",
        ],
        "one flag": ["--task_args", "min_nums=4", "max_nums=4", "system_prompt=null"],
        "YAML in --config": ["--config", str(recipe)],
        "a mapping string": ["--task-args", '{"min_nums": 4, "max_nums": 4, "system_prompt": null}'],
        "a YAML mapping string": ["--task_args", "{min_nums: 4, max_nums: 4, system_prompt: null}"],
    }


@pytest.mark.parametrize("command", COMMANDS)
def test_task_args_written_any_way_are_one_mapping_in_every_command(command: str, tmp_path: Path) -> None:
    cls, needed = COMMANDS[command]
    assert issubclass(cls, TaskFields)  # one declaration of the task group, inherited by all four
    parsed = {
        way: parse_trl_config(cls, [*argv, *needed], prog=f"r3 {command}").task_args
        for way, argv in written_every_way(tmp_path).items()
    }
    assert parsed == dict.fromkeys(parsed, WANTED)
    # From Python: a mapping, or the flags' strings.
    built = cls(task_args=["min_nums=4", "max_nums=4", "system_prompt=null"], **python_needs(command))
    assert built.task_args == WANTED and built.task_options() == WANTED
    assert cls(**python_needs(command)).task_args is None


@pytest.mark.parametrize("command", COMMANDS)
def test_malformed_task_args_are_refused_alike(command: str) -> None:
    cls, needed = COMMANDS[command]
    with pytest.raises(R3Error, match="--task-arg expects KEY=VALUE, got 'min_nums'"):
        parse_trl_config(cls, ["--task-arg", "min_nums", *needed], prog=f"r3 {command}")
    with pytest.raises(R3Error, match="task_args must be a mapping, got list"):
        parse_trl_config(cls, ["--task_args", "[1, 2]", *needed], prog=f"r3 {command}")


def python_needs(command: str) -> dict[str, Any]:
    if command in ("sft", "train"):
        return {"output_dir": "unused", "use_cpu": True, "bf16": False, "report_to": "none"}
    return {}


def as_flags(values: dict[str, Any]) -> list[str]:
    """`values` as the command line spells them (`--max-new-tokens 31`)."""
    return [part for name, value in values.items() for part in (f"--{name.replace('_', '-')}", str(value))]


#: A valid value other than the default for each of `r3 eval`'s settings.
EVAL_VALUES: dict[str, Any] = {
    "task": "custom",
    "verifier": "pkg.mod:check",
    "data": "rows.jsonl",
    "limit": 7,
    "seed": 3,
    "model": "some/model",
    "backend": "openai",
    "base_url": "http://127.0.0.1:9/v1",
    "batch_size": 5,
    "dtype": "bfloat16",
    "device": "cpu",
    "max_new_tokens": 31,
    "reflection_max_new_tokens": 17,
    "temperature": 0.5,
    "top_p": 0.9,
    "second_try": "feedback",
    "rounds": 3,
}


def test_r3_eval_parses_the_config_evaluate_takes() -> None:
    """One dataclass: what the command line parses is the object Python builds, and what it derives
    (the task's options, the batch as `chunk_size`, the server's URL) is read from it."""
    parsed = eval_cmd.parse([*as_flags(EVAL_VALUES), "--task-arg", "x=1"])
    built = EvalConfig(**EVAL_VALUES, task_args={"x": 1})
    assert type(parsed) is EvalConfig and parsed == built
    default = EvalConfig().settings()
    settings = built.settings()
    for name, value in EVAL_VALUES.items():
        if name in default:
            assert settings[name] == value != default[name]
    assert (settings["task_options"], settings["chunk_size"]) == ({"x": 1, "verifier": "pkg.mod:check"}, 5)

    vllm = EvalConfig(backend="vllm", base_url="http://ignored", engine_args=["max_model_len=64"])
    assert vllm.settings()["engine_args"] == {"max_model_len": 64}
    assert vllm.settings()["base_url"] is None  # a server's address is part of the run only for openai
    assert eval_cmd.parse([]) == EvalConfig()


#: `MineConfig.settings()`: the mining rule, run.json's keys beside the task, data and model; a new
#: setting joins it (and every folder's fingerprint) on purpose, by a line here.
MINE_SETTINGS: dict[str, Any] = {
    "budget": 12,
    "round_size": 3,
    "keep": 2,
    "full": True,
    "seed": 5,
    "max_new_tokens": 9,
    "temperature": 0.7,
    "top_p": 0.8,
    "rounds": 2,
    "reflection_max_new_tokens": 11,
    "window": 4,
    "screen": 3,
    "screen_retry_temperature": 0.0,
}


def test_r3_mine_parses_the_config_mine_takes() -> None:
    default = MineConfig()
    assert set(default.settings()) == set(MINE_SETTINGS)
    parsed = mine_cmd.parse(["--output-dir", "out", *as_flags(MINE_SETTINGS), "--batch-size", "7"])
    assert type(parsed) is MineConfig
    assert parsed == MineConfig(output_dir="out", batch_size=7, **MINE_SETTINGS)
    for name, value in parsed.settings().items():
        assert value == MINE_SETTINGS[name] != getattr(default, name)
    # What names the model and data, for the fingerprint; the server only where it is part of the run.
    served = MineConfig(model="m", backend="openai", base_url="http://s/v1", task_args=["min_nums=4"])
    assert served.identity() == {
        "task_options": {"min_nums": 4},
        "data": None,
        "model": "m",
        "backend": "openai",
        "dtype": "auto",
        "base_url": "http://s/v1",
    }
    assert MineConfig(base_url="http://s/v1").identity()["model"] == "embedded"
    assert "base_url" not in MineConfig(base_url="http://s/v1").identity()
    # Rows depend on their batch off CPU float32: then the window and batch size are part of the run.
    assert MineConfig(device="cpu").batching() is None
    assert MineConfig(device="cpu", dtype="bfloat16", window=4).batching() == {"window": 4, "batch_size": 128}


def test_r3_mine_needs_an_output_folder() -> None:
    with pytest.raises(R3Error, match="r3 mine needs --output-dir"):
        mine_cmd.parse(["--limit", "1"])
    with pytest.raises(R3Error, match="r3 mine needs --output-dir"):
        mine_cmd.run(MineConfig(limit=1))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"max_new_tokens": 0}, "--max-new-tokens must be at least 1 (got 0)"),
        ({"reflection_max_new_tokens": 0}, "--reflection-max-new-tokens must be at least 1 (got 0)"),
        ({"rounds": 0}, "--rounds must be a whole number >= 1 (got 0)"),
        ({"second_try": "again"}, "--second-try must be one of"),
    ],
)
def test_eval_settings_are_checked_once_by_the_config(bad: dict[str, Any], message: str) -> None:
    """The command refuses what the library config refuses, with its words: one check, in `EvalConfig`."""
    with pytest.raises(R3Error, match=message.replace("(", r"\(").replace(")", r"\)")):
        EvalConfig(**bad)
    with pytest.raises(R3Error, match=message.replace("(", r"\(").replace(")", r"\)")):
        eval_cmd.parse(as_flags(bad))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"budget": 0}, "--budget must be at least 1 (got 0)"),
        ({"reflection_max_new_tokens": 0}, "--reflection-max-new-tokens must be at least 1 (got 0)"),
        ({"max_new_tokens": "8"}, "--max-new-tokens must be an integer (got '8')"),
        ({"temperature": 0.0}, "--temperature must be > 0 for mining"),
    ],
)
def test_mine_settings_are_checked_once_by_the_config(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(R3Error, match=message.replace("(", r"\(").replace(")", r"\)")):
        MineConfig(**bad)


# ----------------------------------------------------------------------------- training: TRL's ModelConfig


def cpu_config(cls: type = R3Config, **values: Any) -> Any:
    return cls(output_dir="unused", use_cpu=True, bf16=False, report_to="none", **values)


@pytest.mark.parametrize("cls", [R3Config, SFTRunConfig])
def test_lora_is_trls_model_config_with_r3s_defaults(cls: type) -> None:
    """The LoRA fields are `ModelConfig`'s and TRL's `get_peft_config` builds the adapter's config;
    R3's defaults (rank 16, alpha 32, dropout 0.05, every linear layer) are what they were."""
    from peft import LoraConfig
    from trl import ModelConfig, get_peft_config

    assert issubclass(cls, ModelConfig)
    assert cpu_config(cls).peft_config() is None  # full fine-tuning unless use_peft
    config = cpu_config(cls, use_peft=True)
    before = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    assert config.peft_config().to_dict() == before.to_dict() == get_peft_config(config).to_dict()
    # TRL's other LoRA settings come with its fields.
    assert cpu_config(cls, use_peft=True, use_rslora=True, lora_r=4).peft_config().use_rslora


def test_lora_target_modules_from_flags_and_recipes(tmp_path: Path) -> None:
    from r3.cli.train_cmd import parse

    def targets(*argv: str) -> Any:
        return parse([*argv, *ON_CPU, *FAILURES, "--use_peft", "true"]).peft_config().target_modules

    # One module stays a module name (TRL's own config would turn it into a regular expression).
    assert targets("--lora_target_modules", "q_proj") == {"q_proj"}
    assert targets("--lora-target-modules", "q_proj", "v_proj") == {"q_proj", "v_proj"}
    assert targets("--lora_target_modules", "all-linear") == targets() == "all-linear"
    recipe = tmp_path / "lora.yaml"
    recipe.write_text("use_peft: true\nlora_target_modules: [k_proj]\nlora_r: 4\n")
    config = parse(["--config", str(recipe), *ON_CPU, *FAILURES])
    assert (config.peft_config().target_modules, config.peft_config().r) == ({"k_proj"}, 4)


def test_model_keeps_its_key_and_takes_trls_name(tmp_path: Path) -> None:
    from r3.cli.train_cmd import parse

    assert parse(["--model", "a/b", *ON_CPU, *FAILURES]).model == "a/b"
    assert parse(["--model_name_or_path", "a/b", *ON_CPU, *FAILURES]).model == "a/b"
    assert cpu_config(SFTRunConfig, model_name_or_path="a/b", model="a/b").model == "a/b"
    with pytest.raises(R3Error, match="model .a/b. and model_name_or_path .c/d. are one setting"):
        cpu_config(model="a/b", model_name_or_path="c/d")


@pytest.mark.parametrize(
    ("setting", "value"), [("load_in_4bit", True), ("load_in_8bit", True), ("model_revision", "v2")]
)
def test_model_settings_r3_does_not_apply_are_refused(setting: str, value: object) -> None:
    with pytest.raises(R3Error, match=f"{setting}: r3 supports only"):
        cpu_config(**{setting: value})


def test_attention_implementation_reaches_the_policy(tiny_model_dir: Path) -> None:
    from r3.training.trainer import load_policy

    for attention in ("eager", "sdpa"):
        model = load_policy(cpu_config(model=str(tiny_model_dir), attn_implementation=attention))
        assert model.config._attn_implementation == attention


@pytest.mark.parametrize("command", COMMANDS)
def test_limit_is_checked_by_the_task_group(command: str) -> None:
    """One check of `limit` (in `TaskFields`); eval and mine take 0 (then say there is nothing to do),
    training needs an example."""
    cls, needed = COMMANDS[command]
    low = 1 if command in ("sft", "train") else 0
    assert parse_trl_config(cls, ["--limit", str(low), *needed], prog="r3").limit == low
    with pytest.raises(R3Error, match=rf"--limit must be at least {low} \(got {low - 1}\)"):
        parse_trl_config(cls, ["--limit", str(low - 1), *needed], prog="r3")


def test_repeated_engine_args_keep_every_value():
    """`--engine-arg` repeated (as `--task-arg` is) keeps every value, read as YAML; it is refused for
    a backend other than vLLM."""
    from r3.cli.eval_cmd import parse

    args = parse(
        ["--backend", "vllm", "--engine-arg", "max_model_len=2048", "--engine-arg", "enforce_eager=false"]
    )
    assert args.engine_args == {"max_model_len": 2048, "enforce_eager": False}
    with pytest.raises(R3Error, match="--engine-arg is for --backend vllm"):
        parse(["--engine-arg", "max_model_len=2048"])

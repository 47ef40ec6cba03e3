"""The output folder of `r3 train` and `r3 sft` (`r3.training.folder`): a second run into a folder
holding a run's output is refused in one line unless `--resume` (same settings; it says which differ)
or `--overwrite` (the old run's files removed, no one else's); an empty or missing folder just runs.

The end-to-end tests run the real commands in-process on `tiny_model_dir` with tiny budgets; the rest
check the folder logic on configs alone (no model is loaded)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from r3.cli import main as r3_main
from r3.errors import R3Error
from r3.training.config import R3Config
from r3.training.folder import NOT_SETTINGS, RUN_LENGTH, run_settings, training_folder
from r3.training.sft import SFTRunConfig
from test_training_support import complete_checkpoints, write_countdown_failures

ROOT = Path(__file__).resolve().parents[1]
TRAIN_RECIPE = ROOT / "recipes" / "smollm2_countdown_cpu.yaml"
SFT_RECIPE = ROOT / "recipes" / "smollm2_countdown_sft.yaml"
SMALL = {"min_nums": 3, "max_nums": 3, "max_number": 20, "max_target": 60}
SUMMARY = {"train": "r3_training.json", "sft": "r3_sft.json"}


def write_failures(path: Path) -> Path:
    return write_countdown_failures(path, (11, 13))


def argv(command: str, tmp_path: Path, model: Path) -> list[str]:
    """Two steps of `r3 <command>` with a checkpoint after each, at learning rate 0.01."""
    out = ["--output_dir", str(tmp_path / "out"), "--model", str(model), "--learning_rate", "0.01"]
    steps = ["--max_steps", "2", "--save_steps", "1", "--save_total_limit", "10", "--logging_steps", "1"]
    if command == "train":
        failures = write_failures(tmp_path / "failures.jsonl")
        own = ["--config", str(TRAIN_RECIPE), "--failures", str(failures), "--num_generations", "2"]
        own += ["--per_device_train_batch_size", "2", "--max_completion_length", "4"]
        own += ["--retry_max_new_tokens", "4"]
    else:
        own = ["--config", str(SFT_RECIPE), "--task_args", json.dumps(SMALL), "--limit", "8"]
        own += ["--per_device_train_batch_size", "4"]
    return [command, *own, *out, *steps]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("r3: error: ")
    return err[0]


def logged_steps(summary: dict) -> list[int]:
    return [row["step"] for row in summary["log_history"] if "loss" in row]


@pytest.mark.parametrize("command", ["train", "sft"])
def test_a_second_run_is_refused_unless_resumed_or_overwritten(
    command: str, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = argv(command, tmp_path, tiny_model_dir)
    out = tmp_path / "out"
    summary = out / SUMMARY[command]
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # a folder holding only a user's file is empty to r3
    assert r3_main(base) == 0
    assert complete_checkpoints(out) == [1, 2]
    assert json.loads((out / "run.json").read_text())["command"] == command
    capsys.readouterr()

    # The same settings again: refused, naming the folder and both ways on.
    assert r3_main(base) == 2
    err = one_line_error(capsys)
    assert str(out) in err and "these settings" in err and "--resume" in err and "--overwrite" in err
    # Other settings: refused, naming what changed.
    assert r3_main([*base, "--learning_rate", "0.02"]) == 2
    err = one_line_error(capsys)
    assert str(out) in err and "learning_rate: 0.01 -> 0.02" in err
    assert "--resume" in err and "--overwrite" in err
    # --resume with a changed setting: refused, naming it; the run is left as it was.
    assert r3_main([*base, "--learning_rate", "0.02", "--resume", "true"]) == 2
    assert "learning_rate: 0.01 -> 0.02" in one_line_error(capsys)
    assert json.loads(summary.read_text())["global_step"] == 2 and complete_checkpoints(out) == [1, 2]
    # --resume and --overwrite together: one line.
    assert r3_main([*base, "--resume", "true", "--overwrite", "true"]) == 2
    assert "not both" in one_line_error(capsys)

    # --resume with the same settings continues from checkpoint-2, for one more step (max_steps may
    # grow) and with another logging interval (not a setting).
    assert r3_main([*base, "--resume", "true", "--max_steps", "3", "--logging_steps", "2"]) == 0
    continued = json.loads(summary.read_text())
    assert continued["global_step"] == 3 and complete_checkpoints(out) == [1, 2, 3]
    assert logged_steps(continued) == [1, 2, 3]  # the checkpoint's history, then the new step, once each
    assert len([row for row in continued["log_history"] if "train_runtime" in row]) == 1

    # --overwrite: the old run's files go, the user's stay, and the new run starts from step 0.
    assert r3_main([*base, "--learning_rate", "0.02", "--max_steps", "1", "--overwrite", "true"]) == 0
    fresh = json.loads(summary.read_text())
    assert fresh["global_step"] == 1 and logged_steps(fresh) == [1]
    assert complete_checkpoints(out) == [1]
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "run.json").read_text())["learning_rate"] == 0.02


def train_config(tmp_path: Path, **overrides: object) -> R3Config:
    fields: dict[str, object] = {
        "output_dir": str(tmp_path / "out"),
        "failures": str(tmp_path / "failures.jsonl"),
        "use_cpu": True,
        "report_to": "none",
    }
    fields.update(overrides)
    return R3Config(**fields)  # type: ignore[arg-type]


def open_and_close(config: R3Config, command: str = "train") -> bool:
    """Open the training folder as `train` does; whether it continues a run."""
    with training_folder(config, command, SUMMARY[command]) as run:
        assert run is not None
        return run.resumed


def test_what_counts_as_a_setting() -> None:
    """Every name left out is a field of one of the configs (a renamed TRL field would silently count
    again), and what decides the result is compared while logging, saving and paths are not."""
    fields = {f.name for cls in (R3Config, SFTRunConfig) for f in dataclasses.fields(cls)}
    assert sorted(NOT_SETTINGS - fields) == []
    assert set(RUN_LENGTH) <= fields
    settings = run_settings(R3Config(output_dir="o", use_cpu=True, report_to="none"))
    for counted in ("learning_rate", "seed", "model", "task", "failures", "mode", "beta", "loss_type"):
        assert counted in settings
    for left_out in ("output_dir", "logging_steps", "save_steps", "resume", "overwrite", "max_steps"):
        assert left_out not in settings
    json.dumps(settings)  # stored as run.json as it is


def test_the_failures_file_is_compared_by_content_and_named_wherever_run_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = write_failures(tmp_path / "failures.jsonl")
    assert not open_and_close(train_config(tmp_path))
    (tmp_path / "out" / "checkpoint-1").mkdir()
    monkeypatch.chdir(tmp_path)
    relative = train_config(tmp_path, failures="failures.jsonl", resume=True)
    assert open_and_close(relative)  # the same file by another name: the same run
    failures.write_text(failures.read_text().replace('"target": 13', '"target": 14'))
    with pytest.raises(R3Error, match="failures_sha256"):
        open_and_close(train_config(tmp_path, resume=True))


def test_folders_the_training_cannot_continue(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # Checkpoints without a run.json (written before r3 kept one): nothing to check them against.
    (out / "checkpoint-4").mkdir(parents=True)
    with pytest.raises(R3Error, match=r"holds checkpoint-4 but no run.json.*--overwrite"):
        open_and_close(train_config(tmp_path, resume=True))
    # Another command's folder is refused even where it holds none of the training's files.
    other = tmp_path / "eval"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"version": 4, "command": "eval"}))
    (other / "samples.jsonl").write_text("{}\n")
    with pytest.raises(R3Error, match="of `r3 eval`, not `r3 train`"):
        open_and_close(train_config(tmp_path, output_dir=str(other)))
    # A run.json alone (a run that failed before its first checkpoint) is nothing to continue.
    alone = tmp_path / "alone"
    assert not open_and_close(train_config(tmp_path, output_dir=str(alone), learning_rate=0.5))
    assert not open_and_close(train_config(tmp_path, output_dir=str(alone), resume=True))
    assert json.loads((alone / "run.json").read_text())["learning_rate"] == 1e-6  # GRPOConfig's default


def test_overwrite_removes_what_a_training_writes_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert not open_and_close(train_config(tmp_path))
    written = ["checkpoint-1/optimizer.pt", "adapter/adapter_config.json", "runs/x/events", "config.json"]
    written += ["model-00001-of-00002.safetensors", "tokenizer.json", "r3_training.json"]
    kept = ["README.md", "notes.txt", "checkpoints.md", "my-model/config.json"]
    for name in written + kept:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("x")
    assert not open_and_close(train_config(tmp_path, learning_rate=0.5, overwrite=True))
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert left == sorted([".lock", "run.json", *kept])


def test_only_the_main_process_writes_and_the_others_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A distributed run: every process checks the folder, so all refuse alike, but only the first
    one writes run.json and holds the lock (which would refuse the others)."""
    config = train_config(tmp_path)
    with training_folder(config, "train", SUMMARY["train"]) as main:
        assert main is not None
        monkeypatch.setattr(R3Config, "process_index", property(lambda self: 1))
        with training_folder(config, "train", SUMMARY["train"]) as other:
            assert other is None
    (tmp_path / "out" / "checkpoint-1").mkdir()
    with pytest.raises(R3Error, match="--resume"), training_folder(config, "train", SUMMARY["train"]):
        pass

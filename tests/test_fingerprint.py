"""One fingerprint for every command that writes a run folder (`rundir.fingerprint`): `r3 eval`,
`r3 mine` and `r3 forgetting` write `run.json` by the same function, with the same version and shape
rules, and refuse another command's folder or an earlier version's the same way, in one line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from r3 import rundir
from r3.errors import R3Error
from r3.evaluation.evaluate import EvalConfig, evaluate
from r3.forgetting import harness as forgetting
from r3.generation.scripted import ScriptedGenerator
from r3.mining.mine import MineConfig, mine, run_fingerprint
from r3.rundir import FINGERPRINT_VERSION
from r3.tasks import get_task
from test_mining_fakes import CoinTask, coin_generator

COUNTDOWN = get_task("countdown")
EXAMPLES = [{"nums": [1, 2, 3], "target": 6}, {"nums": [2, 5, 7], "target": 14}]


def run_eval(folder: Path, **fields: Any) -> None:
    config = EvalConfig(data="rows.jsonl", limit=2, batch_size=1, **fields)
    generator = ScriptedGenerator(lambda prompt, sampling, i: "<answer> 1 + 2 + 3 </answer>")
    evaluate(config, COUNTDOWN, EXAMPLES, generator, folder, progress=False)


def run_mine(folder: Path, **fields: Any) -> None:
    task = CoinTask()
    config = MineConfig(budget=4, round_size=2, **fields)
    identity = {"model": "coin-model", "data": "rows.jsonl"}
    mine(task, task.load(None, limit=3), coin_generator(), folder, config, identity=identity)


def run_forgetting(folder: Path, monkeypatch: pytest.MonkeyPatch, **fields: Any) -> None:
    """`r3 forgetting` with lm-eval left out: no task index, and made-up scores."""
    monkeypatch.setattr(forgetting, "task_manager", lambda config: None)
    monkeypatch.setattr(
        forgetting, "evaluate_model", lambda *args: {"r3_basics": {"acc": {"value": 0.5, "stderr": 0.1}}}
    )
    config = forgetting.ForgettingConfig(models=["rows.jsonl"], output_dir=str(folder), **fields)
    forgetting.run_forgetting(config, progress=False)


COMMANDS: dict[str, Callable[..., None]] = {
    "eval": lambda folder, monkeypatch: run_eval(folder),
    "mine": lambda folder, monkeypatch: run_mine(folder),
    "forgetting": run_forgetting,
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding `rows.jsonl`, which every command names by a relative path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rows.jsonl").write_text("{}\n")
    return tmp_path


def test_every_command_writes_its_run_json_through_the_one_function(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[tuple[str, dict[str, Any]]] = []
    real = rundir.fingerprint

    def spy(command: str, settings: Any, **rules: Any) -> dict[str, Any]:
        out = real(command, settings, **rules)
        built.append((command, out))
        return out

    monkeypatch.setattr(rundir, "fingerprint", spy)
    for name, run in COMMANDS.items():
        run(workdir / name, monkeypatch)
        stored = json.loads((workdir / name / "run.json").read_text())
        assert stored in [fp for command, fp in built if command == name], name
    assert {command for command, _ in built} == set(COMMANDS)


def test_every_run_json_has_the_same_version_and_shape(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = {}
    for name, run in COMMANDS.items():
        run(workdir / name, monkeypatch)
        runs[name] = json.loads((workdir / name / "run.json").read_text())
    absolute = str(workdir / "rows.jsonl")
    for name, run_json in runs.items():
        # The version and the command first, the same version for all.
        assert list(run_json)[:2] == ["version", "command"], name
        assert (run_json["version"], run_json["command"]) == (FINGERPRINT_VERSION, name)
        # No other version number of a command's own (mining's chain seeds, eval's sampler).
        assert not {"sampler", "chain_seeds"} & set(run_json), name
    # The examples' digest last, where a command has examples; local paths stored absolute.
    for name in ("eval", "mine"):
        assert list(runs[name])[-1] == "examples_sha256"
        assert runs[name]["data"] == absolute
    assert runs["forgetting"]["tasks"] == ["r3_basics"] and "models" not in runs["forgetting"]
    # Settings that decide nothing here are left out: eval's device and (rows independent of the
    # batch on CPU in float32) batch size, its paper-protocol defaults; mining's window and screen.
    assert not {"device", "chunk_size", "second_try", "rounds", "base_url"} & set(runs["eval"])
    assert not {"window", "batch_size", "screen", "rounds", "reflection_max_new_tokens"} & set(runs["mine"])


def test_settings_that_count_only_when_used_are_written_when_used(workdir: Path) -> None:
    run_eval(workdir / "eval", rounds=2, second_try="feedback", dtype="bfloat16")
    run_json = json.loads((workdir / "eval" / "run.json").read_text())
    # bfloat16 rows depend on their batch (`models.batch_invariant`): the batch size is part of the run.
    assert (run_json["rounds"], run_json["second_try"], run_json["chunk_size"]) == (2, "feedback", 1)
    task = CoinTask()
    run_json = run_fingerprint(task, task.load(None, limit=3), MineConfig(rounds=2, screen=2), batching=None)
    assert (run_json["rounds"], run_json["screen"], run_json["reflection_max_new_tokens"]) == (2, 2, 256)
    batching = {"window": 4, "batch_size": 8}  # as `r3 mine` adds them where rows depend on the batch
    assert run_fingerprint(task, task.load(None, limit=3), MineConfig(), batching=batching).items() >= (
        batching.items()
    )


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_refuses_an_earlier_version_and_another_command_in_one_line(
    name: str, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = workdir / name
    COMMANDS[name](folder, monkeypatch)
    run_file = folder / "run.json"
    written = json.loads(run_file.read_text())
    other = "mine" if name != "mine" else "eval"
    cases = [
        ({**written, "version": FINGERPRINT_VERSION - 1}, "written by an earlier version of r3"),
        ({k: v for k, v in written.items() if k not in ("version", "command")}, "run.json version None"),
        ({**written, "command": other}, f"of `r3 {other}`, not `r3 {name}`"),
    ]
    for stored, said in cases:
        run_file.write_text(json.dumps(stored))
        with pytest.raises(R3Error) as info:
            COMMANDS[name](folder, monkeypatch)
        message = str(info.value)
        assert message.startswith(f"{folder} holds another run's output") and said in message
        assert "\n" not in message
    # The same settings again: resumed, not refused.
    run_file.write_text(json.dumps(written))
    COMMANDS[name](folder, monkeypatch)


def test_a_changed_setting_is_named_by_every_command(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_eval(workdir / "eval")
    with pytest.raises(R3Error, match=r"\(top_p: 1.0 -> 0.5\)"):
        run_eval(workdir / "eval", top_p=0.5)
    run_mine(workdir / "mine")
    with pytest.raises(R3Error, match=r"\(top_p: 1.0 -> 0.5\)"):
        run_mine(workdir / "mine", top_p=0.5)
    run_forgetting(workdir / "forgetting", monkeypatch)
    with pytest.raises(R3Error, match=r"\(num_fewshot: None -> 2\)"):
        run_forgetting(workdir / "forgetting", monkeypatch, num_fewshot=2)

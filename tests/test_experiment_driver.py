"""The experiment driver's warm-start step (`experiments/countdown_r3.py`): which `r3 sft` it runs and
where it caches the model. The cache key must not move for an existing config (a moved key retrains
every user's warm-start), and `sft.task_args` trains the warm-start on its own problems."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_driver() -> Any:
    spec = importlib.util.spec_from_file_location("countdown_r3", ROOT / "experiments" / "countdown_r3.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_warmstart(config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The `r3 sft` arguments the warm-start step runs, with `r3` replaced by a recorder that writes
    the model's config where `--output_dir` points."""
    driver = load_driver()
    calls: list[list[str]] = []

    def fake_r3(*args: str, log: Path) -> None:
        calls.append(list(args))
        output = Path(args[args.index("--output_dir") + 1])
        output.mkdir(parents=True)
        (output / "config.json").write_text("{}")

    (tmp_path / "run").mkdir(parents=True)
    monkeypatch.setenv("R3_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(driver, "r3", fake_r3)
    target = driver.warmstart(config, tmp_path / "run", tmp_path / "log")
    assert (target / "config.json").is_file()
    assert len(calls) == 1
    return calls[0]


def test_the_demo_warm_start_keeps_its_cache_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = yaml.safe_load((ROOT / "experiments" / "countdown.yaml").read_text())
    args = run_warmstart(config, tmp_path, monkeypatch)
    assert Path(args[args.index("--output_dir") + 1]).name == "3d1cbe20f967"
    assert json.loads(args[args.index("--task_args") + 1]) == config["task_args"]


def test_sft_task_args_train_the_warm_start_on_its_own_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = yaml.safe_load((ROOT / "experiments" / "countdown.yaml").read_text())
    plain = run_warmstart(config, tmp_path / "a", monkeypatch)
    own = {"min_nums": 2, "max_nums": 3, "max_number": 20, "max_target": 60}
    config["sft"]["task_args"] = own
    args = run_warmstart(config, tmp_path / "b", monkeypatch)
    assert json.loads(args[args.index("--task_args") + 1]) == own
    assert not any(arg.startswith("--task_args=") for arg in args)  # not passed a second time as a field
    key = Path(args[args.index("--output_dir") + 1]).name
    assert key != Path(plain[plain.index("--output_dir") + 1]).name

"""The experiment driver's warm-start step (`experiments/countdown_r3.py`): which `r3 sft` it runs and
where it caches the model. The cache key must not move for an existing config (a moved key retrains
every user's warm-start), and `sft.task_args` trains the warm-start on its own problems."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_experiment(name: str) -> Any:
    """`experiments/<name>.py` as a module, registered under `name`: the folder is no package, and a
    script there imports its neighbours by name, as running it from its folder allows."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def load_driver() -> Any:
    """The experiment's driver, with the report it imports loaded first."""
    load_experiment("experiment_report")
    return load_experiment("countdown_r3")


def warmstart_calls(
    config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, driver: Any = None
) -> list[list[str]]:
    """The `r3 sft` commands the warm-start step runs into a new run folder under `tmp_path` (the cache
    in `tmp_path / "cache"`), with `r3` replaced by a recorder that writes a model where `--output_dir`
    points: its config and a file that says which call wrote it."""
    driver = driver or load_driver()
    calls: list[list[str]] = []

    def fake_r3(*args: str, log: Path) -> None:
        calls.append(list(args))
        output = Path(args[args.index("--output_dir") + 1])
        output.mkdir(parents=True, exist_ok=True)
        (output / "config.json").write_text("{}")
        (output / "trained-by.txt").write_text(str(tmp_path))
        (output / driver.SFT_SUMMARY).write_text("{}")  # written last, as `r3 sft` does

    run = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    run.mkdir(parents=True)
    monkeypatch.setenv("R3_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(driver, "r3", fake_r3)
    target = driver.warmstart(config, run, tmp_path / "log")
    assert (target / "config.json").is_file()
    return calls


def run_warmstart(config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The `r3 sft` arguments of the one command the warm-start step runs on an empty cache."""
    calls = warmstart_calls(config, tmp_path, monkeypatch)
    assert len(calls) == 1
    return calls[0]


def test_a_changed_recipe_trains_the_cached_warm_start_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cache key names the recipe by its path; its content is checked by the stamp beside the model."""
    config = yaml.safe_load((ROOT / "experiments" / "countdown.yaml").read_text())
    recipe = tmp_path / "sft.yaml"
    recipe.write_text((ROOT / config["sft"]["recipe"]).read_text())
    config["sft"]["recipe"] = str(recipe)
    driver = load_driver()
    assert len(warmstart_calls(config, tmp_path, monkeypatch, driver)) == 1
    assert warmstart_calls(config, tmp_path, monkeypatch, driver) == []  # cached
    recipe.write_text(recipe.read_text().replace("learning_rate: 5.0e-4", "learning_rate: 1.0e-4"))
    capsys.readouterr()
    again = warmstart_calls(config, tmp_path, monkeypatch, driver)
    assert len(again) == 1
    assert "trained from another version of sft.yaml" in capsys.readouterr().out
    cache = Path(again[0][again[0].index("--output_dir") + 1])
    stamp = json.loads((cache / driver.WARMSTART_STAMP).read_text())
    assert stamp["recipe_sha256"] == __import__("hashlib").sha256(recipe.read_bytes()).hexdigest()
    assert warmstart_calls(config, tmp_path, monkeypatch, driver) == []  # cached again, new recipe


def test_a_cache_from_before_stamps_is_kept_and_other_versions_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = yaml.safe_load((ROOT / "experiments" / "countdown.yaml").read_text())
    driver = load_driver()
    cache = tmp_path / "cache" / "warmstart" / "3d1cbe20f967"
    cache.mkdir(parents=True)
    (cache / "config.json").write_text("{}")
    (cache / driver.SFT_SUMMARY).write_text("{}")
    assert warmstart_calls(config, tmp_path, monkeypatch, driver) == []
    stamp = json.loads((cache / driver.WARMSTART_STAMP).read_text())
    assert stamp["adopted"] is True and stamp["versions"] == driver.versions()
    monkeypatch.setattr(driver, "versions", lambda: {**stamp["versions"], "torch": "0.0-other"})
    capsys.readouterr()
    assert warmstart_calls(config, tmp_path, monkeypatch, driver) == []
    assert "trained with other versions of torch" in capsys.readouterr().out


def test_a_missing_recipe_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = yaml.safe_load((ROOT / "experiments" / "countdown.yaml").read_text())
    config["sft"]["recipe"] = str(tmp_path / "nowhere.yaml")
    with pytest.raises(SystemExit, match="sft.recipe: .*nowhere.yaml not found"):
        warmstart_calls(config, tmp_path, monkeypatch)


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


def test_steps_run_side_by_side_and_after_what_they_wait_for(tmp_path: Path) -> None:
    driver = load_driver()
    both_running = __import__("threading").Barrier(2, timeout=10)
    order: list[str] = []

    def meet(name: str) -> Any:
        def run(log: Path) -> None:
            both_running.wait()  # breaks (and the test fails) unless a and b run at the same time
            order.append(name)

        return run

    steps = [
        driver.Step("a", meet("a")),
        driver.Step("b", meet("b")),
        driver.Step("c", lambda log: order.append("c"), ("a", "b")),
    ]
    driver.run_steps(steps, 2, tmp_path)
    assert sorted(order[:2]) == ["a", "b"] and order[2] == "c"


def test_steps_never_exceed_jobs(tmp_path: Path) -> None:
    driver = load_driver()
    lock = __import__("threading").Lock()
    state = {"now": 0, "most": 0}

    def run(log: Path) -> None:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        __import__("time").sleep(0.05)
        with lock:
            state["now"] -= 1

    driver.run_steps([driver.Step(f"s{i}", run) for i in range(6)], 2, tmp_path)
    assert state["most"] <= 2


def test_a_failed_step_starts_nothing_new_and_is_raised(tmp_path: Path) -> None:
    driver = load_driver()
    ran: list[str] = []

    def fail(log: Path) -> None:
        sys.exit("experiment: `r3 train` failed")

    steps = [
        driver.Step("train", fail),
        driver.Step("eval", lambda log: ran.append("eval"), ("train",)),
        driver.Step("other", lambda log: ran.append("other")),
    ]
    with pytest.raises(SystemExit, match="r3 train"):
        driver.run_steps(steps, 1, tmp_path)
    assert ran == []  # with one job, nothing starts after the failure
    with pytest.raises(ValueError, match="unknown"):
        driver.run_steps([driver.Step("x", lambda log: None, ("y",))], 1, tmp_path)
    with pytest.raises(ValueError, match="each other"):
        driver.run_steps(
            [driver.Step("x", lambda log: None, ("y",)), driver.Step("y", lambda log: None, ("x",))],
            2,
            tmp_path,
        )


def test_side_by_side_commands_get_their_share_of_the_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = load_driver()
    seen: list[str | None] = []

    class FakePopen:  # records the environment a command would get, and succeeds
        def __init__(self, command: list[str], **kwargs: Any) -> None:
            seen.append(kwargs["env"].get("OMP_NUM_THREADS"))
            self.returncode = 0

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(driver.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(driver.os, "cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    steps = [driver.Step(f"s{i}", lambda log: driver.r3("eval", log=log)) for i in range(2)]
    driver.run_steps(steps, 2, tmp_path / "logs")
    driver.run_steps(steps, 1, tmp_path / "logs")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # a user's own setting wins
    driver.run_steps(steps[:1], 2, tmp_path / "logs")
    assert seen == ["4", "4", None, None, "3"]
    assert (tmp_path / "commands.log").read_text().count("# exit 0") == 5


def test_the_experiment_runs_each_step_after_its_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole driver with `r3` recorded: every step of the held-out run, each after what it reads."""
    driver = load_driver()
    lock = __import__("threading").Lock()
    calls: list[tuple[str, str]] = []

    evaluated: dict[str, str] = {}  # an evaluation's folder name: the model it evaluated

    def fake_r3(*args: str, log: Path) -> None:
        with lock:
            calls.append((args[0], log.stem))
            if args[0] == "eval":
                evaluated[log.stem] = args[args.index("--model") + 1]
        for flag in ("--output_dir", "--output-dir"):
            if flag in args and args[0] in ("sft", "train"):
                output = Path(args[args.index(flag) + 1])
                output.mkdir(parents=True, exist_ok=True)
                (output / "config.json").write_text("{}")
                summary = driver.SFT_SUMMARY if args[0] == "sft" else driver.TRAIN_SUMMARY
                (output / summary).write_text("{}")
                (output / "checkpoint-20").mkdir(exist_ok=True)  # the one checkpoint the run keeps

    config = yaml.safe_load((ROOT / "experiments" / "countdown.yaml").read_text())
    config["output"] = str(tmp_path / "run")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("R3_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(driver, "r3", fake_r3)
    monkeypatch.setattr(driver, "write_experiment_report", lambda *a, **k: "report")
    assert driver.main(["--config", str(tmp_path / "config.yaml"), "--jobs", "1"]) == 0
    # one at a time: model by model, so that an interrupted run has whole results
    assert [step for _, step in calls] == [
        "warmstart", "mine", "eval-warmstart", "eval-warmstart-resample",
        "train-trained", "eval-trained", "train-shuffled", "eval-shuffled", "eval-shuffled-resample",
        "train-grpo", "eval-grpo", "report", "forgetting",
    ]  # fmt: skip
    calls.clear()
    config["output"] = str(tmp_path / "run2")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert driver.main(["--config", str(tmp_path / "config.yaml"), "--jobs", "2"]) == 0
    steps = [step for _, step in calls]
    assert "warmstart" not in steps  # cached by the first run
    assert steps[-2:] == ["report", "forgetting"]
    expected = {"mine", "train-trained", "train-shuffled", "train-grpo"}
    expected |= {f"eval-{m}" for m in ("warmstart", "trained", "shuffled", "grpo")}
    expected |= {f"eval-{m}-resample" for m in config["eval"]["resample_models"]}
    assert set(steps[:-2]) == expected and len(steps) == len(expected) + 2
    for name in ("trained", "shuffled", "grpo"):
        assert steps.index("mine") < steps.index(f"train-{name}") < steps.index(f"eval-{name}")

    # Another variant only (`r3: false`, no control, a `combined:` section): R3 is not trained.
    calls.clear()
    config.update(output=str(tmp_path / "run3"), r3=False, control=False, combined={"seed": 1})
    del config["grpo"]
    config["eval"]["resample_temperature"] = None
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert driver.main(["--config", str(tmp_path / "config.yaml"), "--jobs", "1"]) == 0
    assert [step for _, step in calls] == [
        "mine", "eval-warmstart", "train-combined", "eval-combined", "report", "forgetting"
    ]  # fmt: skip

    # `eval.checkpoints`: a trained model's checkpoints are evaluated after it, each as its own step.
    calls.clear()
    config.update(output=str(tmp_path / "run4"))
    config["eval"]["checkpoints"] = [20]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert driver.main(["--config", str(tmp_path / "config.yaml"), "--jobs", "1"]) == 0
    assert [step for _, step in calls] == [
        "mine", "eval-warmstart", "train-combined", "eval-combined", "eval-combined-step20", "report",
        "forgetting",
    ]  # fmt: skip
    assert evaluated["eval-combined-step20"] == str(tmp_path / "run4" / "trained-combined" / "checkpoint-20")
    assert evaluated["eval-combined"] == str(tmp_path / "run4" / "trained-combined")
    # A checkpoint the training did not keep is one line naming it.
    config.update(output=str(tmp_path / "run5"))
    config["eval"]["checkpoints"] = [40]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match=r"eval.checkpoints: .*trained-combined/checkpoint-40 not found"):
        driver.main(["--config", str(tmp_path / "config.yaml"), "--jobs", "1"])


#: A stand-in for a running `r3` command: it says it started, then sleeps; how it meets SIGINT and
#: SIGTERM is set by the test ({handlers}); what it last did is in the marker file.
CHILD = """import pathlib, signal, time
p = pathlib.Path({marker!r})
{handlers}
p.write_text('started')
try:
    time.sleep(60)
except KeyboardInterrupt:
    p.write_text('interrupted')
"""


def signal_the_driver(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    handlers: str,
    signum: int,
    call: Any,
) -> Path:
    """Run `call(driver, logs)` with every command replaced by `CHILD`, send this process `signum` once the
    child has started, and return the child's marker. The driver must raise KeyboardInterrupt, and
    return only once its commands have exited (not after the child's 60 s)."""
    import signal
    import subprocess
    import threading
    import time

    driver = load_driver()
    monkeypatch.setattr(driver, "STOP_GRACE_S", 0.5)
    marker = tmp_path / "child"
    script = CHILD.format(marker=str(marker), handlers=handlers)
    real_popen = subprocess.Popen
    monkeypatch.setattr(
        driver.subprocess, "Popen", lambda command, **kw: real_popen([sys.executable, "-c", script], **kw)
    )

    def signal_once_the_command_runs() -> None:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signum)

    # Python's own Ctrl-C handler, as in a terminal, even where the tests run with SIGINT ignored
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        driver.stop_on_sigterm()
        threading.Thread(target=signal_once_the_command_runs, daemon=True).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            call(driver, tmp_path / "logs")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert time.monotonic() - started < 30
    assert not driver._children
    return marker


def in_steps(driver: Any, logs: Path) -> None:
    driver.run_steps([driver.Step("train", lambda log: driver.r3("train", log=log))], 2, logs)


#: How an `r3` command meets the signals (`r3.cli`): SIGTERM as Ctrl-C; here started as a shell's
#: background job starts it, with SIGINT ignored.
AS_R3_IN_THE_BACKGROUND = (
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\nsignal.signal(signal.SIGTERM, signal.default_int_handler)"
)


def test_an_interrupt_of_the_driver_reaches_the_running_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kill -INT <driver>` (not a terminal's Ctrl-C, which reaches every process) must stop the running
    `r3` commands too, so that they save their progress instead of running on without the driver, even
    where they ignore SIGINT (a shell's background job starts them so)."""
    import signal

    marker = signal_the_driver(tmp_path, monkeypatch, AS_R3_IN_THE_BACKGROUND, signal.SIGINT, in_steps)
    assert marker.read_text() == "interrupted"


def test_a_command_that_does_not_stop_is_killed_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM to the driver (`kill`, `timeout`, a scheduler) must not leave a command running that
    ignores it: after the grace period it is killed, and the driver returns."""
    import signal

    handlers = "signal.signal(signal.SIGINT, signal.SIG_IGN)\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)"
    marker = signal_the_driver(tmp_path, monkeypatch, handlers, signal.SIGTERM, in_steps)
    assert marker.read_text() == "started"  # it never got to run its own handler: killed


def test_sigterm_during_a_main_thread_command_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm-start, the report and `r3 forgetting` run in the driver's own thread: stopped alike."""
    import signal

    marker = signal_the_driver(
        tmp_path,
        monkeypatch,
        AS_R3_IN_THE_BACKGROUND,
        signal.SIGTERM,
        lambda d, logs: d.r3("sft", log=logs / "sft.log"),
    )
    assert marker.read_text() == "interrupted"


def test_a_warmstart_evaluation_is_reused_only_from_a_run_of_the_same_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`eval.reuse`: the other run's evaluation is copied (the source untouched) and its run.json then
    names this run's warm-start; another model, or a missing evaluation, stops with one line."""
    driver = load_driver()
    monkeypatch.setattr(driver, "ROOT", tmp_path)
    weights = tmp_path / "cache" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    runs = {}
    for name in ("first", "second"):
        (tmp_path / name / "warmstart").mkdir(parents=True)
        os.link(weights, tmp_path / name / "warmstart" / "model.safetensors")
        runs[name] = tmp_path / name
    source = runs["first"] / "eval-warmstart-validation"
    source.mkdir()
    stored = {
        "version": 4,
        "command": "eval",
        "model": str((runs["first"] / "warmstart").resolve()),
        "seed": 3,
    }
    (source / "run.json").write_text(json.dumps(stored))
    (source / "results.json").write_text("{}")
    (source / "samples.jsonl").write_text('{"index": 0}\n')
    cfg = {"eval": {"reuse": "first"}}

    driver.reuse_evaluation(cfg, runs["second"], "eval-warmstart-validation")
    copied = runs["second"] / "eval-warmstart-validation"
    assert json.loads((copied / "run.json").read_text()) == {
        **stored,
        "model": str((runs["second"] / "warmstart").resolve()),
    }
    assert (copied / "samples.jsonl").read_text() == '{"index": 0}\n'
    assert not (copied / "samples.jsonl").samefile(source / "samples.jsonl")  # a copy, not a link
    assert json.loads((source / "run.json").read_text()) == stored

    (runs["second"] / "warmstart" / "model.safetensors").unlink()
    (runs["second"] / "warmstart" / "model.safetensors").write_bytes(b"other weights")
    shutil.rmtree(copied)
    with pytest.raises(SystemExit, match="is not this run's warm-start"):
        driver.reuse_evaluation(cfg, runs["second"], "eval-warmstart-validation")
    with pytest.raises(SystemExit, match="not found"):
        driver.reuse_evaluation(cfg, runs["second"], "eval-warmstart")


def test_a_training_is_done_only_when_its_summary_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model's `config.json` beside weights a kill cut short is not a finished training: the
    warm-start and the trainings are skipped only when `r3 sft` / `r3 train` wrote their summary, last."""
    from r3.training import sft, trainer

    driver = load_driver()
    assert (driver.SFT_SUMMARY, driver.TRAIN_SUMMARY) == (sft.SUMMARY_FILE, trainer.SUMMARY_FILE)
    config = yaml.safe_load((ROOT / "experiments" / "countdown.yaml").read_text())
    cache = tmp_path / "cache" / "warmstart" / "3d1cbe20f967"
    cache.mkdir(parents=True)
    (cache / "config.json").write_text("{}")  # a save cut short: no r3_sft.json
    assert len(warmstart_calls(config, tmp_path, monkeypatch, driver)) == 1  # trained (resumed) again

    calls: list[str] = []
    monkeypatch.setattr(driver, "r3", lambda *args, log: calls.append(args[0]))
    folder = tmp_path / "run" / "trained"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    driver.train(config, cache, tmp_path / "failures.jsonl", "trained", tmp_path / "run", tmp_path / "log")
    assert calls == ["train"]
    (folder / driver.TRAIN_SUMMARY).write_text("{}")
    driver.train(config, cache, tmp_path / "failures.jsonl", "trained", tmp_path / "run", tmp_path / "log")
    assert calls == ["train"]  # done: skipped


def test_the_driver_resumes_its_trainings_and_a_changed_config_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun of the driver continues a stopped `r3 train` / `r3 sft`: it passes `--resume true`,
    which a first run into an empty folder accepts, a rerun with the same settings continues, and a
    rerun after the config changed is refused, naming the change (`r3.training.folder`)."""
    from r3.cli.options import parse_trl_config
    from r3.errors import R3Error
    from r3.training.config import R3Config
    from r3.training.folder import training_folder
    from r3.training.sft import SFTRunConfig

    driver = load_driver()
    config = yaml.safe_load((ROOT / "experiments" / "countdown.yaml").read_text())
    (sft_argv,) = warmstart_calls(config, tmp_path, monkeypatch, driver)
    monkeypatch.chdir(ROOT)  # the driver runs `r3` in the repository, where its recipes are
    sft = parse_trl_config(SFTRunConfig, sft_argv[1:], prog="r3 sft")
    assert sft.resume and not sft.overwrite

    calls: list[list[str]] = []
    monkeypatch.setattr(driver, "r3", lambda *args, log: calls.append(list(args)))
    failures = tmp_path / "failures.jsonl"
    failures.write_text("")

    def train_config() -> R3Config:
        calls.clear()
        driver.train(config, tmp_path / "warmstart", failures, "trained", tmp_path / "run", tmp_path / "log")
        (argv,) = calls
        return parse_trl_config(R3Config, argv[1:], prog="r3 train")

    first = train_config()
    assert first.resume and not first.overwrite
    with training_folder(first, "train", driver.TRAIN_SUMMARY) as run:
        assert run is not None and not run.resumed  # an empty folder: a first run
    (Path(first.output_dir) / "checkpoint-10").mkdir()  # stopped after its first checkpoint
    with training_folder(train_config(), "train", driver.TRAIN_SUMMARY) as run:
        assert run is not None and run.resumed
    config["train"]["learning_rate"] = 1e-4
    changed = train_config()
    refused = pytest.raises(R3Error, match=r"learning_rate: 5e-05 -> 0.0001")
    with refused, training_folder(changed, "train", driver.TRAIN_SUMMARY):
        pass

"""Slow end-to-end checks of `r3 train`: kill and `--resume`, SIGTERM (a checkpoint at the step in
flight), two processes with torchrun, LoRA.

They run the real CLI (in a subprocess where a process must be killed or launched by torchrun) on
`tiny_model_dir` (a two-layer random Llama with the embedded model's tokenizer and chat template,
see conftest.py) with tiny generation budgets, so every test takes well under a few minutes on 2 CPU
cores. The LoRA test also runs `r3 eval` on the merged model and on the adapter folder alone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r3.cli import main as r3_main
from servers import torchrun
from test_training_support import complete_checkpoints, write_countdown_failures

ROOT = Path(__file__).resolve().parents[1]
CPU_RECIPE = ROOT / "recipes" / "smollm2_countdown_cpu.yaml"
BIN = Path(sys.executable).parent

# Same numbers, different targets: every reflection prompt has the same number of tokens (the
# torchrun test counts tokens) and no two prompts render to the same text.
TARGETS = (11, 13, 17, 19)
ROWS = [{"nums": [3, 5, 7], "target": t} for t in TARGETS]


def write_failures(path: Path) -> Path:
    return write_countdown_failures(path, TARGETS)


def train_args(model: Path, failures: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--config",
        str(CPU_RECIPE),
        "--model",
        str(model),
        "--failures",
        str(failures),
        "--output-dir",
        str(out),
        "--max_completion_length",
        "16",
        "--retry_max_new_tokens",
        "16",
        "--save_total_limit",
        "10",
        *extra,
    ]


def eval_args(model: Path, out: Path) -> list[str]:
    """`r3 eval` of one Countdown example with tiny budgets."""
    budgets = ["--max-new-tokens", "8", "--reflection-max-new-tokens", "8"]
    return [
        "eval",
        "--task",
        "countdown",
        "--model",
        str(model),
        "--limit",
        "1",
        *budgets,
        "--output-dir",
        str(out),
    ]


def env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "R3_NO_PROGRESS": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "OMP_NUM_THREADS": "1",
        **extra,
    }


@pytest.mark.slow
def test_kill_then_resume_continues_from_the_last_checkpoint(tmp_path, tiny_model_dir):
    failures = write_failures(tmp_path / "failures.jsonl")
    out = tmp_path / "out"
    max_steps = 4
    command = [str(BIN / "r3"), *train_args(tiny_model_dir, failures, out)]
    command += ["--max_steps", str(max_steps), "--save_steps", "1", "--logging_steps", "1"]

    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(command, env=env(), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 150
    while not complete_checkpoints(out):
        assert first.poll() is None, f"r3 train exited ({first.returncode}) before saving checkpoint-1"
        assert time.monotonic() < deadline, "no checkpoint after 150 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    log.close()
    assert first.returncode == -signal.SIGKILL
    assert not (out / "r3_training.json").exists(), "the killed run must not have finished"
    done = complete_checkpoints(out)
    last = done[-1]
    assert last < max_steps
    # A run killed while saving leaves a torn checkpoint; pretend it happened at the next step.
    torn = out / f"checkpoint-{last + 1}"
    torn.mkdir(exist_ok=True)
    (torn / "config.json").write_text("{}")
    if (torn / "trainer_state.json").exists():
        (torn / "trainer_state.json").unlink()
    state_before = (out / f"checkpoint-{last}" / "trainer_state.json").read_text()

    resumed = subprocess.run(
        [*command, "--resume", "true"],
        env=env(TRANSFORMERS_VERBOSITY="info"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = re.search(
        r"Resuming training from checkpoint with epoch \d+ and global step (\d+)",
        resumed.stderr,
    )
    assert said is not None, resumed.stderr[-3000:]
    assert int(said.group(1)) == last  # started after the checkpoint, not from 0
    # The resumed run did not redo (and so re-save) the steps up to the checkpoint ...
    assert (out / f"checkpoint-{last}" / "trainer_state.json").read_text() == state_before
    # ... it did the rest and finished at max_steps.
    assert complete_checkpoints(out)[-1] == max_steps
    final = json.loads((out / f"checkpoint-{max_steps}" / "trainer_state.json").read_text())
    assert final["global_step"] == max_steps
    summary = json.loads((out / "r3_training.json").read_text())
    assert summary["global_step"] == max_steps
    steps = [row["step"] for row in summary["log_history"] if "reward" in row]
    assert steps == list(range(1, max_steps + 1))  # the checkpoint's history plus the new steps, once each
    assert (out / "config.json").is_file() and any(out.glob("*.safetensors"))


def stop_with_sigterm_once_training(
    command: list[str], out: Path, log_path: Path, local_rank: int | None = None
) -> tuple[int, str]:
    """Start `command` in its own process group and, once a step has been logged, SIGTERM the whole
    group (as a scheduler stops a job) or only the torchrun worker of `local_rank`; return the exit
    status and what it wrote."""
    with log_path.open("w") as log:
        run = subprocess.Popen(
            command,
            env=env(R3_NO_PROGRESS="0"),  # the console's line per step says when a step is done
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=out.parent,
        )
        deadline = time.monotonic() + 200
        while " reward " not in log_path.read_text():
            assert run.poll() is None, (
                f"exited ({run.returncode}) before a step: {log_path.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, "no step logged after 200 s"
            time.sleep(0.05)
        if local_rank is None:
            os.killpg(run.pid, signal.SIGTERM)
        else:
            os.kill(worker_pid(run.pid, local_rank), signal.SIGTERM)
        code = run.wait(timeout=120)
    return code, log_path.read_text()


def worker_pid(launcher: int, local_rank: int) -> int:
    """The pid of torchrun's worker process with `LOCAL_RANK` = `local_rank` (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == launcher and f"LOCAL_RANK={local_rank}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no worker with LOCAL_RANK={local_rank} under {launcher}")


def check_stopped_with_a_checkpoint(out: Path, said: str, max_steps: int) -> None:
    """The run stopped after the step it named, saved that step's checkpoint, and did not finish."""
    found = re.search(r"stopped after step (\d+), checkpoint-\1 saved", said)
    assert found is not None, said[-3000:]
    step = int(found.group(1))
    assert 1 <= step < max_steps
    assert complete_checkpoints(out) == [step]  # no periodic checkpoint was due (save_steps 1000)
    state = json.loads((out / f"checkpoint-{step}" / "trainer_state.json").read_text())
    assert state["global_step"] == step
    assert not (out / "r3_training.json").exists() and not (out / "config.json").exists()


@pytest.mark.slow
def test_sigterm_stops_after_the_step_with_a_checkpoint(tmp_path, tiny_model_dir):
    """`r3 train` as a scheduler stops it: exit 130, one line naming the step, its checkpoint saved."""
    failures = write_failures(tmp_path / "failures.jsonl")
    out = tmp_path / "out"
    steps = ["--max_steps", "200", "--save_steps", "1000", "--logging_steps", "1"]
    command = [str(BIN / "r3"), *train_args(tiny_model_dir, failures, out, *steps)]
    code, said = stop_with_sigterm_once_training(command, out, tmp_path / "train.log")
    assert code == 130, said[-3000:]
    assert "Traceback" not in said
    check_stopped_with_a_checkpoint(out, said, 200)


@pytest.mark.slow
def test_two_processes_with_torchrun(tmp_path, tiny_model_dir):
    """Two CPU processes (gloo). A group of 8 reflections with 4 per device is only a valid GRPO
    configuration when the world size is at least 2, and TRL's `num_tokens` counts the tokens of the
    completions gathered from every process: 8 per step here, 4 with one process."""
    failures = write_failures(tmp_path / "failures.jsonl")
    out = tmp_path / "out"
    command = torchrun(
        "-m",
        "r3.cli",
        *train_args(tiny_model_dir, failures, out),
        "--max_steps",
        "2",
        "--num_generations",
        "8",
        "--per_device_train_batch_size",
        "4",
        "--save_strategy",
        "no",
    )
    done = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (out / "config.json").is_file() and any(out.glob("*.safetensors"))
    summary = json.loads((out / "r3_training.json").read_text())
    assert summary["global_step"] == 2
    rows = [row for row in summary["log_history"] if "reward" in row]
    assert len(rows) == 2

    from transformers import AutoTokenizer

    from r3.generation.chat import render_prompt
    from r3.tasks.countdown import CountdownTask

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    task = CountdownTask()
    lengths = {
        len(
            tokenizer(
                render_prompt(tokenizer, task.reflection_prompt(row, "<answer>3 + 5 + 7</answer>")),
                add_special_tokens=False,
            )["input_ids"]
        )
        for row in ROWS
    }
    assert len(lengths) == 1, lengths
    prompt_len = lengths.pop()
    seen = 0.0
    for row in rows:
        per_completion = prompt_len + row["completions/mean_length"]
        completions = (row["num_tokens"] - seen) / per_completion
        assert completions == pytest.approx(8, abs=0.01), (row, prompt_len)
        seen = row["num_tokens"]
        assert row["r3/retry_length"] > 0  # the retry ran on every process (each logs its own)
    assert "r3 train: 2 steps" in done.stderr


@pytest.mark.slow
def test_sigterm_to_a_torchrun_job_stops_every_process_at_the_same_step(tmp_path, tiny_model_dir):
    """SIGTERM to one worker only (rank 1, which does not write checkpoints): the workers agree at each
    step's end (one all-reduce), so rank 0 saves that step's checkpoint and both stop there."""
    failures = write_failures(tmp_path / "failures.jsonl")
    out = tmp_path / "out"
    command = torchrun(
        "-m",
        "r3.cli",
        *train_args(tiny_model_dir, failures, out),
        *("--max_steps", "200", "--save_steps", "1000", "--logging_steps", "1"),
        *("--num_generations", "8", "--per_device_train_batch_size", "4"),
    )
    code, said = stop_with_sigterm_once_training(command, out, tmp_path / "train.log", local_rank=1)
    assert code != 0, said[-3000:]  # the launcher reports its workers' interruption
    check_stopped_with_a_checkpoint(out, said, 200)


@pytest.mark.slow
def test_lora_merged_model_loads_in_eval_and_adapter_is_saved(tmp_path, tiny_model_dir):
    failures = write_failures(tmp_path / "failures.jsonl")
    merged = tmp_path / "merged"
    steps = ["--max_steps", "2", "--save_strategy", "no", "--use_peft", "true", "--lora_r", "4"]
    assert r3_main(train_args(tiny_model_dir, failures, merged, *steps, "--merge_lora", "true")) == 0
    assert (merged / "config.json").is_file() and any(merged.glob("*.safetensors"))
    assert not (merged / "adapter_config.json").exists()  # a plain model, not an adapter
    assert (merged / "adapter" / "adapter_config.json").is_file()
    assert (merged / "tokenizer_config.json").is_file()

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(merged))
    assert not any("lora" in name for name, _ in model.named_parameters())

    assert r3_main(eval_args(merged, tmp_path / "eval")) == 0

    adapter = tmp_path / "adapter"
    assert r3_main(train_args(tiny_model_dir, failures, adapter, *steps)) == 0
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]).resolve() == Path(tiny_model_dir).resolve()
    assert any(adapter.glob("adapter_model.*"))
    # The adapter folder alone is a model for `r3 eval` (base model + adapter, merged on load).
    assert r3_main(eval_args(adapter, tmp_path / "eval-adapter")) == 0
    assert json.loads((tmp_path / "eval-adapter" / "results.json").read_text())["n"] == 1

"""Seconds per training step: R3 (reflect -> retry -> verify) against TRL's stock GRPOTrainer.

    .venv/bin/python benchmarks/train_benchmark.py [--rounds 3] [--steps 2] [--length 64] [--threads N]
                                                   [--json out.json]

Both trainers use the embedded SmolLM2-135M-Instruct on CPU, the same batch (one GRPO group of
`num_generations` completions per step), the same completion budget (`max_completion_length`), the
same seed and the same prompts: the reflection prompts built from a small Countdown failures file
written here (rows from `generate_countdown`, each with a wrong first attempt). The only difference:

    stock GRPO  one completion per prompt, reward = the Countdown verifier on that completion
    R3          the completion is the reflection; then a greedy retry (`retry_max_new_tokens`, stopped
                at the task's stop string `</answer>` or EOS) is generated and verified

The runs are interleaved (R3, stock, R3, stock, ...: `--rounds` rounds, each a fresh trainer with one
warm-up step and `--steps` measured steps) so that load from other processes on the machine hits both
alike. Step time comes from a `TrainerCallback` (on_step_begin -> on_step_end); generation time from
timers around the engine R3's rollout calls (`build_trainer(engine=...)`) and, for stock GRPO, around
the model's `generate` (instance attribute wrapper, TRL itself is untouched). Everything else in a step
(log-probabilities, loss, backward, optimizer) is reported as "train".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("R3_NO_PROGRESS", "1")


def write_failures(path: Path, n: int, seed: int) -> None:
    """Countdown rows, each with a wrong first attempt (all numbers added up)."""
    from r3.mining.records import FailedAttempt, FailureRecord
    from r3.tasks import get_task
    from r3.tasks.countdown import generate_countdown

    task = get_task("countdown")

    with path.open("w") as handle:
        for i, row in enumerate(generate_countdown(n, seed=seed)):
            attempt = "<answer>" + " + ".join(str(x) for x in row["nums"]) + "</answer>"
            record = FailureRecord(
                "countdown", i, row, [FailedAttempt.of(row, attempt, "wrong result")], 1, 0
            )
            handle.write(json.dumps(record.to_json(task)) + "\n")


class StepTimer:
    """TrainerCallback: wall time of every optimizer step, and the generation time inside it."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        timer = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timer.begin()

            def on_step_end(self, args, state, control, **kwargs):
                timer.end()

        self.callback = _Callback()
        self.steps: list[dict[str, float]] = []
        self.current: dict[str, float] = {}
        self._t0 = 0.0

    def begin(self) -> None:
        self.current = {}
        self._t0 = time.perf_counter()

    def add(self, key: str, value: float) -> None:
        self.current[key] = self.current.get(key, 0.0) + value

    def end(self) -> None:
        self.current["step"] = time.perf_counter() - self._t0
        self.steps.append(self.current)


def timed_engine(timer: StepTimer) -> Any:
    """The default transformers engine, timed: reflection calls have no stop strings, retries do."""
    from r3.training.engines import transformers_engine

    def engine(trainer: Any, prompt_ids: list[list[int]], sampling: Any) -> Any:
        kind = "retry" if sampling.stop else "reflection"
        t0 = time.perf_counter()
        out = transformers_engine(trainer, prompt_ids, sampling)
        timer.add(f"{kind}_gen", time.perf_counter() - t0)
        timer.add(f"{kind}_tokens", sum(c.num_tokens for c in out) / len(out))
        timer.add(f"{kind}_prompt_tokens", sum(len(p) for p in prompt_ids) / len(prompt_ids))
        timer.add(f"{kind}_batch_max_new", max(c.num_tokens for c in out))
        return out

    return engine


def time_generate(model: Any, timer: StepTimer) -> None:
    """Wrap this model object's `generate` (an instance attribute; no class or TRL code is patched)."""
    original = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = original(*args, **kwargs)
        timer.add("completion_gen", time.perf_counter() - t0)
        return out

    model.generate = generate


def make_config(args: argparse.Namespace, out: Path, failures: Path) -> Any:
    from r3.training.config import R3Config

    return R3Config(
        output_dir=str(out),
        task="countdown",
        failures=str(failures),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        num_generations=args.group,
        per_device_train_batch_size=args.group,
        gradient_accumulation_steps=1,
        max_completion_length=args.length,
        temperature=1.0,
        retry_max_new_tokens=args.retry_length,
        retry_temperature=0.0,
        learning_rate=1e-6,
        beta=0.0,
        max_steps=1 + args.steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        disable_tqdm=True,
    )


def quiet(trainer: Any) -> None:
    """No per-step log dicts on stdout (with `disable_tqdm` the Trainer prints them)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def run_r3(args: argparse.Namespace, work: Path, failures: Path) -> list[dict[str, float]]:
    from r3.training.trainer import build_trainer

    timer = StepTimer()
    config = make_config(args, work / "r3", failures)
    trainer = build_trainer(config, engine=timed_engine(timer), callbacks=[timer.callback])
    quiet(trainer)
    trainer.train()
    return timer.steps[1:]  # drop the warm-up step


def run_stock(args: argparse.Namespace, work: Path, failures: Path) -> list[dict[str, float]]:
    """TRL's GRPOTrainer as it comes: same model, data and budget; reward = verifier on the completion."""
    from trl import GRPOTrainer

    from r3.models import load_tokenizer
    from r3.tasks.registry import get_task
    from r3.training.dataset import build_dataset
    from r3.training.trainer import load_policy, load_records

    timer = StepTimer()
    config = make_config(args, work / "stock", failures)
    task = get_task("countdown")
    records = load_records(config, task)
    tokenizer = load_tokenizer(config.model)  # left padding and a pad token, as the trainer's
    dataset, index = build_dataset(records, task, tokenizer, "stored", None)

    def verifier_reward(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        return [float(task.verify(index[p].example, c).ok) for p, c in zip(prompts, completions, strict=True)]

    model = load_policy(config)
    time_generate(model, timer)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[verifier_reward],
        args=config,  # an R3Config is a GRPOConfig; stock GRPO ignores the R3 fields
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[timer.callback],
    )
    quiet(trainer)
    trainer.train()
    steps = timer.steps[1:]
    for step, row in zip(steps, trainer.state.log_history[1:], strict=False):
        step["completion_tokens"] = row.get("completions/mean_length", float("nan"))
    return steps


def summarize(steps: list[dict[str, float]], keys: list[str]) -> dict[str, float]:
    out = {}
    for key in keys:
        values = [s[key] for s in steps if key in s]
        if values:
            out[key] = statistics.median(values)
    gen = [sum(v for k, v in s.items() if k.endswith("_gen")) for s in steps]
    out["train"] = statistics.median([s["step"] - g for s, g in zip(steps, gen, strict=True)])
    return out


def machine() -> dict[str, Any]:
    import torch
    import transformers
    import trl

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved R3/stock rounds")
    parser.add_argument("--steps", type=int, default=2, help="measured steps per round (after 1 warm-up)")
    parser.add_argument("--group", type=int, default=4, help="num_generations = per_device_train_batch_size")
    parser.add_argument("--length", type=int, default=64, help="max_completion_length (reflection)")
    parser.add_argument("--retry-length", type=int, default=64, help="retry_max_new_tokens")
    parser.add_argument("--queries", type=int, default=8, help="failure rows in the benchmark file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    results: dict[str, list[dict[str, float]]] = {"r3": [], "stock": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        failures = work / "failures.jsonl"
        write_failures(failures, args.queries, args.seed)
        started = time.perf_counter()
        for round_ in range(args.rounds):
            for name, run in (("r3", run_r3), ("stock", run_stock)):
                t0 = time.perf_counter()
                steps = run(args, work, failures)
                results[name].extend(steps)
                times = ", ".join(f"{s['step']:.2f}" for s in steps)
                print(
                    f"round {round_ + 1}/{args.rounds} {name:5s}: steps {times} s "
                    f"(round {time.perf_counter() - t0:.0f} s)",
                    file=sys.stderr,
                )
        total = time.perf_counter() - started

    r3 = summarize(
        results["r3"],
        [
            "step",
            "reflection_gen",
            "retry_gen",
            "reflection_tokens",
            "retry_tokens",
            "reflection_prompt_tokens",
            "retry_prompt_tokens",
            "retry_batch_max_new",
        ],
    )
    stock = summarize(results["stock"], ["step", "completion_gen", "completion_tokens"])
    ratio = r3["step"] / stock["step"]
    report = {
        "machine": machine(),
        "settings": vars(args),
        "r3": r3,
        "stock": stock,
        "ratio": ratio,
        "steps": results,
        "total_seconds": total,
    }
    print(json.dumps({k: v for k, v in report.items() if k != "steps"}, indent=1))
    print(
        f"\nmedian s/step over {len(results['r3'])} steps each: R3 {r3['step']:.2f} "
        f"(reflection {r3['reflection_gen']:.2f}, retry {r3['retry_gen']:.2f}, train {r3['train']:.2f}) | "
        f"stock GRPO {stock['step']:.2f} (generation {stock['completion_gen']:.2f}, "
        f"train {stock['train']:.2f}) | ratio {ratio:.2f}x"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

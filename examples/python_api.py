"""The R3 loop driven from Python: eval -> mine -> train -> eval (-> report).

    python examples/python_api.py MODEL [--output-dir runs/python-api] [--limit 6] [--steps 2]

MODEL is a local model folder or a hub id (default: the embedded SmolLM2-135M-Instruct). Each step
fills in the dataclass its `r3` command parses from flags and calls the function the command calls,
so the folders hold exactly what the commands write (docs/python_api.md):

    eval-before/   r3 eval   -> results.json, results.md, samples.jsonl
    mine/          r3 mine   -> failures.jsonl, summary.json
    trained/       r3 train  -> the trained model in Hugging Face format, r3_training.json
    eval-after/    r3 eval   on the trained model
    report/        r3 report -> report.md and its plots

The defaults are sized for a smoke run on a CPU (a handful of examples, two GRPO steps, short
generations); they show the plumbing, not a gain. Every run starts its folders afresh.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", default=None, help="model folder or hub id (default: embedded)")
    parser.add_argument("--output-dir", default="runs/python-api", help="one sub-folder per step goes here")
    parser.add_argument("--task", default="countdown", help="countdown, function_calling, ...")
    parser.add_argument("--limit", type=int, default=6, help="examples evaluated and mined")
    parser.add_argument("--steps", type=int, default=2, help="GRPO steps")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="budget of every generated text")
    return parser.parse_args(argv)


def eval_step(model: str | None, folder: Path, opts: argparse.Namespace) -> dict:
    """`r3 eval`: `EvalConfig` is the dataclass the command parses (and `evaluate` takes); `run` is
    what the command calls."""
    from r3.cli.eval_cmd import run
    from r3.evaluation.evaluate import EvalConfig

    config = EvalConfig(
        task=opts.task,
        limit=opts.limit,
        model=model,
        max_new_tokens=opts.max_new_tokens,
        reflection_max_new_tokens=opts.max_new_tokens,
        output_dir=str(folder),
        overwrite=True,
        no_progress=True,
    )
    run(config)  # 0, or an R3Error for a user mistake; prints the table
    return json.loads((folder / "results.json").read_text())


def mine_step(model: str | None, folder: Path, opts: argparse.Namespace) -> Path:
    """`r3 mine`: `MineConfig` + `run`. Returns the failures file."""
    from r3.cli.mine_cmd import run
    from r3.mining import MineConfig

    config = MineConfig(
        task=opts.task,
        limit=opts.limit,
        model=model,
        max_new_tokens=opts.max_new_tokens,
        budget=4,
        round_size=2,
        output_dir=str(folder),
        overwrite=True,
        no_progress=True,
    )
    run(config)
    return folder / "failures.jsonl"


def train_step(model: str | None, failures: Path, folder: Path, opts: argparse.Namespace) -> str:
    """`r3 train`: `R3Config` (TRL's `GRPOConfig` plus R3's fields) + `train`. Returns the model folder."""
    from r3.training import R3Config, train

    config = R3Config(
        output_dir=str(folder),
        overwrite=True,  # a rerun starts afresh, as the eval and mine steps above do
        task=opts.task,
        model=model,
        failures=str(failures),
        # CPU, as recipes/smollm2_countdown_cpu.yaml sets it
        use_cpu=True,
        bf16=False,
        # one group of 4 reflections per step, each followed by a greedy retry
        num_generations=4,
        per_device_train_batch_size=4,
        max_completion_length=opts.max_new_tokens,
        retry_max_new_tokens=opts.max_new_tokens,
        learning_rate=1e-6,
        beta=0.0,
        max_steps=opts.steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
    )
    result = train(config)
    print(f"trained {result.global_step} steps on {result.num_prompts} prompts -> {result.output_dir}")
    return result.output_dir


def report_step(folders: list[Path], labels: list[str], folder: Path) -> Path:
    """`r3 report`: `ReportArguments` + `run`. Returns report.md."""
    from r3.cli.report_cmd import ReportArguments, run

    run(ReportArguments(runs=[str(f) for f in folders], labels=labels, output_dir=str(folder)))
    return folder / "report.md"


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    out = Path(opts.output_dir)
    before = eval_step(opts.model, out / "eval-before", opts)
    failures = mine_step(opts.model, out / "mine", opts)
    trained = train_step(opts.model, failures, out / "trained", opts)
    after = eval_step(trained, out / "eval-after", opts)
    written = report_step(
        [out / "eval-before", out / "eval-after", out / "trained"],
        ["before", "after", "training"],
        out / "report",
    )
    for name in ("first_try", "second_try"):
        print(
            f"{name.replace('_', ' ')}: before {before[name]['accuracy']:.1%} -> "
            f"after {after[name]['accuracy']:.1%} ({before['n']} examples)"
        )
    print(f"report: {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

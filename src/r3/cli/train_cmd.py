"""`r3 train`: GRPO on the failures file, reward = the retry's success, credited to the reflection."""

from __future__ import annotations

import sys

DESCRIPTION = """\
Train a model to write better self-reflections: GRPO (TRL's GRPOTrainer) on the failed attempts
that `r3 mine` kept. For each one the model writes a group of reflections, retries the task with
each, and a reflection's reward is whether its retry succeeds.

example (CPU, the embedded model; a recipe is a YAML file of these options, flags override it):
  r3 mine  --task countdown --limit 64 --output-dir runs/mine
  r3 train --config recipes/smollm2_countdown_cpu.yaml --failures runs/mine/failures.jsonl \\
           --output_dir runs/trained --max_steps 2
"""

#: GRPO's fields `--help` lists too, after R3's (`--help-all` lists all).
TRAINING_FIELDS = ("num_generations", "max_completion_length", "temperature", "beta", "use_vllm")
MISSING_FAILURES = (
    "r3 train needs --failures FILE, the failures.jsonl written by `r3 mine` (as a flag, or failures: "
    "in the --config recipe)"
)


def parse(argv: list[str]) -> object:
    """Parse flags and the `--config` recipe into an `R3Config`."""
    from r3.cli.options import MOST_USED_TRL_FIELDS, parse_trl_config
    from r3.training.config import R3Config

    return parse_trl_config(
        R3Config,
        argv,
        prog="r3 train",
        description=DESCRIPTION,
        usage="r3 train --failures FILE [--config RECIPE.yaml] [OPTIONS]",
        required={"failures": MISSING_FAILURES},
        shown_inherited=(*MOST_USED_TRL_FIELDS, *TRAINING_FIELDS),
    )


def main(argv: list[str]) -> int:
    """`r3 train ...`; returns the exit status."""
    from r3.training.trainer import train

    config = parse(argv)
    result = train(config)  # type: ignore[arg-type]
    last = next((row for row in reversed(result.log_history) if "reward" in row), {})
    print(
        f"r3 train: {result.global_step} steps on {result.num_prompts} prompts; "
        f"last retry success {last.get('reward', float('nan')):.3f}; model saved to {result.output_dir}",
        file=sys.stderr,
    )
    return 0

"""`r3 train`: GRPO on the failures file, reward = the retry's success, credited to the reflection.

    r3 train --config recipes/smollm2_countdown_cpu.yaml --failures runs/mine/failures.jsonl \\
             [--model M] [--output-dir O] [--resume] [--max_steps 2] [any GRPOConfig field]

Options follow TRL's `TrlParser` convention: the YAML recipe sets defaults for any field of `R3Config`
(R3's fields plus every `GRPOConfig`/`TrainingArguments` field), flags override it, and unknown keys
in either place are an error. `r3 train --help` lists every field.
"""

from __future__ import annotations

import sys


def parse(argv: list[str]) -> object:
    """Parse flags and the `--config` recipe into an `R3Config`."""
    from r3.cli.options import parse_trl_config
    from r3.training.config import R3Config

    return parse_trl_config(R3Config, argv, prog="r3 train")


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

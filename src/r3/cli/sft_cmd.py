"""`r3 sft`: warm-start a model on the task's reference answers, as first attempts."""

from __future__ import annotations

import sys

from r3.cli.options import MOST_USED_TRL_FIELDS, parse_trl_config

DESCRIPTION = """\
Warm-start a model by supervised fine-tuning (TRL's SFTTrainer) on the task's reference answers, as
first attempts. For a model too weak to learn from R3 at once; also the baseline R3 is compared with.

example (CPU, the embedded model; a recipe is a YAML file of these options, flags override it):
  r3 sft --config recipes/smollm2_countdown_sft.yaml --output_dir runs/warmstart --max_steps 60
"""


def main(argv: list[str]) -> int:
    """`r3 sft ...`; returns the exit status."""
    from r3.training.sft import SFTRunConfig, train_sft

    config = parse_trl_config(
        SFTRunConfig,
        argv,
        prog="r3 sft",
        description=DESCRIPTION,
        usage="r3 sft [--config RECIPE.yaml] [OPTIONS]",
        shown_inherited=(*MOST_USED_TRL_FIELDS, "num_train_epochs"),
    )
    result = train_sft(config)  # type: ignore[arg-type]
    losses = [row["loss"] for row in result.log_history if "loss" in row]
    last = f"last loss {losses[-1]:.3f}" if losses else "no loss logged"
    print(
        f"r3 sft: {result.global_step} steps on {result.used} examples ({result.skipped} without a "
        f"reference answer, skipped); {last}; model saved to {result.output_dir}",
        file=sys.stderr,
    )
    return 0

"""`r3 forgetting`: general ability before and after training, with lm-evaluation-harness."""

from __future__ import annotations

DESCRIPTION = """\
Measure what training cost elsewhere: general ability of each model before and after training, with
lm-evaluation-harness. Writes forgetting.md (scores with standard errors, each model's change against
the first), forgetting.png and lm-eval's own files (lm_eval/). r3_basics ships with R3; lm-eval's own
tasks (gsm8k, hellaswag, mmlu_pro, ...) need the hub. Needs pip install 'reflect-retry-reward[forgetting]'.

example:
  r3 forgetting --models runs/warmstart runs/trained --labels before after --tasks r3_basics \\
                --output_dir runs/forgetting
"""


def main(argv: list[str]) -> int:
    """`r3 forgetting ...`; returns the exit status."""
    from r3.cli.options import parse_trl_config
    from r3.forgetting import ForgettingConfig, forgetting_table, run_forgetting

    config = parse_trl_config(
        ForgettingConfig,
        argv,
        prog="r3 forgetting",
        description=DESCRIPTION,
        usage="r3 forgetting --models MODEL [MODEL ...] [--config FILE.yaml] [OPTIONS]",
    )
    summary = run_forgetting(config)  # type: ignore[arg-type]
    print(forgetting_table(summary))
    print(f"Report in {config.output_dir}/forgetting.md (lm-eval's files in {config.output_dir}/lm_eval/)")  # type: ignore[attr-defined]
    return 0

"""`r3 eval`: first- and second-try accuracy of a model on a task."""

from __future__ import annotations

from r3.cli.options import parse_trl_config
from r3.errors import R3Error
from r3.evaluation.evaluate import EvalConfig

DESCRIPTION = """\
Evaluate a model on a task by the paper's protocol: a first attempt; after a failure, a reflection,
then a retry with the reflection in context. Prints first- and second-try accuracy, and writes
results.json, results.md and samples.jsonl to --output-dir.

examples:
  r3 eval --task countdown --limit 50 --output-dir runs/eval-vanilla
  r3 eval --task countdown --limit 50 --second-try resample --temperature 0.7 --output-dir runs/eval-resample
  r3 eval --task custom --data examples/custom_task/data.jsonl --verifier examples.custom_task.verifier:verify
  r3 eval --config my_eval.yaml --limit 10
"""


def parse(argv: list[str]) -> EvalConfig:
    """Flags and `--config` into `EvalConfig`."""
    return parse_trl_config(EvalConfig, argv, prog="r3 eval", description=DESCRIPTION)  # type: ignore[return-value]


def main(argv: list[str]) -> int:
    """`r3 eval ...`; returns the exit status."""
    return run(parse(argv))


def run(config: EvalConfig) -> int:
    """`r3 eval` on parsed options (Python calls it too): the folder is checked before the model loads."""
    from rich.console import Console
    from rich.markdown import Markdown

    from r3.evaluation.evaluate import evaluate, open_output, results_markdown
    from r3.rundir import examples_digest
    from r3.tasks import get_task

    task = get_task(config.task, **config.task_options())
    examples = task.load(config.data, limit=config.limit, seed=config.seed)
    if not examples:
        raise R3Error("no examples to evaluate (the data is empty, or --limit is 0)")
    output_dir = config.output_dir or f"runs/eval-{config.task.replace(':', '_').replace('.', '_')}"
    digest = examples_digest(task, examples)
    open_output(config, output_dir, overwrite=config.overwrite, check_only=True, digest=digest)
    progress = not config.no_progress
    results = evaluate(
        config, task, examples, config.generator(), output_dir, overwrite=config.overwrite, progress=progress
    )
    Console().print(Markdown(results_markdown(results)))
    print(f"Results in {output_dir}/ (results.json, results.md, samples.jsonl)")
    return 0

"""`r3 eval`: first- and second-try accuracy of a model on a task.

r3 eval --task countdown --limit 50 --output-dir runs/eval-vanilla
r3 eval --task function_calling --model Qwen/Qwen2-1.5B-Instruct --backend vllm
r3 eval --task countdown --limit 50 --second-try resample --temperature 0.7 --output-dir runs/eval-resample
r3 eval --task countdown --limit 50 --rounds 3 --output-dir runs/eval-3-rounds
r3 eval --task countdown --backend openai --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-7B-Instruct
r3 eval --config my_eval.yaml --limit 10

Options are the fields of `EvalArguments` (the shared groups of `r3.cli.arguments` plus the episode's
own), parsed as `r3 train`'s are: YAML via `--config`, flags override, unknown keys are an error. The
evaluation itself takes `EvalConfig`, which `EvalArguments.eval_config` fills from them by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from r3.cli.arguments import ModelArguments, OutputArguments, TaskArguments, check_shared, config_from
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


@dataclass
class EvalArguments(OutputArguments, ModelArguments, TaskArguments):
    """`r3 eval`'s options: the shared task, model and output groups, and the episode's settings.
    (Bases in reverse: dataclass fields come base by base from the last, so the shared group of `--help`
    lists the task first.)"""

    max_new_tokens: int = field(default=256, metadata={"help": "an attempt's (and a retry's) token budget"})
    reflection_max_new_tokens: int = field(default=256, metadata={"help": "a reflection's token budget"})
    temperature: float = field(default=0.0, metadata={"help": "0 means greedy (default)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling (1: off)"})
    second_try: str = field(
        default="reflect",
        metadata={
            "help": "what follows a failed first attempt. reflect (default, the paper's protocol): a "
            "reflection, then a retry with it in context. resample: a second independent attempt at the "
            "original prompt, no reflection, sampled like the first (same temperature) with another seed; "
            "with greedy decoding (temperature 0, the default) it repeats the first attempt exactly, so "
            "use --temperature > 0. feedback: as reflect, but the reflection instruction also shows the "
            "verifier's reason for the failure"
        },
    )
    rounds: int = field(
        default=1,
        metadata={
            "help": "reflect-and-retry rounds for an unsolved example (default 1, the paper's protocol); "
            "each round sees the whole history; results.json's `rounds` counts examples solved up to "
            "each round"
        },
    )

    def __post_init__(self) -> None:
        check_shared(self)
        self.eval_config()  # the episode's settings are checked by `EvalConfig`, their one checker

    def eval_config(self) -> EvalConfig:
        """The settings that decide the results (`EvalConfig`), filled from these options by name
        (`config_from`). Named otherwise: the task's constructor options, `--batch-size` (`chunk_size`),
        and the server's URL, kept only for `--backend openai`, where it is part of which model runs."""
        return config_from(
            self,
            EvalConfig,
            task_options=self.task_options(),
            chunk_size=self.batch_size,
            base_url=self.base_url if self.backend == "openai" else None,
        )


def parse(argv: list[str]) -> EvalArguments:
    """Flags and `--config` into `EvalArguments`."""
    return parse_trl_config(EvalArguments, argv, prog="r3 eval", description=DESCRIPTION)  # type: ignore[return-value]


def main(argv: list[str]) -> int:
    """`r3 eval ...`; returns the exit status."""
    return run(parse(argv))


def run(args: EvalArguments) -> int:
    from r3.evaluation.evaluate import evaluate, open_output
    from r3.rundir import examples_digest
    from r3.tasks import get_task

    config = args.eval_config()
    task = get_task(config.task, **config.task_options)
    examples = task.load(config.data, limit=config.limit, seed=config.seed)
    if not examples:
        raise R3Error("no examples to evaluate (the data is empty, or --limit is 0)")
    output_dir = args.output_dir or f"runs/eval-{args.task.replace(':', '_').replace('.', '_')}"
    digest = examples_digest(task, examples)
    open_output(
        config, output_dir, overwrite=args.overwrite, check_only=True, digest=digest
    )  # before the load
    generator = args.generator()
    results = evaluate(
        config, task, examples, generator, output_dir, overwrite=args.overwrite, progress=not args.no_progress
    )
    from rich.console import Console
    from rich.markdown import Markdown

    from r3.evaluation.evaluate import results_markdown

    Console().print(Markdown(results_markdown(results)))
    print(f"Results in {output_dir}/ (results.json, results.md, samples.jsonl)")
    return 0

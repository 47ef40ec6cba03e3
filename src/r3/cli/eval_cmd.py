"""`r3 eval`: first- and second-try accuracy of a model on a task.

r3 eval --task countdown --limit 50 --output-dir runs/eval-vanilla
r3 eval --task function_calling --model Qwen/Qwen2-1.5B-Instruct --backend vllm
r3 eval --task countdown --limit 50 --second-try resample --temperature 0.7 --output-dir runs/eval-resample
r3 eval --task countdown --limit 50 --rounds 3 --output-dir runs/eval-3-rounds
r3 eval --task countdown --backend openai --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-7B-Instruct
r3 eval --config my_eval.yaml --limit 10

Options are the fields of `EvalArguments` (the shared groups of `r3.cli.arguments` plus the episode's
own), parsed as `r3 train`'s are: YAML via `--config`, flags override, unknown keys are an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from r3.cli.arguments import (
    ModelArguments,
    OutputArguments,
    TaskArguments,
    check_numbers,
    check_shared,
    parse_arguments,
)
from r3.errors import R3Error


@dataclass
class EvalArguments(OutputArguments, ModelArguments, TaskArguments):
    """`r3 eval`'s options: the shared task, model and output groups, and the episode's settings.
    (Bases in reverse: dataclass fields come base by base from the last, so `--help` lists the task first.)"""

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
        from r3.episode import check_rounds, check_second_try

        check_shared(self)
        check_numbers(self, {"reflection_max_new_tokens": 1})
        check_second_try(self.second_try)
        check_rounds(self.rounds)


def parse(argv: list[str]) -> EvalArguments:
    """Flags and `--config` into `EvalArguments`."""
    return parse_arguments(EvalArguments, argv, prog="r3 eval", description=__doc__)  # type: ignore[no-any-return]


def main(argv: list[str]) -> int:
    """`r3 eval ...`; returns the exit status."""
    return run(parse(argv))


def run(args: EvalArguments) -> int:
    from r3.evaluation.evaluate import EvalConfig, evaluate, open_output
    from r3.rundir import examples_digest
    from r3.tasks import get_task

    options = args.task_options()
    task = get_task(args.task, **options)
    examples = task.load(args.data, limit=args.limit, seed=args.seed)
    if not examples:
        raise R3Error("no examples to evaluate (the data is empty, or --limit is 0)")
    config = EvalConfig(
        task=args.task,
        task_options=options,
        data=args.data,
        limit=args.limit,
        seed=args.seed,
        model=args.model,
        backend=args.backend,
        base_url=args.base_url if args.backend == "openai" else None,
        dtype=args.dtype,
        engine_args=args.engine_args,
        device=args.device,
        max_new_tokens=args.max_new_tokens,
        reflection_max_new_tokens=args.reflection_max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        chunk_size=args.batch_size,
        second_try=args.second_try,
        rounds=args.rounds,
    )
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

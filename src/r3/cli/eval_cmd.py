"""`r3 eval`: first- and second-try accuracy of a model on a task.

r3 eval --task countdown --limit 50 --output-dir runs/eval-vanilla
r3 eval --task function_calling --model Qwen/Qwen2-1.5B-Instruct --backend vllm
r3 eval --task countdown --limit 50 --second-try resample --temperature 0.7 --output-dir runs/eval-resample
r3 eval --task countdown --limit 50 --rounds 3 --output-dir runs/eval-3-rounds
r3 eval --task countdown --backend openai --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-7B-Instruct
"""

from __future__ import annotations

import argparse

from r3.cli.options import add_common, check_numbers, generator_from_args, task_options
from r3.errors import R3Error


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # argparse exposes no public type
    parser = subparsers.add_parser(
        "eval",
        help="first- and second-try accuracy (attempt, reflect, retry)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    parser.add_argument("--reflection-max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 means greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument(
        "--second-try",
        default="reflect",
        metavar="{reflect,resample,feedback}",
        # Checked in `run` (not with `choices`), so that a bad value from a --config file and from
        # the command line is the same one-line error.
        help="what follows a failed first attempt. reflect (default, the paper's protocol): a "
        "reflection, then a retry with it in context. resample: a second independent attempt at the "
        "original prompt, no reflection, sampled like the first (same temperature) with another seed; "
        "with greedy decoding (temperature 0, the default) it repeats the first attempt exactly, so "
        "use --temperature > 0. feedback: as reflect, but the reflection instruction also shows the "
        "verifier's reason for the failure",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="reflect-and-retry rounds for an unsolved example (default 1, the paper's protocol); each "
        "round sees the whole history; results.json's `rounds` counts examples solved up to each round",
    )
    parser.add_argument("--overwrite", action="store_true", help="discard earlier results in --output-dir")
    parser.set_defaults(run=run, _parser=parser)


def run(args: argparse.Namespace) -> int:
    from r3.episode import check_second_try
    from r3.evaluation.evaluate import EvalConfig, evaluate, open_output
    from r3.rundir import examples_digest
    from r3.tasks import get_task

    check_numbers(args)
    check_second_try(args.second_try)
    task = get_task(args.task, **task_options(args))
    examples = task.load(args.data, limit=args.limit, seed=args.seed)
    if not examples:
        raise R3Error("no examples to evaluate (the data is empty, or --limit is 0)")
    config = EvalConfig(
        task=args.task,
        task_options=task_options(args),
        data=args.data,
        limit=args.limit,
        seed=args.seed,
        model=args.model,
        backend=args.backend,
        base_url=args.base_url if args.backend == "openai" else None,
        dtype=args.dtype,
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
    generator = generator_from_args(args)
    results = evaluate(
        config, task, examples, generator, output_dir, overwrite=args.overwrite, progress=not args.no_progress
    )
    from rich.console import Console
    from rich.markdown import Markdown

    from r3.evaluation.evaluate import results_markdown

    Console().print(Markdown(results_markdown(results)))
    print(f"Results in {output_dir}/ (results.json, results.md, samples.jsonl)")
    return 0

"""The option groups of the commands that sample (`r3 eval`, `r3 mine`), as dataclasses.

Every command's options are a dataclass parsed the way `r3 train`'s `R3Config` is (TRL's `TrlParser`,
see `options.parse_trl_config`): a YAML file via `--config` sets any field, flags override it, unknown
keys are an error, and a flag is the field's name with dashes or underscores (`--max-new-tokens`,
`--max_new_tokens`). The groups here are shared, so the task, the model and the output folder are spelled
and checked once; each command adds its own fields (`eval_cmd.EvalArguments`,
`mine_cmd.MineArguments`). Checks live in `check()` (called from the command's `__post_init__`), since
values from YAML skip argparse's type conversion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from r3.errors import R3Error
from r3.tasks.registry import parse_key_values, parse_task_args

BACKENDS = ("transformers", "vllm", "openai")


@dataclass
class TaskArguments:
    """Which task and examples."""

    task: str = field(
        default="countdown", metadata={"help": "countdown, function_calling, custom, or pkg.module:TaskClass"}
    )
    data: str | None = field(
        default=None,
        metadata={"help": "local .json/.jsonl/.parquet file or hub dataset id (default: the task's own)"},
    )
    verifier: str | None = field(
        default=None, metadata={"help": "custom task: the verifier as pkg.module:function"}
    )
    task_args: list[str] | None = field(
        default=None,
        metadata={
            "aliases": ["--task-arg"],
            "metavar": "KEY=VALUE",
            "help": "options of the task's constructor, KEY=VALUE, repeatable (e.g. countdown's "
            "--task-arg min_nums=4); VALUE is read as YAML (4, 0.5, true, null, text). In a --config "
            "file: task_args: {min_nums: 4}",
        },
    )
    limit: int | None = field(default=None, metadata={"help": "use only the first N examples"})
    seed: int = field(default=0, metadata={"help": "seed for generated data and sampling"})

    def task_options(self) -> dict[str, Any]:
        """Constructor options for `get_task` (`task_args`, and `verifier` for the custom task)."""
        options = parse_task_args(self.task_args)
        if self.verifier:
            options["verifier"] = self.verifier
        return options


@dataclass
class ModelArguments:
    """Which model, and how it is run."""

    model: str | None = field(
        default=None,
        metadata={"help": "hub id or local folder (default: the embedded SmolLM2-135M-Instruct)"},
    )
    backend: str = field(
        default="transformers",
        metadata={
            "help": "transformers, vllm, or openai: a model behind an OpenAI-compatible server "
            "(--base-url; --model is its name there)"
        },
    )
    base_url: str | None = field(
        default=None, metadata={"help": "--backend openai: the server's URL (e.g. http://127.0.0.1:8000/v1)"}
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "--backend openai: the environment variable that holds the API key"},
    )
    request_timeout: float = field(default=300.0, metadata={"help": "--backend openai: seconds per request"})
    max_retries: int = field(
        default=6,
        metadata={
            "help": "--backend openai: retries of a request (backoff; a 429's Retry-After is waited for)"
        },
    )
    batch_size: int = field(
        default=16,
        metadata={"help": "rows per generation batch (--backend openai: requests in flight at once)"},
    )
    dtype: str = field(default="auto", metadata={"help": "auto, float32, bfloat16 or float16"})
    device: str | None = field(
        default=None, metadata={"help": "cpu, cuda, cuda:1 ... (default: cuda if available)"}
    )
    engine_args: list[str] | None = field(
        default=None,
        metadata={
            "aliases": ["--engine-arg"],
            "metavar": "KEY=VALUE",
            "help": "--backend vllm: a keyword argument of vllm.LLM, KEY=VALUE, repeatable (e.g. "
            "--engine-arg max_model_len=2048 --engine-arg gpu_memory_utilization=0.5); VALUE is read as "
            "YAML. Without CUDA, enforce_eager defaults to true (compiling the graph on a CPU takes "
            "minutes). In a --config file: engine_args: {max_model_len: 2048}",
        },
    )

    def generator(self) -> Any:
        """The generation backend these options describe (eval and mine load it the same way)."""
        from r3.generation.loader import load_generator

        return load_generator(
            self.model,
            self.backend,
            device=self.device,
            dtype=self.dtype,
            batch_size=self.batch_size,
            base_url=self.base_url,
            api_key_env=self.api_key_env,
            request_timeout=self.request_timeout,
            max_retries=self.max_retries,
            engine_args=self.engine_args,
        )


@dataclass
class OutputArguments:
    """Where the rows go."""

    output_dir: str | None = field(default=None, metadata={"help": "where results go"})
    overwrite: bool = field(default=False, metadata={"help": "discard the output folder's previous run"})
    no_progress: bool = field(default=False, metadata={"help": "no progress bar or progress lines"})


def check_shared(args: Any) -> None:
    """Checks of the shared groups (flags and YAML values alike)."""
    if args.backend not in BACKENDS:
        raise R3Error(f"--backend must be one of {', '.join(BACKENDS)} (got {args.backend!r})")
    check_numbers(args, {"limit": 0, "batch_size": 1, "max_new_tokens": 1, "max_retries": 0})
    args.task_args = parse_task_args(args.task_args) or None  # a mapping from here on
    args.engine_args = parse_key_values(args.engine_args, name="engine_args", flag="--engine-arg") or None
    if args.engine_args and args.backend != "vllm":
        raise R3Error(f"--engine-arg is for --backend vllm (got --backend {args.backend})")


def check_numbers(args: Any, at_least: dict[str, int]) -> None:
    """Whole numbers with a lower bound; None means "not set" and passes."""
    for name, low in at_least.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool) or not isinstance(value, int):
            raise R3Error(f"{flag} must be an integer (got {value!r})")
        if value < low:
            raise R3Error(f"{flag} must be at least {low} (got {value})")


TASK_ARG_FLAGS = ("--task-arg", "--task-args", "--task_args")


def parse_arguments(cls: type, argv: list[str], prog: str, description: str | None) -> Any:
    """Flags and `--config` into the command's dataclass (`options.parse_trl_config`), a repeated
    `--task-arg` keeping every value."""
    from r3.cli.options import parse_trl_config

    return parse_trl_config(cls, merge_repeated(argv, TASK_ARG_FLAGS), prog=prog, description=description)


def merge_repeated(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """`--task-arg a=1 --task-arg b=2` as one `--task-arg a=1 b=2`: a list field takes its values
    after one flag, and a repeated flag would otherwise keep only its last values."""
    values: list[str] = []
    rest: list[str] = []
    first: int | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, inline = arg.partition("=")
        if flag in names:
            first = len(rest) if first is None else first
            if eq:
                values.append(inline)
                i += 1
            else:
                i += 1
                while i < len(argv) and not argv[i].startswith("--"):
                    values.append(argv[i])
                    i += 1
            continue
        rest.append(arg)
        i += 1
    if first is None:
        return argv
    return [*rest[:first], names[0], *values, *rest[first:]]

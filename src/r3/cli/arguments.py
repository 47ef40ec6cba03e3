"""The option groups of the commands that sample (`r3 eval`, `r3 mine`), as dataclasses.

Every command's options are a dataclass parsed the way `r3 train`'s `R3Config` is (TRL's `TrlParser`,
see `options.parse_trl_config`): a YAML file via `--config` sets any field, flags override it, unknown
keys are an error, and a flag is the field's name with dashes or underscores (`--max-new-tokens`,
`--max_new_tokens`). The groups here are shared, so the task, the model and the output folder are spelled
and checked once; each command adds its own fields (`eval_cmd.EvalArguments`,
`mine_cmd.MineArguments`). The task group starts from `r3.tasks.options.TaskFields`, which the training
configs share too. The groups' own fields are checked in `check_shared` (called from the command's
`__post_init__`, since values from YAML skip argparse's type conversion); the settings that decide the
rows are checked by the library-level config the command builds with `config_from` (`EvalConfig`,
`MineConfig`), so each field is checked in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from r3.errors import R3Error, check_numbers
from r3.tasks.options import TaskFields
from r3.tasks.registry import parse_key_values
from r3.threads import ThreadFields

BACKENDS = ("transformers", "vllm", "openai")


@dataclass
class TaskArguments(TaskFields):
    """Which task and examples: the group every command shares (`TaskFields`), plus where the
    examples come from and the seed that generates and samples them."""

    data: str | None = field(
        default=None,
        metadata={"help": "local .json/.jsonl/.parquet file or hub dataset id (default: the task's own)"},
    )
    seed: int = field(default=0, metadata={"help": "seed for generated data and sampling"})


@dataclass
class ModelArguments(ThreadFields):
    """Which model, and how it is run (its CPU threads too)."""

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
    """Checks of the shared groups' own fields (flags and YAML values alike); each command's config
    (`EvalConfig`, `MineConfig`) checks the fields it owns."""
    if args.backend not in BACKENDS:
        raise R3Error(f"--backend must be one of {', '.join(BACKENDS)} (got {args.backend!r})")
    args.check_task_fields()  # `task_args` a mapping from here on
    check_numbers(args, {"batch_size": 1, "max_retries": 0})
    args.engine_args = parse_key_values(args.engine_args, name="engine_args", flag="--engine-arg") or None
    if args.engine_args and args.backend != "vllm":
        raise R3Error(f"--engine-arg is for --backend vllm (got --backend {args.backend})")


Config = TypeVar("Config")


def config_from(args: Any, config_class: type[Config], **derived: Any) -> Config:
    """`config_class` (a library-level config: `EvalConfig`, `MineConfig`) built from a command's
    arguments by one rule rather than a copy per field: every config field the arguments hold under
    the same name, then `derived`, the fields the command computes or names otherwise. A field added to
    both dataclasses is carried over with no line here; the config's `__post_init__` checks it."""
    names = {f.name for f in fields(config_class)}  # type: ignore[arg-type]
    same = {f.name: getattr(args, f.name) for f in fields(args) if f.name in names}
    return config_class(**{**same, **derived})

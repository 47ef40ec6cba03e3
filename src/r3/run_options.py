"""The option groups of the commands that run a model on a task's examples: `EvalConfig` and
`MineConfig` are these plus their own fields, so every field is declared once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from r3.errors import R3Error, check_numbers
from r3.tasks.options import TaskFields
from r3.tasks.registry import parse_key_values
from r3.threads import ThreadFields

BACKENDS = ("transformers", "vllm", "openai")


@dataclass
class DataFields(TaskFields):
    """Which task and examples (`TaskFields`), where they come from, and the run's seed."""

    data: str | None = field(
        default=None, metadata={"help": ".json/.jsonl/.parquet file or hub dataset id (default: the task's)"}
    )
    seed: int = field(default=0, metadata={"help": "seed for generated data and sampling"})


@dataclass
class ModelFields(ThreadFields):
    """Which model, and how it is run (its CPU threads too)."""

    model: str | None = field(
        default=None, metadata={"help": "hub id or local folder (default: embedded SmolLM2-135M-Instruct)"}
    )
    backend: str = field(
        default="transformers",
        metadata={"help": "transformers, vllm, or openai (a server at --base-url; --model: its name there)"},
    )
    base_url: str | None = field(
        default=None, metadata={"help": "--backend openai: the server's URL (e.g. http://127.0.0.1:8000/v1)"}
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"help": "--backend openai: the env variable holding the API key"}
    )
    request_timeout: float = field(default=300.0, metadata={"help": "--backend openai: seconds per request"})
    max_retries: int = field(default=6, metadata={"help": "--backend openai: retries per request (backoff)"})
    batch_size: int = field(
        default=16, metadata={"help": "rows per generation batch (--backend openai: requests in flight)"}
    )
    dtype: str = field(default="auto", metadata={"help": "auto, float32, bfloat16 or float16"})
    device: str | None = field(
        default=None, metadata={"help": "cpu, cuda, cuda:1 ... (default: cuda if available)"}
    )
    engine_args: dict[str, Any] | str | list[str] | None = field(
        default=None,
        metadata={
            "aliases": ["--engine-arg"],
            "metavar": "KEY=VALUE",
            "nargs": "+",
            "help": "--backend vllm: a keyword argument of vllm.LLM (VALUE read as YAML), repeatable",
        },
    )

    def server(self) -> dict[str, Any]:
        """For a run's identity, what the model's name leaves out: its server's URL, vLLM's settings."""
        out: dict[str, Any] = {"base_url": self.base_url} if self.backend == "openai" else {}
        if self.engine_args:
            out["engine_args"] = self.engine_args
        return out

    def batch_invariant(self) -> bool:
        """Whether rows are the same whatever their batch (`models.batch_invariant`)."""
        from r3.models import batch_invariant

        return batch_invariant(self.backend, self.dtype, self.device)

    def generator(self) -> Any:
        """The generation backend these options describe."""
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
class OutputFields:
    """Where the rows go (the command's fields; library functions take the folder as an argument)."""

    output_dir: str | None = field(default=None, metadata={"help": "where results go"})
    overwrite: bool = field(default=False, metadata={"help": "discard the output folder's previous run"})
    no_progress: bool = field(default=False, metadata={"help": "no progress bar or progress lines"})


@dataclass
class RunFields(OutputFields, ModelFields, DataFields):
    """The shared groups of `EvalConfig` and `MineConfig` (reversed, so `--help` lists the task first)."""

    def check_run_fields(self) -> None:
        """Check the shared fields (from flags, YAML or Python), parsing `engine_args`."""
        if self.backend not in BACKENDS:
            raise R3Error(f"--backend must be one of {', '.join(BACKENDS)} (got {self.backend!r})")
        self.check_task_fields()
        check_numbers(self, {"batch_size": 1, "max_retries": 0})
        self.engine_args = parse_key_values(self.engine_args, name="engine_args", flag="--engine-arg") or None
        if self.engine_args and self.backend != "vllm":
            raise R3Error(f"--engine-arg is for --backend vllm (got --backend {self.backend})")

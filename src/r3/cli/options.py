"""Options shared by several subcommands, and YAML configs with command-line overrides.

`--config FILE.yaml` sets defaults for any option of the subcommand (keys are option names with
underscores); flags given on the command line win. Unknown keys are an error.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from r3.errors import R3Error


def add_common(parser: argparse.ArgumentParser) -> None:
    """Task, data, model and sampling options used by eval and mine."""
    g = parser.add_argument_group("task and data")
    g.add_argument(
        "--task", default="countdown", help="countdown, function_calling, custom, or pkg.module:TaskClass"
    )
    g.add_argument(
        "--data",
        default=None,
        help="local .json/.jsonl/.parquet file or hub dataset id (default: the task's own)",
    )
    g.add_argument("--verifier", default=None, help="custom task: the verifier as pkg.module:function")
    g.add_argument(
        "--task-arg",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="an option of the task's constructor, repeatable (e.g. countdown's --task-arg min_nums=4); "
        "VALUE is read as YAML (4, 0.5, true, null, text). In a --config file: task_arg: {min_nums: 4}",
    )
    g.add_argument("--limit", type=int, default=None, help="use only the first N examples")
    g.add_argument("--seed", type=int, default=0, help="seed for generated data and sampling")
    m = parser.add_argument_group("model and generation")
    m.add_argument(
        "--model", default=None, help="hub id or local folder (default: the embedded SmolLM2-135M-Instruct)"
    )
    m.add_argument(
        "--backend",
        choices=["transformers", "vllm", "openai"],
        default="transformers",
        help="openai: a model behind an OpenAI-compatible server (--base-url; --model is its name there)",
    )
    m.add_argument(
        "--base-url", default=None, help="--backend openai: the server's URL (e.g. http://127.0.0.1:8000/v1)"
    )
    m.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="--backend openai: the environment variable that holds the API key (none needed locally)",
    )
    m.add_argument(
        "--request-timeout", type=float, default=300.0, help="--backend openai: seconds per request"
    )
    m.add_argument(
        "--max-retries",
        type=int,
        default=6,
        help="--backend openai: retries of a request (backoff; a 429's Retry-After is waited for)",
    )
    m.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="prompts per generation batch (--backend openai: requests in flight at once)",
    )
    m.add_argument("--max-new-tokens", type=int, default=256)
    m.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    m.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--output-dir", default=None, help="where results go")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    parser.add_argument("--config", default=None, help="YAML file of option defaults; flags override it")


def generator_from_args(args: argparse.Namespace) -> Any:
    """The generation backend the `add_common` options describe (eval and mine load it the same way)."""
    from r3.generation.loader import load_generator

    return load_generator(
        args.model,
        args.backend,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        request_timeout=args.request_timeout,
        max_retries=args.max_retries,
    )


def task_options(args: argparse.Namespace) -> dict[str, Any]:
    """Constructor options for `get_task` from the parsed flags (`--verifier`, `--task-arg`)."""
    options = parse_task_args(getattr(args, "task_arg", None))
    if args.verifier:
        options["verifier"] = args.verifier
    return options


def parse_task_args(raw: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """`["min_nums=4", "system_prompt=null"]` (flags) or a mapping (YAML) -> constructor options."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return {str(k): v for k, v in raw.items()}
    if isinstance(raw, str):
        raw = [raw]
    options: dict[str, Any] = {}
    for item in raw:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise R3Error(f"--task-arg expects KEY=VALUE, got '{item}'")
        try:
            options[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            options[key.strip()] = value
    return options


def check_numbers(args: argparse.Namespace) -> None:
    """Counts that must be positive (flags and YAML values alike: YAML skips argparse's `type`)."""
    at_least = {
        "limit": 0,
        "batch_size": 1,
        "max_new_tokens": 1,
        "reflection_max_new_tokens": 1,
        "max_retries": 0,
    }
    for name, low in at_least.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool) or not isinstance(value, int):
            raise R3Error(f"{flag} must be an integer (got {value!r})")
        if value < low:
            raise R3Error(f"{flag} must be at least {low} (got {value})")


def load_yaml_defaults(parser: argparse.ArgumentParser, path: str) -> dict[str, Any]:
    """Read a YAML mapping and check every key against the parser's options."""
    file = Path(path)
    if not file.is_file():
        raise R3Error(f"{path}: config file not found")
    try:
        payload = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise R3Error(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(payload, dict):
        raise R3Error(f"{path}: expected a mapping of option: value")
    known = {a.dest for a in parser._actions}  # argparse has no public accessor for this
    out: dict[str, Any] = {}
    for key, value in payload.items():
        dest = str(key).replace("-", "_")
        if dest not in known or dest in {"help", "config"}:
            raise R3Error(f"{path}: unknown option '{key}'")
        out[dest] = value
    return out


def parse_trl_config(config_class: type, argv: list[str], prog: str) -> object:
    """Parse flags and the `--config` recipe into `config_class` with TRL's `TrlParser` (every
    training command parses this way); bad or unknown keys become one-line `R3Error`s."""
    from trl import TrlParser

    if "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            raise R3Error("--config needs a YAML file")
        if not Path(argv[at + 1]).is_file():
            raise R3Error(f"{argv[at + 1]}: config file not found")
    parser = TrlParser((config_class,), prog=prog)
    try:
        (config,) = parser.parse_args_and_config(args=list(argv))
    except ValueError as exc:  # unknown keys, bad values, inconsistent GRPO settings
        raise R3Error(str(exc).splitlines()[0]) from None
    return config

"""How every `r3` command parses its options: a dataclass, YAML via `--config`, flags override.

`parse_trl_config` is TRL's `TrlParser` (the parser of TRL's own scripts) with R3's error handling:
unknown keys and bad values become one-line `R3Error`s, and a repeated `--task-arg` or `--engine-arg`
keeps every value (`merge_repeated`). The dataclasses are TRL configs with R3's fields (`r3 train`, `r3 sft`),
`ForgettingConfig` (`r3 forgetting`) and the shared option groups of `r3.cli.arguments` (`r3 eval`,
`r3 mine`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from r3.errors import R3Error


def parse_trl_config(
    config_class: type, argv: list[str], prog: str, description: str | None = None
) -> object:
    """Parse flags and the `--config` recipe into `config_class` with TRL's `TrlParser`; bad or
    unknown keys become one-line `R3Error`s."""
    from trl import TrlParser

    argv = merge_repeated(merge_repeated(list(argv), TASK_ARG_FLAGS), ENGINE_ARG_FLAGS)
    if "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            raise R3Error("--config needs a YAML file")
        if not Path(argv[at + 1]).is_file():
            raise R3Error(f"{argv[at + 1]}: config file not found")
    parser = TrlParser(
        (config_class,),
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    try:
        (config,) = parser.parse_args_and_config(args=list(argv))
    except ValueError as exc:  # unknown keys, bad values, inconsistent GRPO settings
        raise R3Error(str(exc).splitlines()[0]) from None
    except yaml_error() as exc:
        raise R3Error(
            f"{argv[argv.index('--config') + 1]}: not valid YAML ({str(exc).splitlines()[0]})"
        ) from None
    return config


def yaml_error() -> type[Exception]:
    import yaml

    return yaml.YAMLError


#: The spellings of `task_args` (`r3.tasks.options.TaskFields`), a flag every command takes repeatedly.
TASK_ARG_FLAGS = ("--task-arg", "--task-args", "--task_args")
ENGINE_ARG_FLAGS = ("--engine-arg", "--engine-args", "--engine_args")


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

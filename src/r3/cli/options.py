"""How every `r3` command parses its options: a dataclass, YAML via `--config`, flags override.

`parse_trl_config` parses with `r3.cli.parser.R3Parser`: TRL's `TrlParser` (the parser of TRL's own
scripts, so a recipe means to `r3` what it means to TRL) with R3's help layout (description, example,
R3's own options first with their defaults, `--help-all` for the fields inherited from TRL) and
one-line `R3Error`s that name the fix (an unknown key or flag with the closest known name, a missing
required option). A repeated `--task-arg` or `--engine-arg` keeps every value (`merge_repeated`). The
dataclasses are TRL configs with R3's fields (`r3 train`, `r3 sft`), `ForgettingConfig`
(`r3 forgetting`), `ReportArguments` (`r3 report`), and `EvalConfig` and `MineConfig` (`r3 eval`,
`r3 mine`: the shared groups of `r3.run_options` plus each command's own fields).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

from r3.threads import apply_threads

#: Deprecation warnings that no option of the user's can avoid, silenced for the command: TRL defaults
#: `gradient_checkpointing` to true, so transformers warns that the name is deprecated on every
#: training run whatever the recipe says, and TRL and PEFT read the deprecated
#: `is_gradient_checkpointing` of the model.
UNACTIONABLE_WARNINGS = (
    r"`gradient_checkpointing(_kwargs)?` is deprecated",
    r"`is_gradient_checkpointing` is deprecated",
)


def parse_trl_config(
    config_class: type,
    argv: list[str],
    prog: str,
    description: str | None = None,
    *,
    usage: str | None = None,
    required: Mapping[str, str] | None = None,
    shown_inherited: Iterable[str] = (),
) -> object:
    """Parse flags and the `--config` file into `config_class`; every mistake is an `R3Error`.

    `usage`: the help's first line (default: `PROG [--config FILE.yaml] [OPTIONS]`). `required`: option
    name -> the error when neither a flag nor the file sets it. `shown_inherited`: fields inherited
    from TRL / transformers that `--help` lists after R3's own; `--help-all` lists the rest."""
    from r3.cli.parser import R3Parser  # imports TRL: only when a command parses, not for `r3 --help`

    for pattern in UNACTIONABLE_WARNINGS:  # for the whole command: the run raises some of them too
        warnings.filterwarnings("ignore", message=pattern, category=FutureWarning)
    parser = R3Parser(
        config_class, prog=prog, description=description, usage=usage, shown_inherited=shown_inherited
    )
    config = parser.parse(argv, required or {})
    apply_threads(getattr(config, "threads", None))  # `--threads` / R3_THREADS, before any work
    return config


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

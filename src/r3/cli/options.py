"""How every `r3` command parses its options: a dataclass, YAML via `--config`, flags override, through
TRL's parser (so a recipe means to `r3` what it means to TRL) with R3's help and errors (`parser.py`)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

from r3.threads import apply_threads

#: Deprecation warnings no option of the user's can avoid (TRL sets and reads the deprecated
#: gradient-checkpointing names on every training run), silenced for the command.
UNACTIONABLE_WARNINGS = (
    r"`gradient_checkpointing(_kwargs)?` is deprecated",
    r"`is_gradient_checkpointing` is deprecated",
)
#: TRL's fields a first training run sets most, listed by `--help` after R3's (`--help-all` lists all).
MOST_USED_TRL_FIELDS = (
    "output_dir",
    "max_steps",
    "learning_rate",
    "per_device_train_batch_size",
    "use_peft",
    "use_cpu",
    "bf16",
    "save_steps",
    "report_to",
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

    `usage`: the help's first line; `required`: option name -> the error when nothing sets it;
    `shown_inherited`: TRL / transformers fields `--help` lists after R3's (`--help-all`: all)."""
    from r3.cli.parser import R3Parser  # imports TRL: only when a command parses, not for `r3 --help`

    for pattern in UNACTIONABLE_WARNINGS:  # for the whole command: the run raises some of them too
        warnings.filterwarnings("ignore", message=pattern, category=FutureWarning)
    parser = R3Parser(
        config_class, prog=prog, description=description, usage=usage, shown_inherited=shown_inherited
    )
    config = parser.parse(argv, required or {})
    apply_threads(getattr(config, "threads", None))  # `--threads` / R3_THREADS, before any work
    return config

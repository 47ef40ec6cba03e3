"""How every `r3` command parses its options: a dataclass, YAML via `--config`, flags override.

`R3Parser` is TRL's `TrlParser` (so a recipe means to `r3` what it means to TRL) with R3's help layout
and one-line `R3Error`s that name the fix.
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

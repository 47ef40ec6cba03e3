"""`R3Parser`: TRL's `TrlParser` with R3's help layout (R3's options first, then of the ~300 a TRL config
inherits only `shown_inherited`; `--help-all` lists all) and one-line `R3Error`s that name the fix, checked
before TRL's checks, which would hide the real mistake.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from trl import TrlParser

from r3.errors import R3Error


class R3Parser(TrlParser):
    """`TrlParser` with R3's help layout: `HfArgumentParser` adds every field through `add_argument`,
    which this class routes to R3's groups or to the inherited ones."""

    def __init__(
        self,
        config_class: type,
        *,
        prog: str,
        description: str | None = None,
        usage: str | None = None,
        shown_inherited: Iterable[str] = (),
        help_all: bool = False,
    ) -> None:
        # Set before `super().__init__`, which adds the fields through `add_argument` below.
        self._settings: dict[str, Any] = {
            "prog": prog,
            "description": description,
            "usage": usage,
            "shown_inherited": tuple(shown_inherited),
        }
        self._fields = [f.name for f in dataclasses.fields(config_class) if f.init]
        self._own = own_fields(config_class)
        self._command = self._own & set(inspect.get_annotations(config_class))
        self._shown = set(shown_inherited) - self._own
        if self._shown - set(self._fields):
            raise TypeError(f"{config_class.__name__} has no field {sorted(self._shown - set(self._fields))}")
        self._hidden = len(set(self._fields) - self._own - self._shown)
        self._help_all = help_all
        self._base = inherited_from(config_class)
        self._groups: dict[str, Any] = {}
        #: Every flag spelling, for "did you mean".
        self.option_spellings: list[str] = []
        super().__init__(
            (config_class,),
            prog=prog,
            description=description,
            usage=usage or f"{prog} [--config FILE.yaml] [OPTIONS]",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        self.add_argument(
            "--config",
            metavar="FILE.yaml",
            default=argparse.SUPPRESS,
            help="a YAML file of options (key: value lines, keys with underscores); flags override it",
        )
        # Accepted by every command; listed where it shows more than `--help`.
        self.add_argument(
            "--help-all",
            action="store_true",
            default=argparse.SUPPRESS,
            help=f"show this help with all {self._hidden} more options inherited from {self._base}, and exit"
            if self._hidden and not help_all
            else argparse.SUPPRESS,
        )

    def add_argument(self, *flags: str, **kwargs: Any) -> argparse.Action:
        """A field's flag into its group (R3's, the inherited ones shown, the rest), its default
        added to its help; any other flag (`--help`, `--config`) as argparse adds it."""
        self.option_spellings.extend(flag for flag in flags if flag.startswith("--"))
        name = kwargs.get("dest") or (flags[0][2:] if flags and flags[0].startswith("--") else "")
        if name not in self._fields:
            return super().add_argument(*flags, **kwargs)
        help_text = kwargs.get("help")
        if help_text and kwargs.get("action") is None and shows_default(kwargs.get("default"), help_text):
            kwargs["help"] = f"{help_text} (default: %(default)s)"
        if name in self._command:
            group = self._group("command")
        elif name in self._own:
            group = self._group("shared")
        elif name in self._shown:
            group = self._group("shown")
        else:
            group = self._group("inherited")
            if not self._help_all:
                kwargs["help"] = argparse.SUPPRESS
        return group.add_argument(*flags, **kwargs)

    def _group(self, kind: str) -> Any:
        """The option groups, made together at the first field so that they print in this order: the
        command's own fields, those of R3's classes it extends, the inherited ones shown, the rest."""
        if not self._groups:
            prog = self._settings["prog"]
            more = f" ({prog} --help-all lists all {self._hidden} more)" if self._hidden else ""
            self._groups = {
                "command": self.add_argument_group(f"{prog} options"),
                "shared": self.add_argument_group("task, model and run options"),
                "shown": self.add_argument_group(f"the most used options of {self._base}{more}"),
                "inherited": self.add_argument_group(
                    f"{'more ' if self._shown else ''}options inherited from {self._base}"
                ),
            }
        return self._groups[kind]

    def error(self, message: str) -> Any:  # argparse's hook: a bad value, an ambiguous prefix
        raise R3Error(message)

    def help_hint(self) -> str:
        """The command that lists every option."""
        return f"{self.prog} --help-all" if self._hidden else f"{self.prog} --help"

    def parse(self, argv: list[str], required: Mapping[str, str]) -> object:
        """The config from `argv`; any mistake an `R3Error` (see the module docstring)."""
        argv = merge_repeated(merge_repeated(split_config_flag(argv), TASK_ARG_FLAGS), ENGINE_ARG_FLAGS)
        values = read_config_file(argv)
        if values:
            self.check_keys(argv[argv.index("--config") + 1], values)
            self.set_defaults_with_config(**{k: v for k, v in values.items() if k != "env"})
        namespace, rest = self.parse_known_args(argv)  # `--help` prints and exits here
        if getattr(namespace, "help_all", False):
            sys.stdout.write(R3Parser(self.dataclass_types[0], help_all=True, **self._settings).format_help())
            self.exit()
        if rest:
            raise R3Error(self.unknown_option(rest))
        for name, message in required.items():
            if getattr(namespace, name, None) in (None, "", []):
                raise R3Error(message)
        try:
            (config,) = self.parse_args_and_config(args=argv)
        except ValueError as exc:  # TRL's and transformers' checks of the values
            raise R3Error(trl_check_message(exc)) from None
        return config

    def check_keys(self, path: str, values: Mapping[Any, Any]) -> None:
        """Every key of the `--config` file must be an option (or TRL's `env:`, variables to set)."""
        unknown = [key for key in values if key not in self._fields and key != "env"]
        if not unknown:
            return
        said = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), self._fields, n=1)
            said.append(f"unknown key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        hint = "" if all("did you mean" in s for s in said) else f"; {self.help_hint()} lists the options"
        raise R3Error(f"{path}: {'; '.join(said)}{hint}")

    def unknown_option(self, rest: list[str]) -> str:
        """The error for what argparse left over: an unknown flag, or a value no flag takes."""
        flag = next((arg.split("=", 1)[0] for arg in rest if arg.startswith("-")), None)
        if flag is None:
            return f"unexpected argument '{rest[0]}' (an option is given as --name VALUE)"
        close = difflib.get_close_matches(flag, self.option_spellings, n=1)
        hint = f"did you mean {close[0]}?" if close else f"{self.help_hint()} lists the options"
        return f"unknown option {flag} ({hint})"


def own_fields(config_class: type) -> set[str]:
    """The fields whose latest declaration is in a class of R3's (or of the config's own package), not
    of TRL's or transformers' (R3 may declare a field again, with its own default or help)."""
    packages = {"r3", config_class.__module__.split(".")[0]}
    own = set()
    for f in dataclasses.fields(config_class):  # type: ignore[arg-type]
        declared = next((k for k in config_class.__mro__ if f.name in inspect.get_annotations(k)), object)
        if declared.__module__.split(".")[0] in packages:
            own.add(f.name)
    return own


def inherited_from(config_class: type) -> str:
    """The library config a config class extends, as `trl.GRPOConfig` (for the help's group titles)."""
    packages = {"r3", config_class.__module__.split(".")[0]}
    for klass in config_class.__mro__:
        if dataclasses.is_dataclass(klass) and klass.__module__.split(".")[0] not in packages:
            return f"{klass.__module__.split('.')[0]}.{klass.__name__}"
    return "its base classes"


def shows_default(default: Any, help_text: str) -> bool:
    """Whether a field's help gains "(default: ...)": not when it already says its default, nor for
    None or an empty list (unset: the help says what happens then)."""
    if default is None or default is argparse.SUPPRESS or "(default" in help_text:
        return False
    return not (isinstance(default, list | tuple | dict) and not default)


def trl_check_message(exc: ValueError) -> str:
    """A TRL / transformers check as one line; the one every CPU user meets first in R3's words."""
    text = str(exc)
    if "support bf16" in text:
        return (
            "this machine cannot train in bf16, TRL's default: on a CPU add --use_cpu true --bf16 false "
            "(as the CPU recipes in recipes/ do); on a GPU without bf16, --bf16 false"
        )
    return text.splitlines()[0] if text else type(exc).__name__


#: The spellings of `task_args` (`r3.tasks.options.TaskFields`), a flag every command takes repeatedly.
TASK_ARG_FLAGS = ("--task-arg", "--task-args", "--task_args")
ENGINE_ARG_FLAGS = ("--engine-arg", "--engine-args", "--engine_args")


def merge_repeated(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """`--task-arg a=1 --task-arg b=2` as one `--task-arg a=1 b=2`: a list field takes its values
    after one flag, and a repeated flag would otherwise keep only its last values."""
    values: list[str] = []
    rest: list[str] = []
    first: int | None = None
    taking = False  # after the flag without "=": its values, up to the next "--" flag
    for arg in argv:
        flag, eq, inline = arg.partition("=")
        if flag in names:
            first = len(rest) if first is None else first
            values += [inline] if eq else []
            taking = not eq
        elif taking and not arg.startswith("--"):
            values.append(arg)
        else:
            taking = False
            rest.append(arg)
    if first is None:
        return argv
    return [*rest[:first], names[0], *values, *rest[first:]]


def split_config_flag(argv: list[str]) -> list[str]:
    """`--config=FILE` as `--config FILE`, the one form TRL's parser reads."""
    out: list[str] = []
    for arg in argv:
        out += ["--config", arg.split("=", 1)[1]] if arg.startswith("--config=") else [arg]
    return out


def read_config_file(argv: list[str]) -> dict[Any, Any]:
    """The `--config` file's mapping ({} without one), checked: it exists, is YAML, is a mapping."""
    if "--config" not in argv:
        return {}
    at = argv.index("--config")
    if at + 1 >= len(argv) or argv[at + 1].startswith("--"):
        raise R3Error("--config needs a YAML file (--config FILE.yaml)")
    path = Path(argv[at + 1])
    if not path.is_file():
        raise R3Error(f"{path}: config file not found")
    import yaml

    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise R3Error(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise R3Error(f"{path}: a config file is a YAML mapping of option names to values (key: value lines)")
    return values

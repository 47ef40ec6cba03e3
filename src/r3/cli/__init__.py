"""The `r3` command line: `r3 eval`, `r3 mine`, `r3 sft`, `r3 train`, `r3 report`, `r3 forgetting`.

One module per subcommand, each with `main(argv) -> int` parsing a dataclass (`options.parse_trl_config`).
An `R3Error` is one line and exit 2. SIGTERM is handled as Ctrl-C (one line, exit 130, what was saved
kept), so that `kill`, `timeout` and schedulers stop a run as cleanly as a user does.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from r3 import __version__
from r3.errors import R3Error
from r3.threads import prepare_process

SUBCOMMANDS = {
    "eval": "r3.cli.eval_cmd",
    "mine": "r3.cli.mine_cmd",
    "sft": "r3.cli.sft_cmd",
    "train": "r3.cli.train_cmd",
    "report": "r3.cli.report_cmd",
    "forgetting": "r3.cli.forgetting_cmd",
}


def build_parser() -> argparse.ArgumentParser:
    """`r3 --help` and `r3 --version`: each command listed from its module docstring's first line."""
    parser = argparse.ArgumentParser(
        prog="r3", description="Reflect, Retry, Reward: train better self-reflections."
    )
    parser.add_argument("--version", action="version", version=f"r3 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        summary = (module.__doc__ or name).strip().splitlines()[0].split(": ", 1)[-1].rstrip(".")
        sub.add_parser(name, help=f"{summary} (see `r3 {name} --help`)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `r3` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prepare_process()  # before any command imports torch
    if argv and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[argv[0]])
        return _guarded(lambda: module.main(argv[1:]))
    parser = build_parser()
    parser.parse_args(argv)  # --help, --version, or an unknown command (argparse's own message)
    parser.print_help()
    return 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _guarded(call) -> int:  # type: ignore[no-untyped-def]
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    try:
        return int(call() or 0)
    except R3Error as exc:
        print(f"r3: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        said = exc.args[0] if exc.args else "progress so far is saved, run the same command again to resume"
        print(f"r3: interrupted; {said}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os._exit(0)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())

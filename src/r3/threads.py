"""How many CPU threads an `r3` command's torch uses, and how its idle threads wait.

GNU OpenMP's idle threads spin before they sleep, which takes the cores from busy ones when another
process shares them (several times slower, benchmarks/README.md "Threads"). So every command makes idle
threads sleep (`OMP_WAIT_POLICY=PASSIVE`) unless the user set a policy, and takes its thread count from
`--threads N` or `R3_THREADS`. The policy is read when torch loads, hence `prepare_process` first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from r3.errors import R3Error

#: The environment variable that sets every `r3` command's thread count (as `--threads` does).
THREADS_ENV = "R3_THREADS"


def prepare_process() -> None:
    """Idle OpenMP threads sleep instead of spinning, unless the user chose a wait policy (or torch
    is already loaded, when it is too late to change). Child processes inherit it."""
    import sys

    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def thread_count(threads: int | str | None) -> int | None:
    """The count to use: `threads` (an option), else `R3_THREADS`, else None (torch's default)."""
    value = threads if threads is not None else os.environ.get(THREADS_ENV) or None
    if value is None:
        return None
    where = "--threads" if threads is not None else THREADS_ENV
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise R3Error(f"{where} must be a whole number of threads (got {value!r})") from None
    if count < 1:
        raise R3Error(f"{where} must be at least 1 (got {count})")
    return count


def apply_threads(threads: int | str | None) -> int | None:
    """Set torch's intra-op thread count from `threads` or `R3_THREADS` (nothing when neither is set),
    and OMP_NUM_THREADS for the processes this one starts. Returns the count set, if any."""
    count = thread_count(threads)
    if count is None:
        return None
    os.environ["OMP_NUM_THREADS"] = str(count)
    import torch

    torch.set_num_threads(count)
    return count


@dataclass
class ThreadFields:
    """The `threads` option every command that runs a model takes (`r3 eval`, `mine`, `sft`, `train`,
    `forgetting`); the command applies it right after parsing (`r3.cli.options.parse_trl_config`)."""

    threads: int | None = field(
        default=None,
        metadata={
            "help": f"CPU threads for torch (default: ${THREADS_ENV} if set, else one per core); idle "
            "threads sleep rather than spin, so a busy machine is shared without thrashing"
        },
    )

"""How many CPU threads an `r3` command's torch uses (`--threads`, `R3_THREADS`), and how idle ones wait:
OpenMP's spinning idle threads take the cores from busy ones when another process shares them, so they
sleep (`OMP_WAIT_POLICY=PASSIVE`) unless the user chose a policy.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from r3.errors import R3Error

THREADS_ENV = "R3_THREADS"


def prepare_process() -> None:
    """Make idle OpenMP threads sleep, unless the user chose a policy (before torch loads: it reads it)."""
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
    """Set torch's thread count and OMP_NUM_THREADS from `threads` or `R3_THREADS`, if set."""
    count = thread_count(threads)
    if count is None:
        return None
    os.environ["OMP_NUM_THREADS"] = str(count)
    import torch

    torch.set_num_threads(count)
    return count


@dataclass
class ThreadFields:
    """The `threads` option of every command that runs a model, applied right after parsing."""

    threads: int | None = field(
        default=None,
        metadata={"help": f"CPU threads for torch (default: ${THREADS_ENV} if set, else one per core)"},
    )

"""Stop a training run at the end of its current step on Ctrl-C or SIGTERM: the first signal lets the
step finish, saves `checkpoint-<step>` and raises `KeyboardInterrupt` (exit 130; `--resume true`
continues); a second one, later than `REPEAT_WINDOW_S`, stops at once. The final save
(`uninterrupted_save`) is never cut by a first signal: a cut save looks like a finished model.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

#: Signals this close together are one request (a terminal's Ctrl-C plus a driver's forwarded one).
REPEAT_WINDOW_S = 2.0
#: What the first request says, during the steps and during the final save.
STEP_NOTICE = "r3: stopping after this step to save a checkpoint (Ctrl-C again to stop at once)"
SAVE_NOTICE = "r3: finishing the final save first (Ctrl-C again to stop at once, leaving it unfinished)"


class StopRequest:
    """Whether a stop was asked for, and when (a second request later than the window stops at once)."""

    def __init__(self, notice: str = STEP_NOTICE) -> None:
        self.asked_at: float | None = None
        self.notice = notice

    def signal_received(self, signum: int, frame: object) -> None:
        now = time.monotonic()
        if self.asked_at is None:
            self.asked_at = now
            os.write(2, f"{self.notice}\n".encode())  # not print(): it may interrupt a write to stderr
        elif now - self.asked_at > REPEAT_WINDOW_S:
            raise KeyboardInterrupt(
                "stopped at once; --resume true continues from the last checkpoint saved before"
            )

    @property
    def asked(self) -> bool:
        return self.asked_at is not None


def _asked_anywhere(asked: bool) -> bool:
    """True if any process of a distributed run was asked to stop (one collective per step)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return asked
    on_gpu = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
    flag = torch.tensor([int(asked)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def stop_callback(request: StopRequest) -> Any:
    """A `TrainerCallback` that, once `request` is asked, saves a checkpoint at the step's end and stops."""
    from transformers import TrainerCallback

    class StopAtStepEnd(TrainerCallback):
        stopped_at: int | None = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if _asked_anywhere(request.asked):
                control.should_save = True
                control.should_training_stop = True
                self.stopped_at = state.global_step
            return control

    return StopAtStepEnd()


@contextmanager
def handled_signals(request: StopRequest) -> Iterator[None]:
    """SIGINT and SIGTERM go to `request` inside the block (main thread only; a SIGINT the process
    inherited as ignored, as a shell's background job does, stays ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, request.signal_received)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def uninterrupted_save() -> AbstractContextManager[None]:
    """The final save and summary: a first Ctrl-C or SIGTERM waits for them (`SAVE_NOTICE`); a second
    one stops at once, as during the steps."""
    return handled_signals(StopRequest(SAVE_NOTICE))


def train_until_stopped(trainer: Any, resume_from_checkpoint: str | bool | None) -> None:
    """`trainer.train(...)`, stopping at a step's end with a checkpoint on the first Ctrl-C or SIGTERM,
    then raising `KeyboardInterrupt` so that nothing downstream treats the run as done."""
    request = StopRequest()
    callback = stop_callback(request)
    trainer.add_callback(callback)
    try:
        with handled_signals(request):
            trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    finally:
        trainer.remove_callback(callback)
    step = callback.stopped_at
    if step is not None:
        raise KeyboardInterrupt(
            f"stopped after step {step}, checkpoint-{step} saved in {trainer.args.output_dir}; "
            "run the same command with --resume true to continue from it"
        )

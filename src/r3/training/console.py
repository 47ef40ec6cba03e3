"""What `r3 train` and `r3 sft` print while they train: one line per logged step (`StepLines`) with
the loss or reward, R3's success and signal, and seconds per step, in place of transformers' dicts of
dozens of keys. Every value is still in TensorBoard/W&B (`report_to`) and the run's summary.
"""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from r3.progress import ProgressReport

#: Logged keys shown, with their names on the console, in this order; the first success key a run
#: logs is its success (R3's retry, plain GRPO's attempt, combined mode's every turn).
SHOWN = {
    "loss": "loss",
    "reward": "reward",
    "r3/turn_success": "success",
    "r3/retry_success": "retry success",
    "r3/attempt_success": "attempt success",
    "r3/groups_with_signal": "groups with signal",
}


def step_fields(logs: dict[str, Any]) -> dict[str, str]:
    """The console's fields of one training log (`loss`, `reward`, successes, signal), formatted."""
    return {
        name: f"{logs[key]:.3f}" for key, name in SHOWN.items() if isinstance(logs.get(key), (int, float))
    }


class StepLines(TrainerCallback):
    """One line per logged training step (main process only), in place of transformers' dicts."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.report: ProgressReport | None = None
        self._last: tuple[int, float] = (0, 0.0)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self.report = ProgressReport(self.description, state.max_steps, done=state.global_step, interval=0)
        self.report.__enter__()
        self._last = (state.global_step, time.monotonic())

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        fields = step_fields(logs or {})
        if self.report is None or not fields:  # the closing log (train_runtime, ...) is not a step
            return
        step, since = self._last
        now = time.monotonic()
        if state.global_step > step:
            fields["s/step"] = f"{(now - since) / (state.global_step - step):.1f}"
        self._last = (state.global_step, now)
        self.report.fields = {}
        self.report.advance(state.global_step - self.report.done, **fields)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.report is not None:
            self.report.__exit__(None, None, None)
            self.report = None


def use_step_lines(trainer: Any, description: str) -> None:
    """Replace transformers' printing callbacks of `trainer` with `StepLines`."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(StepLines(description))

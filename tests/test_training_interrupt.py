"""Ctrl-C and SIGTERM during training: the step in flight finishes, a checkpoint is saved, the command
says it was interrupted, and `--resume` continues from that checkpoint (`r3.training.interrupt`).

The signals are real (`os.kill` of this process); the model is the tiny in-process one of
`test_training_support`, so nothing is downloaded and each test takes seconds.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from transformers import TrainerCallback

from r3.cli import _guarded
from r3.training import interrupt
from r3.training.interrupt import StopRequest, handled_signals
from r3.training.trainer import train
from test_training_support import (
    ToyTask,
    complete_checkpoints,
    make_model,
    make_tokenizer,
    records,
    tiny_config,
)


class SignalAt(TrainerCallback):
    """Sends `signum` to this process at the end of step `step` (before the stop callback looks)."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), self.signum)
        return control


@pytest.fixture
def terminal_ctrl_c():
    """Python's own Ctrl-C handler, as in a terminal, even where the tests run with SIGINT ignored
    (`make test` from a background job or under nohup); restored afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_resume_finishes(
    tmp_path, signum, terminal_ctrl_c
):
    tokenizer = make_tokenizer()
    out = tmp_path / "out"

    def run(max_steps, callbacks=None, resume=False):
        config = tiny_config(
            tmp_path, max_steps=max_steps, save_strategy="steps", save_steps=100, resume=resume
        )
        return train(
            config,
            model=make_model(tokenizer),
            tokenizer=tokenizer,
            task=ToyTask(),
            records=records(),
            callbacks=callbacks,
        )

    handlers_before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match=r"stopped after step 2, checkpoint-2 saved .*--resume true"):
        run(4, callbacks=[SignalAt(2, signum)])
    # No periodic checkpoint was due (save_steps 100): the one there is the stop's, at the step in flight.
    assert complete_checkpoints(out) == [2]
    assert json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
    # A run cut short is not saved as a finished one.
    assert not (out / "r3_training.json").exists() and not (out / "config.json").exists()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers_before

    result = run(4, resume=True)
    assert result.global_step == 4
    steps = [row["step"] for row in result.log_history if "reward" in row]
    assert steps == [1, 2, 3, 4]  # the checkpoint's history, then the two steps left, each once
    assert (out / "r3_training.json").is_file() and (out / "config.json").is_file()


def test_a_repeated_signal_counts_once_within_the_window_and_stops_at_once_after_it(monkeypatch):
    clock = iter([100.0, 101.0, 103.5])
    monkeypatch.setattr(interrupt.time, "monotonic", lambda: next(clock))
    request = StopRequest()
    request.signal_received(signal.SIGINT, None)
    assert request.asked
    request.signal_received(signal.SIGINT, None)  # 1 s later: the same Ctrl-C, forwarded by a driver
    with pytest.raises(KeyboardInterrupt, match="stopped at once"):
        request.signal_received(signal.SIGINT, None)  # 3.5 s later: a second Ctrl-C


def test_an_ignored_sigint_stays_ignored_and_handlers_are_restored():
    before_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell's background job inherits it
    before_term = signal.getsignal(signal.SIGTERM)
    try:
        request = StopRequest()
        with handled_signals(request):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) == request.signal_received
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler runs at the next bytecode of the main thread
            assert request.asked
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == before_term
    finally:
        signal.signal(signal.SIGINT, before_int)


def test_sigterm_to_a_command_is_an_interruption_with_one_line(capsys):
    before = signal.getsignal(signal.SIGTERM)

    def command():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # interrupted by the handler long before this ends

    started = time.monotonic()
    assert _guarded(command) == 130
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert err.startswith("r3: interrupted; ") and err.count("\n") == 1
    assert signal.getsignal(signal.SIGTERM) == before

    def stopped():
        raise KeyboardInterrupt("stopped after step 3, checkpoint-3 saved in out")

    assert _guarded(stopped) == 130
    assert capsys.readouterr().err == "r3: interrupted; stopped after step 3, checkpoint-3 saved in out\n"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_final_save_waits_for_it(tmp_path, signum, terminal_ctrl_c, monkeypatch, capfd):
    """A stop asked for while the final model is written does not cut the save: the model and the summary
    (written last: what says the run finished) are whole, and the run ends as finished. Without the wait,
    SIGINT would raise in the middle of the save and SIGTERM would kill the process."""
    from r3.training import trainer as trainer_module

    real_save = trainer_module.save_final

    def save_with_a_signal(trainer, config):
        os.kill(os.getpid(), signum)
        time.sleep(0.05)  # the handler runs here, before the model is written
        return real_save(trainer, config)

    monkeypatch.setattr(trainer_module, "save_final", save_with_a_signal)
    tokenizer = make_tokenizer()
    handlers_before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    result = train(
        tiny_config(tmp_path, max_steps=2),
        model=make_model(tokenizer),
        tokenizer=tokenizer,
        task=ToyTask(),
        records=records(),
    )
    out = tmp_path / "out"
    assert result.global_step == 2
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert json.loads((out / "r3_training.json").read_text())["global_step"] == 2
    assert "r3: finishing the final save first" in capfd.readouterr().err
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers_before

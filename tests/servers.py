"""Servers the tests start for real on 127.0.0.1 (`transformers serve`, `vllm serve`, `trl vllm-serve`):
a free port, and a server process in a session of its own, so that killing or stopping it reaches
every process it started (a model server's engine core, multiprocessing's resource tracker) and none
outlives the test. Its output goes to a log file, read back when it fails to come up."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun(*args: str) -> list[str]:
    """The command line of a two-process torchrun of `args` on a free port (not 0: torchrun then hands
    port 0 to the workers, which hang); skips the test where torchrun is not installed."""
    import pytest

    launcher = Path(sys.executable).parent / "torchrun"
    if not launcher.exists():
        pytest.skip("torchrun is not installed next to this Python")
    return [str(launcher), "--nproc_per_node", "2", "--master_port", str(free_port()), *args]


class Server:
    """`command` serving on `port`, up once `health` (a path) answers 200."""

    def __init__(
        self,
        command: list[str],
        port: int,
        log: Path,
        *,
        health: str = "/health",
        env: dict[str, str] | None = None,
        timeout: float = 300.0,
    ) -> None:
        self.command, self.port, self.log = command, port, log
        self.health, self.env, self.timeout = health, env, timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI-compatible API's base URL."""
        return f"{self.base}/v1"

    def start(self) -> Server:
        with self.log.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.base + self.health, timeout=5) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"{self.command[0]} did not come up:\n{self.log.read_text()[-4000:]}")

    def signal_all(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """As a crash: SIGKILL to every process of the server, no shutdown."""
        if self.proc is not None:
            self.signal_all(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """SIGINT, then whatever is left of its session killed after 30 s."""
        if self.proc is None:
            return
        self.signal_all(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        self.kill()

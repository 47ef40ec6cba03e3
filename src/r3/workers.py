"""Users' functions called under a time limit in worker processes, where a hang or a crash costs one
call and never the run (a thread cannot be killed, and `os._exit` or a segfault ends its process).

Workers are fresh interpreters (`python -c`), never forks: a fork inherits OpenMP/CUDA locks in any
state, and multiprocessing's 'spawn' re-imports the parent's main script. A worker out of time is
killed, and the next call gets a fresh one.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, NoReturn

from r3.errors import R3Error
from r3.text import clip

#: A user's function of a row and one more argument (a verifier's is the completion).
UserFn = Callable[[dict[str, Any], Any], Any]

#: Seconds a worker has to start and load a function (a user's module may import a lot).
START_TIMEOUT_S = 60.0
#: The most worker processes a pool keeps alive at once (only concurrent callers need more than one).
POOL_SIZE = max(1, min(4, os.cpu_count() or 1))
#: Seconds to wait for a killed worker to be reaped (longer only when it is stuck in the kernel).
_REAP_S = 5.0
#: A worker's first lines: ignore Ctrl-C, take the parent's `sys.path`, then serve.
_BOOT = (
    "import signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "fd, parent, sys.path[:] = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]\n"
    "from r3.workers import serve\n"
    "serve(fd, parent)\n"
)
_PROTOCOL = pickle.HIGHEST_PROTOCOL


@dataclass(frozen=True)
class Outcome:
    """What one call came to: the function's return value, or (`failure`) why there is none."""

    value: Any = None
    failure: str | None = None


@dataclass(frozen=True)
class Portable:
    """How a worker process finds a user's function: `load(source)` there returns it (`load` travels
    pickled, so it must be a module-level function)."""

    load: Callable[[Any], UserFn]
    source: Any


def pickled(fn: UserFn) -> Portable | None:
    """`fn` as pickled bytes for a worker, or None when it cannot be pickled (a lambda, a closure)."""
    try:
        return Portable(pickle.loads, pickle.dumps(fn, _PROTOCOL))
    except Exception:  # noqa: BLE001 - pickling fails with PicklingError, AttributeError, TypeError, ...
        return None


class CannotRun(Exception):
    """A function that cannot run in a worker process: no worker starts, or it cannot be loaded there."""


class Guarded:
    """A user's function, called under a time limit in a worker process, or inline when `timeout_s` is
    None (no limit, fastest)."""

    def __init__(
        self, fn: UserFn, portable: Portable | None, timeout_s: float | None, what: str = "verifier"
    ) -> None:
        """`portable`: how a worker finds `fn` (None: it cannot); `what` starts failure reasons. With a
        time limit a worker loads `fn` now, so one that cannot run there is an `R3Error` here, not a
        failure per call."""
        self.fn = fn
        self.timeout_s = timeout_s
        self.what = what
        self.portable = portable if timeout_s is not None else None
        self.pool = shared_pool()
        if timeout_s is None:
            return
        try:
            if portable is None:
                raise CannotRun("it cannot be pickled")
            self.pool.check(portable)
        except CannotRun as exc:
            name = getattr(fn, "__qualname__", None) or type(fn).__name__
            raise R3Error(
                f"{what} {name!r} cannot run in a worker process ({exc}): give it as "
                "'package.module:function' or 'path/to/file.py:function' (a function defined at the top "
                "level of a module), or set timeout_s to 0 to call it in this process with no time limit"
            ) from None

    def __call__(self, example: dict[str, Any], argument: Any) -> Outcome:
        """Call the function; an exception, a hang or a dead worker is a failed Outcome, never raised."""
        if self.portable is None:
            try:
                return Outcome(self.fn(example, argument))
            except Exception as exc:
                return Outcome(failure=_raised(self.what, type(exc).__name__, _message(exc)))
        try:
            return self.pool.call(self.portable, example, argument, self.timeout_s or 0.0, self.what)
        except CannotRun as exc:  # it loaded when wrapped: the system ran out of processes or files
            return Outcome(failure=f"{self.what} could not run in a worker process: {exc}")


class _Lost(Exception):
    """A worker gave no answer: it ran out of time (`death` None) or died (`death` says how)."""

    def __init__(self, death: str | None) -> None:
        super().__init__(death or "timed out")
        self.death = death


class _Worker:
    """One worker process, our end of its socket, and the ids of the functions it has loaded."""

    def __init__(self) -> None:
        ours, theirs = multiprocessing.Pipe()  # a socketpair on POSIX
        command = [sys.executable, "-c", _BOOT, str(theirs.fileno()), str(os.getpid()), *sys.path]
        try:
            self.process = subprocess.Popen(command, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.conn = ours
        self.pidfd = _pidfd(self.process.pid)
        self.loaded: set[int] = set()
        self.closed = False

    def alive(self) -> bool:
        return not self.closed and self.process.poll() is None

    def exchange(self, message: bytes, timeout_s: float) -> tuple[Any, ...]:
        """Send one message and return the reply; `_Lost` (the worker reaped) on a timeout or a death."""
        try:
            self.conn.send_bytes(message)
        except OSError:  # it died while idle
            raise _Lost(self.death()) from None
        watched: list[Any] = [self.conn] if self.pidfd is None else [self.conn, self.pidfd]
        ready = wait(watched, timeout_s)
        if self.conn in ready:
            with contextlib.suppress(EOFError, OSError):  # no reply: it died
                data = self.conn.recv_bytes()
                try:
                    return pickle.loads(data)
                except Exception as exc:  # noqa: BLE001 - a value whose class the parent cannot import
                    return ("unsendable", f"a value that cannot be unpickled here ({_describe(exc)})")
        if not ready:
            self.kill()
            raise _Lost(None)
        raise _Lost(self.death())

    def kill(self) -> None:
        """Stop the process now (SIGKILL: a verifier cannot catch it) and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):  # stuck in the kernel: reaped later
            self.process.wait(_REAP_S)
        self._close()

    def death(self) -> str:
        """How the process ended ("exit code 3", "signal SIGSEGV"), once it is reaped."""
        try:
            code = self.process.wait(1.0)
        except subprocess.TimeoutExpired:  # it closed its socket but lives on
            self.kill()
            return "it closed its connection"
        self._close()
        return _exit_status(code)

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.conn.close()
        if self.pidfd is not None:
            os.close(self.pidfd)


class WorkerPool:
    """Worker processes for users' functions, started on demand (at most `size` alive) and reused;
    thread-safe."""

    def __init__(self, size: int = POOL_SIZE) -> None:
        if size < 1:
            raise ValueError(f"a worker pool needs at least one worker, got size={size}")
        self.size = size
        #: The pid of every worker this pool started, in order (to check that none is left behind).
        self.started_pids: list[int] = []
        self._ids: dict[Portable, int] = {}
        self._reset()

    def call(
        self, portable: Portable, example: dict[str, Any], argument: Any, timeout_s: float, what: str
    ) -> Outcome:
        """One call in a worker, under `timeout_s`: whatever the function does is an Outcome; `CannotRun`
        when it cannot run in a worker at all."""
        fid = self._id(portable)
        try:
            message = pickle.dumps(("call", fid, (example, argument)), _PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - the row holds something that cannot be pickled
            return Outcome(failure=f"{what} could not be sent this row: {_describe(exc)}")
        try:
            with self._borrowed() as worker:
                self._load(worker, fid, portable)
                reply = worker.exchange(message, timeout_s)
        except _Lost as lost:
            if lost.death is None:
                return Outcome(failure=f"{what} timed out after {timeout_s:g}s")
            return Outcome(failure=f"{what} process died ({lost.death})")
        return _outcome(reply, what)

    def check(self, portable: Portable) -> None:
        """Have a worker load the function now (`CannotRun` when it cannot), before its first call."""
        with self._borrowed() as worker:
            self._load(worker, self._id(portable), portable)

    def live_pids(self) -> list[int]:
        with self._cond:
            return [w.process.pid for w in self._workers if w.alive()]

    def close(self) -> None:
        """Kill every worker (a call in flight fails as a dead worker); a later call starts new ones."""
        with self._cond:
            idle, busy = list(self._idle), [w for w in self._workers if w not in self._idle]
            self._idle.clear()
            self._workers.difference_update(idle)
        for worker in idle:
            worker.kill()
        for worker in busy:  # its caller sees the death, then reaps it and closes its handles
            if worker.process.poll() is None:
                worker.process.kill()

    def _reset(self) -> None:
        """Forget all workers (at creation, and in a forked child, whose workers are its parent's)."""
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._starting = 0

    def _id(self, portable: Portable) -> int:
        with self._cond:
            return self._ids.setdefault(portable, len(self._ids))

    def _acquire(self) -> _Worker:
        """An idle live worker, else a new one when fewer than `size` are alive, else wait for one."""
        with self._cond:
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    worker.kill()  # died while idle (killed from outside): reap it, take another
                    self._workers.discard(worker)
                if len(self._workers) + self._starting < self.size:
                    self._starting += 1
                    break
                self._cond.wait()
        try:
            worker = _Worker()
        except BaseException as exc:
            with self._cond:
                self._starting -= 1
                self._cond.notify()
            if isinstance(exc, Exception):  # no executable, no fds, no POSIX (Windows), ...
                raise CannotRun(f"no worker process could be started ({_describe(exc)})") from exc
            raise
        with self._cond:
            self._starting -= 1
            self._workers.add(worker)
            self.started_pids.append(worker.process.pid)
        return worker

    @contextlib.contextmanager
    def _borrowed(self) -> Iterator[_Worker]:
        """A worker for one exchange, given back after it; killed when the caller is interrupted
        mid-exchange (Ctrl-C), which leaves its state unknown."""
        worker = self._acquire()
        try:
            yield worker
        except (_Lost, CannotRun):
            raise
        except BaseException:
            worker.kill()
            raise
        finally:
            self._release(worker)

    def _release(self, worker: _Worker) -> None:
        """Back to the idle list if it lives; otherwise reaped and forgotten (the next call starts one)."""
        alive = worker.alive()
        if not alive:
            worker.kill()
        with self._cond:
            if alive and worker in self._workers:
                self._idle.append(worker)
            else:
                self._workers.discard(worker)
            self._cond.notify()

    def _load(self, worker: _Worker, fid: int, portable: Portable) -> None:
        """Have the worker load the function once, outside the call's time limit."""
        if fid in worker.loaded:
            return
        message = pickle.dumps(("load", fid, (portable, list(sys.path))), _PROTOCOL)
        try:
            reply = worker.exchange(message, START_TIMEOUT_S)
        except _Lost as lost:
            if lost.death is None:
                raise CannotRun(f"a worker process did not load it within {START_TIMEOUT_S:g}s") from None
            raise CannotRun(f"a worker process died loading it ({lost.death})") from None
        if reply[0] != "loaded":
            raise CannotRun(f"a worker process could not load it ({reply[-1]})")
        worker.loaded.add(fid)


def _outcome(reply: tuple[Any, ...], what: str) -> Outcome:
    kind = reply[0]
    if kind == "returned":
        return Outcome(reply[1])
    if kind == "raised":
        return Outcome(failure=_raised(what, reply[1], reply[2]))
    if kind == "unsendable":
        return Outcome(failure=f"{what} returned {reply[1]}")
    return Outcome(failure=f"{what} could not be given this row ({reply[-1]})")


def _pidfd(pid: int) -> int | None:
    """A descriptor readable when the process exits (Linux 5.3+), else None (the socket's end of file
    then tells alone)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _exit_status(code: int) -> str:
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


_SHARED = WorkerPool()
atexit.register(_SHARED.close)
os.register_at_fork(after_in_child=_SHARED._reset)  # a child starts its own workers, leaves its parent's


def shared_pool() -> WorkerPool:
    """The pool every custom task uses, so that a process holds at most `POOL_SIZE` workers."""
    return _SHARED


# --- inside a worker process ----------------------------------------------------------------------


def serve(fd: int, parent_pid: int) -> None:
    """A worker's life: answer the parent's messages one at a time until its socket closes."""
    os.set_inheritable(fd, False)  # the verifier's own subprocesses must not hold our socket
    conn = Connection(fd)
    _exit_with_parent(parent_pid)
    functions: dict[int, UserFn] = {}
    while True:
        try:
            conn.send_bytes(_answer(conn.recv_bytes(), functions))
        except (EOFError, OSError):  # the socket closed or broke: the parent is gone
            _leave(0)


def _answer(data: bytes, functions: dict[int, UserFn]) -> bytes:
    try:
        kind, fid, payload = pickle.loads(data)
    except Exception as exc:  # noqa: BLE001 - e.g. a row holding a class this process cannot import
        return _encode(("unreadable", _describe(exc)))
    if kind == "load":
        portable, path = payload
        # The parent's `sys.path` entries too, so that it finds what the parent found.
        sys.path.extend(entry for entry in path if entry not in sys.path)
        try:
            functions[fid] = portable.load(portable.source)
        except BaseException as exc:  # noqa: BLE001 - even SystemExit at import is a load failure
            return _encode(("load_failed", _describe(exc)))
        return _encode(("loaded",))
    try:
        value = functions[fid](*payload)
    except BaseException as exc:  # noqa: BLE001 - even SystemExit is the verifier's answer, not ours
        return _encode(("raised", type(exc).__name__, _message(exc)))
    return _encode(("returned", value))


def _encode(reply: tuple) -> bytes:
    try:
        return pickle.dumps(reply, _PROTOCOL)
    except Exception:  # noqa: BLE001 - a return value that cannot travel (a generator, a lock, ...)
        return pickle.dumps(("unsendable", f"{type(reply[1]).__name__}, which cannot be pickled"), _PROTOCOL)


def _exit_with_parent(parent_pid: int) -> None:
    """Exit within a second of the parent's death, even during a hung call. Polling, because
    PR_SET_PDEATHSIG fires when the parent's *thread* that started us exits."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        _leave(1)

    threading.Thread(target=watch, name="r3-parent-watch", daemon=True).start()


def _leave(code: int) -> NoReturn:
    """Exit now, without waiting for threads a verifier may have left running."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken stream: nothing to save
            stream.flush()
    os._exit(code)


def _raised(what: str, kind: str, message: str) -> str:
    return clip(f"{what} raised {kind}" + (f": {message}" if message else ""), 200)


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails still names its type
        return ""


def _describe(exc: BaseException) -> str:
    message = _message(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__

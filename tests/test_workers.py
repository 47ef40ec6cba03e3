"""Custom verifiers in worker processes: a hang, an exit, a segfault or a kill costs one failed attempt
with a reason, never the run, and no thread or process is left behind.

The verifiers are written to a file under `tmp_path` and loaded by `file.py:function` spec, as users
give them. Time limits are short (0.5 s) to keep the file fast."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path
from typing import Any

import psutil
import pytest

from r3.errors import R3Error
from r3.tasks import Verdict
from r3.tasks.custom import CustomTask
from r3.workers import WorkerPool, shared_pool

ROW = {"prompt": "2+2?", "answer": 4}
LIMIT = 0.5

CHECKS = """
import ctypes, os, resource, signal, sys, time
from pathlib import Path

Path(__file__).with_suffix(".imports").open("a").write(f"{os.getpid()}\\n")  # one line per import


def verify(example, completion):
    if completion == "pid":  # which process runs it, as a failure's reason
        from r3.tasks import Verdict

        return Verdict(False, str(os.getpid()))
    if completion == "hang":
        while True:
            time.sleep(1)
    if completion == "spin":  # a hang that holds the GIL
        while True:
            pass
    if completion == "exit":
        os._exit(3)
    if completion == "segfault":
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the working directory
        ctypes.string_at(0)
    if completion == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if completion == "raise":
        raise ValueError("cannot parse 'raise'")
    if completion == "sys.exit":
        sys.exit(3)
    if completion == "generator":
        return (c for c in completion)
    return completion.strip() == str(example["answer"])
"""


def module_level_verify(example: dict[str, Any], completion: str) -> bool:
    """A callable from Python, not a spec: it travels to the worker pickled (by name)."""
    return completion == str(example["answer"])


@pytest.fixture
def checks(tmp_path: Path) -> Path:
    path = tmp_path / "checks.py"
    path.write_text(CHECKS)
    return path


@pytest.fixture
def pool() -> WorkerPool:
    """The shared pool, emptied first, so that counts of workers start from zero."""
    pool = shared_pool()
    pool.close()
    pool.started_pids.clear()
    return pool


def task(checks: Path, timeout_s: float | None = LIMIT) -> CustomTask:
    return CustomTask(f"{checks}:verify", timeout_s=timeout_s)


def worker_pid(t: CustomTask) -> int:
    """The pid of the process that runs `t`'s verifier (which tells it for the completion "pid")."""
    return int(t.verify(ROW, "pid").reason)


def children() -> set[int]:
    """This process's descendants, zombies included (a zombie is a worker nobody reaped)."""
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_hanging_rows_fail_in_time_and_nothing_is_left_behind(checks: Path, pool: WorkerPool) -> None:
    threads_before, children_before, started_before = (
        set(threading.enumerate()),
        children(),
        len(pool.started_pids),
    )
    t = task(checks)
    completions = ["4", "5", "hang", "4", "spin", "6", "4", "hang", "5", "4"]
    start = time.perf_counter()
    verdicts = [t.verify(ROW, c) for c in completions]
    elapsed = time.perf_counter() - start

    for completion, verdict in zip(completions, verdicts, strict=True):
        if completion in ("hang", "spin"):
            assert verdict == Verdict(False, "verifier timed out after 0.5s")
        elif completion == "4":
            assert verdict == Verdict(True, "")
        else:
            assert verdict == Verdict(False, "verifier returned False")
    # Three time limits, plus three fresh workers (about 0.1 s each) and seven quick calls.
    assert 3 * LIMIT <= elapsed < 3 * LIMIT + 3.0
    # The first worker (it loaded the verifier when the task was made), then one replacement per
    # timeout; the killed ones are reaped (not zombies).
    started = pool.started_pids[started_before:]
    assert len(started) == 4
    # No thread was started (none is left running a hung call): threads of earlier tests may end meanwhile.
    assert set(threading.enumerate()) <= threads_before
    alive = children() - children_before
    assert alive == set(pool.live_pids()) == {started[-1]}  # one worker while the pool is open
    pool.close()
    assert children() == children_before
    assert set(threading.enumerate()) <= threads_before


def test_exit_segfault_and_kill_fail_the_row_and_later_calls_work(checks: Path, pool: WorkerPool) -> None:
    t = task(checks)
    assert t.verify(ROW, "4").ok
    first = worker_pid(t)
    assert first in pool.started_pids and worker_pid(t) == first  # reused across calls
    deaths = {
        "exit": "verifier process died (exit code 3)",
        "segfault": "verifier process died (signal SIGSEGV)",
        "sigkill": "verifier process died (signal SIGKILL)",
    }
    for completion, reason in deaths.items():
        before = worker_pid(t)
        start = time.perf_counter()
        assert t.verify(ROW, completion) == Verdict(False, reason)
        assert time.perf_counter() - start < LIMIT  # a death is seen at once, not at the time limit
        assert t.verify(ROW, "4").ok and not t.verify(ROW, "5").ok
        assert worker_pid(t) != before  # a new worker
        assert before not in children()  # the dead one was reaped
    assert len(children()) == 1


def test_a_worker_killed_while_idle_is_replaced_without_a_failure(checks: Path, pool: WorkerPool) -> None:
    t = task(checks)
    victim = worker_pid(t)
    os.kill(victim, signal.SIGKILL)
    psutil.Process(victim).wait(5)
    assert t.verify(ROW, "4") == Verdict(True, "")
    assert worker_pid(t) != victim


def test_exceptions_are_failed_verdicts_and_the_worker_stays(checks: Path, pool: WorkerPool) -> None:
    t = task(checks)
    worker = worker_pid(t)
    assert t.verify(ROW, "raise") == Verdict(False, "verifier raised ValueError: cannot parse 'raise'")
    assert t.verify(ROW, "sys.exit") == Verdict(False, "verifier raised SystemExit: 3")
    reason = "verifier returned generator, which cannot be pickled"
    assert t.verify(ROW, "generator") == Verdict(False, reason)
    unpicklable_row = {**ROW, "note": lambda: None}
    verdict = t.verify(unpicklable_row, "4")
    assert not verdict.ok and verdict.reason.startswith("verifier could not be sent this row: ")
    assert worker_pid(t) == worker and t.verify(ROW, "4").ok


def test_the_spec_is_loaded_once_per_worker(checks: Path, pool: WorkerPool) -> None:
    spec = f"{checks}:verify"
    first = CustomTask(spec, timeout_s=LIMIT)
    for _ in range(5):
        assert first.verify(ROW, "4").ok
    assert CustomTask(spec, timeout_s=LIMIT).verify(ROW, "4").ok  # a second task, the same spec
    (worker,) = pool.live_pids()
    imports = checks.with_suffix(".imports").read_text().split()
    assert imports.count(str(worker)) == 1  # when the first task was made, never again
    assert set(imports) == {str(worker), str(os.getpid())}  # this process checks it when a task is made


def test_no_time_limit_calls_inline_without_a_worker(checks: Path, pool: WorkerPool) -> None:
    t = task(checks, timeout_s=0)
    assert t.verify(ROW, "4").ok and t.verify(ROW, "raise").reason == (
        "verifier raised ValueError: cannot parse 'raise'"
    )
    assert worker_pid(t) == os.getpid() and pool.started_pids == []


def test_callables_travel_pickled_and_unpicklable_ones_are_refused(pool: WorkerPool) -> None:
    by_name = CustomTask(module_level_verify, timeout_s=LIMIT)
    assert by_name.verify(ROW, "4").ok and not by_name.verify(ROW, "5").ok
    assert len(pool.started_pids) == 1

    def closure(example: dict[str, Any], completion: str) -> bool:
        return completion == "4"

    threads_before = set(threading.enumerate())
    form = r"\(it cannot be pickled\): give it as 'package.module:function'"
    with pytest.raises(R3Error, match=r"verifier '.*closure' cannot run in a worker process " + form):
        CustomTask(closure, timeout_s=LIMIT)
    assert set(threading.enumerate()) <= threads_before and len(pool.started_pids) == 1
    inline = CustomTask(closure, timeout_s=0)  # the way to keep it: in this process, with no limit
    assert inline.verify(ROW, "4").ok and not inline.verify(ROW, "5").ok


def test_a_callable_a_worker_cannot_load_is_refused_when_the_task_is_made(pool: WorkerPool) -> None:
    """Pickled by name, but its module exists only in this process (as in a notebook)."""
    ghost = types.ModuleType("r3_test_ghost_module")
    exec("def verify(example, completion):\n    return completion == '4'\n", ghost.__dict__)
    sys.modules[ghost.__name__] = ghost
    try:
        wanted = "could not load it.*ModuleNotFoundError.*'package.module:function'"
        with pytest.raises(R3Error, match=wanted):
            CustomTask(ghost.verify, timeout_s=LIMIT)
    finally:
        del sys.modules[ghost.__name__]
    assert len(pool.live_pids()) == 1  # the worker that tried stays, for the next verifier


def test_concurrent_callers_share_at_most_size_workers(checks: Path, pool: WorkerPool) -> None:
    t = task(checks)
    results: list[bool] = []

    def run(answer: str) -> None:
        results.extend(t.verify(ROW, answer).ok == (answer == "4") for _ in range(20))

    threads = [threading.Thread(target=run, args=(a,)) for a in ("4", "5", "4", "6", "4", "7")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 120 and all(results)
    assert 1 <= len(pool.started_pids) <= pool.size and len(pool.live_pids()) <= pool.size


def test_closing_the_pool_ends_a_call_in_flight(checks: Path, pool: WorkerPool) -> None:
    t = CustomTask(f"{checks}:verify", timeout_s=30)
    assert t.verify(ROW, "4").ok
    verdicts: list[Verdict] = []
    caller = threading.Thread(target=lambda: verdicts.append(t.verify(ROW, "hang")))
    caller.start()
    time.sleep(0.3)
    pool.close()
    caller.join(5)
    assert verdicts == [Verdict(False, "verifier process died (signal SIGKILL)")]
    assert pool.live_pids() == [] and not (children() & set(pool.started_pids))


def test_a_forked_child_starts_its_own_worker(checks: Path, pool: WorkerPool) -> None:
    t = task(checks)
    parent_worker = worker_pid(t)
    child = os.fork()
    if child == 0:  # the child: its own worker, and the parent's left alone
        ok = t.verify(ROW, "4").ok and worker_pid(t) != parent_worker
        shared_pool().close()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert worker_pid(t) == parent_worker and t.verify(ROW, "4").ok


RUN = """
import sys, threading
from r3.tasks.custom import CustomTask
t = CustomTask({spec!r}, timeout_s=60)
print(t.verify({{}}, "pid").reason, flush=True)
if sys.argv[1] == "hang":
    t.verify({{"answer": 4}}, "hang")
"""


@pytest.mark.parametrize("ending", ["exit", "hang"])
def test_workers_do_not_outlive_the_run(checks: Path, ending: str) -> None:
    """A run that exits normally kills its workers at exit; one that is killed (SIGKILL: no atexit)
    in the middle of a hung call leaves a worker that notices within a second or so and exits."""
    script = RUN.format(spec=f"{checks}:verify")
    run = subprocess.Popen([sys.executable, "-c", script, ending], stdout=subprocess.PIPE, text=True)
    assert run.stdout is not None
    worker = int(run.stdout.readline())
    if ending == "hang":
        time.sleep(0.3)
        run.kill()
    assert run.wait(10) == (-signal.SIGKILL if ending == "hang" else 0)
    deadline = time.monotonic() + 5
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(worker)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_workers_start_from_a_fresh_interpreter(checks: Path, pool: WorkerPool) -> None:
    """Spawned, never forked: the worker has not imported what the parent has (here, psutil)."""
    probe = checks.parent / "probe.py"
    probe.write_text(
        textwrap.dedent(
            """
            import sys
            def verify(example, completion):
                return "psutil" not in sys.modules and "pytest" not in sys.modules
            """
        )
    )
    assert CustomTask(f"{probe}:verify", timeout_s=LIMIT).verify(ROW, "").ok

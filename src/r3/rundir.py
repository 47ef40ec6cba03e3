"""Output folders that resume safely (`RunFolder`): one writer, and a fingerprint (`run.json`) so that a
run resumes when it matches and is refused, naming what changed, when it differs. Logs are fsync'd, and
their reader (`log_lines`) leaves out a torn last line, so a kill -9 loses at most the rows being written.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from r3.errors import R3Error

if TYPE_CHECKING:
    from r3.tasks.base import Example, Task

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
OVERWRITE = "use --overwrite to start afresh"
#: The version of every command's `run.json`. Raise it when a change of r3 makes any command write other
#: rows for the same settings, or changes what a fingerprint holds: older folders are then refused.
FINGERPRINT_VERSION = 5


class RunFolder:
    """An output folder opened for writing: locked, fingerprint checked, logs recovered on demand."""

    def __init__(
        self, folder: Path, fingerprint: dict[str, Any], lock: IO[Any] | None, resumed: bool = False
    ) -> None:
        self.folder = folder
        self.fingerprint = fingerprint
        self.resumed = resumed
        self._lock = lock
        self._handles: dict[str, IO[bytes]] = {}

    @classmethod
    def open(
        cls,
        output_dir: str | Path,
        fingerprint: dict[str, Any],
        owned: Sequence[str],
        *,
        command: str,
        overwrite: bool = False,
        check_only: bool = False,
        new_keys: Sequence[str] = (),
        resume: bool | None = None,
    ) -> RunFolder:
        """Open (create, or check and resume) the folder of one `r3 <command>` run; `resumed` says whether
        an earlier run's output is continued. `check_only` creates, locks and writes nothing, so a command
        can refuse a wrong folder before loading a model. `owned`: the names (or patterns) the command
        writes there, which `--overwrite` removes with `run.json`. `new_keys`: fingerprint keys compared
        only when both sides have them. `resume`: None continues a matching run unasked (eval and mine
        append rows); False refuses a folder holding owned files, naming `--resume` and `--overwrite` (a
        training rewrites its model, so a second run is more often a mistake); True continues a matching
        one. With True or False a folder without owned files starts afresh, unless its `run.json` is
        another command's."""
        folder = Path(output_dir).expanduser()
        if folder.exists() and not folder.is_dir():
            raise R3Error(f"--output-dir {folder}: exists and is not a folder")
        if check_only:
            resumed = (
                not overwrite and folder.is_dir() and _check(folder, fingerprint, owned, new_keys, resume)
            )
            return cls(folder, fingerprint, None, resumed)
        folder.mkdir(parents=True, exist_ok=True)
        lock = _acquire_lock(folder, command)
        try:
            if overwrite:
                for path in owned_paths(folder, [RUN_FILE, *owned]):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink(missing_ok=True)
            resumed = _check(folder, fingerprint, owned, new_keys, resume)
            if not resumed:
                write_json_atomic(folder / RUN_FILE, fingerprint)
            return cls(folder, fingerprint, lock, resumed)
        except BaseException:
            lock.close()
            raise

    def path(self, name: str) -> Path:
        return self.folder / name

    def rows(self, name: str) -> list[dict[str, Any]]:
        """The rows of the JSONL log `name`, its torn tail (if any) cut off the file."""
        return read_log(self.folder / name, repair=True)

    def append(self, name: str, rows: Iterable[dict[str, Any]]) -> None:
        """Append rows to the log `name` and push them to disk before returning."""
        handle = self._handles.get(name)
        if handle is None:
            handle = self._handles[name] = (self.folder / name).open("ab")
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        _write_synced(handle, lines.encode("utf-8"))

    def write_json(self, name: str, payload: Any) -> None:
        write_json_atomic(self.folder / name, payload)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _acquire_lock(folder: Path, command: str) -> IO[Any]:
    handle = (folder / LOCK_FILE).open("a")
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock; one writer per folder is then the user's job
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise R3Error(
            f"another `r3 {command}` is writing into {folder}; wait for it or use another --output-dir"
        ) from None
    return handle


def owned_paths(folder: Path, owned: Sequence[str]) -> list[Path]:
    """The entries of `folder` that `owned` names (names or `fnmatch` patterns), in order."""
    if not folder.is_dir():
        return []
    names = sorted(entry.name for entry in folder.iterdir())
    found = [folder / name for pattern in owned for name in names if fnmatch.fnmatchcase(name, pattern)]
    return list(dict.fromkeys(found))


def _listing(paths: Sequence[Path], most: int = 3) -> str:
    names = [path.name for path in paths]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _check(
    folder: Path,
    fingerprint: dict[str, Any],
    owned: Sequence[str],
    new_keys: Sequence[str],
    resume: bool | None = None,
) -> bool:
    """Whether `folder` holds this same run to continue; an `R3Error` naming what differs."""
    run_file = folder / RUN_FILE
    present = owned_paths(folder, owned)
    if not run_file.is_file():
        if present:
            raise R3Error(
                f"{folder} holds {_listing(present)} but no {RUN_FILE}, so it cannot be resumed safely; "
                "use another --output-dir, or --overwrite to start afresh"
            )
        return False
    try:
        stored = json.loads(run_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise R3Error(f"{run_file}: unreadable; use --overwrite to start afresh") from None
    if not isinstance(stored, dict):
        raise R3Error(f"{run_file}: not a JSON object; use --overwrite to start afresh")
    # Another r3 version or command is refused in a line of its own (a list of every other key that
    # differs would hide the reason); another command's folder even without output.
    version = fingerprint.get("version")
    if (resume is None or present) and "version" in fingerprint and stored.get("version") != version:
        old = stored.get("version")
        newer = isinstance(old, int) and not isinstance(old, bool) and old > version
        raise R3Error(
            f"{folder} holds another run's output, written by {'a newer' if newer else 'an earlier'} "
            f"version of r3 ({RUN_FILE} version {old!r}, this r3 writes {version}), whose "
            "rows cannot be continued: use another --output-dir, or --overwrite to start afresh"
        )
    if "command" in fingerprint and stored.get("command") != fingerprint["command"]:
        raise R3Error(
            f"{folder} holds another run's output, of `r3 {stored.get('command')}`, not "
            f"`r3 {fingerprint['command']}`: use another --output-dir"
        )
    if resume is not None and not present:
        return False
    keys = list(fingerprint) + [k for k in stored if k not in fingerprint]
    skip = {k for k in new_keys if k not in stored or k not in fingerprint}
    diffs = [
        "examples_sha256: the examples differ (same --data name, different content?)"
        if k == "examples_sha256"
        else f"{k}: {stored.get(k)!r} -> {fingerprint.get(k)!r}"
        for k in keys
        if k not in skip and stored.get(k) != fingerprint.get(k)
    ]
    changes = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
    if diffs and resume is None:
        raise R3Error(
            f"{folder} holds another run's output ({changes}). Mixing them would corrupt it: "
            "use another --output-dir, the same options as before to resume, or --overwrite to start afresh"
        )
    if diffs:
        raise R3Error(
            f"{folder} holds another run's output, with other settings ({changes}): --overwrite starts "
            "afresh, --resume continues it only with its own settings, or use another --output-dir"
        )
    if resume is False:
        raise R3Error(
            f"{folder} holds the output of an earlier run with these settings ({_listing(present)}): "
            "--resume continues it, --overwrite starts afresh, or use another --output-dir"
        )
    return True


def fingerprint(
    command: str,
    settings: Mapping[str, Any],
    *,
    examples_sha256: str | None = None,
    omit: Iterable[str] = (),
    batching: Mapping[str, Any] | None = None,
    paths: Iterable[str] = (),
) -> dict[str, Any]:
    """The `run.json` of one run of `r3 <command>`: `version`, `command`, the `settings` the rows depend
    on less `omit`, `batching` (only where rows depend on their batch: pass its keys as `new_keys`) and
    `examples_sha256`. `paths` name settings stored absolute when they name a local path (a hub id as
    is), so that another working directory gives the same fingerprint."""
    drop = set(omit)
    local = set(paths)
    out: dict[str, Any] = {"version": FINGERPRINT_VERSION, "command": command}
    for key, value in settings.items():
        if key in ("version", "command", "examples_sha256"):
            raise ValueError(f"fingerprint: '{key}' is not a setting")  # a caller's bug, not a user's
        path = Path(value).expanduser() if key in local and isinstance(value, str) else None
        if key not in drop:
            out[key] = str(path.resolve()) if path is not None and path.exists() else value
    if batching is not None:
        out.update(batching)
    if examples_sha256 is not None:
        out["examples_sha256"] = examples_sha256
    return out


def examples_digest(task: Task, examples: Sequence[Example]) -> str:
    """A digest of the examples as stored: a change of data is caught even under the same `--data`."""
    h = hashlib.sha256()
    for example in examples:
        h.update(
            json.dumps(task.to_record(example), sort_keys=True, ensure_ascii=False, default=str).encode()
        )
        h.update(b"\n")
    return h.hexdigest()


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON so that readers never see half a file and a crash leaves the old file or the new: a
    temporary file renamed over `path`, both fsync'd."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        _write_synced(handle, (json.dumps(payload, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # where a folder can be fsync'd, the rename is then durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_synced(handle: IO[bytes], data: bytes) -> None:
    handle.write(data)
    handle.flush()
    os.fsync(handle.fileno())


def read_log(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """The rows of a JSONL log (`log_lines` without the line numbers)."""
    return [row for _, row in log_lines(path, repair=repair)]


def log_lines(
    path: Path, *, repair: bool = False, remedy: str = OVERWRITE
) -> list[tuple[int, dict[str, Any]]]:
    """`(line number, row)` for every row of a JSONL file appended to line by line. A torn end (a crash
    mid-write) is left out, and with `repair` cut off the file so appending continues cleanly. A damaged
    line followed by good ones is an error naming the file, the line and `remedy`."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    rows, good_end = _scan(path, data, remedy)
    if repair and good_end != len(data):
        with path.open("r+b") as handle:
            handle.truncate(good_end)
            handle.flush()
            os.fsync(handle.fileno())
    return rows


def torn_tail(path: Path) -> bool:
    """Whether `log_lines` leaves the end of `path` out (a crash mid-write)."""
    if not path.is_file():
        return False
    data = path.read_bytes()
    return _scan(path, data, OVERWRITE)[1] != len(data)


def _scan(path: Path, data: bytes, remedy: str) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """The rows of `data` with their line numbers, and the byte offset just after the last good line."""
    rows: list[tuple[int, dict[str, Any]]] = []
    good_end = pos = 0
    bad_line: int | None = None
    # The piece after the last newline is left out: that write never finished.
    for line_no, line in enumerate(data.split(b"\n")[:-1], start=1):
        pos += len(line) + 1
        if not line.strip():
            if bad_line is None:
                good_end = pos
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            row = None
        if not isinstance(row, dict):
            bad_line = bad_line or line_no
            continue
        if bad_line is not None:
            raise R3Error(
                f"{path}: line {bad_line} is not a JSON object but later lines are; the file was changed "
                f"by hand or corrupted. Fix it, or {remedy}"
            )
        rows.append((line_no, row))
        good_end = pos
    return rows, good_end

"""Output folders that resume safely.

A long job (eval, mine) writes `run.json` with the settings that determine its results. Running again
into the same folder resumes when the settings match, and is refused when they differ, so that two
runs' rows never mix; `--overwrite` clears the folder's R3 files and starts afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r3.errors import R3Error

if TYPE_CHECKING:
    from r3.tasks.base import Example, Task

RUN_FILE = "run.json"


def prepare(
    output_dir: str | Path,
    identity: dict[str, Any],
    outputs: list[str],
    overwrite: bool,
    check_only: bool = False,
    new_keys: Sequence[str] = (),
) -> bool:
    """Create or check the folder. Returns True when an earlier run is being resumed.

    `check_only`: raise if the folder would be refused, but create, delete and write nothing (so a
    command can check its folder before a slow step that may still fail, e.g. loading a model).
    `new_keys`: identity keys that one side may lack (a `run.json` written before they existed, or a
    check made before they are known): they are compared only when both sides have them."""
    folder = Path(output_dir)
    run_file = folder / RUN_FILE
    if check_only and (overwrite or not folder.is_dir()):
        return False
    if not check_only:
        folder.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for name in [RUN_FILE, *outputs]:
            (folder / name).unlink(missing_ok=True)
    if run_file.is_file():
        try:
            earlier = json.loads(run_file.read_text())
        except json.JSONDecodeError:
            raise R3Error(f"{run_file}: unreadable; use --overwrite to start afresh") from None
        keys = {
            k for k in set(earlier) | set(identity) if k not in new_keys or (k in earlier and k in identity)
        }
        diff = sorted(k for k in keys if earlier.get(k) != identity.get(k))
        if diff:
            changes = ", ".join(f"{k}: {earlier.get(k)!r} -> {identity.get(k)!r}" for k in diff[:4])
            raise R3Error(
                f"{folder} holds another run's output ({changes}); choose another --output-dir "
                "or pass --overwrite to start afresh"
            )
        return True
    if any((folder / name).exists() for name in outputs):
        raise R3Error(f"{folder} holds output without {RUN_FILE}; pass --overwrite to replace it")
    if not check_only:
        write_json_atomic(run_file, identity)
    return False


def examples_digest(task: Task, examples: Sequence[Example]) -> str:
    """A digest of the examples as stored, so that a change of data (or limit, or seed of generated
    data) is caught even when the `--data` string is the same."""
    h = hashlib.sha256()
    for example in examples:
        h.update(
            json.dumps(task.to_record(example), sort_keys=True, ensure_ascii=False, default=str).encode()
        )
        h.update(b"\n")
    return h.hexdigest()


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file, and
    fsync both, so that after a crash the file is either the old one or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where directories cannot be fsync'd)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_complete_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file that was appended to line by line; a torn last line (a crash in the
    middle of a write) is cut off the file so that appending can continue cleanly."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep != len(data):
        with path.open("r+b") as handle:
            handle.truncate(keep)
    rows = []
    for line in data[:keep].decode("utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def append_jsonl(handle: Any, rows: list[dict[str, Any]]) -> None:
    """Append rows and push them to disk before returning (nothing lost on a kill -9)."""
    for row in rows:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    handle.flush()
    os.fsync(handle.fileno())

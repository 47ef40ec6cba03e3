"""Read rows of examples from a local JSON / JSONL / Parquet file or a hub dataset id.

Every problem is reported as one line naming the file and, where it applies, the row.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from r3.errors import DataError, R3Error


def read_rows(data: str, split: str = "train") -> tuple[list[tuple[int, Any]], str]:
    """`(row_number, row)` pairs and a printable source name. Row numbers are 1-based: the line in a
    JSONL file, else the position in the list."""
    path = Path(data).expanduser()
    if path.exists():
        if path.is_dir():
            raise DataError(str(path), None, None, "is a folder; give a .json, .jsonl or .parquet file")
        readers = {".jsonl": read_jsonl, ".json": _read_json, ".parquet": _read_parquet}
        suffix = path.suffix.lower()
        if suffix not in readers:
            problem = f"unsupported file type '{suffix}' (use .json, .jsonl or .parquet)"
            raise DataError(str(path), None, None, problem)
        return readers[suffix](path), str(path)
    if _looks_like_path(data):
        raise DataError(data, None, None, "no such file")
    return _read_hub(data, split), data


def _looks_like_path(data: str) -> bool:
    return (
        data.startswith((".", "/", "~"))
        or data.endswith((".json", ".jsonl", ".parquet"))
        or data.count("/") != 1
    )


def _parse(text: str) -> Any:
    """`json.loads`, with the errors it can raise besides JSONDecodeError turned into one."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text[:0], 0) from None


def read_jsonl(path: Path) -> list[tuple[int, Any]]:
    """`(line_number, value)` for every non-blank line; DataError naming the line otherwise."""
    rows: list[tuple[int, Any]] = []
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(str(path), line_no, None, f"not UTF-8 text (byte {exc.start + 1})") from None
            if not line.strip():
                continue
            try:
                rows.append((line_no, _parse(line)))
            except json.JSONDecodeError as exc:
                raise DataError(str(path), line_no, None, f"not valid JSON ({exc.msg})") from None
    return rows


def _read_json(path: Path) -> list[tuple[int, Any]]:
    try:
        payload = _parse(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(str(path), None, None, f"not UTF-8 text (byte {exc.start + 1})") from None
    except json.JSONDecodeError as exc:
        raise DataError(str(path), None, None, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if isinstance(payload, dict) and isinstance(payload.get("data"), list):
        payload = payload["data"]
    if not isinstance(payload, list):
        raise DataError(str(path), None, None, 'expected a list of rows (or {"data": [...]})')
    return list(enumerate(payload, start=1))


def _read_parquet(path: Path) -> list[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        return list(enumerate(pq.read_table(path).to_pylist(), start=1))
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(str(path), None, None, f"cannot read Parquet ({exc})") from None


def _read_hub(dataset_id: str, split: str) -> list[tuple[int, Any]]:
    try:
        import datasets

        return list(enumerate(datasets.load_dataset(dataset_id, split=split), start=1))
    except Exception as exc:
        offline = " (offline: HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise R3Error(
            f"cannot load dataset '{dataset_id}' from the hub{offline}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None

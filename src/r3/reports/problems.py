"""Which problems compared runs evaluated, and how reports name runs and paths. Two evaluations are
read row by row (fixed by one and not the other, a paired test) only on the same problems (`problem_key`:
runs of another `--limit` or generation seed are told apart where indices agree). Reports are read on
other machines: they name runs by label and paths relative to the report (`display_path`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

#: A problem as a report pairs it: its index and a digest of its record (None when the row holds
#: no record, as in hand-made files: the index alone then stands for it).
ProblemKey = tuple[int, str | None]


def problem_key(index: int, example: Mapping[str, Any] | None) -> ProblemKey:
    """The identity of row `index` whose task record is `example`."""
    if example is None:
        return index, None
    record = json.dumps(example, sort_keys=True, ensure_ascii=False, default=str)
    return index, hashlib.sha256(record.encode()).hexdigest()


def comparability_note(runs: Sequence[tuple[str, Collection[ProblemKey]]]) -> str | None:
    """One sentence when the labelled runs did not all evaluate the same problems (their number, or
    which), saying what paired comparisons are then made on; None when they are comparable."""
    if len(runs) < 2:
        return None
    sizes = [len(keys) for _, keys in runs]
    shared = len(set.intersection(*(set(keys) for _, keys in runs)))
    if len(set(sizes)) > 1:
        (first, n), *rest = [(label, len(keys)) for label, keys in runs]
        head = f"{first} has {n} problems, " + ", ".join(f"{label} {k}" for label, k in rest)
        common = f"{shared} in common" if shared else "none in common"
    elif shared < sizes[0]:
        head = "the runs evaluated different problems"
        common = f"{shared} of {sizes[0]} in common" if shared else "none in common"
    else:
        return None
    tail = "paired comparisons use only the problems in common" if shared else "nothing is paired"
    return f"Not comparable row by row: {head} ({common}); {tail}."


def display_path(value: str, base: str | Path) -> str:
    """`value` as a report shows it: an absolute path relative to the report's folder `base`, anything
    else (a relative path as the user gave it, a hub id) as it is."""
    if not os.path.isabs(value):
        return value
    try:
        return os.path.relpath(value, Path(base).resolve())
    except ValueError:  # another drive (Windows): no relative path exists; the last part still names it
        return Path(value).name


def distinct_names(folders: Sequence[str | Path]) -> list[str]:
    """A label per folder: its name, or as many last path parts as tell it from the others ("a/eval",
    "b/eval"); a folder given twice is numbered ("eval (2)")."""
    paths = [Path(os.path.abspath(folder)) for folder in folders]
    unique = list(dict.fromkeys(paths))
    parts = [path.parts[1:] or (path.anchor,) for path in unique]
    depths = [1] * len(unique)
    while True:
        names = ["/".join(p[-d:]) for p, d in zip(parts, depths, strict=True)]
        clashing = {name for name in names if names.count(name) > 1}
        grow = [i for i, name in enumerate(names) if name in clashing and depths[i] < len(parts[i])]
        if not grow:
            break
        for i in grow:
            depths[i] += 1
    name_of = dict(zip(unique, names, strict=True))
    seen: dict[Path, int] = {}
    out = []
    for path in paths:
        seen[path] = seen.get(path, 0) + 1
        out.append(name_of[path] if seen[path] == 1 else f"{name_of[path]} ({seen[path]})")
    return out

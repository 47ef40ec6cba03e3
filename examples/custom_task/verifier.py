"""Verifier for the arithmetic example: the completion must end its answer with `<answer>N</answer>`.

Use it as:

    r3 eval --task custom --data examples/custom_task/data.jsonl \
        --verifier examples.custom_task.verifier:verify

A verifier gets the row (every field of it, here the reference `answer`) and the model's text, and
returns True or False (or an `r3.tasks.Verdict` with a reason). It parses the text; it never runs it.
"""

from __future__ import annotations

import re
from typing import Any

_ANSWER = re.compile(r"<answer>\s*(-?\d{1,30})\s*</answer>")


def verify(example: dict[str, Any], completion: str) -> bool:
    """True when the last `<answer>` tag holds the reference integer."""
    found = _ANSWER.findall(completion)
    return bool(found) and int(found[-1]) == int(example["answer"])

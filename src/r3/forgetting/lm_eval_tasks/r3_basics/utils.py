"""Loads r3_basics.jsonl from this folder, wherever lm-eval is run from (a `data_files` path in the
YAML would be relative to the working directory)."""

from pathlib import Path
from typing import Any

import datasets


def load_basics(**_: Any) -> datasets.DatasetDict:
    """The test split; lm-eval passes the task's metadata as keyword arguments, unused here."""
    path = Path(__file__).with_name("r3_basics.jsonl")
    return datasets.DatasetDict({"test": datasets.Dataset.from_json(str(path))})

"""`r3 train`: GRPO on TRL's GRPOTrainer, rewarded by the retry and credited only to the reflection
(`from r3.training import R3Config, train`). Imports are lazy: `import r3.training` does not load TRL.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "R3Config": "r3.training.config",
    "R3Rollout": "r3.training.rollout",
    "make_retry_success_reward": "r3.training.rewards",
    "build_dataset": "r3.training.dataset",
    "build_trainer": "r3.training.trainer",
    "train": "r3.training.trainer",
    "save_final": "r3.training.trainer",
    "TrainResult": "r3.training.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'r3.training' has no attribute '{name}'")

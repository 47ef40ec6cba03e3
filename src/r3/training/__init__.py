"""`r3 train`: GRPO on TRL's GRPOTrainer, rewarded by the retry and credited only to the reflection.

    from r3.training import R3Config, build_trainer, train

    config.py   R3Config (GRPOConfig + R3 fields)
    dataset.py  failure records -> rendered reflection prompts (+ PromptIndex back to the examples)
    rollout.py  R3Rollout, the `rollout_func`: reflect -> retry -> verify
    engines.py  how the rollout samples (adapters of r3.generation's token sampler): the trainer's
                model, colocated vLLM, or a vLLM server
    rewards.py  the retry-success reward and the r3/... metrics
    trainer.py  build_trainer / train / save_final

Imports are lazy so that `import r3.training` does not load TRL.
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

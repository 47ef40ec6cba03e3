"""Sampling backends. See `base.py` for the interface and `loader.load_generator` for choosing one."""

from r3.generation.base import Completion, Generator, SamplingConfig, truncate_at_stop

__all__ = ["Completion", "Generator", "SamplingConfig", "truncate_at_stop"]

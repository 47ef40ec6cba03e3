"""Sampling backends. See `base.py` for the interface and `loader.load_generator` for choosing one."""

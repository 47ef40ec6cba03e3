"""Worked examples. A package so that `examples.custom_task.verifier:verify` imports from the repo root."""

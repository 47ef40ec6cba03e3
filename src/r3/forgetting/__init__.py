"""Forgetting (`r3 forgetting`): general ability before and after training, measured by
lm-evaluation-harness. `harness.py` runs lm-eval on each model into one run folder, `report.py` writes
the table and plot of changes against the first model, `lm_eval_tasks/` holds R3's local lm-eval task."""

from r3.forgetting.harness import ForgettingConfig, run_forgetting
from r3.forgetting.report import forgetting_table

__all__ = ["ForgettingConfig", "forgetting_table", "run_forgetting"]

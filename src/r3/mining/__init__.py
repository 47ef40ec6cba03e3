"""Mining: the dataset of failures (`r3 mine`). See `mine.py` for the rule and the files it writes."""

from r3.mining.mine import MineConfig, MineSummary, mine
from r3.mining.records import FailureRecord, read_failures

__all__ = ["FailureRecord", "MineConfig", "MineSummary", "mine", "read_failures"]

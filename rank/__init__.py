"""rank: reviewed history -> RiskRanker -> the escalation queue; and the end-to-end sweep."""

from .metrics import ranking_report
from .pipeline import RiskModel, SweepResult, sweep, train
from .queue import build_queue
from .ranker import RiskRanker

__all__ = [
    "RiskModel",
    "RiskRanker",
    "SweepResult",
    "build_queue",
    "ranking_report",
    "sweep",
    "train",
]

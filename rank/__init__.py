"""riskrank.rank: reviewed history -> RiskRanker -> the escalation queue; and the sweep."""

from riskrank.rank.evaluation.metrics import ranking_report
from riskrank.rank.model import RiskModel
from riskrank.rank.pipeline import SweepResult, sweep, train
from riskrank.rank.queue import build_queue
from riskrank.rank.ranker import RiskRanker, ScoredCandidates

__all__ = [
    "RiskModel",
    "RiskRanker",
    "ScoredCandidates",
    "SweepResult",
    "build_queue",
    "ranking_report",
    "sweep",
    "train",
]

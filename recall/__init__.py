"""riskrank.recall: seeds -> nearest inventory -> a candidate table (one row per item x policy)."""

from riskrank.recall.candidates import evidence_feature_columns
from riskrank.recall.history import ReviewedExemplars, validate_history
from riskrank.recall.recaller import recall
from riskrank.recall.seeds import SeedSet

__all__ = [
    "ReviewedExemplars",
    "SeedSet",
    "evidence_feature_columns",
    "recall",
    "validate_history",
]

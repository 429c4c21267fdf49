"""recall: seeds -> nearest inventory -> a candidate table (one row per item x policy)."""

from .candidates import evidence_feature_columns, schema_markdown
from .history import ReviewedExemplars, validate_history
from .recaller import recall
from .seeds import SeedSet

__all__ = [
    "ReviewedExemplars",
    "SeedSet",
    "evidence_feature_columns",
    "recall",
    "schema_markdown",
    "validate_history",
]

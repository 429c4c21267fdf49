"""riskrank: find the rest of a violating campaign from a few known-bad examples, riskiest first.

The short import for analysts::

    import riskrank as rr

    model = rr.train("reviews.parquet", "seeds.parquet", "models/scam")
    result = rr.sweep("ads.parquet", "seeds.parquet", model, out_dir="runs/today", budget=500)
    result.queue.to_pandas().head()

The three stages live in ``riskrank.index`` (content -> searchable index),
``riskrank.recall`` (seeds -> candidate evidence) and ``riskrank.rank`` (evidence -> queue).
"""

from riskrank.index import (
    ClipImageSignal,
    ClipTextSignal,
    IndexMismatchError,
    InventoryIndex,
    PdqSignal,
    SchemaError,
    Signal,
    TextEmbeddingSignal,
    build_index,
    register_signal,
)
from riskrank.index.manifest import package_version
from riskrank.rank import RiskModel, RiskRanker, SweepResult, sweep, train
from riskrank.recall import SeedSet, recall

__version__ = package_version()

__all__ = [
    "ClipImageSignal",
    "ClipTextSignal",
    "IndexMismatchError",
    "InventoryIndex",
    "PdqSignal",
    "RiskModel",
    "RiskRanker",
    "SchemaError",
    "SeedSet",
    "Signal",
    "SweepResult",
    "TextEmbeddingSignal",
    "__version__",
    "build_index",
    "recall",
    "register_signal",
    "sweep",
    "train",
]

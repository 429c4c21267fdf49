"""riskrank: find the rest of a violating campaign from a few known-bad examples, riskiest first.

The short import for analysts::

    import riskrank as rr

    model = rr.train("reviews.parquet", "seeds.parquet", "models/scam")
    result = rr.sweep("ads.parquet", "seeds.parquet", model, out_dir="runs/today", budget=500)
    result.queue.to_pandas().head()
    rr.write_reports(result, "seeds.parquet")  # report.md, report.png, report.html
    rr.sweep(..., reports=True)   # the same reports, written before the run's _SUCCESS marker
    rr.sweep_complete("runs/today")  # True once every output of the run is written
    rr.import_verdicts("verdicts.csv", "runs/today/queue.parquet", "models/scam",
                       out_dir="models/scam-v2")  # reviewers' verdicts back in, retrained
    rr.info("standing/")  # what a directory riskrank wrote is, and its state (also models, runs)
    rr.sweep(..., engine="ray")   # or engine=rr.RaySweepEngine(address="auto", num_shards=8)

The three stages live in ``riskrank.index`` (content -> searchable index),
``riskrank.recall`` (seeds -> candidate evidence) and ``riskrank.rank`` (evidence -> queue).
The recall step itself is ``rr.recall_candidates`` (``riskrank.recall.recall``): under the
name ``recall`` it would hide the package, and ``import riskrank.recall`` would give a function.
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
from riskrank.index.engine import LocalEngine
from riskrank.index.manifest import package_version
from riskrank.index.ray_engine.engine import RayEngine
from riskrank.rank import RiskModel, RiskRanker, ScoredCandidates, SweepResult, sweep, train
from riskrank.rank.app.info import info
from riskrank.rank.evaluation.report import write_sweep_reports as write_reports
from riskrank.rank.ray_engine import RaySweepEngine
from riskrank.rank.review import import_verdicts, retrain_pending
from riskrank.rank.sweep_output import is_complete as sweep_complete
from riskrank.recall import SeedSet
from riskrank.recall import recall as recall_candidates  # ``riskrank.recall`` is the package

__version__ = package_version()

__all__ = [
    "ClipImageSignal",
    "ClipTextSignal",
    "IndexMismatchError",
    "InventoryIndex",
    "LocalEngine",
    "PdqSignal",
    "RayEngine",
    "RaySweepEngine",
    "RiskModel",
    "RiskRanker",
    "SchemaError",
    "ScoredCandidates",
    "SeedSet",
    "Signal",
    "SweepResult",
    "TextEmbeddingSignal",
    "__version__",
    "build_index",
    "import_verdicts",
    "info",
    "recall_candidates",
    "register_signal",
    "retrain_pending",
    "sweep",
    "sweep_complete",
    "train",
    "write_reports",
]

"""riskrank.index: content -> vectors/hashes -> a persisted, searchable FAISS index.

Knows nothing of seeds or risk. ``build_index`` makes an index directory, ``InventoryIndex``
opens one; ``signals`` are the ways of matching content, ``vectors`` the indexes that serve
them; ``engine`` the strategy for the steps that parallelise, ``ray_engine`` the Ray one.
"""

# cpu_math asks MKL for reproducible sums (MKL_CBWR) before any encoder runs: its docstring.
import riskrank.index.cpu_math  # noqa: F401
from riskrank.index.build import build_index
from riskrank.index.engine import Engine, LocalEngine
from riskrank.index.schema import QUARANTINE_SCHEMA, validate_inventory
from riskrank.index.signals import (
    PDQ_MATCH_THRESHOLD,
    ClipEncoder,
    ClipImageSignal,
    ClipTextSignal,
    NsfwSignal,
    PdqSignal,
    Signal,
    SignalBatch,
    TextEmbeddingSignal,
    TextEncoder,
    register_signal,
    registered_signals,
)
from riskrank.index.signals.images import decode_image, decode_images
from riskrank.index.store import IndexMismatchError, InventoryIndex
from riskrank.index.tables import SchemaError, as_table
from riskrank.index.vectors import BinaryHashIndex, VectorIndex, choose_index_key

__all__ = [
    "PDQ_MATCH_THRESHOLD",
    "QUARANTINE_SCHEMA",
    "BinaryHashIndex",
    "ClipEncoder",
    "ClipImageSignal",
    "ClipTextSignal",
    "Engine",
    "IndexMismatchError",
    "InventoryIndex",
    "LocalEngine",
    "NsfwSignal",
    "PdqSignal",
    "SchemaError",
    "Signal",
    "SignalBatch",
    "TextEmbeddingSignal",
    "TextEncoder",
    "VectorIndex",
    "as_table",
    "build_index",
    "choose_index_key",
    "decode_image",
    "decode_images",
    "register_signal",
    "registered_signals",
    "validate_inventory",
]

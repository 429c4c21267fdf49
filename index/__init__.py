"""index: content -> vectors/hashes -> a persisted, searchable FAISS index.

Knows nothing of seeds or risk. See ``build_index`` and ``InventoryIndex``.
"""

from .schema import QUARANTINE_SCHEMA, validate_inventory
from .signals import Signal, SignalBatch, TextEmbeddingSignal, register_signal
from .store import IndexMismatchError, InventoryIndex, build_index
from .tables import SchemaError, as_table
from .text_encoder import TextEncoder
from .vector_index import VectorIndex, choose_index_key

__all__ = [
    "QUARANTINE_SCHEMA",
    "IndexMismatchError",
    "InventoryIndex",
    "SchemaError",
    "Signal",
    "SignalBatch",
    "TextEmbeddingSignal",
    "TextEncoder",
    "VectorIndex",
    "as_table",
    "build_index",
    "choose_index_key",
    "register_signal",
    "validate_inventory",
]

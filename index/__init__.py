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

# Image signals (issue "Images: CLIP and perceptual-hash recall"): registered so that
# InventoryIndex.load can rebuild them from a manifest.
from .clip_signal import ClipEncoder, ClipImageSignal, ClipTextSignal  # noqa: E402
from .image_decode import decode_image, decode_images  # noqa: E402
from .pdq_signal import PDQ_MATCH_THRESHOLD, BinaryHashIndex, PdqSignal  # noqa: E402

register_signal("clip_image", ClipImageSignal)
register_signal("clip_text", ClipTextSignal)
register_signal("pdq", PdqSignal)
__all__ += [
    "PDQ_MATCH_THRESHOLD",
    "BinaryHashIndex",
    "ClipEncoder",
    "ClipImageSignal",
    "ClipTextSignal",
    "PdqSignal",
    "decode_image",
    "decode_images",
]

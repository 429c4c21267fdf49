"""Signals: one class per way of matching content (text embedding, CLIP, PDQ, ...).

``base`` holds the ``Signal`` contract and the registry; each other module is one signal
family. Built-in signals are registered here, one line each.
"""

from riskrank.index.signals.base import (
    Signal,
    SignalBatch,
    register_signal,
    registered_signals,
    signal_from_manifest,
)
from riskrank.index.signals.clip import ClipEncoder, ClipImageSignal, ClipTextSignal
from riskrank.index.signals.pdq import PDQ_MATCH_THRESHOLD, PdqSignal
from riskrank.index.signals.text import TextEmbeddingSignal, TextEncoder

register_signal("text_embedding", TextEmbeddingSignal)
register_signal("clip_image", ClipImageSignal)
register_signal("clip_text", ClipTextSignal)
register_signal("pdq", PdqSignal)

__all__ = [
    "PDQ_MATCH_THRESHOLD",
    "ClipEncoder",
    "ClipImageSignal",
    "ClipTextSignal",
    "PdqSignal",
    "Signal",
    "SignalBatch",
    "TextEmbeddingSignal",
    "TextEncoder",
    "register_signal",
    "registered_signals",
    "signal_from_manifest",
]

"""Signals: one class per way of matching content (text embedding, CLIP, PDQ, NSFW, ...).

``base`` is the contract every signal fulfils; ``registry`` is the one registry (keyed by type
name) where the built-ins register, one line each; each other module is one signal family.
"""

from riskrank.index.signals.base import (
    CandidateMatch,
    CliOption,
    Comparison,
    EvidenceColumn,
    IndexKind,
    Signal,
    SignalBatch,
)
from riskrank.index.signals.clip import ClipEncoder, ClipImageSignal, ClipTextSignal
from riskrank.index.signals.nsfw import NsfwSignal
from riskrank.index.signals.pdq import PDQ_MATCH_THRESHOLD, PdqSignal
from riskrank.index.signals.registry import (
    register_signal,
    registered_signals,
    signal_class,
    signal_from_manifest,
    unregister_signal,
)
from riskrank.index.signals.text import TextEmbeddingSignal, TextEncoder

__all__ = [
    "PDQ_MATCH_THRESHOLD",
    "CandidateMatch",
    "ClipEncoder",
    "ClipImageSignal",
    "ClipTextSignal",
    "CliOption",
    "Comparison",
    "EvidenceColumn",
    "IndexKind",
    "NsfwSignal",
    "PdqSignal",
    "Signal",
    "SignalBatch",
    "TextEmbeddingSignal",
    "TextEncoder",
    "register_signal",
    "registered_signals",
    "signal_class",
    "signal_from_manifest",
    "unregister_signal",
]

"""Signal types: one small class per way of matching content.

A signal knows how to turn items (and seeds) into vectors or hashes, how to compare them and
which index serves them. The index, recall and ranking stages only talk to this interface, so a
new signal (CLIP image, perceptual hash, ...) plugs in by registering a class here; no other
signal changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from riskrank.index.tables import SchemaError


@dataclass
class SignalBatch:
    """Vectors for the rows of a table. ``ok[i]`` is False where the row lacks this modality
    (normal: an item without an image) or its content could not be decoded (``reasons[i]``)."""

    vectors: np.ndarray
    ok: np.ndarray
    reasons: list[str | None] = field(default_factory=list)


class Signal(ABC):
    """One way of matching content.

    ``name`` prefixes this signal's evidence columns (``text_best_sim`` ...); ``metric`` is
    ``"cosine"`` (unit vectors, inner product) or ``"hamming"`` (packed binary hashes).
    """

    name: str = ""
    metric: str = "cosine"
    # (weak, strong) similarity thresholds for "this seed matched": sentence embeddings of
    # paraphrases sit around 0.6-0.8 cosine; hash signals override with their own scale.
    match_thresholds: tuple[float, float] = (0.5, 0.7)
    # Attributes that say where or how to read content but leave the vectors unchanged (e.g.
    # the directory relative image paths live in). Manifests do not record them; whoever
    # rebuilds a signal from its manifest entry elsewhere (a Ray worker) sets them again.
    runtime_options: tuple[str, ...] = ()

    def get_runtime_options(self) -> dict:
        return {k: getattr(self, k) for k in self.runtime_options}

    def set_runtime_options(self, **options) -> Signal:
        for k, v in options.items():
            if k not in self.runtime_options:
                raise TypeError(f"{type(self).__name__}: unknown runtime option {k!r}")
            setattr(self, k, v)
        return self

    @abstractmethod
    def embed_items(self, table: pa.Table, *, show_progress: bool = False) -> SignalBatch:
        """Vectors for inventory rows."""

    def embed_queries(self, table: pa.Table, *, show_progress: bool = False) -> SignalBatch:
        """Vectors for seed rows; by default seeds are embedded like items."""
        return self.embed_items(table, show_progress=show_progress)

    @abstractmethod
    def describe(self) -> dict:
        """Everything the manifest must record to refuse a mismatched query later."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Vector width (bits for a binary hash)."""

    def similarity(self, queries: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Dense ``(n_queries, n_items)`` similarity, higher = closer."""
        return queries @ items.T

    def build_index(
        self,
        vectors: np.ndarray,
        *,
        key: str | None = None,
        max_memory: int | str = "4G",
        use_gpu: bool | None = None,
    ):
        """The index that serves this signal (a FAISS float index by default)."""
        from riskrank.index.vectors.faiss_index import VectorIndex

        return VectorIndex.build(vectors, key=key, max_memory=max_memory, use_gpu=use_gpu)

    def load_index(self, path, entry: dict, *, use_gpu: bool | None = None):
        from riskrank.index.vectors.faiss_index import VectorIndex

        return VectorIndex.load(path, entry["index_key"], entry["nprobe"], use_gpu=use_gpu)

    def compatible_with(self, recorded: dict) -> str | None:
        """Return why ``recorded`` (a manifest entry) does not match this signal, or None."""
        mine = self.describe()
        keys = ["type", "model", "model_version", "pretrained", "dim", "max_seq_length"]
        if "fingerprint" in recorded or "fingerprint" in mine:
            # The fingerprint is the encoder's output on a fixed probe: it names the weights
            # themselves, so other weights behind the same name are refused too. One side
            # without it cannot be shown to match.
            keys.append("fingerprint")
            if "fingerprint" not in recorded or "fingerprint" not in mine:
                return "fingerprint: only one side records the encoder's weights fingerprint"
        for key in keys:
            if key in recorded and key in mine and recorded[key] != mine[key]:
                return f"{key}: index has {recorded[key]!r}, query encoder has {mine[key]!r}"
        return None


_REGISTRY: dict[str, type[Signal]] = {}


def register_signal(type_name: str, cls: type[Signal]) -> None:
    """Make a signal type loadable from a manifest (``describe()['type']``)."""
    _REGISTRY[type_name] = cls


def registered_signals() -> dict[str, type[Signal]]:
    """Every registered signal type, by type name."""
    return dict(_REGISTRY)


def signal_from_manifest(entry: dict) -> Signal:
    """Rebuild the query-side signal an index was built with."""
    type_name = entry.get("type")
    if type_name not in _REGISTRY:
        raise SchemaError(f"unknown signal type {type_name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[type_name].from_manifest(entry)

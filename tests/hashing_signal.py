"""A tiny, deterministic text signal for tests that need many builds: character n-grams
hashed into 64 dimensions (scikit-learn's HashingVectorizer), unit-normalised. Real FAISS,
real files, no model weights; ``salt`` changes the space, as other weights would."""

from __future__ import annotations

import hashlib

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer

from riskrank.index.signals import register_signal
from riskrank.index.signals.text import TextEmbeddingSignal

DIM = 64


class HashingEncoder:
    def __init__(self, salt: str = "") -> None:
        self.salt = salt
        self.dim = DIM
        self._vec = HashingVectorizer(
            n_features=DIM, analyzer="char_wb", ngram_range=(2, 4), alternate_sign=False
        )

    def encode(self, texts, *, show_progress: bool = False) -> np.ndarray:
        texts = [self.salt + t for t in texts]
        if not texts:
            return np.zeros((0, DIM), np.float32)
        x = self._vec.transform(texts).toarray().astype(np.float32)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x

    def describe(self) -> dict:
        probe = self.encode(["fingerprint probe"])[0]
        return {
            "model": "hashing-char-2-4",
            "model_version": "test",
            "dim": DIM,
            "fingerprint": hashlib.sha256(np.round(probe, 3).tobytes()).hexdigest()[:16],
            "salt": self.salt,
        }


class HashingTextSignal(TextEmbeddingSignal):
    """``text`` signal with the hashing encoder (registered as ``test_hashing_text``)."""

    type_name = "test_hashing_text"

    def __init__(self, salt: str = "", encoder=None) -> None:
        super().__init__(encoder or HashingEncoder(salt))

    def describe(self) -> dict:
        return {"type": self.type_name, **self.encoder.describe()}

    @classmethod
    def from_manifest(cls, entry: dict) -> HashingTextSignal:
        return cls(entry.get("salt", ""))


register_signal(HashingTextSignal)

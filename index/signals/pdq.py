"""PDQ perceptual hashes and the exact Hamming index that serves them.

PDQ (Meta's open-source image hash, the one industry hash-sharing programmes exchange) turns an
image into 256 bits that survive re-encoding, resizing and mild edits, plus a 0-100 quality
score: flat or near-blank images hash to near-arbitrary bits and score low.

Vectors are the hash packed to ``uint8[32]`` (bit 255 first, so ``pdq_hex`` gives the hex string
that hash-sharing lists use). Scores are ``1 - hamming / 256`` (higher = closer, like cosine);
``HammingSearchResult.distances`` keeps the raw bit distance, and ``distance <= 31``
(``PDQ_MATCH_THRESHOLD``, the threshold commonly used with PDQ) is what counts as a match.

>>> sig = PdqSignal()
>>> sig.describe()["match_threshold"]
31
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np
import pyarrow as pa

from riskrank.index.schema import IMAGE_BYTES, IMAGE_PATH
from riskrank.index.signals.base import (
    CandidateMatch,
    CliOption,
    EvidenceColumn,
    IndexKind,
    Signal,
    SignalBatch,
)
from riskrank.index.signals.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_BASE_DIR_OPTION,
    decode_images,
)
from riskrank.index.vectors.hamming import hamming_distances

PDQ_BITS = 256
PDQ_BYTES = PDQ_BITS // 8
PDQ_MATCH_THRESHOLD = 31
PDQ_QUALITY_FLOOR = 50
QUALITY_EVIDENCE = "pdq_quality"  # the key of the per-item evidence stored beside the index


def pdq_hex(vector: np.ndarray) -> str:
    """The 64-hex-digit PDQ string (the format hash-sharing lists use) of a packed hash."""
    return np.asarray(vector, np.uint8).tobytes().hex()


def pdq_from_hex(text: str) -> np.ndarray:
    """Packed ``uint8[32]`` from a 64-hex-digit PDQ string, e.g. a hash from a shared list."""
    raw = bytes.fromhex(text.strip())
    if len(raw) != PDQ_BYTES:
        raise ValueError(f"PDQ hex: expected 64 hex digits, got {len(text.strip())}")
    return np.frombuffer(raw, np.uint8).copy()


def _hash_image(image) -> tuple[np.ndarray, np.ndarray, int]:
    """(packed hash, packed 8 dihedral hashes, quality) of one RGB image."""
    import pdqhash

    pixels = np.ascontiguousarray(np.asarray(image, np.uint8))
    hashes, quality = pdqhash.compute_dihedral(pixels)
    packed = np.packbits(np.asarray(hashes, np.uint8), axis=-1)
    return packed[0], packed, int(quality)


@dataclass
class PdqBatch(SignalBatch):
    """A ``SignalBatch`` with PDQ evidence.

    ``quality[i]`` is PDQ's 0-100 quality (-1 where not hashed); rows below ``quality_floor``
    are still hashed and indexed, but ``low_quality`` flags them: their matches are unreliable.
    ``dihedral`` (``(n, 8, 32)``, queries only) holds the hashes of the 8 rotations/flips, for
    ``BinaryHashIndex.search`` to match mirrored re-uploads.
    """

    quality: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    quality_floor: int = PDQ_QUALITY_FLOOR
    dihedral: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Persisted next to the vectors; recall hands it back to ``candidate_evidence``.
        self.evidence = {QUALITY_EVIDENCE: self.quality}

    @property
    def low_quality(self) -> np.ndarray:
        return self.ok & (self.quality < self.quality_floor)


class PdqSignal(Signal):
    """PDQ hash of ``image_bytes`` / ``image_path`` (metric ``"hamming"``).

    ``dihedral_queries=True`` also hashes the 8 rotations/flips of each seed (``PdqBatch.dihedral``)
    so that mirrored copies match. ``draft_size`` (off by default, to hash the same pixels as
    other PDQ implementations) trades a little fidelity for much faster decoding of big JPEGs.
    """

    type_name = "pdq"
    name = "pdq"
    summary = "PDQ perceptual hash of the image (Hamming, match at <= 31 bits)"
    index_kind = IndexKind.BINARY_HASHES
    evidence_columns = (
        EvidenceColumn(
            "best_distance", "Hamming distance (bits) to the closest seed hash", direction=-1
        ),
        EvidenceColumn("quality", "quality of the item's own hash (0-100; low = flat image)"),
    )
    cli_options = (
        IMAGE_BASE_DIR_OPTION,
        CliOption(
            "--pdq-match-threshold",
            "match_threshold",
            f"Hamming distance (bits) that counts as a PDQ match (default {PDQ_MATCH_THRESHOLD})",
            int,
        ),
    )
    runtime_options = ("base_dir", "decode_workers")
    content_columns = (IMAGE_BYTES, IMAGE_PATH)
    # Settings of the queries alone: not part of an item's content key (index/standing.py).
    recall_settings = ("match_threshold", "dihedral_queries")

    def __init__(
        self,
        *,
        base_dir: str | os.PathLike | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        quality_floor: int = PDQ_QUALITY_FLOOR,
        match_threshold: int = PDQ_MATCH_THRESHOLD,
        dihedral_queries: bool = False,
        draft_size: int | None = None,
        decode_workers: int | None = None,
        batch_size: int = 256,
    ) -> None:
        if not 0 <= match_threshold <= PDQ_BITS:
            raise ValueError(f"match_threshold: expected 0..{PDQ_BITS}, got {match_threshold}")
        self.base_dir = base_dir
        self.max_pixels = max_pixels
        self.quality_floor = quality_floor
        self.match_threshold = match_threshold
        self.dihedral_queries = dihedral_queries
        self.draft_size = draft_size
        self.decode_workers = decode_workers
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return PDQ_BITS

    @property
    def match_thresholds(self) -> tuple[float, float]:
        """(weak, strong) similarity thresholds for recall evidence: twice the match
        distance, and the match distance itself (31 bits: the hash-sharing default)."""
        return (1.0 - 2 * self.match_threshold / PDQ_BITS, 1.0 - self.match_threshold / PDQ_BITS)

    def _hash(self, table: pa.Table, keep_dihedral: bool, show_progress: bool) -> PdqBatch:
        from riskrank.index import progress

        n = table.num_rows
        vectors = np.zeros((n, PDQ_BYTES), np.uint8)
        dihedral = np.zeros((n, 8, PDQ_BYTES), np.uint8) if keep_dihedral else None
        quality = np.full(n, -1, np.int16)
        ok = np.zeros(n, bool)
        reasons: list[str | None] = [None] * n
        starts = progress.bar(
            range(0, n, self.batch_size),
            show=show_progress,
            desc="pdq",
            unit="batch",
            leave=False,
        )
        for start in starts:  # bounded batches: decoded images live in memory
            images, why = decode_images(
                table.slice(start, self.batch_size),
                base_dir=self.base_dir,
                max_pixels=self.max_pixels,
                draft_size=self.draft_size,
                workers=self.decode_workers,
            )
            for j, image in enumerate(images):
                row = start + j
                if image is None:
                    reasons[row] = why[j] or "no image"
                    continue
                try:
                    vectors[row], variants, quality[row] = _hash_image(image)
                except Exception as exc:  # a batch job quarantines, it never dies
                    reasons[row] = f"PDQ hashing failed: {type(exc).__name__}: {exc}"
                    continue
                if dihedral is not None:
                    dihedral[row] = variants
                ok[row] = True
        return PdqBatch(
            vectors,
            ok,
            reasons,
            quality=quality,
            quality_floor=self.quality_floor,
            dihedral=dihedral,
        )

    def embed_items(self, table: pa.Table, *, show_progress: bool = False) -> PdqBatch:
        return self._hash(table, keep_dihedral=False, show_progress=show_progress)

    def embed_queries(self, table: pa.Table, *, show_progress: bool = False) -> PdqBatch:
        return self._hash(table, self.dihedral_queries, show_progress)

    def similarity(self, queries: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``1 - hamming / 256``: 1.0 identical, ~0.5 unrelated, >= 0.879 within the threshold."""
        return 1.0 - hamming_distances(queries, items).astype(np.float32) / PDQ_BITS

    def distance(self, similarity: np.ndarray) -> np.ndarray:
        """Bits: ``similarity`` is ``1 - hamming / 256``."""
        return np.rint((1.0 - np.asarray(similarity, np.float32)) * PDQ_BITS)

    def candidate_evidence(self, match: CandidateMatch) -> dict[str, np.ndarray]:
        return {
            "best_distance": self.distance(match.similarity.max(0)),
            "quality": np.asarray(match.item_evidence[QUALITY_EVIDENCE], np.float32),
        }

    def describe(self) -> dict:
        try:
            library = "pdqhash==" + metadata.version("pdqhash")
        except metadata.PackageNotFoundError:
            library = "pdqhash==unknown"
        out = {
            "type": self.type_name,
            "model": "pdq",
            "dim": PDQ_BITS,
            "match_threshold": self.match_threshold,
            "quality_floor": self.quality_floor,
            "library": library,
        }
        # Recorded where they are not the defaults (so the content keys of indexes made
        # with the defaults stay what they were), and read back by ``from_manifest``: a
        # model saved without them swept mirrored seed copies as 114-124 bits away, and
        # ``draft_size``, which changes the hashes, let one index mix both kinds unnoticed
        # (an outsider's report).
        if self.dihedral_queries:
            out["dihedral_queries"] = True
        if self.draft_size is not None:
            out["draft_size"] = int(self.draft_size)
        if self.max_pixels != DEFAULT_MAX_PIXELS:
            out["max_pixels"] = self.max_pixels
        return out

    def compatible_with(self, recorded: dict) -> str | None:
        """As every signal, and the same ``draft_size``: it changes the hashes themselves."""
        why = super().compatible_with(recorded)
        theirs, mine = recorded.get("draft_size"), self.describe().get("draft_size")
        if why is None and theirs != mine:
            why = f"draft_size: index has {theirs!r}, query encoder has {mine!r}"
        return why

    @classmethod
    def from_manifest(cls, entry: dict) -> PdqSignal:
        draft = entry.get("draft_size")
        return cls(
            match_threshold=int(entry.get("match_threshold", PDQ_MATCH_THRESHOLD)),
            quality_floor=int(entry.get("quality_floor", PDQ_QUALITY_FLOOR)),
            dihedral_queries=bool(entry.get("dihedral_queries", False)),
            draft_size=None if draft is None else int(draft),
            max_pixels=entry.get("max_pixels", DEFAULT_MAX_PIXELS),
        )

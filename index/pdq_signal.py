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

import math
import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

from .image_decode import DEFAULT_MAX_PIXELS, decode_images
from .signals import Signal, SignalBatch
from .vector_index import GPU_MAX_K, SearchResult, num_gpus, parse_bytes, top_k_ties_by_position

PDQ_BITS = 256
PDQ_BYTES = PDQ_BITS // 8
PDQ_MATCH_THRESHOLD = 31
PDQ_QUALITY_FLOOR = 50
# Exact Hamming search is a popcount over 32 bytes per item: fast enough up to millions.
BINARY_EXACT_MAX_ITEMS = 2_000_000
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def pdq_hex(vector: np.ndarray) -> str:
    """The 64-hex-digit PDQ string (the format hash-sharing lists use) of a packed hash."""
    return np.asarray(vector, np.uint8).tobytes().hex()


def pdq_from_hex(text: str) -> np.ndarray:
    """Packed ``uint8[32]`` from a 64-hex-digit PDQ string, e.g. a hash from a shared list."""
    raw = bytes.fromhex(text.strip())
    if len(raw) != PDQ_BYTES:
        raise ValueError(f"PDQ hex: expected 64 hex digits, got {len(text.strip())}")
    return np.frombuffer(raw, np.uint8).copy()


def hamming_distances(queries: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Dense ``(n_queries, n_items)`` bit distances between packed hashes."""
    queries = np.asarray(queries, np.uint8)
    items = np.asarray(items, np.uint8)
    out = np.empty((len(queries), len(items)), np.int32)
    step = max(1, 4_000_000 // max(1, items.size))  # bound the xor temporary to ~4 MB
    for start in range(0, len(queries), step):
        xor = np.bitwise_xor(queries[start : start + step, None, :], items[None, :, :])
        out[start : start + step] = _POPCOUNT[xor].sum(axis=-1, dtype=np.int32)
    return out


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

    @property
    def low_quality(self) -> np.ndarray:
        return self.ok & (self.quality < self.quality_floor)

    @property
    def evidence(self) -> dict[str, np.ndarray]:
        """Per-row columns a store can persist next to the vectors (``pdq_quality``)."""
        return {"pdq_quality": self.quality}


class PdqSignal(Signal):
    """PDQ hash of ``image_bytes`` / ``image_path`` (metric ``"hamming"``).

    ``dihedral_queries=True`` also hashes the 8 rotations/flips of each seed (``PdqBatch.dihedral``)
    so that mirrored copies match. ``draft_size`` (off by default, to hash the same pixels as
    other PDQ implementations) trades a little fidelity for much faster decoding of big JPEGs.
    """

    name = "pdq"
    metric = "hamming"
    runtime_options = ("base_dir", "decode_workers")

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
        from tqdm.auto import tqdm

        n = table.num_rows
        vectors = np.zeros((n, PDQ_BYTES), np.uint8)
        dihedral = np.zeros((n, 8, PDQ_BYTES), np.uint8) if keep_dihedral else None
        quality = np.full(n, -1, np.int16)
        ok = np.zeros(n, bool)
        reasons: list[str | None] = [None] * n
        starts = tqdm(
            range(0, n, self.batch_size), desc="pdq", unit="batch", disable=not show_progress
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
        return PdqBatch(vectors, ok, reasons, quality, self.quality_floor, dihedral)

    def embed_items(self, table: pa.Table, *, show_progress: bool = False) -> PdqBatch:
        return self._hash(table, keep_dihedral=False, show_progress=show_progress)

    def embed_queries(self, table: pa.Table, *, show_progress: bool = False) -> PdqBatch:
        return self._hash(table, self.dihedral_queries, show_progress)

    def similarity(self, queries: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``1 - hamming / 256``: 1.0 identical, ~0.5 unrelated, >= 0.879 within the threshold."""
        return 1.0 - hamming_distances(queries, items).astype(np.float32) / PDQ_BITS

    def build_index(
        self,
        vectors: np.ndarray,
        *,
        key: str | None = None,
        max_memory: int | str = "4G",
        use_gpu: bool | None = None,
    ):
        if key is not None and not key.startswith("B"):
            key = None  # a float-index key forced for the whole store is not meant for hashes
        return BinaryHashIndex.build(vectors, key=key, max_memory=max_memory, use_gpu=use_gpu)

    def load_index(self, path, entry: dict, *, use_gpu: bool | None = None):
        return BinaryHashIndex.load(path, entry["index_key"], entry["nprobe"], use_gpu=use_gpu)

    def describe(self) -> dict:
        try:
            library = "pdqhash==" + metadata.version("pdqhash")
        except metadata.PackageNotFoundError:
            library = "pdqhash==unknown"
        return {
            "type": "pdq",
            "model": "pdq",
            "dim": PDQ_BITS,
            "match_threshold": self.match_threshold,
            "quality_floor": self.quality_floor,
            "library": library,
        }

    @classmethod
    def from_manifest(cls, entry: dict) -> PdqSignal:
        return cls(
            match_threshold=int(entry.get("match_threshold", PDQ_MATCH_THRESHOLD)),
            quality_floor=int(entry.get("quality_floor", PDQ_QUALITY_FLOOR)),
        )


@dataclass
class HammingSearchResult(SearchResult):
    """``SearchResult`` whose ``scores`` are ``1 - distances / bits``; ``distances`` are raw
    Hamming bit counts (``PDQ_MATCH_THRESHOLD`` applies to these)."""

    distances: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int32))


def choose_binary_index_key(n: int, bits: int = PDQ_BITS, max_memory: int | str = "4G") -> str:
    """``"BFlat"`` (exact) up to ``BINARY_EXACT_MAX_ITEMS`` hashes, then ``"BIVF<nlist>"``.

    >>> choose_binary_index_key(10_000)
    'BFlat'
    """
    need = n * (bits // 8 + 8)  # codes + ids
    if need > parse_bytes(max_memory):
        raise ValueError(
            f"max_memory={max_memory!r} cannot hold {n:,} {bits}-bit hashes "
            f"(needs about {need / 2**20:.0f} MiB)"
        )
    if n <= BINARY_EXACT_MAX_ITEMS:
        return "BFlat"
    return f"BIVF{max(64, 2 ** round(math.log2(4 * math.sqrt(n))))}"


class BinaryHashIndex:
    """FAISS binary index over packed hashes, with ``VectorIndex``'s surface.

    >>> hashes = np.zeros((2, 32), np.uint8); hashes[1] = 255
    >>> idx = BinaryHashIndex.build(hashes)
    >>> r = idx.search(hashes[1:], k=2)
    >>> r.positions.tolist(), r.distances.tolist(), r.scores.tolist()
    ([[1, 0]], [[0, 256]], [[1.0, 0.0]])
    """

    def __init__(self, index: faiss.IndexBinary, key: str, nprobe: int = 1) -> None:
        self.index = index
        self.key = key
        self.nprobe = nprobe
        self._search_index = index
        self.on_gpu = False

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        *,
        key: str | None = None,
        max_memory: int | str = "4G",
        nprobe: int | None = None,
        use_gpu: bool | None = None,
        bits: int = PDQ_BITS,
        train_sample: int = 200_000,
        seed: int = 0,
    ) -> BinaryHashIndex:
        """Index packed ``uint8[bits/8]`` hashes. ``use_gpu=None`` stays on the CPU (exact
        Hamming search is already fast there); ``True`` moves a ``BFlat`` index to the GPU."""
        vectors = np.asarray(vectors)
        if len(vectors) == 0:
            vectors = np.zeros((0, bits // 8), np.uint8)
        if vectors.ndim != 2 or vectors.shape[1] != bits // 8 or vectors.dtype != np.uint8:
            raise ValueError(
                f"vectors: expected packed hashes uint8 (n, {bits // 8}), got "
                f"{vectors.dtype} {vectors.shape}"
            )
        vectors = np.ascontiguousarray(vectors)
        n = len(vectors)
        key = key or choose_binary_index_key(n, bits, max_memory)
        index = faiss.index_binary_factory(bits, key)
        if not index.is_trained:
            rng = np.random.default_rng(seed)
            index.train(vectors[rng.choice(n, size=min(n, train_sample), replace=False)])
        for start in range(0, n, 1_000_000):
            index.add(vectors[start : start + 1_000_000])
        out = cls(index, key, nprobe or _default_nprobe(key))
        if use_gpu:
            out.to_gpu()
        return out

    def to_gpu(self) -> BinaryHashIndex:
        """Search a ``BFlat`` index on the first GPU (FAISS has no GPU binary IVF)."""
        if num_gpus() == 0:
            raise RuntimeError("to_gpu: faiss sees no GPU (install the [gpu] extra on a CUDA host)")
        if self.key != "BFlat":
            raise ValueError(f"to_gpu: only 'BFlat' binary indexes run on GPU, not {self.key!r}")
        self._gpu_resources = faiss.StandardGpuResources()
        self._search_index = faiss.GpuIndexBinaryFlat(self._gpu_resources, self.index)
        self.on_gpu = True
        return self

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        """Bits per hash."""
        return int(self.index.d)

    def _raw_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest first; equal distances by position, also at the k-th place (as
        ``VectorIndex.search`` orders equal scores)."""
        if self.key.startswith("BIVF"):
            faiss.downcast_IndexBinary(self._search_index).nprobe = self.nprobe
        queries = np.ascontiguousarray(queries, np.uint8)

        def nearest(n: int) -> tuple[np.ndarray, np.ndarray]:
            dist, pos = self._search_index.search(queries, n)
            return -dist.astype(np.int64), pos.astype(np.int64)

        neg_dist, pos = top_k_ties_by_position(
            nearest, k, self.ntotal, max_fetch=GPU_MAX_K if self.on_gpu else None
        )
        return np.where(pos >= 0, -neg_dist, self.dim + 1), pos

    def search(self, queries: np.ndarray, k: int) -> HammingSearchResult:
        """The ``k`` nearest items of each query, closest first.

        ``queries`` is ``(n, bytes)``, or ``(n, variants, bytes)`` (e.g. ``PdqBatch.dihedral``)
        to keep, per item, the best distance over a query's variants.
        """
        queries = np.asarray(queries, np.uint8)
        n = len(queries)
        k = max(1, min(k, self.ntotal))
        if self.ntotal == 0 or n == 0:
            empty = np.zeros((n, 0), np.int32)
            return HammingSearchResult(empty.astype(np.float32), empty.astype(np.int64), empty)
        if queries.ndim == 2:
            dist, pos = self._raw_search(queries, k)
        else:
            dist, pos = self._best_over_variants(queries, k)
        dist = dist.astype(np.int32)
        scores = np.where(pos >= 0, 1.0 - dist / self.dim, -np.inf).astype(np.float32)
        return HammingSearchResult(scores, pos, dist)

    def _best_over_variants(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n, v, width = queries.shape
        dist, pos = self._raw_search(queries.reshape(n * v, width), k)
        dist, pos = dist.reshape(n, v * k), pos.reshape(n, v * k)
        out_d = np.full((n, k), self.dim + 1, np.int32)
        out_p = np.full((n, k), -1, np.int64)
        for i in range(n):
            order = np.lexsort((pos[i], dist[i]))  # by distance, then position
            seen: set[int] = set()
            j = 0
            for t in order:
                p = int(pos[i, t])
                if p < 0 or p in seen:
                    continue
                seen.add(p)
                out_d[i, j], out_p[i, j] = dist[i, t], p
                j += 1
                if j == k:
                    break
        return out_d, out_p

    def range_search(self, queries: np.ndarray, max_distance: int = PDQ_MATCH_THRESHOLD):
        """Every item within ``max_distance`` bits: ``(lims, distances, positions)`` as in
        FAISS (query ``i`` owns ``[lims[i], lims[i+1])``). Exact for ``BFlat``."""
        queries = np.ascontiguousarray(queries, np.uint8)
        # FAISS keeps distances strictly below the radius.
        return self.index.range_search(queries, int(max_distance) + 1)

    def memory_bytes(self) -> int:
        return int(faiss.serialize_index_binary(self.index).size)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index_binary(self.index, str(tmp))
        tmp.replace(path)

    @classmethod
    def load(
        cls, path: str | Path, key: str, nprobe: int, use_gpu: bool | None = None
    ) -> BinaryHashIndex:
        out = cls(faiss.read_index_binary(str(path)), key, nprobe)
        if use_gpu:
            out.to_gpu()
        return out


def _default_nprobe(key: str) -> int:
    # Near-duplicates can fall in neighbouring cells: probe generously, exactness matters here.
    m = re.match(r"BIVF(\d+)", key)
    return max(1, int(m.group(1)) // 8) if m else 1

"""Exact (and, past millions of items, IVF) Hamming search over packed binary hashes.

Serves any fixed-width binary hash (PDQ's 256 bits today) with ``VectorIndex``'s surface:
``search`` gives scores ``1 - distance / bits`` (higher = closer, like cosine) and keeps the raw
bit distances in ``HammingSearchResult.distances``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import faiss
import numpy as np

from riskrank.index.vectors.faiss_index import (
    GPU_MAX_K,
    FaissIndex,
    SearchResult,
    num_gpus,
    parse_bytes,
    top_k_ties_by_position,
    train_and_add,
)

DEFAULT_BITS = 256
# Exact Hamming search is a popcount over 32 bytes per item: fast enough up to millions.
BINARY_EXACT_MAX_ITEMS = 2_000_000
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


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


@dataclass
class HammingSearchResult(SearchResult):
    """``SearchResult`` whose ``scores`` are ``1 - distances / bits``; ``distances`` are raw
    Hamming bit counts (a signal's match threshold applies to these)."""

    distances: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int32))


def choose_binary_index_key(n: int, bits: int = DEFAULT_BITS, max_memory: int | str = "4G") -> str:
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


class BinaryHashIndex(FaissIndex):
    """FAISS binary index over packed hashes, with ``VectorIndex``'s surface.

    >>> hashes = np.zeros((2, 32), np.uint8); hashes[1] = 255
    >>> idx = BinaryHashIndex.build(hashes)
    >>> r = idx.search(hashes[1:], k=2)
    >>> r.positions.tolist(), r.distances.tolist(), r.scores.tolist()
    ([[1, 0]], [[0, 256]], [[1.0, 0.0]])
    """

    _write = staticmethod(faiss.write_index_binary)
    _read = staticmethod(faiss.read_index_binary)
    _serialize = staticmethod(faiss.serialize_index_binary)
    _deserialize = staticmethod(faiss.deserialize_index_binary)

    @staticmethod
    def _wants_gpu(use_gpu: bool | None) -> bool:
        # Exact Hamming search is already fast on the CPU: the GPU only when asked.
        return bool(use_gpu)

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        *,
        key: str | None = None,
        max_memory: int | str = "4G",
        nprobe: int | None = None,
        use_gpu: bool | None = None,
        bits: int = DEFAULT_BITS,
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
        train_and_add(index, vectors, train_sample=train_sample, seed=seed)
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
    def dim(self) -> int:
        """Bits per hash."""
        return int(self.index.d)

    def _raw_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest first; equal distances by position, also at the k-th place (as
        ``VectorIndex.search`` orders equal scores)."""
        # The GPU selects at most GPU_MAX_K neighbours; a larger k runs on the CPU index.
        gpu = self.on_gpu and k <= GPU_MAX_K
        index = self._search_index if gpu else self.index
        if self.key.startswith("BIVF"):
            faiss.downcast_IndexBinary(index).nprobe = self.nprobe
        queries = np.ascontiguousarray(queries, np.uint8)

        def nearest(n: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
            dist, pos = index.search(queries if rows is None else queries[rows], n)
            return -dist.astype(np.int64), pos.astype(np.int64)

        neg_dist, pos = top_k_ties_by_position(
            nearest, k, self.ntotal, max_fetch=GPU_MAX_K if gpu else None
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

    def range_search(self, queries: np.ndarray, max_distance: int):
        """Every item within ``max_distance`` bits: ``(lims, distances, positions)`` as in
        FAISS (query ``i`` owns ``[lims[i], lims[i+1])``). Exact for ``BFlat``."""
        queries = np.ascontiguousarray(queries, np.uint8)
        # FAISS keeps distances strictly below the radius.
        return self.index.range_search(queries, int(max_distance) + 1)


def _default_nprobe(key: str) -> int:
    # Near-duplicates can fall in neighbouring cells: probe generously, exactness matters here.
    m = re.match(r"BIVF(\d+)", key)
    return max(1, int(m.group(1)) // 8) if m else 1

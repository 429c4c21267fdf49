"""FAISS vector index chosen from a memory budget; GPU when faiss sees one, CPU otherwise.

Users state a budget (``max_memory``), not an index type: small inventories get an exact
``Flat`` index, larger ones an IVF index whose codes fit the budget (Flat, SQ8 or PQ).
Experts may force any FAISS factory string with ``key=``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from riskrank.index.vectors.stored import StoredVectors

EXACT_MAX_ITEMS = 100_000
GPU_MAX_K = 2048  # the largest k FAISS GPU indexes search
# k-means points per IVF list. FAISS warns below 39 and subsamples above 256; 64 keeps the
# quantizer's training cost in proportion to nlist instead of to the inventory (the 1M-item
# build trained on 200k points for 4096 lists: 213 s of a 309 s build, issue 15).
POINTS_PER_CENTROID = 64
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_bytes(value: int | str) -> int:
    """``"4G"`` -> 4294967296; ints pass through. Zero or less is refused (``--max-memory 0``
    read "cannot hold 60 vectors ... (needs at least 0 MiB)": outsider CD)."""
    if isinstance(value, (int, np.integer)):
        number = int(value)
    else:
        m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)i?B?\s*", str(value).upper())
        if not m:
            raise ValueError(f"max_memory: cannot parse {value!r}; use bytes or e.g. '512M', '4G'")
        number = int(float(m.group(1)) * _UNITS[m.group(2)])
    if number <= 0:
        raise ValueError(f"max_memory: {value!r} is no memory; give a size, e.g. '512M', '4G'")
    return number


def choose_index_key(n: int, dim: int, max_memory: int | str = "4G") -> str:
    """Pick a FAISS factory string for ``n`` vectors of width ``dim`` within ``max_memory``.

    >>> choose_index_key(10_000, 384)
    'Flat'
    >>> choose_index_key(1_000_000, 384, "4G")
    'IVF1024,Flat'
    >>> choose_index_key(1_000_000, 384, "1G")
    'IVF1024,SQ8'
    """
    budget = parse_bytes(max_memory)
    flat_bytes = n * dim * 4
    if n <= EXACT_MAX_ITEMS and flat_bytes <= budget:
        return "Flat"
    nlist = ivf_nlist(n)
    overhead = n * 8 + nlist * dim * 4  # ids in the inverted lists + centroids
    if flat_bytes + overhead <= budget:
        return f"IVF{nlist},Flat"
    if n * dim + overhead <= budget:
        return f"IVF{nlist},SQ8"
    for m in sorted((d for d in range(1, dim + 1) if dim % d == 0), reverse=True):
        if m <= 96 and n * m + overhead <= budget:
            # "np": skip polysemous training, which only serves a search mode we never use and
            # cost 40% of the build time at 1M items (benchmarks/results/cpu_index.md).
            return f"IVF{nlist},PQ{m}np"
    raise ValueError(
        f"max_memory={max_memory!r} cannot hold {n:,} vectors of dim {dim} even as IVF-PQ "
        f"(needs at least {(n * 4 + overhead) / 2**20:.0f} MiB)"
    )


def ivf_nlist(n: int) -> int:
    """IVF lists for ``n`` vectors: the power of two nearest sqrt(n), at least 64.

    Train and add cost grow with nlist (k-means on ``POINTS_PER_CENTROID * nlist`` points,
    then every vector compared with every centroid), while a search at ``default_nprobe``
    (nlist / 32) scans the same share of the data whatever nlist is. 4 * sqrt(n) made the 1M
    build 4x the work of sqrt(n) at the same share scanned (benchmarks/ivf_build.py measures
    recall@10 of both).

    >>> ivf_nlist(1_000_000), ivf_nlist(5_000_000)
    (1024, 2048)
    """
    return max(64, 2 ** round(math.log2(math.sqrt(max(n, 1)))))


def new_index(dim: int, key: str):
    """An empty inner-product FAISS index of ``key`` whose quantizer training, if any, takes at
    most ``POINTS_PER_CENTROID`` points per list (FAISS subsamples the rest, seeded: every
    engine that trains on the same sample gets the same quantizer)."""
    index = faiss.index_factory(dim, key, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.cp.max_points_per_centroid = POINTS_PER_CENTROID
    return index


def is_compressed(key: str) -> bool:
    """True when the index stores lossy codes (SQ/PQ): its ranking should be re-scored."""
    return ",SQ" in key or ",PQ" in key


def default_nprobe(key: str) -> int:
    m = re.match(r"IVF(\d+)", key)
    return max(1, int(m.group(1)) // 32) if m else 1


def num_gpus() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


def order_ties_by_position(
    scores: np.ndarray, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each row best score first, equal scores by ascending position, misses (-1) last.

    FAISS leaves the order of exactly equal scores (duplicate content) to its heaps, so one
    index and the same vectors in shards would list tied items differently; rank features
    (``best_rank``) would follow. Ordering ties by position makes every index agree.

    >>> s, p = order_ties_by_position(np.array([[0.5, 0.9, 0.5]]), np.array([[7, 2, 3]]))
    >>> p.tolist()
    [[2, 3, 7]]
    """
    rank_by = np.where(positions >= 0, scores, -np.inf)
    order = np.lexsort((positions, -rank_by), axis=1)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(positions, order, axis=1)


def training_positions(n: int, *, train_sample: int = 200_000, seed: int = 0) -> np.ndarray:
    """The rows an IVF/PQ quantizer is trained on: ``train_sample`` of ``n``, drawn without
    replacement (sharded builds draw the same rows, so their shards equal one index)."""
    rng = np.random.default_rng(seed)
    return rng.choice(n, size=min(n, train_sample), replace=False)


def top_k_ties_by_position(
    search, k: int, ntotal: int, max_fetch: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of ``search(k', rows) -> (scores, positions)`` (higher is better; ``rows``
    selects query rows, None = all), with exactly equal scores ordered by position, also at the
    cut: the k-th place goes to the lowest position among the items tied there, whichever of
    them FAISS's heap kept. Fetches a few more than ``k`` and widens until no tie reaches the end
    of what was fetched, so the result is defined by the data alone and equal whether the
    vectors sit in one index or in shards. Only the rows with an open tie are searched again:
    re-searching all of them made an IVF search cost ~4.6 searches on inventories with exact
    duplicates (recall's density step, issue 15).
    """
    fetch = min(ntotal, k + max(8, k // 8))
    if max_fetch:
        fetch = max(k, min(fetch, max_fetch))
    scores, positions = order_ties_by_position(*search(fetch, None))
    out_scores, out_positions = scores[:, :k].copy(), positions[:, :k].copy()
    todo = np.flatnonzero(_open_ties(scores, positions, k))
    while todo.size and fetch < ntotal and not (max_fetch and fetch >= max_fetch):
        fetch = min(ntotal, 2 * fetch, *([max_fetch] if max_fetch else []))
        scores, positions = order_ties_by_position(*search(fetch, todo))
        out_scores[todo], out_positions[todo] = scores[:, :k], positions[:, :k]
        todo = todo[_open_ties(scores, positions, k)]
    return out_scores, out_positions


def _open_ties(scores: np.ndarray, positions: np.ndarray, k: int) -> np.ndarray:
    """Rows whose k-th score is tied with the last one fetched (more may tie beyond it)."""
    return (positions[:, -1] >= 0) & (scores[:, -1] == scores[:, k - 1])


def train_and_add(
    index, vectors, *, train_sample: int = 200_000, seed: int = 0, block: int = 100_000
) -> None:
    """Train ``index`` (if it needs it) on ``training_positions`` of ``vectors``, then add them
    in blocks of ``block`` rows (bounds FAISS's temporary copies). ``vectors``: an array or
    ``StoredVectors`` (a saved file read block by block, so that the index and the vectors are
    never both held in memory)."""
    if not index.is_trained:
        sample = vectors[training_positions(len(vectors), train_sample=train_sample, seed=seed)]
        try:
            index.train(np.ascontiguousarray(sample))
        except RuntimeError as exc:  # FAISS's own message is a C++ assertion: say what to do
            said = re.search(r"Number of training points.*?\)[^)]*\)", str(exc))
            raise ValueError(
                f"FAISS cannot train this index on {len(sample)} vectors"
                f"{': ' + said.group(0) if said else ''}. A forced index key (--index-key) "
                "needs enough items for its lists and codebooks; leave it unset and riskrank "
                "picks one that fits the size"
            ) from exc
        del sample
    if isinstance(index, faiss.IndexFlat) and index.ntotal == 0 and len(vectors):
        _fill_flat(index, vectors, block)
        return
    for start in range(0, len(vectors), block):
        index.add(np.ascontiguousarray(vectors[start : start + block]))


def _fill_flat(index, vectors, block: int) -> None:
    """Fill an empty exact float index block by block into storage sized once. Its codes are
    the float32 vectors' bytes, and ``add`` grows them by reallocating: old and new buffers
    together were 1.2 GB over the index itself when the last blocks of 1M vectors went in."""
    n, size = len(vectors), index.code_size
    index.codes.resize(n * size)
    codes = faiss.rev_swig_ptr(index.codes.data(), n * size).reshape(n, size)
    for start in range(0, n, block):
        part = np.ascontiguousarray(vectors[start : start + block], np.float32)
        codes[start : start + len(part)] = part.view(np.uint8).reshape(len(part), size)
    index.ntotal = n


# What a pickled index leaves out: the searched copy (a GPU clone where there is one) and its
# GPU resources; the CPU index travels as bytes.
_NOT_PICKLED = ("index", "_search_index", "_gpu_resources", "on_gpu")


@dataclass
class SearchResult:
    """``scores[i, j]`` is the similarity of query i to item ``positions[i, j]`` (-1 = none)."""

    scores: np.ndarray
    positions: np.ndarray


class FaissIndex:
    """What every FAISS-backed index here shares: the CPU index (kept for saving), the one
    searched (a GPU clone where there is one), its factory key and ``nprobe``, and saving and
    loading through FAISS's own file format (no pickle). Subclasses name FAISS's reader and
    writer for their kind of index and how to move it to a GPU."""

    _write = staticmethod(faiss.write_index)
    _read = staticmethod(faiss.read_index)
    _serialize = staticmethod(faiss.serialize_index)
    _deserialize = staticmethod(faiss.deserialize_index)

    def __init__(self, index, key: str, nprobe: int = 1) -> None:
        self.index = index
        self.key = key
        self.nprobe = nprobe
        self._search_index = index
        self.on_gpu = False

    def __getstate__(self) -> dict:
        """Pickled (Ray sends indexes to its tasks) as FAISS's own bytes of the CPU index: a
        binary index has no pickle support of its own and a GPU clone none either; the copy
        searches on the CPU where it lands."""
        state = {k: v for k, v in self.__dict__.items() if k not in _NOT_PICKLED}
        state["index"] = np.asarray(type(self)._serialize(self.index))
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.index = type(self)._deserialize(state["index"])
        self._search_index = self.index
        self.on_gpu = False

    def to_gpu(self) -> FaissIndex:  # pragma: no cover - overridden
        raise NotImplementedError

    @staticmethod
    def _wants_gpu(use_gpu: bool | None) -> bool:
        return bool(use_gpu or (use_gpu is None and num_gpus() > 0))

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def memory_bytes(self) -> int:
        """Serialized size: what the index costs in RAM on CPU."""
        return int(type(self)._serialize(self.index).size)

    # -- in-place updates (index/standing.py) ---------------------------------------------
    def _ivf(self):
        """The IVF part of the index (float or binary), or None for an exact index."""
        if isinstance(self.index, faiss.Index):
            return faiss.try_extract_index_ivf(self.index)
        ivf = None
        if isinstance(self.index, faiss.IndexBinary):
            ivf = faiss.downcast_IndexBinary(self.index)
            ivf = ivf if isinstance(ivf, faiss.IndexBinaryIVF) else None
        return ivf

    @property
    def is_ivf(self) -> bool:
        return self._ivf() is not None

    def imbalance(self) -> float:
        """FAISS's imbalance factor of the inverted lists (1.0 = even; exact indexes: 1.0)."""
        ivf = self._ivf()
        return float(ivf.invlists.imbalance_factor()) if ivf is not None and self.ntotal else 1.0

    def update_in_place(
        self, old_to_new: np.ndarray, vectors: np.ndarray, positions: np.ndarray
    ) -> None:
        """Apply an inventory change to a trained IVF index without retraining it: drop the
        items whose ``old_to_new`` is -1, renumber the rest (position ``p`` becomes
        ``old_to_new[p]``) and add ``vectors`` at ``positions``. Positions then follow the new
        inventory, as a rebuild's would (ties are ordered by position). An IVF index stores
        each item's id in its inverted list, so renumbering rewrites those ids in place; an
        exact index has no ids to rewrite (its positions are its storage order) and is re-laid
        from its vectors instead (``index/standing.py``)."""
        ivf = self._ivf()
        if ivf is None:
            raise TypeError(f"update_in_place: {self.key!r} is not an IVF index")
        old_to_new = np.asarray(old_to_new, np.int64)
        gone = np.flatnonzero(old_to_new < 0).astype(np.int64)
        if len(gone):
            self.index.remove_ids(gone)
        invlists = ivf.invlists
        for lst in range(ivf.nlist):
            size = invlists.list_size(lst)
            if size:
                ptr = invlists.get_ids(lst)
                ids = faiss.rev_swig_ptr(ptr, size)  # a view of the list's ids
                ids[:] = old_to_new[ids]
                invlists.release_ids(lst, ptr)
        if len(positions):
            self.index.add_with_ids(vectors, np.asarray(positions, np.int64))
        self._search_index = self.index
        self.on_gpu = False

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        type(self)._write(self.index, str(tmp))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, key: str, nprobe: int, use_gpu: bool | None = None):
        out = cls(cls._read(str(path)), key, nprobe)
        if cls._wants_gpu(use_gpu):
            out.to_gpu()
        return out


class VectorIndex(FaissIndex):
    """A FAISS inner-product index over unit vectors (cosine similarity).

    >>> vecs = np.eye(4, dtype=np.float32)
    >>> idx = VectorIndex.build(vecs)
    >>> idx.search(vecs[:1], k=1).positions.tolist()
    [[0]]
    """

    @classmethod
    def build(
        cls,
        vectors: np.ndarray | StoredVectors,
        *,
        key: str | None = None,
        max_memory: int | str = "4G",
        nprobe: int | None = None,
        use_gpu: bool | None = None,
        train_sample: int = 200_000,
        seed: int = 0,
    ) -> VectorIndex:
        """An index of ``vectors`` (an array, or ``StoredVectors``: read in blocks as added)."""
        if not isinstance(vectors, StoredVectors):
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        key = key or choose_index_key(n, dim, max_memory)
        index = new_index(dim, key)
        train_and_add(index, vectors, train_sample=train_sample, seed=seed)
        out = cls(index, key, nprobe or default_nprobe(key))
        if cls._wants_gpu(use_gpu):
            out.to_gpu()
        return out

    def to_gpu(self, use_float16: bool = False) -> VectorIndex:
        """Search on every GPU faiss sees (sharded); the CPU index is kept for saving.

        float32 codes by default: on an H200, 10,000 queries over 2M x 384 exact (Flat) ran
        19,400 queries/s with float32 codes and 15,300 with float16, and float16 moved 0.07%
        of the top-100 (benchmarks/results/gpu.md). ``use_float16`` halves the GPU memory
        of an index too large for its GPUs."""
        if num_gpus() == 0:
            raise RuntimeError("to_gpu: faiss sees no GPU (install the [gpu] extra on a CUDA host)")
        opts = faiss.GpuMultipleClonerOptions()
        opts.useFloat16 = use_float16
        opts.shard = True
        self._search_index = faiss.index_cpu_to_all_gpus(self.index, co=opts)
        self.on_gpu = True
        return self

    def search(self, queries: np.ndarray, k: int, *, ties: bool = True) -> SearchResult:
        """Each query's ``k`` best items. ``ties``: exactly equal scores ordered by position,
        also at the cut (``top_k_ties_by_position``, which searches again, deeper, where a tie
        reaches the cut); False: FAISS's own ``k``, for a caller that reads scores only (an
        item with many copies made each search of a sampled recall fetch up to a whole block)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, self.ntotal))
        if self.ntotal == 0 or len(queries) == 0:
            return SearchResult(
                np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
            )
        gpu = self.on_gpu and k <= GPU_MAX_K
        # FAISS's GPU indexes select at most GPU_MAX_K neighbours; a larger k (recall's default
        # is 5,000) is searched on the CPU index, which is kept beside the GPU clone.
        index = self._search_index if gpu else self.index
        ivf = faiss.try_extract_index_ivf(index) if not gpu else None
        if ivf is not None:
            ivf.nprobe = self.nprobe
        elif gpu and self.key.startswith("IVF"):
            faiss.GpuParameterSpace().set_index_parameter(index, "nprobe", self.nprobe)
        if not ties:
            scores, positions = index.search(queries, k)
            return SearchResult(scores, positions)
        scores, positions = top_k_ties_by_position(
            lambda n, rows: index.search(queries if rows is None else queries[rows], n),
            k,
            self.ntotal,
            max_fetch=GPU_MAX_K if gpu else None,
        )
        return SearchResult(scores, positions)

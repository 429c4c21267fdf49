"""A vector index split into contiguous shards, searched shard by shard and merged exactly.

Shard ``s`` holds positions ``[starts[s], starts[s] + counts[s])`` of the full vector array, so
a shard's local position plus its start is the global position. Exactness:

* ``Flat`` shards: each returns its own exact top-k; the global top-k is among them.
* IVF keys: one empty index is trained once (on the same sample ``VectorIndex.build`` takes)
  and every shard starts from a copy of it, so each vector gets the code and list it would get
  in a single index, and every shard probes the same ``nprobe`` lists a single index probes.

Either way ``merge_topk`` returns the single index's top-k, in the same order: both order
exactly equal scores (duplicate content) by position (``order_ties_by_position``).

``ShardedIndex`` keeps its shards in this process;
``index.ray_engine.shards.RayShardedIndex`` serves each shard from a Ray actor and merges
with the same ``merge_topk``. On disk a sharded signal is ``shards/shard-NNNNN.faiss`` +
``shards/shard-NNNNN.npy`` (its vectors) per shard, listed in the manifest entry's
``shards``; ``ShardedIndex.load`` and ``ShardVectors.load`` open them.

>>> vecs = np.eye(6, dtype=np.float32)
>>> idx = ShardedIndex.build(vecs, num_shards=3)
>>> idx.search(vecs[4:5], k=1).positions.tolist()
[[4]]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from riskrank.index.vectors.faiss_index import (
    SearchResult,
    VectorIndex,
    choose_index_key,
    default_nprobe,
    new_index,
    order_ties_by_position,
    train_and_add,
    training_positions,
)
from riskrank.index.vectors.stored import StoredVectors


def shard_bounds(n: int, num_shards: int) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` ranges of near-equal size covering ``range(n)``.

    >>> shard_bounds(10, 3)
    [(0, 4), (4, 7), (7, 10)]
    """
    if num_shards < 1:
        raise ValueError(f"num_shards: expected >= 1, got {num_shards}")
    num_shards = max(1, min(num_shards, n))
    sizes = [n // num_shards + (1 if s < n % num_shards else 0) for s in range(num_shards)]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]


def train_template(dim: int, key: str, sample: np.ndarray) -> np.ndarray:
    """An empty index of ``key``, trained on ``sample`` when the key needs training (IVF, PQ);
    serialized (``uint8``) so it can be shipped to whoever adds a shard."""
    index = new_index(dim, key)
    if not index.is_trained:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return faiss.serialize_index(index)


def build_shard(template: np.ndarray, vectors: np.ndarray, key: str, nprobe: int) -> VectorIndex:
    """Add one shard's vectors to a copy of the trained template, in ``VectorIndex.build``'s
    blocks (the template is trained: nothing is trained again)."""
    index = faiss.deserialize_index(np.asarray(template, dtype=np.uint8))
    train_and_add(index, np.ascontiguousarray(vectors, dtype=np.float32))
    return VectorIndex(index, key, nprobe)


def empty_result(n_queries: int) -> SearchResult:
    """What a search of an empty index (or with no queries) returns."""
    return SearchResult(np.zeros((n_queries, 0), np.float32), np.zeros((n_queries, 0), np.int64))


def merge_topk(results: Sequence[SearchResult], starts: Sequence[int], k: int) -> SearchResult:
    """Global top-``k`` from per-shard results (local positions; -1 = no result).

    Width is ``k`` (callers clamp it to the total item count, as ``VectorIndex.search`` does);
    missing results stay -1 at the end of a row.
    """
    n_queries = len(results[0].scores) if results else 0
    pairs = [(r, start) for r, start in zip(results, starts) if r.scores.shape[1]]
    if not pairs or n_queries == 0:
        return empty_result(n_queries)
    scores = np.concatenate([r.scores for r, _ in pairs], axis=1)
    positions = np.concatenate(
        [np.where(r.positions >= 0, r.positions + start, -1) for r, start in pairs], axis=1
    )
    scores, positions = order_ties_by_position(scores, positions)
    return SearchResult(scores[:, :k], positions[:, :k])


class ShardedIndex:
    """Shards of one FAISS index, searched in this process; same ``search`` as ``VectorIndex``.

    ``load`` opens the shards a manifest entry lists (``{"file", "vectors", "start", "count"}``
    each, as ``RayShardedIndex.write`` writes them).
    """

    def __init__(self, shards: Sequence[VectorIndex], key: str, nprobe: int) -> None:
        self.shards = list(shards)
        self.key = key
        self.nprobe = nprobe
        counts = [s.ntotal for s in self.shards]
        self.starts = [int(x) for x in np.concatenate([[0], np.cumsum(counts)[:-1]])]
        self.on_gpu = False

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        *,
        num_shards: int,
        key: str | None = None,
        max_memory: int | str = "4G",
        nprobe: int | None = None,
        train_sample: int = 200_000,
        seed: int = 0,
    ) -> ShardedIndex:
        """Same key choice and training as ``VectorIndex.build``, then split into shards."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        key = key or choose_index_key(n, dim, max_memory)
        sample = vectors[training_positions(n, train_sample=train_sample, seed=seed)]
        template = train_template(dim, key, sample)
        nprobe = nprobe or default_nprobe(key)
        shards = [
            build_shard(template, vectors[a:b], key, nprobe) for a, b in shard_bounds(n, num_shards)
        ]
        return cls(shards, key, nprobe)

    @property
    def ntotal(self) -> int:
        return sum(s.ntotal for s in self.shards)

    @property
    def dim(self) -> int:
        return self.shards[0].dim

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.ntotal == 0 or len(queries) == 0:
            return empty_result(len(queries))
        k = max(1, min(k, self.ntotal))
        return merge_topk([s.search(queries, k) for s in self.shards], self.starts, k)

    def memory_bytes(self) -> int:
        return sum(s.memory_bytes() for s in self.shards)

    @classmethod
    def load(cls, directory: str | Path, entry: dict) -> ShardedIndex:
        """Open the shards a manifest entry lists (``entry["shards"]``) under ``directory``."""
        directory = Path(directory)
        shards = [
            VectorIndex.load(
                directory / s["file"], entry["index_key"], entry["nprobe"], use_gpu=False
            )
            for s in entry["shards"]
        ]
        out = cls(shards, entry["index_key"], entry["nprobe"])
        recorded = [s["start"] for s in entry["shards"]]
        if out.starts != recorded:
            raise ValueError(
                f"{directory}: shard sizes {[s.ntotal for s in shards]} do not match the "
                f"manifest's starts {recorded}"
            )
        return out


# ----------------------------------------------------------------------------- vectors


def take_across_shards(starts: Sequence[int], dim: int, positions, fetch) -> np.ndarray:
    """Rows at global ``positions`` of vectors split into shards starting at ``starts``.

    ``fetch([(shard, local positions), ...])`` returns one array per request (a list, so that
    remote shards can be asked all at once).
    """
    pos = np.asarray(positions, dtype=np.int64).ravel()
    shard = np.searchsorted(starts, pos, side="right") - 1
    which = [int(s) for s in np.unique(shard)]
    parts = fetch([(s, pos[shard == s] - starts[s]) for s in which])
    out = np.zeros((len(pos), dim), parts[0].dtype if parts else np.float32)
    for s, part in zip(which, parts):
        out[shard == s] = part
    return out


class ShardVectors:
    """``vectors[positions]`` over per-shard arrays (e.g. ``StoredVectors`` of ``.npy`` files), as
    exact evidence reads a single ``vectors.npy``."""

    def __init__(self, parts: Sequence[np.ndarray], dim: int) -> None:
        self.parts = list(parts)
        self.dim = dim
        self.starts = [int(x) for x in np.concatenate([[0], np.cumsum([len(p) for p in parts])])]

    @classmethod
    def load(cls, directory: str | Path, entry: dict) -> ShardVectors:
        directory = Path(directory)
        parts = [StoredVectors(directory / s["vectors"]) for s in entry["shards"]]
        return cls(parts, int(parts[0].shape[1]))

    def __getitem__(self, positions) -> np.ndarray:
        return take_across_shards(
            self.starts[:-1],
            self.dim,
            positions,
            lambda asks: [np.asarray(self.parts[s][local]) for s, local in asks],
        )

    def __len__(self) -> int:
        return self.starts[-1]

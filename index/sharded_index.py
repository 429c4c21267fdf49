"""A vector index split into contiguous shards, searched shard by shard and merged exactly.

Shard ``s`` holds positions ``[starts[s], starts[s] + counts[s])`` of the full vector array, so
a shard's local position plus its start is the global position. Exactness:

* ``Flat`` shards: each returns its own exact top-k; the global top-k is among them.
* IVF keys: one empty index is trained once (on the same sample ``VectorIndex.build`` takes)
  and every shard starts from a copy of it, so each vector gets the code and list it would get
  in a single index, and every shard probes the same ``nprobe`` lists a single index probes.

Either way ``merge_topk`` returns the single index's top-k, in the same order: both order
exactly equal scores (duplicate content) by position (``order_ties_by_position``).

``ShardedIndex`` keeps its shards in this process; ``RayShardedIndex`` serves each shard from a
Ray actor (ray imported lazily) and merges with the same ``merge_topk``. On disk a sharded
signal is ``shards/shard-NNNNN.faiss`` + ``shards/shard-NNNNN.npy`` (its vectors) per shard,
listed in the manifest entry's ``shards``; ``ShardedIndex.load`` and ``ShardVectors.load`` open
them.

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

from .vector_index import (
    SearchResult,
    VectorIndex,
    choose_index_key,
    default_nprobe,
    order_ties_by_position,
)

ADD_BLOCK = 100_000  # what VectorIndex.build adds at a time


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


def training_positions(n: int, *, train_sample: int = 200_000, seed: int = 0) -> np.ndarray:
    """Rows ``VectorIndex.build`` trains an IVF quantizer on (same generator, same draw)."""
    rng = np.random.default_rng(seed)
    return rng.choice(n, size=min(n, train_sample), replace=False)


def train_template(dim: int, key: str, sample: np.ndarray) -> np.ndarray:
    """An empty index of ``key``, trained on ``sample`` when the key needs training (IVF, PQ);
    serialized (``uint8``) so it can be shipped to whoever adds a shard."""
    index = faiss.index_factory(dim, key, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return faiss.serialize_index(index)


def build_shard(template: np.ndarray, vectors: np.ndarray, key: str, nprobe: int) -> VectorIndex:
    """Add one shard's vectors to a copy of the trained template."""
    index = faiss.deserialize_index(np.asarray(template, dtype=np.uint8))
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    for start in range(0, len(vectors), ADD_BLOCK):
        index.add(vectors[start : start + ADD_BLOCK])
    return VectorIndex(index, key, nprobe)


def _empty(n_queries: int) -> SearchResult:
    return SearchResult(np.zeros((n_queries, 0), np.float32), np.zeros((n_queries, 0), np.int64))


def merge_topk(results: Sequence[SearchResult], starts: Sequence[int], k: int) -> SearchResult:
    """Global top-``k`` from per-shard results (local positions; -1 = no result).

    Width is ``k`` (callers clamp it to the total item count, as ``VectorIndex.search`` does);
    missing results stay -1 at the end of a row.
    """
    n_queries = len(results[0].scores) if results else 0
    pairs = [(r, start) for r, start in zip(results, starts) if r.scores.shape[1]]
    if not pairs or n_queries == 0:
        return _empty(n_queries)
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
            return _empty(len(queries))
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
    """``vectors[positions]`` over per-shard arrays (e.g. memory-mapped ``.npy`` files), as
    exact evidence reads a single ``vectors.npy``."""

    def __init__(self, parts: Sequence[np.ndarray], dim: int) -> None:
        self.parts = list(parts)
        self.dim = dim
        self.starts = [int(x) for x in np.concatenate([[0], np.cumsum([len(p) for p in parts])])]

    @classmethod
    def load(cls, directory: str | Path, entry: dict) -> ShardVectors:
        directory = Path(directory)
        parts = [np.load(directory / s["vectors"], mmap_mode="r") for s in entry["shards"]]
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


# ----------------------------------------------------------------------------- shards on Ray
# ray is imported inside functions: the single-machine path never needs it.


class _ShardServer:
    """Ray actor body: one shard's FAISS index and its vectors."""

    def __init__(self, index_bytes: np.ndarray, vectors: np.ndarray, key: str, nprobe: int):
        self.index = VectorIndex(faiss.deserialize_index(index_bytes), key, nprobe)
        self.vectors = vectors

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        res = self.index.search(queries, k)
        return res.scores, res.positions

    def take(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self.vectors[positions])


def _add_shard(template: np.ndarray, vectors: np.ndarray, key: str, nprobe: int) -> np.ndarray:
    return faiss.serialize_index(build_shard(template, vectors, key, nprobe).index)


class RayShardedIndex:
    """Shards served by Ray actors; ``search`` fans out to all of them and merges exactly.

    ``build_from_refs`` takes each shard's vectors as Ray object refs (they never pass through
    this process), trains the template once (a Ray task), adds the shards in parallel (Ray
    tasks) and starts one actor per shard; ``write`` saves them one shard at a time. The object
    is picklable (actor handles), so Ray tasks can search it as well.

    >>> idx = RayShardedIndex.build(vectors, num_shards=8)          # doctest: +SKIP
    >>> idx.search(queries, k=100).positions                        # doctest: +SKIP
    """

    def __init__(self, servers: list, counts: Sequence[int], key: str, nprobe: int, dim: int):
        self.servers = servers
        self.counts = [int(c) for c in counts]
        self.starts = [int(x) for x in np.concatenate([[0], np.cumsum(self.counts)[:-1]])]
        self.key, self.nprobe, self.dim = key, nprobe, dim
        self.shards: list[dict] = []  # manifest entries, filled by write()
        self.on_gpu = False
        self._built: list = []  # refs to the serialized shards (actor constructor arguments)
        self._parts: list = []  # refs to the shards' vectors (idem)

    @classmethod
    def build(cls, vectors: np.ndarray, *, num_shards: int, **kwargs) -> RayShardedIndex:
        """From vectors in this process (see ``build_from_refs`` for the arguments)."""
        import ray

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        bounds = shard_bounds(n, num_shards) if n else [(0, 0)]
        return cls.build_from_refs(
            [ray.put(vectors[a:b]) for a, b in bounds],
            [b - a for a, b in bounds],
            ray.put(vectors[training_positions(n)]),
            dim=dim,
            **kwargs,
        )

    @classmethod
    def build_from_refs(
        cls,
        parts: Sequence,
        counts: Sequence[int],
        sample,
        *,
        dim: int,
        key: str | None = None,
        max_memory: int | str = "4G",
        task_options: dict | None = None,
        actor_options: dict | None = None,
    ) -> RayShardedIndex:
        """``parts``: refs to each shard's vectors (``counts`` rows each, in position order);
        ``sample``: ref to the training sample, drawn as ``training_positions`` draws it.
        ``key``: default ``choose_index_key`` for the total count and ``max_memory``."""
        import ray

        n = int(sum(counts))
        task_options = task_options or {}
        key = key or choose_index_key(n, dim, max_memory)
        nprobe = default_nprobe(key)
        template = ray.remote(train_template).options(**task_options).remote(dim, key, sample)
        add = ray.remote(_add_shard).options(**task_options)
        built = [add.remote(template, part, key, nprobe) for part in parts]
        server = ray.remote(_ShardServer).options(**(actor_options or {}))
        out = cls(
            [server.remote(b, part, key, nprobe) for b, part in zip(built, parts)],
            counts,
            key,
            nprobe,
            dim,
        )
        out._built, out._parts = built, list(parts)
        return out

    def write(self, directory: str | Path) -> list[dict]:
        """Write each shard's index and vectors under ``directory/shards/``, one shard in this
        process at a time; return (and keep in ``shards``) the manifest list."""
        import ray

        (Path(directory) / "shards").mkdir(parents=True, exist_ok=True)
        self.shards = []
        for i, (built, part, start, count) in enumerate(
            zip(self._built, self._parts, self.starts, self.counts)
        ):
            name = f"shards/shard-{i:05d}"
            for suffix, data in ((".faiss", built), (".npy", part)):
                tmp = Path(directory) / f"{name}.tmp{suffix}"
                value = ray.get(data)
                if suffix == ".faiss":
                    np.asarray(value, np.uint8).tofile(tmp)
                else:
                    np.save(tmp, value)
                tmp.replace(Path(directory) / f"{name}{suffix}")
                del value
            self.shards.append(
                {"file": f"{name}.faiss", "vectors": f"{name}.npy", "start": start, "count": count}
            )
        # _built and _parts stay referenced: a restarted shard actor is constructed again
        # from them (Ray keeps objects only while someone refers to them).
        return self.shards

    @property
    def ntotal(self) -> int:
        return sum(self.counts)

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        import ray

        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.ntotal == 0 or len(queries) == 0:
            return _empty(len(queries))
        k = max(1, min(k, self.ntotal))
        ref = ray.put(queries)
        parts = ray.get([s.search.remote(ref, k) for s in self.servers])
        return merge_topk([SearchResult(*p) for p in parts], self.starts, k)

    def take(self, positions) -> np.ndarray:
        """Stored vectors at global ``positions``, fetched from the shards that hold them."""
        import ray

        return take_across_shards(
            self.starts,
            self.dim,
            positions,
            lambda asks: ray.get([self.servers[s].take.remote(local) for s, local in asks]),
        )

    @property
    def vectors(self) -> RayShardVectors:
        return RayShardVectors(self)


class RayShardVectors:
    """``vectors[positions]`` over a ``RayShardedIndex`` (where exact evidence is read from)."""

    def __init__(self, index: RayShardedIndex) -> None:
        self.index = index

    def __getitem__(self, positions) -> np.ndarray:
        return self.index.take(positions)

    def __len__(self) -> int:
        return self.index.ntotal

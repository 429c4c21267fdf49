"""Indexes served by Ray actors: FAISS shards (``RayShardedIndex``) or one signal's own index
type whole (``RayServedIndex``, e.g. PDQ's binary index); searched from the driver or from
Ray tasks on any node (the objects hold actor handles, not paths).

``ray`` is imported inside functions: importing this module does not need it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from riskrank.index.vectors.faiss_index import (
    SearchResult,
    VectorIndex,
    choose_index_key,
    default_nprobe,
    training_positions,
)
from riskrank.index.vectors.sharded import (
    build_shard,
    empty_result,
    merge_topk,
    shard_bounds,
    take_across_shards,
    train_template,
)


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
            return empty_result(len(queries))
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


class _SignalIndexServer:
    """Ray actor body: a signal's own index (whatever ``Signal.load_index`` opens) + vectors."""

    def __init__(self, spec: dict, options: dict, blob, vectors: np.ndarray):
        from riskrank.index.signals.registry import signal_from_manifest

        signal = signal_from_manifest(spec).set_runtime_options(**options)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "index"
            path.write_bytes(blob["bytes"])
            self.index = signal.load_index(path, blob, use_gpu=False)
        self.vectors = vectors

    def search(self, queries: np.ndarray, k: int):
        return self.index.search(queries, k)

    def take(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self.vectors[positions])


def _build_signal_index(spec: dict, options: dict, vectors: np.ndarray, key, max_memory) -> dict:
    """A signal's own index over ``vectors`` (a Ray task): its file's bytes, key and nprobe."""
    from riskrank.index.signals.registry import signal_from_manifest

    signal = signal_from_manifest(spec).set_runtime_options(**options)
    index = signal.build_index(vectors, key=key, max_memory=max_memory, use_gpu=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index"
        index.save(path)
        return {"bytes": path.read_bytes(), "index_key": index.key, "nprobe": index.nprobe}


class RayServedIndex:
    """A signal whose index is not a sharded FAISS float index (``IndexKind.BINARY_HASHES``,
    PDQ's ``BinaryHashIndex``), built whole by one Ray task and served by one actor. ``search``
    returns what that index's ``search`` returns.
    """

    def __init__(self, server, blob, vectors, count: int, dim: int, key: str, nprobe: int):
        self.server, self._blob, self._vectors = server, blob, vectors  # refs kept for restarts
        self.count, self.dim, self.key, self.nprobe = count, dim, key, nprobe
        self.on_gpu = False

    @classmethod
    def build_from_ref(
        cls,
        spec: dict,
        options: dict,
        vectors,
        count: int,
        *,
        dim: int,
        key: str | None = None,
        max_memory: int | str = "4G",
        task_options: dict | None = None,
        actor_options: dict | None = None,
    ) -> RayServedIndex:
        import ray

        build = ray.remote(_build_signal_index).options(**(task_options or {}))
        blob = build.remote(spec, options, vectors, key, max_memory)
        info = ray.get(blob)
        server = ray.remote(_SignalIndexServer).options(**(actor_options or {}))
        return cls(
            server.remote(spec, options, blob, vectors),
            blob,
            vectors,
            count,
            dim,
            info["index_key"],
            info["nprobe"],
        )

    def write(self, directory: str | Path) -> list[str]:
        """``index.faiss`` + ``vectors.npy`` under ``directory``, the layout of ``build_index``."""
        import ray

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / "index.faiss.tmp"
        tmp.write_bytes(ray.get(self._blob)["bytes"])
        tmp.replace(directory / "index.faiss")
        tmp = directory / "vectors.tmp.npy"
        np.save(tmp, ray.get(self._vectors))
        tmp.replace(directory / "vectors.npy")
        return ["index.faiss", "vectors.npy"]

    @property
    def ntotal(self) -> int:
        return self.count

    def search(self, queries: np.ndarray, k: int):
        import ray

        return ray.get(self.server.search.remote(queries, k))

    def take(self, positions) -> np.ndarray:
        import ray

        pos = np.asarray(positions, dtype=np.int64).ravel()
        return ray.get(self.server.take.remote(pos))

    @property
    def vectors(self) -> RayShardVectors:
        return RayShardVectors(self)

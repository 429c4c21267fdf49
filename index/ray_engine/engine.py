"""The Ray engine of ``build_index``: the same index, embedded and sharded in parallel.

>>> idx = build_index("inventory/", "runs/idx", signals=[TextEmbeddingSignal()],
...                   engine=RayEngine(num_shards=8))                       # doctest: +SKIP
>>> idx.signals["text"].index.search(q, 10)        # the shard actors answer  # doctest: +SKIP

``RayEngine`` replaces the steps of ``index.build.build_index`` that parallelise (see
``index.engine``); the overwrite rule, the chunk files, the quarantine rule, the files and the
manifest are ``build_index``'s own. The steps, each exact, so that the index equals the single
machine's:

1. **validate** (``index.ray_engine.inventory``): ``ray.data.read_parquet`` -> ``map_batches`` of
   ``index.schema.validate_inventory`` per block; the driver numbers rows globally and judges
   repeated ids over all blocks and files (``schema.duplicate_reasons``: one row kept if they
   are the same, none if they differ), reading ids, reasons, text and metadata only, so the
   quarantine is the single machine's and items in = indexed + quarantined.
2. **embed**: Ray tasks cut the valid rows into chunks of ``chunk_size`` consecutive items (the
   chunks ``build_index`` encodes, so every encoder call sees the same batch and the vectors are
   bitwise the single machine's) and ``map_batches(ItemEmbedder)`` embeds them on an actor pool
   (one GPU per actor where the cluster has GPUs). Vectors stay in the object store: the driver
   fetches only the per-row ok flags and reasons. An actor stages each finished chunk's file;
   the driver commits it (a rename) when the chunk's output reaches it, in chunk order, so a
   build that raises leaves exactly the committed chunks for a resume, whatever actors still
   running finish later.
3. **shard**: per FAISS float signal, the indexed items are cut into contiguous shards. For
   IVF keys the quantizer is trained once, on the sample ``VectorIndex.build`` would take; Ray
   tasks gather each shard's vectors and add them to a copy of it, and an actor serves each
   shard (search + vector lookup, ``index.ray_engine.shards.RayShardedIndex``). The driver
   writes one shard at a time (``<signal>/shards/shard-NNNNN.faiss`` + ``.npy``) and the
   manifest last. A binary-hash signal (``IndexKind.BINARY_HASHES``: PDQ) is built whole by
   one task and served by one actor (``index.ray_engine.shards.RayServedIndex``), in
   ``build_index``'s layout.

Faults: embedding actors are restarted (``max_restarts``) and their chunk retried
(``max_task_retries``); tasks are retried (``max_retries``). ``ray`` is imported inside
functions: importing this module does not need it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from riskrank.index.engine import BuiltSignal, ValidItems
from riskrank.index.ray_engine.embed import Embedded, ItemEmbedder, embed_chunks
from riskrank.index.ray_engine.inventory import ordered_data_context, read_inventory
from riskrank.index.ray_engine.shards import RayServedIndex, RayShardedIndex
from riskrank.index.schema import quarantine_table
from riskrank.index.signals.base import IndexKind, Signal
from riskrank.index.signals.registry import signal_from_manifest
from riskrank.index.store import InventoryIndex, SignalIndex
from riskrank.index.vectors.faiss_index import training_positions
from riskrank.index.vectors.sharded import shard_bounds

# ----------------------------------------------------------------------------- shards


def plan_cluster(
    resources: dict, *, use_gpu=None, concurrency=None, cpus_per_actor=None, num_shards=None
) -> dict:
    """Embedding actors and index shards for this cluster (default: one actor per GPU, else
    one single-threaded actor per CPU; one shard per CPU)."""
    cpus, gpus = float(resources.get("CPU", 0)), int(resources.get("GPU", 0))
    use_gpu = gpus > 0 if use_gpu is None else use_gpu
    if use_gpu and gpus == 0:
        raise ValueError("use_gpu=True but the Ray cluster has no GPU")
    if concurrency is None:
        concurrency = gpus if use_gpu else max(1, int(cpus))
    cpus_per_actor = 1.0 if cpus_per_actor is None else cpus_per_actor
    if concurrency * cpus_per_actor > cpus:
        raise ValueError(
            f"concurrency={concurrency} x cpus_per_actor={cpus_per_actor} needs more than the "
            f"{cpus:g} CPUs of the cluster: the actor pool would wait for CPUs forever"
        )
    return {
        "use_gpu": use_gpu,
        "actors": concurrency,
        "cpus_per_actor": cpus_per_actor,
        "num_shards": num_shards or max(1, int(cpus)),
    }


def _shard_signal(emb: Embedded, name: str, sdir: Path, plan: dict):
    """Stage 3 for one signal: train once, add shards in parallel, write one shard at a time."""
    rows = np.flatnonzero(emb.ok[name])  # valid rows -> this signal's positions
    n, dim = len(rows), plan["dims"][name]
    opts = {"max_retries": plan["max_retries"]}
    bounds = shard_bounds(n, plan["num_shards"]) if n else [(0, 0)]
    index = RayShardedIndex.build_from_refs(
        [emb.gather(name, rows[a:b], task_options=opts) for a, b in bounds],
        [b - a for a, b in bounds],
        emb.gather(name, rows[training_positions(n)], task_options=opts),
        dim=dim,
        key=plan["index_key"],
        max_memory=plan["max_memory"],
        task_options=opts,
        actor_options=_actor_options(plan),
    )
    shards = index.write(sdir)
    return index, [f for shard in shards for f in (shard["file"], shard["vectors"])]


def _serve_signal(emb: Embedded, name: str, spec: dict, sdir: Path, plan: dict):
    """Stage 3 for a binary-hash signal (PDQ): built whole in one task, served by
    one actor, written in ``build_index``'s layout."""
    rows = np.flatnonzero(emb.ok[name])
    opts = {"max_retries": plan["max_retries"]}
    key = plan["index_key"]
    index = RayServedIndex.build_from_ref(
        spec,
        plan["options"][name],
        emb.gather(name, rows, task_options=opts),
        len(rows),
        dim=plan["dims"][name],
        key=key,
        max_memory=plan["max_memory"],
        task_options=opts,
        actor_options=_actor_options(plan),
    )
    return index, index.write(sdir)


def _actor_options(plan: dict) -> dict:
    # Index actors mostly wait for searches; 0 CPUs keeps them from starving tasks.
    return {
        "num_cpus": 0,
        "max_restarts": plan["max_restarts"],
        "max_task_retries": plan["max_task_retries"],
    }


# ----------------------------------------------------------------------------- the engine

PLAN_KEYS = ("actors", "cpus_per_actor", "use_gpu", "num_shards")


@dataclass
class RayEngine:
    """``build_index(..., engine=RayEngine(...))``: the build on the Ray cluster this process
    joined (``ray.init``; without one, a local one is started, or ``address`` joined, and left
    running: the returned index is served by its actors).

    ``num_shards``: index shards per signal (default: one per CPU). ``concurrency``: embedding
    actors (default: one per GPU, else one per CPU), each with ``cpus_per_actor`` CPUs (default
    1) and a GPU when ``use_gpu`` (default: when the cluster has GPUs). ``max_restarts`` /
    ``max_task_retries`` (actors) and ``max_retries`` (tasks) are Ray's fault-tolerance knobs.
    ``embedder``: the actor class (``ItemEmbedder`` or a subclass), given ``embedder_kwargs``.
    ``build_index``'s ``chunk_size`` is the items per encoder call, as on one machine, which
    makes the vectors bitwise equal. The inventory may be a Parquet file, a directory of them
    (sorted path order, as pyarrow reads it), a list of paths, a URI (``s3://``, ``gs://``,
    ``file://``) or a table; ``path/_work/`` (the chunks) must be on storage every node reaches.
    """

    num_shards: int | None = None
    concurrency: int | None = None
    cpus_per_actor: float | None = None
    use_gpu: bool | None = None
    max_restarts: int = -1
    max_task_retries: int = -1
    max_retries: int = 3
    embedder: type[ItemEmbedder] = ItemEmbedder
    embedder_kwargs: dict = field(default_factory=dict)
    address: str | None = None

    name = "ray"
    # The index it returns is served by live actors of this Ray session: a later sweep
    # rebuilds (resuming chunks) rather than reopening files it would then search locally.
    reopens = False

    @contextlib.contextmanager
    def session(self, show_progress: bool) -> Iterator[None]:
        import ray

        if not ray.is_initialized():
            # No address: RAY_ADDRESS (a Ray job's), else a private local instance, never a
            # cluster `ray start` left running on this machine (ray.init(None) joins that one).
            address = self.address or os.environ.get("RAY_ADDRESS") or "local"
            ray.init(address=address, log_to_driver=show_progress)
        self.plan_ = plan_cluster(
            ray.cluster_resources(),
            use_gpu=self.use_gpu,
            concurrency=self.concurrency,
            cpus_per_actor=self.cpus_per_actor,
            num_shards=self.num_shards,
        )
        self.plan_.update(
            embedder=self.embedder,
            embedder_kwargs=self.embedder_kwargs or {},
            max_restarts=self.max_restarts,
            max_task_retries=self.max_task_retries,
            max_retries=self.max_retries,
        )
        with ordered_data_context(show_progress):
            yield

    def read(self, inventory, *, require_text: bool, base_dirs: list) -> ValidItems:
        inv = read_inventory(inventory, require_text=require_text, base_dirs=base_dirs)
        quarantine = quarantine_table(inv.quarantined)
        return ValidItems(inv.items, quarantine, inv.n_in, inv.keys, source=inv)

    def embed(
        self,
        valid: ValidItems,
        signals: list[Signal],
        files: list[Path],
        *,
        chunk_size: int,
        show_progress: bool,
    ) -> Embedded:
        self.plan_.update(
            chunk_size=chunk_size,
            dims={s.name: s.dim for s in signals},
            options={s.name: s.get_runtime_options() for s in signals},
        )
        specs = [s.describe() for s in signals]
        return embed_chunks(valid.source, specs, [s.name for s in signals], self.plan_, files)

    def index_signal(
        self, emb: Embedded, signal: Signal, sdir: Path, *, key, max_memory, use_gpu
    ) -> BuiltSignal:
        """FAISS float indexes are sharded; binary hash indexes (PDQ) are served whole.
        (``use_gpu`` is the local engine's FAISS search device; shard actors search on CPU.)"""
        plan = {**self.plan_, "index_key": key, "max_memory": max_memory}
        t0 = time.time()
        if signal.index_kind is IndexKind.FLOAT_VECTORS:
            index, files = _shard_signal(emb, signal.name, sdir, plan)
            index_files = [shard["file"] for shard in index.shards]
            layout = {"shards": index.shards}
        else:
            index, files = _serve_signal(emb, signal.name, signal.describe(), sdir, plan)
            index_files, layout = ["index.faiss"], {}
        return BuiltSignal(index, files, index_files, time.time() - t0, layout)

    def manifest(self) -> dict:
        return {"ray": {k: self.plan_[k] for k in PLAN_KEYS}}

    def open(
        self,
        path: Path,
        manifest: dict,
        built: dict[str, BuiltSignal],
        items: pa.Table,
        signals: list[Signal],
        use_gpu: bool | None,
    ) -> InventoryIndex:
        """An ``InventoryIndex`` whose searches and vector reads go to the shard actors (usable
        in Ray tasks on any node: it holds actor handles and the item table, not paths).
        ``InventoryIndex.load(path)`` opens the same files without Ray."""
        # Seeds embedded through this index read image paths from the items' directory
        # (runtime options such as base_dir are not in the manifest; index/paths.py).
        options = {s.name: s.get_runtime_options() for s in signals}
        loaded = {
            name: SignalIndex(
                signal_from_manifest(entry).set_runtime_options(**options.get(name, {})),
                entry,
                built[name].index,
                built[name].ids,
                path / name,
                preloaded_vectors=built[name].index.vectors,
                preloaded_evidence=built[name].evidence,
            )
            for name, entry in manifest["signals"].items()
        }
        return InventoryIndex(path, manifest, loaded, items=items)


__all__ = ["ItemEmbedder", "RayEngine", "plan_cluster"]

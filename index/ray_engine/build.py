"""``build_index`` on a Ray cluster: the same index, embedded and sharded in parallel.

>>> idx = build_index_ray("inventory/", "runs/idx", signals=[TextEmbeddingSignal()],
...                       num_shards=8)                                   # doctest: +SKIP
>>> idx.as_inventory_index().signals["text"].index.search(q, 10)          # doctest: +SKIP

Stages, each exact, so that the index equals the single machine's:

1. **validate** (``index.ray_engine.inventory``): ``ray.data.read_parquet`` -> ``map_batches`` of
   ``index.schema.validate_inventory`` per block; the driver numbers rows globally and
   quarantines ids first seen in an earlier block or file, reading ids, reasons, text and
   metadata only, so the quarantine is the single machine's and items in = indexed +
   quarantined.
2. **embed**: Ray tasks cut the valid rows into chunks of ``chunk_size`` consecutive items (the
   chunks ``build_index`` encodes, so every encoder call sees the same batch and the vectors are
   bitwise the single machine's) and ``map_batches(ItemEmbedder)`` embeds them on an actor pool
   (one GPU per actor where the cluster has GPUs). Vectors stay in the object store: the driver
   fetches only the per-row ok flags and reasons.
3. **shard**: per FAISS float signal, the indexed items are cut into contiguous shards. For
   IVF keys the quantizer is trained once, on the sample ``VectorIndex.build`` would take; Ray
   tasks gather each shard's vectors and add them to a copy of it, and an actor serves each
   shard (search + vector lookup, ``index.ray_engine.shards.RayShardedIndex``). The driver
   writes one shard at a time (``<signal>/shards/shard-NNNNN.faiss`` + ``.npy``) and the
   manifest last. A signal with its own index type (PDQ's binary index) is built whole by
   one task and served by one actor (``index.ray_engine.shards.RayServedIndex``), in
   ``build_index``'s layout.

Faults: embedding actors are restarted (``max_restarts``) and their chunk retried
(``max_task_retries``); tasks are retried (``max_retries``). ``ray`` is imported inside
functions: importing this module does not need it.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from riskrank.index.build import (
    check_signals,
    prepare_directory,
    requires_text,
    signal_entry,
    unusable_rows,
    write_signal_files,
)
from riskrank.index.chunks import WORK
from riskrank.index.manifest import write_manifest
from riskrank.index.ray_engine.embed import (
    Embedded,
    ItemEmbedder,
    embed_chunks,
    materialize_signals,
)
from riskrank.index.ray_engine.inventory import ordered_data_context, read_inventory
from riskrank.index.ray_engine.shards import RayServedIndex, RayShardedIndex
from riskrank.index.schema import ITEM_ID, quarantine_table
from riskrank.index.signals import IndexKind, Signal, signal_from_manifest
from riskrank.index.store import InventoryIndex, SignalIndex
from riskrank.index.tables import TableLike, write_parquet
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
    """Stage 3 for a signal with its own index type (PDQ): built whole in one task, served by
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


# ----------------------------------------------------------------------------- the build


@dataclass
class RayIndex:
    """An index built on Ray: the same files as ``build_index`` (sharded) plus live shard
    actors serving it for the rest of this Ray session."""

    path: Path
    manifest: dict
    indexes: dict[str, RayShardedIndex | RayServedIndex]
    ids: dict[str, np.ndarray]
    items: pa.Table
    quarantine: pa.Table
    evidence: dict[str, pa.Table]  # per signal that records per-item evidence (PDQ quality)

    def as_inventory_index(self) -> InventoryIndex:
        """An ``InventoryIndex`` whose searches and vector reads go to the shard actors (usable
        in Ray tasks on any node: it holds actor handles and the item table, not paths)."""
        signals = {
            name: SignalIndex(
                signal_from_manifest(entry),
                entry,
                self.indexes[name],
                self.ids[name],
                self.path / name,
                _vectors=self.indexes[name].vectors,
                _evidence=self.evidence.get(name),
            )
            for name, entry in self.manifest["signals"].items()
        }
        index = InventoryIndex(self.path, self.manifest, signals)
        index._items = self.items
        return index


def build_index_ray(
    inventory: TableLike | Sequence[str | Path],
    path: str | Path,
    *,
    signals: Sequence[Signal] | None = None,
    specs: Sequence[dict] | None = None,
    options: dict[str, dict] | None = None,
    max_memory: int | str = "4G",
    key: str | None = None,
    num_shards: int | None = None,
    chunk_size: int = 2048,
    concurrency: int | None = None,
    cpus_per_actor: float | None = None,
    use_gpu: bool | None = None,
    max_restarts: int = -1,
    max_task_retries: int = -1,
    max_retries: int = 3,
    embedder: type[ItemEmbedder] = ItemEmbedder,
    embedder_kwargs: dict | None = None,
    show_progress: bool = True,
    overwrite: bool = False,
) -> RayIndex:
    """``index.build.build_index`` on the Ray cluster this process has joined (``ray.init``; Ray
    Data starts a local one if none). Refuses a finished index at ``path`` unless ``overwrite``;
    run again after a crash, it reuses the chunks the killed run embedded (saved under
    ``path/_work/``, which every node must reach, until the manifest is written).

    ``inventory``: a Parquet file, a directory of Parquet files (sorted path order, as pyarrow
    reads it), a list of Parquet paths, or a table. ``signals`` (or their manifest entries,
    ``specs``, e.g. a model's, with ``options``: per signal name its runtime options such as
    ``{"image": {"base_dir": ...}}``): what to embed with; default text. ``num_shards``: index
    shards per signal (default: one per CPU). ``concurrency``: embedding actors (default: one
    per GPU, else one per CPU), each with ``cpus_per_actor`` CPUs (default 1). ``chunk_size``:
    valid items per encoder call; the default is ``build_index``'s, which makes the vectors
    bitwise equal. ``max_restarts`` / ``max_task_retries`` (actors) and ``max_retries`` (tasks)
    are Ray's fault-tolerance knobs. ``embedder``: the actor class, given ``embedder_kwargs``
    too.

    ``InventoryIndex.load(path)`` opens the written index without Ray.
    """
    import ray

    t0 = time.time()
    if specs is None:
        signals = check_signals(signals)
        specs = [s.describe() for s in signals]
        options = {s.name: s.get_runtime_options() for s in signals}
    signals = check_signals(materialize_signals(specs, options))
    names = [s.name for s in signals]
    require_text = requires_text(signals)
    plan = plan_cluster(
        ray.cluster_resources(),
        use_gpu=use_gpu,
        concurrency=concurrency,
        cpus_per_actor=cpus_per_actor,
        num_shards=num_shards,
    )
    plan.update(
        chunk_size=chunk_size,
        embedder=embedder,
        embedder_kwargs=embedder_kwargs or {},
        index_key=key,
        max_memory=max_memory,
        max_restarts=max_restarts,
        max_task_retries=max_task_retries,
        max_retries=max_retries,
        dims={s.name: s.dim for s in signals},
        options={s.name: s.get_runtime_options() for s in signals},
    )

    path = prepare_directory(path, overwrite)  # keeps _work/: chunks a killed run finished
    with ordered_data_context(show_progress):
        inv = read_inventory(inventory, require_text=require_text)
        emb = embed_chunks(inv, specs, names, plan, work=path / "_work")
    why = emb.reasons
    t_embed = time.time() - t0

    items, quarantined = inv.items, inv.quarantined
    ids = np.asarray(items.column(ITEM_ID).to_pylist(), dtype=object)
    ok_any, extra = unusable_rows(ids, emb.ok, why, names)
    quarantined.extend(extra)
    quarantine = quarantine_table(quarantined)
    indexed = items.filter(pa.array(ok_any))

    write_parquet(indexed, path / "items.parquet")
    write_parquet(quarantine, path / "quarantine.parquet")
    entries, indexes, sig_ids, evidence = {}, {}, {}, {}
    for signal, spec in zip(signals, specs):
        name, sdir = signal.name, path / signal.name
        tb = time.time()
        # FAISS float indexes are sharded; binary hash indexes (PDQ) are served whole.
        if signal.index_kind is IndexKind.FLOAT_VECTORS:
            index, files = _shard_signal(emb, name, sdir, plan)
            layout = {"shards": index.shards}
            index_files = [s_["file"] for s_ in index.shards]
        else:
            index, files = _serve_signal(emb, name, spec, sdir, plan)
            layout, index_files = {}, ["index.faiss"]
        build_s = time.time() - tb
        ok = emb.ok[name]
        sig_ids[name] = ids[ok]
        more, table = write_signal_files(
            sdir, sig_ids[name], {k: v[ok] for k, v in emb.evidence[name].items()}
        )
        if table is not None:
            evidence[name] = table
        index_bytes = sum((sdir / f).stat().st_size for f in index_files)
        entries[name] = signal_entry(
            signal,
            spec,
            index,
            len(sig_ids[name]),
            index_bytes,
            build_s,
            sdir,
            files + more,
            layout,
        )
        indexes[name] = index
    manifest = {
        "engine": "ray",
        "seconds": round(time.time() - t0, 3),
        "embed_seconds": round(t_embed, 3),
        "chunks": {"total": emb.chunks, "resumed": emb.resumed},
        "max_memory": str(max_memory),
        "items": {
            "input": inv.n_in,
            "indexed": indexed.num_rows,
            "quarantined": quarantine.num_rows,
        },
        "signals": entries,
        "ray": {k: plan[k] for k in ("actors", "cpus_per_actor", "use_gpu", "num_shards")},
    }
    manifest = json.loads(write_manifest(path, manifest).read_text())
    shutil.rmtree(path / WORK, ignore_errors=True)
    return RayIndex(path, manifest, indexes, sig_ids, indexed, quarantine, evidence)


__all__ = ["ItemEmbedder", "RayIndex", "build_index_ray", "plan_cluster"]

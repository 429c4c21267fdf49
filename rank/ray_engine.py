"""Sweeps on a Ray cluster: the queue of ``rank.pipeline.sweep``, computed in parallel.

>>> result = sweep_ray("inventory/", seeds, "runs/model", out_dir="runs/sweep",
...                    address="auto", num_shards=8)                     # doctest: +SKIP

Stages, each exact so that the queue equals the single-machine one (up to the order of exactly
tied similarities, i.e. duplicate content, which faiss leaves unspecified: index.sharded_index):

1. **embed**: ``ray.data.read_parquet`` -> ``map_batches`` of
   ``index.schema.validate_inventory`` per batch; the driver walks the batches once in input
   order, numbering rows globally and quarantining item_ids first seen in an earlier batch or
   file, so the quarantine equals the single-machine one and items in = indexed +
   quarantined. The valid items, in chunks of ``build_index``'s size, are then embedded by
   ``map_batches(ItemEmbedder)`` on an actor pool (one GPU per actor where there are GPUs).
2. **index**: the vectors are cut into contiguous shards. For IVF keys the quantizer is trained
   once, on the sample ``VectorIndex.build`` would take; Ray tasks add the shards in parallel and
   each shard is served by an actor (search + vector lookup). See ``index.sharded_index``.
3. **recall**: one Ray task per policy runs ``recall.recaller.recall`` unchanged against a
   ``RayShardedIndex``: every search fans out to all shards and is merged exactly
   (``merge_topk``); exact evidence reads the vectors from the shards that hold them.
4. **rank**: Ray tasks score chunks of candidates; the driver builds the queue (a global sort)
   and writes every output as Parquet, as ``sweep`` does.

Faults: embedding actors are restarted (``max_restarts``) and their chunk retried
(``max_task_retries``); tasks are retried (``max_retries``); shard actors rebuild from their
object refs. ``ray`` is imported inside functions only: importing this module does not need it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from index.schema import IMAGE_BYTES, ITEM_ID, quarantine_table, validate_inventory
from index.sharded_index import RayShardedIndex
from index.signals import Signal, SignalBatch, TextEmbeddingSignal, signal_from_manifest
from index.store import (  # the manifest is written the same way as build_index's
    FORMAT_VERSION,
    MANIFEST,
    IndexMismatchError,
    InventoryIndex,
    SignalIndex,
    _sha256,
    _version,
)
from index.tables import TableLike, as_table, write_parquet
from recall.candidates import KEY_COLUMNS
from recall.recaller import recall
from recall.seeds import SeedSet

from .pipeline import RiskModel, SweepResult, score_candidates
from .queue import build_queue

_ID, _REASON = "__rr_item_id", "__rr_reason"
# index.schema's wording: a bad-UTF-8 row keeps that reason even when its id is a duplicate.
_UTF8_REASON = "text is not valid UTF-8"


def _col(kind: str, signal: str) -> str:
    return f"__rr_{kind}_{signal}"


# ----------------------------------------------------------------------------- validate


def _validate(batch: pa.Table, *, require_text: bool) -> pa.Table:
    """``validate_inventory`` on one batch (a Ray Data task): one row per input row, in order,
    with the item_id as a string, the failure (null when valid) and the validated columns
    (null for invalid rows)."""
    n = batch.num_rows
    items, bad = validate_inventory(batch, require_text=require_text)
    ids: list[str | None] = [None] * n
    reasons: list[str | None] = [None] * n
    for row, item_id, why in zip(
        bad.column("row").to_pylist(),
        bad.column(ITEM_ID).to_pylist(),
        bad.column("reason").to_pylist(),
    ):
        ids[row], reasons[row] = item_id, why
    good = np.flatnonzero([r is None for r in reasons])
    for row, item_id in zip(good, items.column(ITEM_ID).to_pylist()):
        ids[row] = item_id
    slots = np.full(n, -1)
    slots[good] = np.arange(len(good))
    take = pa.array(slots, mask=slots < 0)
    cols = {_ID: pa.array(ids, pa.string()), _REASON: pa.array(reasons, pa.string())}
    cols.update({name: items.column(name).take(take) for name in items.column_names})
    return pa.table(cols)


def _read(inventory):
    """A Ray Dataset over the inventory rows, in input order."""
    import pyarrow.dataset as pads
    import ray

    if isinstance(inventory, (list, tuple)) and all(isinstance(p, (str, Path)) for p in inventory):
        files = [str(p) for p in inventory]
    elif isinstance(inventory, (str, Path)):
        path = Path(inventory)
        if not path.exists():
            raise FileNotFoundError(f"inventory: no such file or directory: {path}")
        # The file order of pyarrow's own reader (what rank.pipeline.sweep reads): sorted paths.
        files = pads.dataset(path, format="parquet").files if path.is_dir() else [str(path)]
    else:
        table = as_table(inventory, what="inventory")
        step = max(1, -(-table.num_rows // 64))  # some blocks, for parallel validation
        return ray.data.from_arrow([table.slice(s, step) for s in range(0, table.num_rows, step)])
    if not files:
        raise FileNotFoundError(f"inventory: no Parquet files in {inventory}")
    return ray.data.read_parquet(files)


def _collect_valid(blocks) -> tuple[pa.Table, list[dict], int]:
    """One ordered pass over the validated blocks: global row numbers and duplicate ids.

    Returns the rows that passed (validated columns, input order), the quarantine rows and the
    number of rows read.
    """
    first_seen: dict[str, int] = {}
    quarantined: list[dict] = []
    kept: list[pa.Table] = []
    n_in = 0
    for block in blocks:
        keep = np.zeros(block.num_rows, bool)
        for i, (item_id, why) in enumerate(
            zip(block.column(_ID).to_pylist(), block.column(_REASON).to_pylist())
        ):
            row = n_in + i
            first = first_seen.setdefault(item_id, row) if item_id else row
            if first != row and not (why or "").startswith(_UTF8_REASON):
                why = f"duplicate item_id '{item_id}' (first seen at row {first})"
            if why is None:
                keep[i] = True
            else:
                quarantined.append(
                    {ITEM_ID: item_id, "row": row, "stage": "validate", "reason": why}
                )
        n_in += block.num_rows
        kept.append(block.filter(pa.array(keep)).drop([_ID, _REASON]))
    if not kept:
        raise ValueError("inventory: no rows were read")
    return pa.concat_tables(kept, promote_options="default"), quarantined, n_in


# ----------------------------------------------------------------------------- embed


class ItemEmbedder:
    """What each embedding actor runs (``map_batches``): one chunk of valid items -> vectors.

    The signals (encoders) are rebuilt from the model's manifest entries once per actor and
    checked against them. Output: per signal the vector, ok flag and reason of every row, in
    order. Subclass to instrument (the fault test does).
    """

    def __init__(self, signals: Sequence[dict], names: Sequence[str]):
        self.signals = dict(zip(names, _materialize(signals, check=True)))

    def __call__(self, chunk: pa.Table) -> pa.Table:
        cols: dict[str, pa.Array] = {}
        for name, signal in self.signals.items():
            out = signal.embed_items(chunk)
            flat = pa.array(np.ascontiguousarray(out.vectors).ravel())
            cols[_col("vec", name)] = pa.FixedSizeListArray.from_arrays(flat, out.vectors.shape[1])
            cols[_col("ok", name)] = pa.array(np.asarray(out.ok, bool))
            cols[_col("why", name)] = pa.array(out.reasons or [None] * chunk.num_rows, pa.string())
        return pa.table(cols)


def _materialize(specs: Sequence[dict], *, check: bool = False) -> list[Signal]:
    """Signals rebuilt from manifest entries (so workers load their own encoders)."""
    out = []
    for spec in specs:
        signal = signal_from_manifest(spec)
        why = signal.compatible_with(spec) if check else None
        if why:
            raise IndexMismatchError(f"embedding actor: encoder differs from the model's ({why})")
        out.append(signal)
    return out


@dataclass
class _Collected:
    """Everything the embedding stage produced, in input order, after the global checks."""

    items: pa.Table  # metadata of indexed items
    quarantine: pa.Table
    vectors: dict[str, np.ndarray]
    ids: dict[str, list[str]]
    n_in: int


def _embed(inventory, specs, names, require_text, plan: dict, show_progress: bool) -> _Collected:
    """Stage 1: validate (tasks), then embed chunk by chunk on the actor pool.

    Chunks are ``chunk_size`` consecutive valid items, the chunks ``build_index`` encodes, so
    each encoder call sees the same texts in the same batch: the vectors are bitwise those of
    the single-machine path (batch composition changes padding, hence the last float bits).
    """
    import ray

    ctx = ray.data.DataContext.get_current()
    saved = (
        ctx.execution_options.preserve_order,
        ctx.enable_progress_bars,
        getattr(ctx, "use_datasource_v2", False),
    )
    ctx.execution_options.preserve_order = True  # global row numbers = input order
    ctx.enable_progress_bars = show_progress
    # Ray 2.60's V2 Parquet reader lists files from a thread pool whose threads race on
    # importing fsspec's optional HTTP filesystem (ImportError where aiohttp is absent).
    ctx.use_datasource_v2 = False
    try:
        valid = _read(inventory).map_batches(
            _validate, fn_kwargs={"require_text": require_text}, batch_format="pyarrow"
        )
        items, quarantined, n_in = _collect_valid(
            valid.iter_batches(batch_size=None, batch_format="pyarrow")
        )
        size = plan["chunk_size"]
        chunks = [items.slice(s, size) for s in range(0, items.num_rows, size)]
        embedded = ray.data.from_arrow(chunks or [items]).map_batches(
            plan["embedder"],
            fn_constructor_kwargs={"signals": specs, "names": names, **plan["embedder_kwargs"]},
            batch_size=None,  # one call per chunk
            batch_format="pyarrow",
            # One chunk at a time per actor: else the first actor up (the others still load
            # their model) queues several chunks and the rest of the pool idles.
            compute=ray.data.ActorPoolStrategy(
                size=min(plan["actors"], max(1, len(chunks))), max_tasks_in_flight_per_actor=1
            ),
            num_cpus=plan["cpus_per_actor"],
            num_gpus=1 if plan["use_gpu"] else None,
            # Ray Data's own default for actor pools is -1 (restart and retry without limit);
            # passing it again only draws a deprecation warning (ray_remote_args, Ray 2.60).
            **{
                knob: plan[knob]
                for knob in ("max_restarts", "max_task_retries")
                if plan[knob] != -1
            },
        )
        parts = list(embedded.iter_batches(batch_size=None, batch_format="pyarrow"))
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved[:2]
        ctx.use_datasource_v2 = saved[2]
    out = pa.concat_tables(parts) if parts else None
    if out is None or out.num_rows != items.num_rows:
        raise RuntimeError(
            f"embedding returned {0 if out is None else out.num_rows} rows for "
            f"{items.num_rows} valid items"
        )
    ids = np.asarray(items.column(ITEM_ID).to_pylist(), dtype=object)
    ok = {n: np.asarray(out.column(_col("ok", n)).to_pylist(), bool) for n in names}
    ok_any = np.logical_or.reduce(list(ok.values()))
    why = {n: out.column(_col("why", n)).to_pylist() for n in names}
    # Items no signal could use are quarantined, as build_index does.
    for r in np.flatnonzero(~ok_any):
        reason = "; ".join(f"{n}: {why[n][r]}" for n in names if why[n][r])
        quarantined.append({ITEM_ID: ids[r], "row": -1, "stage": "encode", "reason": reason})
    vectors, sig_ids = {}, {}
    for n in names:
        col = out.column(_col("vec", n)).combine_chunks()
        flat = col.flatten().to_numpy(zero_copy_only=False)
        sel = np.flatnonzero(ok[n])
        vectors[n] = np.ascontiguousarray(flat.reshape(-1, col.type.list_size)[sel])
        sig_ids[n] = ids[sel].tolist()
    meta = [c for c in items.column_names if c != IMAGE_BYTES]
    indexed = items.filter(pa.array(ok_any)).select(meta)
    return _Collected(indexed, quarantine_table(quarantined), vectors, sig_ids, n_in)


# ----------------------------------------------------------------------------- index files


def _build_index(got: _Collected, model: RiskModel, specs, path: Path, plan: dict, t0: float):
    """Stage 2: one sharded index per signal, written like ``build_index`` writes its own."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    write_parquet(got.items, path / "items.parquet")
    write_parquet(got.quarantine, path / "quarantine.parquet")
    entries, indexes = {}, {}
    for signal, spec in zip(model.signals, specs):
        name, sdir = signal.name, path / signal.name
        tb = time.time()
        index = RayShardedIndex.build(
            got.vectors[name],
            num_shards=plan["num_shards"],
            key=plan["index_key"],
            max_memory=plan["max_memory"],
            directory=sdir,
            task_options={"max_retries": plan["max_retries"]},
            # Shard actors mostly wait for searches; 0 CPUs keeps them from starving tasks.
            actor_options={
                "num_cpus": 0,
                "max_restarts": plan["max_restarts"],
                "max_task_retries": plan["max_task_retries"],
            },
        )
        build_s = time.time() - tb
        ids_table = pa.table({ITEM_ID: pa.array(got.ids[name], pa.string())})
        write_parquet(ids_table, sdir / "ids.parquet")
        np.save(sdir / "vectors.npy", got.vectors[name])
        files = ["ids.parquet", "vectors.npy"] + [s["file"] for s in index.shards]
        checksums = {f: _sha256(sdir / f) for f in files}
        entries[name] = {
            **spec,
            "metric": signal.metric,
            "index_key": index.key,
            "nprobe": index.nprobe,
            "count": len(got.ids[name]),
            "index_bytes": sum((sdir / s["file"]).stat().st_size for s in index.shards),
            "build_seconds": round(build_s, 3),
            "shards": index.shards,
            "checksums": checksums,
        }
        indexes[name] = index
    manifest = {
        "format_version": FORMAT_VERSION,
        "riskrank_version": _version(),
        "engine": "ray",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - t0, 3),
        "max_memory": str(plan["max_memory"]),
        "items": {
            "input": got.n_in,
            "indexed": got.items.num_rows,
            "quarantined": got.quarantine.num_rows,
        },
        "signals": entries,
    }
    tmp = path / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(path / MANIFEST)  # last: a directory without a manifest is never "finished"
    return manifest, indexes


# ----------------------------------------------------------------------------- recall, rank


@dataclass
class _RecallContext:
    """What every per-policy recall task needs (shipped once through the object store)."""

    path: str
    manifest: dict
    indexes: dict[str, RayShardedIndex]
    ids: dict[str, np.ndarray]
    items: pa.Table
    exemplars: dict
    lexical: object  # recall.lexical.LexicalProbe | None


def _recall_policy(ctx: _RecallContext, seeds: pa.Table, seed_vectors: dict, k: int) -> pa.Table:
    signals = {
        name: SignalIndex(
            signal_from_manifest(entry),
            entry,
            ctx.indexes[name],
            ctx.ids[name],
            Path(ctx.path) / name,
            _vectors=ctx.indexes[name].vectors,
        )
        for name, entry in ctx.manifest["signals"].items()
    }
    index = InventoryIndex(Path(ctx.path), ctx.manifest, signals)
    index._items = ctx.items  # the table itself, not a path: workers may be on other machines
    return recall(
        index,
        SeedSet(seeds),
        k=k,
        exemplars=ctx.exemplars,
        lexical=ctx.lexical,
        seed_vectors=seed_vectors,
        show_progress=False,
    )


def _embed_seeds(model: RiskModel, specs, seeds: SeedSet, use_gpu: bool) -> dict:
    """Seed vectors per signal, on the kind of device that embedded the inventory."""
    if not use_gpu:  # in this process, as rank.pipeline.sweep does
        return {s.name: s.embed_queries(seeds.table) for s in model.signals}
    import ray

    def embed(specs, names, table):
        return {n: s.embed_queries(table) for n, s in zip(names, _materialize(specs))}

    names = [s.name for s in model.signals]
    return ray.get(ray.remote(embed).options(num_gpus=1).remote(specs, names, seeds.table))


def _recall(
    path: Path, manifest, indexes, got: _Collected, model, specs, seeds, k, plan
) -> pa.Table:
    """Stage 3: one task per policy; their searches fan out over the shards."""
    import ray

    seed_vectors = _embed_seeds(model, specs, seeds, plan["use_gpu"])
    ids = {n: np.asarray(v, dtype=object) for n, v in got.ids.items()}
    ctx = ray.put(
        _RecallContext(str(path), manifest, indexes, ids, got.items, model.exemplars, model.lexical)
    )
    task = ray.remote(_recall_policy).options(max_retries=plan["max_retries"])
    policy_of = np.asarray(seeds.table.column("policy").to_pylist(), dtype=object)
    pending = []
    for policy in seeds.policies:  # recall's own policy order
        rows = np.flatnonzero(policy_of == policy)
        vecs = {
            n: SignalBatch(
                b.vectors[rows], b.ok[rows], [b.reasons[i] for i in rows] if b.reasons else []
            )
            for n, b in seed_vectors.items()
        }
        pending.append(task.remote(ctx, seeds.for_policy(policy), vecs, k))
    tables = [t for t in ray.get(pending) if t.num_rows]
    if not tables:
        return pa.table({ITEM_ID: pa.array([], pa.string()), "policy": pa.array([], pa.string())})
    table = pa.concat_tables(tables, promote_options="default")
    # One recall over all policies appends the items' metadata after all evidence columns.
    meta = [c for c in got.items.column_names if c in table.column_names and c not in KEY_COLUMNS]
    return table.select([c for c in table.column_names if c not in meta] + meta)


def _score_chunk(ranker, cands: pa.Table, variant: np.ndarray):
    # Full or cold-start model is chosen per policy over all candidates
    # (RiskRanker._variant_per_row); a chunk holding part of a policy must not choose again.
    ranker._variant_per_row = lambda table: variant
    return score_candidates(RiskModel(ranker, [], {}), cands)


def _rank(model: RiskModel, cands: pa.Table, chunk: int, max_retries: int):
    """Stage 4: score chunks of candidates in Ray tasks, in candidate order."""
    import ray

    if cands.num_rows == 0:
        return np.zeros(0), np.zeros(0), [], np.zeros(0, dtype=object)
    variant = model.ranker._variant_per_row(cands)
    ranker = ray.put(model.ranker)
    task = ray.remote(_score_chunk).options(max_retries=max_retries)
    starts = range(0, cands.num_rows, chunk)
    parts = ray.get(
        [task.remote(ranker, cands.slice(s, chunk), variant[s : s + chunk]) for s in starts]
    )
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        [r for p in parts for r in p[2]],
        np.concatenate([p[3] for p in parts]),
    )


# ----------------------------------------------------------------------------- the sweep


def _plan(resources: dict, *, use_gpu, concurrency, cpus_per_actor, num_shards) -> dict:
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


def sweep_ray(
    inventory: TableLike | Sequence[str | Path],
    seeds: SeedSet | TableLike,
    model: RiskModel | str | Path,
    *,
    out_dir: str | Path | None = None,
    budget: int | None = None,
    k: int = 1000,
    max_memory: int | str = "4G",
    index_key: str | None = None,
    address: str | None = None,
    num_shards: int | None = None,
    chunk_size: int = 2048,
    concurrency: int | None = None,
    cpus_per_actor: float | None = None,
    use_gpu: bool | None = None,
    rank_chunk_size: int = 50_000,
    max_restarts: int = -1,
    max_task_retries: int = -1,
    max_retries: int = 3,
    embedder: type[ItemEmbedder] = ItemEmbedder,
    embedder_kwargs: dict | None = None,
    show_progress: bool = True,
) -> SweepResult:
    """``rank.pipeline.sweep`` on a Ray cluster: the same queue, the same files in ``out_dir``.

    ``inventory``: a Parquet file, a directory of Parquet files (sorted path order, as pyarrow
    reads it), a list of Parquet paths, or a table. ``address``: the cluster to join
    (``"auto"``, ``"ray://head:10001"``); default: the one ``ray.init`` already joined, else a
    new local one, shut down at the end. ``num_shards``: index shards (default: one per CPU).
    ``concurrency``: embedding actors (default: one per GPU, else one per CPU), each with
    ``cpus_per_actor`` CPUs (default 1). ``chunk_size``: valid items per encoder call; the
    default is ``build_index``'s, which gives vectors bitwise equal to the single machine's
    (smaller chunks spread small inventories over more actors, equal to ~1e-7). ``max_restarts`` /
    ``max_task_retries`` (embedding and shard actors) and ``max_retries`` (tasks) are Ray's
    fault-tolerance knobs. ``embedder``: the actor class (``ItemEmbedder`` or a subclass),
    given ``embedder_kwargs`` as extra constructor arguments.

    The index is written as one FAISS file per shard (``index/<signal>/shards/``), listed in
    the manifest; ``index.sharded_index.ShardedIndex.load`` opens it.

    >>> res = sweep_ray("inventory/", seeds, "runs/model", out_dir="runs/sweep")  # doctest: +SKIP
    """
    import ray

    t0 = time.time()
    model = model if isinstance(model, RiskModel) else RiskModel.load(model)
    seeds = seeds if isinstance(seeds, SeedSet) else SeedSet.from_table(seeds)
    for s in model.signals:
        if type(s).build_index is not Signal.build_index:
            raise NotImplementedError(
                f"signal '{s.name}' ({type(s).__name__}) builds its own index type; the Ray "
                f"engine shards FAISS float indexes only: use rank.pipeline.sweep"
            )
    specs = model.info.get("signals") or [s.describe() for s in model.signals]
    names = [s.name for s in model.signals]
    require_text = len(model.signals) == 1 and isinstance(model.signals[0], TextEmbeddingSignal)
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="riskrank-sweep-"))

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, log_to_driver=show_progress)
    try:
        resources = ray.cluster_resources()
        plan = _plan(
            resources,
            use_gpu=use_gpu,
            concurrency=concurrency,
            cpus_per_actor=cpus_per_actor,
            num_shards=num_shards,
        )
        plan.update(
            chunk_size=chunk_size,
            embedder=embedder,
            embedder_kwargs=embedder_kwargs or {},
            index_key=index_key,
            max_memory=max_memory,
            max_restarts=max_restarts,
            max_task_retries=max_task_retries,
            max_retries=max_retries,
        )
        got = _embed(inventory, specs, names, require_text, plan, show_progress)
        t_embed = time.time() - t0
        manifest, indexes = _build_index(got, model, specs, out / "index", plan, t0)
        t_index = time.time() - t0
        cands = _recall(out / "index", manifest, indexes, got, model, specs, seeds, k, plan)
        t_recall = time.time() - t0 - t_index
        scores, proba, reasons, variant = _rank(model, cands, rank_chunk_size, max_retries)
        queue = build_queue(cands, scores, proba, reasons, variant, budget=budget)
        t_rank = time.time() - t0 - t_index - t_recall
        cluster = {
            "nodes": sum(1 for n in ray.nodes() if n.get("Alive")),
            "cpus": resources.get("CPU", 0),
            "gpus": resources.get("GPU", 0),
            **{key: plan[key] for key in ("actors", "cpus_per_actor", "use_gpu", "num_shards")},
        }
    finally:
        if started:
            ray.shutdown()

    recalled = len(set(cands.column(ITEM_ID).to_pylist())) if cands.num_rows else 0
    n_indexed = got.items.num_rows
    report = {
        "items_in": got.n_in,
        "items_indexed": n_indexed,
        "items_quarantined": got.quarantine.num_rows,
        "items_recalled": recalled,
        "items_not_recalled": n_indexed - recalled,
        "candidates": cands.num_rows,
        "queued": queue.num_rows,
        "policies": seeds.policies,
        "cold_start_policies": sorted(
            {p for p, v in zip(cands.column("policy").to_pylist(), variant) if v == "cold"}
        )
        if cands.num_rows
        else [],
        "seconds": {
            "embed": round(t_embed, 2),
            "index": round(t_index, 2),
            "recall": round(t_recall, 2),
            "rank": round(t_rank, 2),
            "total": round(time.time() - t0, 2),
        },
        "index": {
            n: {"key": e["index_key"], "count": e["count"], "shards": len(e["shards"])}
            for n, e in manifest["signals"].items()
        },
        "engine": "ray",
        "ray": cluster,
    }
    if report["items_in"] != report["items_indexed"] + report["items_quarantined"]:
        raise RuntimeError(f"item accounting broken: {report}")  # never silently lose items
    if out_dir:
        write_parquet(cands, out / "candidates.parquet")
        write_parquet(queue, out / "queue.parquet")
        write_parquet(got.quarantine, out / "quarantine.parquet")
        (out / "report.json").write_text(json.dumps(report, indent=2))
    return SweepResult(queue, cands, got.quarantine, report, out if out_dir else None)


__all__ = ["ItemEmbedder", "sweep_ray"]

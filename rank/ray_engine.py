"""Sweeps on a Ray cluster: the queue of ``rank.pipeline.sweep``, computed in parallel.

>>> result = sweep_ray("inventory/", seeds, "runs/model", out_dir="runs/sweep",
...                    address="auto", num_shards=8)                     # doctest: +SKIP

Stages, each exact, so that the queue equals the single-machine one item by item:

1. **index** (``index.ray_engine.build.build_index_ray``): Ray Data reads and validates the Parquet
   files, an actor pool embeds chunks of items (GPU actors where the cluster has GPUs), the
   IVF quantizer is trained once on a sample, shards are added in parallel, and one actor
   serves each shard.
2. **recall**: one Ray task per policy runs ``recall.recaller.recall`` unchanged against the
   sharded index: every search fans out to all shards and is merged exactly
   (``index.vectors.sharded.merge_topk``); exact evidence reads vectors from the shards.
3. **rank**: Ray tasks score chunks of candidates; the driver builds the queue (a global sort)
   and writes the outputs as ``sweep`` does (``rank.pipeline.finish_sweep``).

Faults: actors are restarted and their work retried, tasks are retried (Ray's knobs are
arguments). ``ray`` is imported inside functions: importing this module does not need it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from riskrank.index.ray_engine.build import RayIndex, build_index_ray
from riskrank.index.ray_engine.embed import ItemEmbedder, materialize_signals
from riskrank.index.schema import ITEM_ID
from riskrank.index.signals.base import SignalBatch
from riskrank.index.tables import TableLike
from riskrank.rank.output_lock import holds_output_lock
from riskrank.rank.pipeline import (
    RiskModel,
    SweepResult,
    calibrate_scores,
    finish_sweep,
    set_image_base_dir,
)
from riskrank.recall.candidates import KEY_COLUMNS
from riskrank.recall.recaller import DEFAULT_K, recall
from riskrank.recall.seeds import SeedSet

# ----------------------------------------------------------------------------- recall


def _recall_policy(index, seeds: pa.Table, seed_vectors: dict, k: int, exemplars, lexical):
    return recall(
        index,
        SeedSet(seeds),
        k=k,
        exemplars=exemplars,
        lexical=lexical,
        seed_vectors=seed_vectors,
        show_progress=False,
    )


def _embed_seeds(model: RiskModel, specs, options, seeds: SeedSet, use_gpu: bool) -> dict:
    """Seed vectors per signal, on the kind of device that embedded the inventory."""
    if not use_gpu:  # in this process, as rank.pipeline.sweep does
        return {s.name: s.embed_queries(seeds.table) for s in model.signals}
    import ray

    def embed(specs, options, names, table):
        signals = materialize_signals(specs, options)
        return {n: s.embed_queries(table) for n, s in zip(names, signals)}

    names = [s.name for s in model.signals]
    task = ray.remote(embed).options(num_gpus=1)
    return ray.get(task.remote(specs, options, names, seeds.table))


def _recall(built: RayIndex, model: RiskModel, specs, options, seeds: SeedSet, k: int, plan):
    """One task per policy; their searches fan out over the shards."""
    import ray

    seed_vectors = _embed_seeds(model, specs, options, seeds, plan["use_gpu"])
    # Actor handles and the item table, not paths: workers may be on other machines.
    index, exemplars, lexical = (
        ray.put(x) for x in (built.as_inventory_index(), model.exemplars, model.lexical)
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
        pending.append(task.remote(index, seeds.for_policy(policy), vecs, k, exemplars, lexical))
    tables = [t for t in ray.get(pending) if t.num_rows]
    if not tables:
        return pa.table({ITEM_ID: pa.array([], pa.string()), "policy": pa.array([], pa.string())})
    table = pa.concat_tables(tables, promote_options="default")
    # One recall over all policies appends the items' metadata after all evidence columns.
    meta = [c for c in built.items.column_names if c in table.column_names and c not in KEY_COLUMNS]
    return table.select([c for c in table.column_names if c not in meta] + meta)


# ----------------------------------------------------------------------------- rank


def _score_chunk(ranker, cands: pa.Table, variant: np.ndarray):
    # Full or cold-start model is chosen per policy over all candidates
    # (RiskRanker._variant_per_row); a chunk holding part of a policy must not choose again.
    ranker._variant_per_row = lambda table: variant
    return ranker.predict(cands), ranker.reasons(cands)


def _rank(model: RiskModel, cands: pa.Table, chunk: int, max_retries: int):
    """Stage 4: score chunks of candidates in Ray tasks, in candidate order."""
    import ray

    if cands.num_rows == 0:
        return calibrate_scores(model, cands, np.zeros(0), [], np.zeros(0, dtype=object))
    variant = model.ranker._variant_per_row(cands)
    ranker = ray.put(model.ranker)
    task = ray.remote(_score_chunk).options(max_retries=max_retries)
    starts = range(0, cands.num_rows, chunk)
    parts = ray.get(
        [task.remote(ranker, cands.slice(s, chunk), variant[s : s + chunk]) for s in starts]
    )
    # Calibrated on the driver over all candidates: a cold policy's base rate is estimated
    # on all of its rows, as the single machine does.
    scores = np.concatenate([p[0] for p in parts])
    return calibrate_scores(model, cands, scores, [r for p in parts for r in p[1]], variant)


# ----------------------------------------------------------------------------- the sweep


@holds_output_lock("out_dir", what="sweep output directory")
def sweep_ray(
    inventory: TableLike | Sequence[str | Path],
    seeds: SeedSet | TableLike,
    model: RiskModel | str | Path,
    *,
    out_dir: str | Path | None = None,
    budget: int | None = None,
    k: int | None = DEFAULT_K,
    max_memory: int | str = "4G",
    index_key: str | None = None,
    image_base_dir: str | Path | None = None,
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
    new local one, shut down at the end. ``image_base_dir``: as in ``sweep``. The index
    arguments (``num_shards``, ``chunk_size``, ``concurrency``, ``cpus_per_actor``, ``use_gpu``,
    the fault knobs, ``embedder``) are ``index.ray_engine.build.build_index_ray``'s;
    ``rank_chunk_size``: candidates per ranking task.

    The index is written to ``out_dir/index`` (one FAISS file and one vector file per shard);
    ``index.store.InventoryIndex.load`` opens it without Ray.

    >>> res = sweep_ray("inventory/", seeds, "runs/model", out_dir="runs/sweep")  # doctest: +SKIP
    """
    import ray

    t0 = time.time()
    model = model if isinstance(model, RiskModel) else RiskModel.load(model)
    set_image_base_dir(model, image_base_dir)  # the actors get it from the model's signals
    seeds = seeds if isinstance(seeds, SeedSet) else SeedSet.from_table(seeds)
    specs = model.info.get("signals") or [s.describe() for s in model.signals]
    options = {s.name: s.get_runtime_options() for s in model.signals}
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="riskrank-sweep-"))

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, log_to_driver=show_progress)
    try:
        built = build_index_ray(
            inventory,
            out / "index",
            specs=specs,
            options=options,
            max_memory=max_memory,
            key=index_key,
            num_shards=num_shards,
            chunk_size=chunk_size,
            concurrency=concurrency,
            cpus_per_actor=cpus_per_actor,
            use_gpu=use_gpu,
            max_restarts=max_restarts,
            max_task_retries=max_task_retries,
            max_retries=max_retries,
            embedder=embedder,
            embedder_kwargs=embedder_kwargs,
            show_progress=show_progress,
            overwrite=True,  # a sweep's index is its own, rebuilt each run
        )
        plan = {**built.manifest["ray"], "max_retries": max_retries}
        t_index = time.time() - t0
        cands = _recall(built, model, specs, options, seeds, k, plan)
        t_recall = time.time() - t0 - t_index
        scored = _rank(model, cands, rank_chunk_size, max_retries)
        resources = ray.cluster_resources()
        cluster = {
            "nodes": sum(1 for n in ray.nodes() if n.get("Alive")),
            "cpus": resources.get("CPU", 0),
            "gpus": resources.get("GPU", 0),
            **built.manifest["ray"],
        }
    finally:
        if started:
            ray.shutdown()
    seconds = {  # setup: loading the model, joining or starting Ray
        "setup": t_index - built.manifest["seconds"],
        "embed": built.manifest["embed_seconds"],
        "shard": built.manifest["seconds"] - built.manifest["embed_seconds"],
        "recall": t_recall,
        "rank": time.time() - t0 - t_index - t_recall,
    }
    return finish_sweep(
        cands,
        scored,
        built.quarantine,
        built.manifest,
        seeds,
        seconds,
        out_dir=out if out_dir else None,
        budget=budget,
        extra={"engine": "ray", "ray": cluster},
    )


__all__ = ["ItemEmbedder", "sweep_ray"]

"""``RaySweepEngine``: ``rank.pipeline.sweep(..., engine="ray")``'s steps on a Ray cluster.

>>> result = sweep("inventory/", seeds, "runs/model", out_dir="runs/sweep",
...                engine=RaySweepEngine(address="auto", num_shards=8))  # doctest: +SKIP

The sweep itself (model, seeds, queue, report, files) is ``rank.pipeline.sweep``'s; this engine
replaces the steps that parallelise, each exact, so that the queue equals the single-machine
one item by item:

1. **index** (``index.ray_engine.engine.RayEngine``): Ray Data reads and validates the Parquet
   files, an actor pool embeds chunks of items (GPU actors where the cluster has GPUs), the
   IVF quantizer is trained once on a sample, shards are added in parallel, and one actor
   serves each shard.
2. **recall**: one Ray task per policy runs ``recall.recaller.recall`` unchanged against the
   sharded index: every search fans out to all shards and is merged exactly
   (``index.vectors.sharded.merge_topk``); exact evidence reads vectors from the shards.
   Over a standing index each task starts from the last sweep's neighbourhoods
   (recall/neighbours.py: a copy made on the driver, which reads the version's content keys)
   and sends back the ones it found, so a daily sweep's recall grows with what changed here
   too.
3. **rank**: Ray tasks score chunks of candidates (``RiskRanker.score``, each chunk told the
   variant chosen over all candidates); the driver builds the queue (a global sort).

Faults: actors are restarted and their work retried, tasks are retried (Ray's knobs are
``RayEngine``'s fields). ``ray`` is imported inside functions: importing this module does not
need it.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa

from riskrank.index.ray_engine.embed import ItemEmbedder, materialize_signals
from riskrank.index.ray_engine.engine import PLAN_KEYS, RayEngine
from riskrank.index.run_log import get_logger
from riskrank.index.schema import ITEM_ID
from riskrank.index.standing import pinned
from riskrank.index.store import InventoryIndex
from riskrank.rank.model import RiskModel
from riskrank.rank.ranker import RiskRanker, ScoredCandidates
from riskrank.recall.candidates import KEY_COLUMNS
from riskrank.recall.neighbours import NeighbourMemo
from riskrank.recall.recaller import recall
from riskrank.recall.seeds import SeedSet, check_seed_vectors

log = get_logger(__name__)

# ----------------------------------------------------------------------------- recall


def _recall_policy(
    index, seeds: pa.Table, seed_vectors: dict, k: int, exemplars, lexical, neighbours
) -> tuple[pa.Table, dict]:
    """One policy's candidates, and the neighbourhoods its recall found (for the driver's
    ``NeighbourMemo``; ``neighbours``: its ``for_tasks`` copy, or None)."""
    table = recall(
        index,
        SeedSet(seeds),
        k=k,
        exemplars=exemplars,
        lexical=lexical,
        seed_vectors=seed_vectors,
        show_progress=False,
        neighbours=neighbours,
    )
    return table, neighbours.recorded() if neighbours is not None else {}


def _embed_seeds(model: RiskModel, seeds: SeedSet, use_gpu: bool) -> dict:
    """Seed vectors per signal, on the kind of device that embedded the inventory."""
    if not use_gpu:  # in this process, as the local engine does
        return {s.name: s.embed_queries(seeds.table) for s in model.signals}
    import ray

    specs = [s.describe() for s in model.signals]
    options = {s.name: s.get_runtime_options() for s in model.signals}

    def embed(specs, options, names, table):
        signals = materialize_signals(specs, options)
        return {n: s.embed_queries(table) for n, s in zip(names, signals)}

    names = [s.name for s in model.signals]
    task = ray.remote(embed).options(num_gpus=1)
    return ray.get(task.remote(specs, options, names, seeds.table))


def _recall(
    built: InventoryIndex,
    model: RiskModel,
    seeds: SeedSet,
    k: int,
    plan,
    neighbours: NeighbourMemo | None = None,
    seed_vectors: dict | None = None,
):
    """One task per policy; their searches fan out over the shards. ``neighbours``: the last
    sweep's neighbourhoods (recall/neighbours.py), copied for the tasks here (``for_tasks``);
    what the tasks found comes back into it (the caller saves it). ``seed_vectors``: the
    seeds embedded in this process already (used where the inventory was embedded on CPUs;
    on GPUs the seeds are embedded there, as the inventory was)."""
    import ray

    if seed_vectors is None or plan["use_gpu"]:
        seed_vectors = _embed_seeds(model, seeds, plan["use_gpu"])
    # Refused here, not inside a task (a task checks its policy's seeds again, in a worker).
    signals = [s for s in model.signals if s.name in built.signals]
    for warning in check_seed_vectors(seeds, seed_vectors, signals):
        log.warning(warning)
    # Actor handles and the item table, not paths: workers may be on other machines.
    memo = neighbours.for_tasks(built) if neighbours is not None else None
    index, exemplars, lexical, memo_ref = (
        ray.put(x) for x in (built, model.exemplars, model.lexical, memo)
    )
    task = ray.remote(_recall_policy).options(max_retries=plan["max_retries"])
    policy_of = np.asarray(seeds.table.column("policy").to_pylist(), dtype=object)
    pending = []
    # The tasks open the version's files again by path: pinned, updates meanwhile keep it.
    with pinned(built.path, reopens=True):
        for policy in seeds.policies:  # recall's own policy order
            rows = np.flatnonzero(policy_of == policy)
            vecs = {n: b.take(rows) for n, b in seed_vectors.items()}
            pending.append(
                task.remote(index, seeds.for_policy(policy), vecs, k, exemplars, lexical, memo_ref)
            )
        done = ray.get(pending)
    tables = []
    for table, recorded in done:
        if neighbours is not None:
            neighbours.add_recorded(recorded)
        if table.num_rows:
            tables.append(table)
    if not tables:
        return pa.table({ITEM_ID: pa.array([], pa.string()), "policy": pa.array([], pa.string())})
    table = pa.concat_tables(tables, promote_options="default")
    # One recall over all policies appends the items' metadata after all evidence columns.
    meta = [c for c in built.items.column_names if c in table.column_names and c not in KEY_COLUMNS]
    return table.select([c for c in table.column_names if c not in meta] + meta)


# ----------------------------------------------------------------------------- rank


def _score_chunk(ranker: RiskRanker, cands: pa.Table, variant: np.ndarray) -> ScoredCandidates:
    return ranker.score(cands, variant=variant, calibrate=False)


def _rank(
    ranker: RiskRanker, cands: pa.Table, chunk: int, max_retries: int, matched=None
) -> ScoredCandidates:
    """Score chunks of candidates in Ray tasks, in candidate order. The full or cold-start
    booster is chosen per policy over all candidates, so each chunk is told its rows'."""
    import ray

    if cands.num_rows == 0:
        return ranker.score(cands, matched=matched)
    variant = ranker.variants(cands)
    ref = ray.put(ranker)
    task = ray.remote(_score_chunk).options(max_retries=max_retries)
    starts = range(0, cands.num_rows, chunk)
    parts = [task.remote(ref, cands.slice(s, chunk), variant[s : s + chunk]) for s in starts]
    # Calibrated on the driver over all candidates: a cold policy's base rate is estimated
    # on all of its rows, as the local engine does.
    scored = ScoredCandidates.concat(ray.get(parts))
    return ranker.calibrate_scored(
        scored,
        cands.column("policy").to_pylist(),
        covered=ranker.covered(cands),
        matched=matched,
    )


# ----------------------------------------------------------------------------- the engine


@dataclass
class RaySweepEngine(RayEngine):
    """``sweep(..., engine=RaySweepEngine(...))`` (or ``engine="ray"``): ``RayEngine``'s
    index build, then recall and ranking in Ray tasks; the same queue and files as the local
    engine. ``address``: the cluster to join (``"auto"``, ``"ray://head:10001"``); default:
    the one ``ray.init`` already joined, else a new local one, shut down at the end.
    ``rank_chunk_size``: candidates per ranking task. The other fields are ``RayEngine``'s.
    """

    rank_chunk_size: int = 50_000

    @classmethod
    def from_engine(cls, engine: RayEngine, **more) -> RaySweepEngine:
        """The sweep engine with ``engine``'s settings (and ``more``)."""
        return cls(**{f.name: getattr(engine, f.name) for f in fields(engine)}, **more)

    @contextlib.contextmanager
    def cluster(self, show_progress: bool) -> Iterator[None]:
        import ray

        started = not ray.is_initialized()
        if started:
            # No address: RAY_ADDRESS (a Ray job's), else a private local instance, never a
            # cluster `ray start` left running on this machine (ray.init(None) joins that one).
            address = self.address or os.environ.get("RAY_ADDRESS") or "local"
            ray.init(address=address, log_to_driver=show_progress)
        try:
            yield
        finally:
            if started:
                # Ray's handles left in reference cycles are freed while its worker is alive,
                # not by a later collection after shutdown (a suspected cause of a rare
                # segmentation fault after a Ray sweep, in the same process).
                gc.collect()
                ray.shutdown()

    def recall(
        self,
        index: InventoryIndex,
        model: RiskModel,
        seeds: SeedSet,
        *,
        k: int | None,
        show_progress: bool,
        neighbours=None,
        seed_vectors=None,
    ) -> pa.Table:
        return _recall(index, model, seeds, k, self.plan_, neighbours, seed_vectors)

    def score(
        self, ranker: RiskRanker, candidates: pa.Table, *, matched: np.ndarray | None = None
    ) -> ScoredCandidates:
        return _rank(ranker, candidates, self.rank_chunk_size, self.max_retries, matched)

    def report(self) -> dict:
        import ray

        resources = ray.cluster_resources()
        cluster = {
            "nodes": sum(1 for n in ray.nodes() if n.get("Alive")),
            "cpus": resources.get("CPU", 0),
            "gpus": resources.get("GPU", 0),
            **{k: self.plan_[k] for k in PLAN_KEYS},
        }
        return {"ray": cluster}


__all__ = ["ItemEmbedder", "RaySweepEngine"]

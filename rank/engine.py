"""Sweep engines: ``index.engine``'s strategies, plus the sweep steps that parallelise.

``rank.pipeline.sweep(..., engine=...)`` owns the sweep: loading the model and seeds, the
index (``index.build.build_index`` with the same engine), the queue, the report, the item
accounting check and the files. A sweep engine adds to an index engine only:

``cluster``  the context the sweep runs in (Ray: join or start a cluster, shut down a started one)
``recall``   seeds -> candidate table, against the index the engine built (``neighbours``: the
             last sweep's neighbourhoods, recall/neighbours.py; an engine may ignore it)
``score``    candidates -> ``rank.ranker.ScoredCandidates``
``report``   what the engine adds to the sweep report

``LocalSweepEngine`` runs them in this process; ``rank.ray_engine.RaySweepEngine`` on Ray.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from riskrank.index.engine import ENGINES, Engine, LocalEngine
from riskrank.index.signals.base import SignalBatch
from riskrank.index.store import InventoryIndex
from riskrank.rank.model import RiskModel
from riskrank.rank.ranker import RiskRanker, ScoredCandidates
from riskrank.recall.neighbours import NeighbourMemo
from riskrank.recall.recaller import recall
from riskrank.recall.seeds import SeedSet


@runtime_checkable
class SweepEngine(Engine, Protocol):
    """An index engine that also runs the sweep's recall and scoring."""

    def cluster(self, show_progress: bool) -> contextlib.AbstractContextManager: ...

    def recall(
        self,
        index: InventoryIndex,
        model: RiskModel,
        seeds: SeedSet,
        *,
        k: int | None,
        show_progress: bool,
        neighbours: NeighbourMemo | None = None,
        seed_vectors: Mapping[str, SignalBatch] | None = None,
    ) -> pa.Table: ...

    def score(
        self, ranker: RiskRanker, candidates: pa.Table, *, matched: np.ndarray | None = None
    ) -> ScoredCandidates: ...

    def report(self) -> dict: ...


class LocalSweepEngine(LocalEngine):
    """The whole sweep in this process."""

    @contextlib.contextmanager
    def cluster(self, show_progress: bool) -> Iterator[None]:
        yield

    def recall(
        self,
        index: InventoryIndex,
        model: RiskModel,
        seeds: SeedSet,
        *,
        k: int | None,
        show_progress: bool,
        neighbours: NeighbourMemo | None = None,
        seed_vectors: Mapping[str, SignalBatch] | None = None,
    ) -> pa.Table:
        return recall(
            index,
            seeds,
            k=k,
            exemplars=model.exemplars,
            lexical=model.lexical,
            show_progress=show_progress,
            neighbours=neighbours,
            seed_vectors=seed_vectors,
        )

    def score(
        self, ranker: RiskRanker, candidates: pa.Table, *, matched: np.ndarray | None = None
    ) -> ScoredCandidates:
        return ranker.score(candidates, matched=matched)

    def report(self) -> dict:
        return {}


def resolve_sweep_engine(engine: str | Engine) -> SweepEngine:
    """``"local"``, ``"ray"``, a sweep engine, or an index engine (a ``RayEngine`` becomes a
    ``RaySweepEngine`` with the same settings)."""
    if isinstance(engine, SweepEngine):
        return engine
    if engine == "local" or isinstance(engine, LocalEngine):
        return LocalSweepEngine()
    from riskrank.index.ray_engine.engine import RayEngine
    from riskrank.rank.ray_engine import RaySweepEngine

    if engine == "ray":
        return RaySweepEngine()
    if isinstance(engine, RayEngine):
        return RaySweepEngine.from_engine(engine)
    raise ValueError(f"engine: expected one of {list(ENGINES)} or an Engine, got {engine!r}")

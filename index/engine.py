"""Engines: the steps of ``build_index`` that parallelise, as a strategy.

``build_index`` (``index.build``) owns everything that must be the same whichever engine runs
it: the overwrite rule, the signals check, the chunk/resume format, the quarantine rule, the
files and the manifest. An engine supplies only the steps it can run in parallel, as
autofaiss's ``distributed=`` and clip-retrieval's ``SequentialDistributor`` /
``PysparkDistributor`` do:

``session``       the context the steps run in (Ray: ordered Ray Data execution)
``read``          read and validate the inventory -> ``ValidItems``
``embed``         embed the chunks not on disk yet, save each finished one -> an ``Embedding``
``index_signal``  build and write one signal's index from what ``embed`` returned -> ``BuiltSignal``
``open``          the ``InventoryIndex`` the build returns

``LocalEngine`` runs them in this process; ``index.ray_engine.engine.RayEngine`` on a Ray
cluster. ``resolve_engine("local" | "ray" | engine)`` picks one.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from riskrank.index import progress
from riskrank.index.chunks import Encoded, collect_chunks, embed_chunk, load_chunk, save_chunk
from riskrank.index.content_digest import row_digests
from riskrank.index.schema import validate_inventory
from riskrank.index.signals.base import Signal
from riskrank.index.store import InventoryIndex
from riskrank.index.tables import TableLike
from riskrank.index.vectors.stored import StoredVectors, save_rows


@dataclass
class ValidItems:
    """The inventory after validation, as every engine hands it on."""

    items: pa.Table  # valid rows in input order (content columns may still be there)
    quarantined: pa.Table  # index.schema.QUARANTINE_SCHEMA rows
    n_in: int  # rows read
    keys: list[str]  # per valid row, index.content_digest.row_digests (what chunks are named by)
    source: object = None  # the engine's own handle on the rows (Ray: blocks in the store)


@dataclass
class BuiltSignal:
    """One signal's index as an engine built and wrote it under the signal's directory."""

    index: object  # what searches it (a VectorIndex, shard actors, ...)
    files: list[str]  # written by the engine, relative to the signal's directory
    index_files: list[str]  # of which the index itself (what ``index_bytes`` counts)
    seconds: float
    layout: dict = field(default_factory=dict)  # extra manifest keys (e.g. ``shards``)
    ids: np.ndarray | None = None  # position -> item_id (set by build_index)
    evidence: pa.Table | None = None  # the signal's per-item evidence, if it records any (idem)


class Embedding(Protocol):
    """What ``Engine.embed`` returns: per signal, per valid item, in item order."""

    ok: dict[str, np.ndarray]
    reasons: dict[str, list[str | None]]
    evidence: dict[str, dict[str, np.ndarray]]
    chunks: int
    resumed: int


@runtime_checkable
class Engine(Protocol):
    """The steps an engine replaces (see the module docstring)."""

    name: str
    #: Whether ``build_index``'s result can be reopened from disk by a later run (a sweep
    #: reuses an index of the same inventory only then).
    reopens: bool

    def session(self, show_progress: bool) -> contextlib.AbstractContextManager: ...

    def read(self, inventory, *, require_text: bool, base_dirs: list) -> ValidItems: ...

    def embed(
        self,
        valid: ValidItems,
        signals: list[Signal],
        files: list[Path],
        *,
        chunk_size: int,
        show_progress: bool,
    ) -> Embedding: ...

    def index_signal(
        self, emb: Embedding, signal: Signal, sdir: Path, *, key, max_memory, use_gpu
    ) -> BuiltSignal: ...

    def manifest(self) -> dict: ...

    def open(
        self,
        path: Path,
        manifest: dict,
        built: dict[str, BuiltSignal],
        items: pa.Table,
        signals: list[Signal],
        use_gpu: bool | None,
    ) -> InventoryIndex: ...


class LocalEngine:
    """Every step in this process, one chunk after the other."""

    name = "local"
    reopens = True

    @contextlib.contextmanager
    def session(self, show_progress: bool) -> Iterator[None]:
        yield

    def read(self, inventory: TableLike, *, require_text: bool, base_dirs: list) -> ValidItems:
        items, quarantined = validate_inventory(inventory, require_text=require_text)
        keys = row_digests(items, base_dirs=base_dirs)
        return ValidItems(items, quarantined, items.num_rows + quarantined.num_rows, keys)

    def embed(
        self,
        valid: ValidItems,
        signals: list[Signal],
        files: list[Path],
        *,
        chunk_size: int,
        show_progress: bool,
    ) -> Encoded:
        """Chunk ``i`` is the valid items ``[i * chunk_size, (i + 1) * chunk_size)``; each is
        loaded from ``files[i]`` when a killed run (of either engine) finished it, else
        embedded and saved there before the next starts (so an error leaves on disk exactly
        the chunks before it)."""
        names = [s.name for s in signals]
        by_name = dict(zip(names, signals))
        counts = {"resumed": 0}

        def chunk_tables():  # one at a time: collect_chunks copies each out and drops it
            bar = progress.bar(
                files, show=show_progress, desc="chunks " + ",".join(names), unit="chunk"
            )
            for i, path in enumerate(bar):
                if path.exists():
                    counts["resumed"] += 1
                    yield load_chunk(path)
                    continue
                chunk = valid.items.slice(i * chunk_size, chunk_size)
                table = embed_chunk(by_name, chunk, show_progress=show_progress)
                save_chunk(table, path)
                yield table

        dims = {s.name: s.dim for s in signals}
        # The vectors go to files beside the chunks as they arrive (``index_signal`` moves
        # them into the index): never all in memory.
        spill = Path(files[0]).parent if files else None
        out = collect_chunks(chunk_tables(), valid.items.num_rows, names, dims, spill)
        resumed = counts["resumed"]
        out.chunks, out.resumed = len(files), resumed
        return out

    def index_signal(
        self, emb: Encoded, signal: Signal, sdir: Path, *, key, max_memory, use_gpu
    ) -> BuiltSignal:
        # The vectors are written first and released, and the index is built from the file
        # block by block: an IVF-Flat index is itself a copy of them, and holding both was
        # half of a 1M-item sweep's peak (2 x 1.5 GB, issue 15). No copy when every row has
        # this signal (the usual text-only inventory).
        vecs, ok = emb.vectors.pop(signal.name), emb.ok[signal.name]
        if isinstance(vecs, StoredVectors) and ok.all():
            os.replace(vecs.path, sdir / "vectors.npy")  # written while embedding: no copy
        else:
            save_rows(sdir / "vectors.npy", vecs, np.flatnonzero(ok))
        del vecs
        t0 = time.time()
        stored = StoredVectors(sdir / "vectors.npy")
        index = signal.build_index(stored, key=key, max_memory=max_memory, use_gpu=use_gpu)
        seconds = time.time() - t0
        index.save(sdir / "index.faiss")
        return BuiltSignal(index, ["index.faiss", "vectors.npy"], ["index.faiss"], seconds)

    def manifest(self) -> dict:
        return {}

    def open(
        self,
        path: Path,
        manifest: dict,
        built: dict[str, BuiltSignal],
        items: pa.Table,
        signals: list[Signal],
        use_gpu: bool | None,
    ) -> InventoryIndex:
        # Read back from the files just written: the built indexes go first, so that an index
        # is never held twice (1.5 GB per copy of a 1M-item IVF-Flat index).
        for b in built.values():
            b.index = None
        return InventoryIndex.load(
            path, verify=False, use_gpu=use_gpu, signals={s.name: s for s in signals}
        )


ENGINES = ("local", "ray")


def resolve_engine(engine: str | Engine) -> Engine:
    """``"local"``, ``"ray"`` (a ``RayEngine`` with its defaults) or an engine instance."""
    if engine == "local":
        return LocalEngine()
    if engine == "ray":
        from riskrank.index.ray_engine.engine import RayEngine

        return RayEngine()
    if isinstance(engine, Engine):
        return engine
    raise ValueError(f"engine: expected one of {list(ENGINES)} or an Engine, got {engine!r}")


def chunk_keys(keys: Sequence[str], chunk_size: int) -> list[Sequence[str]]:
    """The row keys of each chunk of ``chunk_size`` consecutive valid items (every engine's)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected >= 1, got {chunk_size}")
    return [keys[s : s + chunk_size] for s in range(0, len(keys), chunk_size)]

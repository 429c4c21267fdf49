"""Resumable, chunked encoding: one chunk format for every engine.

An inventory's valid items are cut into chunks of ``chunk_size`` consecutive items; each chunk
is embedded by every signal at once into one Arrow table (per signal: vector, ok flag, reason,
and the per-row evidence the signal records) and saved under ``<index>/_work/`` as
``chunk-<n>-<ids digest>-<signals digest>.parquet``. A build that dies keeps the chunks it
finished; the next build of the same items with the same signals, under either engine, loads
them instead of embedding again. Where workers embed in parallel (Ray), a worker writes
``<chunk>.staged`` and the driver commits it (``commit_chunk``, a rename) in chunk order, so
the chunks on disk when a build raises are exactly the ones its driver saw finish.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from riskrank.index.manifest import ids_digest
from riskrank.index.signals.base import Signal
from riskrank.index.tables import write_parquet
from riskrank.index.vectors.stored import StoredVectors, open_npy

WORK = "_work"
# Items per chunk unless asked otherwise: texts are batched by padded length within a chunk,
# so a larger one batches a little better; a killed run keeps only the chunks it finished.
DEFAULT_CHUNK_SIZE = 2048


def column(kind: str, signal: str) -> str:
    """Name of a chunk column: ``kind`` is ``vec``, ``ok``, ``why`` or ``ev``."""
    return f"__rr_{kind}_{signal}"


def evidence_prefix(signal: str) -> str:
    return column("ev", signal) + "__"  # + the evidence's own name, e.g. pdq_quality


def embed_chunk(
    signals: dict[str, Signal], chunk: pa.Table, *, show_progress: bool = False
) -> pa.Table:
    """Every signal's output for the rows of ``chunk``, as one table (the chunk format).
    ``show_progress``: each signal's own bar within the chunk (a chunk is 2,048 items: minutes
    of MiniLM on a CPU, so a bar per chunk alone stood still)."""
    cols: dict[str, pa.Array] = {}
    for name, signal in signals.items():
        out = signal.embed_items(chunk, show_progress=show_progress)
        flat = pa.array(np.ascontiguousarray(out.vectors).ravel())
        cols[column("vec", name)] = pa.FixedSizeListArray.from_arrays(flat, out.vectors.shape[1])
        cols[column("ok", name)] = pa.array(np.asarray(out.ok, bool))
        cols[column("why", name)] = pa.array(out.reasons or [None] * chunk.num_rows, pa.string())
        for key, values in (getattr(out, "evidence", None) or {}).items():
            cols[evidence_prefix(name) + key] = pa.array(np.asarray(values))
    return pa.table(cols)


def vectors_of(table: pa.Table, name: str) -> np.ndarray:
    """The ``(rows, width)`` vectors of signal ``name`` in a chunk table (float32 or uint8)."""
    col = table.column(column("vec", name)).combine_chunks()
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(-1, col.type.list_size)


def flags_of(table: pa.Table, name: str) -> tuple[np.ndarray, list[str | None]]:
    """Per row: did signal ``name`` embed it, and why not."""
    ok = np.asarray(table.column(column("ok", name)).to_pylist(), bool)
    return ok, table.column(column("why", name)).to_pylist()


def evidence_of(table: pa.Table, name: str) -> dict[str, np.ndarray]:
    prefix = evidence_prefix(name)
    return {
        c[len(prefix) :]: table.column(c).to_numpy()
        for c in table.column_names
        if c.startswith(prefix)
    }


def signals_digest(specs: Sequence[dict], names: Sequence[str]) -> str:
    """What the chunks were embedded with: a saved chunk is reused only by the same signals."""
    text = json.dumps([list(specs), list(names)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def chunk_files(
    work: Path, chunk_ids: Iterable[Sequence[object]], specs: Sequence[dict], names: Sequence[str]
) -> list[Path]:
    """Where each chunk's embedding is saved (named by its item ids and the signals)."""
    what = signals_digest(specs, names)
    return [
        Path(work) / f"chunk-{i:06d}-{ids_digest(ids)}-{what}.parquet"
        for i, ids in enumerate(chunk_ids)
    ]


def staged_path(path: str | Path) -> Path:
    """Where a worker writes a chunk before the driver commits it (never read as a chunk)."""
    path = Path(path)
    return path.with_name(path.name + ".staged")


def commit_chunk(path: str | Path) -> None:
    """Make a staged chunk a finished one (an atomic rename): from now on a resume uses it."""
    staged_path(path).replace(path)


def discard_staged(files: Sequence[str | Path]) -> None:
    """Forget chunks staged but never committed (by a build that failed)."""
    for path in files:
        staged_path(path).unlink(missing_ok=True)


class ChunkCommitter:
    """Commits chunks in order as their rows arrive from parallel workers (output blocks come
    in chunk order but may be cut differently from the chunks): a chunk is committed once all
    its rows have arrived, and never before the chunks ahead of it.

    >>> c = ChunkCommitter(["a", "b"], [3, 2], commit=print)
    >>> c.received(2); c.received(2)
    a
    >>> c.received(1)
    b
    """

    def __init__(self, files: Sequence[str | Path], sizes: Sequence[int], commit=commit_chunk):
        self.files, self.ends, self.commit = list(files), np.cumsum(sizes), commit
        self.rows, self.committed = 0, 0

    def received(self, rows: int) -> None:
        self.rows += rows
        while self.committed < len(self.files) and self.rows >= self.ends[self.committed]:
            self.commit(self.files[self.committed])
            self.committed += 1


def load_chunk(path: str | Path) -> pa.Table:
    return pq.read_table(path)


def save_chunk(table: pa.Table, path: str | Path) -> None:
    write_parquet(table, path)


@dataclass
class Encoded:
    """Every valid item's output, per signal, in item order (the local engine's result)."""

    vectors: dict[str, np.ndarray | StoredVectors]
    ok: dict[str, np.ndarray]
    reasons: dict[str, list[str | None]]
    evidence: dict[str, dict[str, np.ndarray]]
    chunks: int = 0
    resumed: int = 0


def collect_chunks(
    tables: Iterable[pa.Table],
    n_rows: int,
    names: Sequence[str],
    dims: dict[str, int],
    spill: Path | None = None,
) -> Encoded:
    """One ``Encoded`` from chunk tables arriving in order, copied into arrays allocated once:
    only the chunk in hand exists twice (holding every chunk table and then concatenating
    held all the vectors twice: 1.5 GB extra at 1M MiniLM vectors).

    ``spill``: a directory where each signal's vectors are written as they arrive
    (``vectors-<signal>.npy``, returned as ``StoredVectors``) instead of held: the index is
    built from that file, and a 5M-item inventory's 7.3 GB of float32 vectors are never in
    memory at once."""
    out = Encoded({}, {}, {}, {})
    evs: dict[str, list[dict[str, np.ndarray]]] = {n: [] for n in names}
    sinks: dict[str, BinaryIO] = {}
    start = 0
    for table in tables:
        stop = start + table.num_rows
        for name in names:
            vecs = vectors_of(table, name)
            if name not in out.ok:
                out.ok[name] = np.empty(n_rows, bool)
                out.reasons[name] = []
                if spill is None:
                    out.vectors[name] = np.empty((n_rows, vecs.shape[1]), vecs.dtype)
                else:
                    sinks[name] = open_npy(
                        spill / f"vectors-{name}.npy", n_rows, vecs.shape[1], vecs.dtype
                    )
            if spill is None:
                out.vectors[name][start:stop] = vecs
            else:
                np.ascontiguousarray(vecs).tofile(sinks[name])
            ok, why = flags_of(table, name)
            out.ok[name][start:stop] = ok
            out.reasons[name] += why
            evs[name].append(evidence_of(table, name))
        start = stop
    for sink in sinks.values():
        sink.close()
    if start != n_rows:
        raise RuntimeError(f"chunks hold {start} rows, expected {n_rows}")
    for name, sink in sinks.items():
        out.vectors[name] = StoredVectors(sink.name)
    for name in names:
        if name not in out.vectors:  # no rows at all
            out.vectors[name] = np.zeros((0, dims[name]), np.float32)
            out.ok[name], out.reasons[name] = np.zeros(0, bool), []
        first = evs[name][0] if evs[name] else {}
        out.evidence[name] = {k: np.concatenate([e[k] for e in evs[name]]) for k in first}
    return out

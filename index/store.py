"""A persisted, multi-signal inventory index: a directory with a manifest.

Layout::

    my-index/
      manifest.json          how it was made: signals (encoder, version, dim, metric), index
                             type, counts, file checksums
      items.parquet          item_id + metadata columns, in index order (no content bytes)
      quarantine.parquet     rows that could not be indexed, with the reason
      <signal>/index.faiss   the FAISS index of that signal (positions = rows of ids.parquet)
      <signal>/ids.parquet   position -> item_id
      <signal>/vectors.npy   the vectors themselves (exact evidence, density, re-ranking)
      <signal>/shards/       instead of index.faiss + vectors.npy when built on Ray
                             (index.ray_build): shard-NNNNN.faiss + shard-NNNNN.npy per shard

Encoding runs in chunks cached under ``_work/``; a killed build resumes from the last finished
chunk and the final index is identical. The manifest is written last, so a directory without
one is never mistaken for a finished index.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from .schema import IMAGE_BYTES, ITEM_ID, quarantine_table, validate_inventory
from .sharded_index import ShardedIndex, ShardVectors
from .signals import Signal, TextEmbeddingSignal, signal_from_manifest
from .tables import SchemaError, TableLike, write_parquet

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class IndexMismatchError(ValueError):
    """A query encoder differs from the one the index was built with."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _ids_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\x1f".join(ids).encode()).hexdigest()[:16]


def _version() -> str:
    try:
        return metadata.version("riskrank")
    except metadata.PackageNotFoundError:
        return "dev"


def _encode_chunked(
    signal: Signal, items: pa.Table, work: Path, chunk_size: int, show_progress: bool
) -> tuple[np.ndarray, np.ndarray, list[str | None], dict[str, np.ndarray]]:
    """Encode ``items`` chunk by chunk, reusing chunks a killed run already finished.

    Also returns the signal's per-row evidence (``batch.evidence``, e.g. PDQ quality), if any.
    """
    work.mkdir(parents=True, exist_ok=True)
    ids = items.column(ITEM_ID).to_pylist()
    vectors, oks, reasons = [], [], []
    evidence: dict[str, list[np.ndarray]] = {}
    starts = range(0, items.num_rows, chunk_size)
    bar = tqdm(starts, desc=f"encode {signal.name}", unit="chunk", disable=not show_progress)
    for i, start in enumerate(bar):
        part = work / f"part-{i:06d}.npz"
        chunk_ids = ids[start : start + chunk_size]
        digest = _ids_digest(chunk_ids)
        if part.exists():
            with np.load(part, allow_pickle=False) as z:
                if str(z["digest"]) == digest:
                    vectors.append(z["vectors"])
                    oks.append(z["ok"])
                    reasons.extend(None if r == "" else str(r) for r in z["reasons"])
                    for k in z.files:
                        if k.startswith("evidence__"):
                            evidence.setdefault(k[len("evidence__") :], []).append(z[k])
                    continue
        batch = signal.embed_items(items.slice(start, len(chunk_ids)), show_progress=False)
        extra = dict(getattr(batch, "evidence", None) or {})
        tmp = work / f"part-{i:06d}.tmp.npz"
        np.savez(
            tmp,
            vectors=batch.vectors,
            ok=batch.ok,
            reasons=np.array([r or "" for r in batch.reasons], dtype=str),
            digest=np.array(digest),
            **{f"evidence__{k}": np.asarray(v) for k, v in extra.items()},
        )
        tmp.replace(part)
        vectors.append(batch.vectors)
        oks.append(batch.ok)
        reasons.extend(batch.reasons)
        for k, v in extra.items():
            evidence.setdefault(k, []).append(np.asarray(v))
    if not vectors:
        return np.zeros((0, signal.dim), np.float32), np.zeros(0, bool), [], {}
    merged = {k: np.concatenate(v) for k, v in evidence.items()}
    return np.concatenate(vectors), np.concatenate(oks), reasons, merged


@dataclass
class SignalIndex:
    """One signal's part of an inventory index."""

    signal: Signal
    entry: dict
    index: object
    ids: np.ndarray  # position -> item_id
    directory: Path
    _vectors: np.ndarray | None = None
    _evidence: pa.Table | None = None  # given instead of read (workers without the files)

    @property
    def evidence(self) -> pa.Table | None:
        """Per-item evidence the signal recorded (``item_id`` + e.g. ``pdq_quality``), in index
        order, or None if it records none."""
        if self._evidence is not None:
            return self._evidence
        path = self.directory / "evidence.parquet"
        return pq.read_table(path) if path.exists() else None

    @property
    def vectors(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = np.load(self.directory / "vectors.npy", mmap_mode="r")
        return self._vectors


class InventoryIndex:
    """Searchable inventory: one index per signal plus the item table.

    >>> idx = build_index(items, "runs/idx")           # doctest: +SKIP
    >>> idx = InventoryIndex.load("runs/idx")          # doctest: +SKIP
    >>> idx.signals["text"].ids[:3]                    # doctest: +SKIP
    """

    def __init__(self, path: Path, manifest: dict, signals: dict[str, SignalIndex]):
        self.path = path
        self.manifest = manifest
        self.signals = signals
        self._items: pa.Table | None = None

    @property
    def items(self) -> pa.Table:
        """item_id + metadata of every indexed item."""
        if self._items is None:
            self._items = pq.read_table(self.path / "items.parquet")
        return self._items

    @property
    def quarantine(self) -> pa.Table:
        return pq.read_table(self.path / "quarantine.parquet")

    @property
    def num_items(self) -> int:
        return int(self.manifest["items"]["indexed"])

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        verify: bool = True,
        use_gpu: bool | None = None,
        signals: dict[str, Signal] | None = None,
    ) -> InventoryIndex:
        """Open an index directory, checking the manifest and (``verify``) file checksums.

        ``signals`` may supply query encoders (e.g. an already-loaded model); each is checked
        against what the manifest recorded and refused with ``IndexMismatchError`` if different.
        """
        path = Path(path)
        mpath = path / MANIFEST
        if not mpath.exists():
            raise FileNotFoundError(
                f"{path} is not a riskrank index (no {MANIFEST}; an interrupted build leaves none: "
                f"run the build again to resume it)"
            )
        manifest = json.loads(mpath.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise SchemaError(
                f"{mpath}: format_version {manifest.get('format_version')} unsupported"
            )
        loaded = {}
        for name, entry in manifest["signals"].items():
            sdir = path / name
            if verify:
                for fname, digest in entry["checksums"].items():
                    if _sha256(sdir / fname) != digest:
                        raise SchemaError(
                            f"{sdir / fname}: checksum mismatch (file changed or corrupt)"
                        )
            signal = (signals or {}).get(name) or signal_from_manifest(entry)
            why = signal.compatible_with(entry)
            if why:
                raise IndexMismatchError(
                    f"signal '{name}': query encoder does not match the index ({why}); "
                    f"rebuild the index or query with the encoder it was built with"
                )
            ids = pq.read_table(sdir / "ids.parquet").column(ITEM_ID).to_numpy(zero_copy_only=False)
            if "shards" in entry:  # written by index.ray_build: searched shard by shard here
                index = ShardedIndex.load(sdir, entry)
                vectors = ShardVectors.load(sdir, entry)
            else:
                index = signal.load_index(sdir / "index.faiss", entry, use_gpu=use_gpu)
                vectors = None
            loaded[name] = SignalIndex(signal, entry, index, ids, sdir, _vectors=vectors)
        return cls(path, manifest, loaded)

    def check_signal(self, name: str, signal: Signal) -> None:
        """Refuse a query signal that differs from the one this index was built with."""
        if name not in self.signals:
            raise IndexMismatchError(
                f"index {self.path} has no '{name}' signal ({list(self.signals)})"
            )
        why = signal.compatible_with(self.signals[name].entry)
        if why:
            raise IndexMismatchError(f"signal '{name}' does not match index {self.path}: {why}")


def build_index(
    inventory: TableLike,
    path: str | Path,
    *,
    signals: Sequence[Signal] | None = None,
    max_memory: int | str = "4G",
    key: str | None = None,
    use_gpu: bool | None = None,
    chunk_size: int = 2048,
    show_progress: bool = True,
    overwrite: bool = False,
) -> InventoryIndex:
    """Embed an inventory with each signal and persist one FAISS index per signal.

    Resumable: chunks already encoded by an interrupted run of the same call are reused.

    >>> idx = build_index("inventory.parquet", "runs/idx", max_memory="2G")  # doctest: +SKIP
    """
    path = Path(path)
    if (path / MANIFEST).exists():
        if not overwrite:
            raise FileExistsError(f"{path} already holds an index; pass overwrite=True to rebuild")
        for child in path.iterdir():
            if child.name != "_work":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    signals = list(signals) if signals else [TextEmbeddingSignal()]
    names = [s.name for s in signals]
    if len(set(names)) != len(names):
        raise ValueError(f"signals: duplicate names {names}")
    needs_text = any(isinstance(s, TextEmbeddingSignal) for s in signals) and len(signals) == 1
    items, quarantined = validate_inventory(inventory, require_text=needs_text)
    path.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    per_signal = {}
    ok_any = np.zeros(items.num_rows, bool)
    why_not: list[list[str]] = [[] for _ in range(items.num_rows)]
    for signal in signals:
        vecs, ok, reasons, evidence = _encode_chunked(
            signal, items, path / "_work" / signal.name, chunk_size, show_progress
        )
        per_signal[signal.name] = (vecs, ok, evidence)
        ok_any |= ok
        for i, r in enumerate(reasons):
            if r:
                why_not[i].append(f"{signal.name}: {r}")

    # Items no signal could use are quarantined, never silently dropped.
    ids_all = items.column(ITEM_ID).to_pylist()
    extra = [
        {ITEM_ID: ids_all[i], "row": -1, "stage": "encode", "reason": "; ".join(why_not[i])}
        for i in np.flatnonzero(~ok_any)
    ]
    if extra:
        quarantined = pa.concat_tables([quarantined, quarantine_table(extra)])
    keep = pa.array(ok_any)
    meta_cols = [c for c in items.column_names if c != IMAGE_BYTES]
    write_parquet(items.filter(keep).select(meta_cols), path / "items.parquet")
    write_parquet(quarantined, path / "quarantine.parquet")

    manifest_signals = {}
    for signal in signals:
        vecs, ok, evidence = per_signal[signal.name]
        sdir = path / signal.name
        sdir.mkdir(exist_ok=True)
        sig_vecs = np.ascontiguousarray(vecs[ok])
        sig_ids = [ids_all[i] for i in np.flatnonzero(ok)]
        tb = time.time()
        index = signal.build_index(sig_vecs, key=key, max_memory=max_memory, use_gpu=use_gpu)
        build_s = time.time() - tb
        index.save(sdir / "index.faiss")
        write_parquet(pa.table({ITEM_ID: pa.array(sig_ids, pa.string())}), sdir / "ids.parquet")
        np.save(sdir / "vectors.npy", sig_vecs)
        files = ["index.faiss", "ids.parquet", "vectors.npy"]
        if evidence:
            columns = {ITEM_ID: pa.array(sig_ids, pa.string())}
            columns.update({k: pa.array(v[ok]) for k, v in evidence.items()})
            write_parquet(pa.table(columns), sdir / "evidence.parquet")
            files.append("evidence.parquet")
        manifest_signals[signal.name] = {
            **signal.describe(),
            "metric": signal.metric,
            "index_key": index.key,
            "nprobe": index.nprobe,
            "count": len(sig_ids),
            "index_bytes": index.memory_bytes(),
            "build_seconds": round(build_s, 3),
            "checksums": {f: _sha256(sdir / f) for f in files},
        }
    manifest = {
        "format_version": FORMAT_VERSION,
        "riskrank_version": _version(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - t0, 3),
        "max_memory": str(max_memory),
        "items": {
            "input": items.num_rows + quarantined.num_rows - len(extra),
            "indexed": int(ok_any.sum()),
            "quarantined": quarantined.num_rows,
        },
        "signals": manifest_signals,
    }
    tmp = path / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(path / MANIFEST)
    shutil.rmtree(path / "_work", ignore_errors=True)
    return InventoryIndex.load(
        path, verify=False, use_gpu=use_gpu, signals={s.name: s for s in signals}
    )

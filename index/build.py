"""``build_index``: validate -> encode (resumable chunks) -> one index per signal -> write.

The one path every index is built by. ``engine="local"`` runs it in this process;
``engine="ray"`` (``index.ray_engine``) replaces the steps that parallelise (reading and
validating, embedding, adding to shards) and keeps the rest: the quarantine rule, the files,
the chunk format and the manifest.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from riskrank.index.checksums import checksum_files
from riskrank.index.chunks import (
    WORK,
    Encoded,
    chunk_files,
    concat_chunks,
    embed_chunk,
    load_chunk,
    save_chunk,
)
from riskrank.index.content_digest import row_digests, signal_base_dirs
from riskrank.index.manifest import MANIFEST, sha256_file, write_manifest
from riskrank.index.schema import IMAGE_BYTES, ITEM_ID, quarantine_table, validate_inventory
from riskrank.index.signals.base import Signal
from riskrank.index.signals.text import TextEmbeddingSignal
from riskrank.index.store import InventoryIndex
from riskrank.index.tables import TableLike, write_parquet


def check_signals(signals: Sequence[Signal] | None) -> list[Signal]:
    """The signals to build with (default: text), refusing two with one name."""
    signals = list(signals) if signals else [TextEmbeddingSignal()]
    names = [s.name for s in signals]
    if len(set(names)) != len(names):
        raise ValueError(f"signals: duplicate names {names}")
    return signals


def requires_text(signals: Sequence[Signal]) -> bool:
    """A text-only index needs a text column; with image signals text is optional."""
    return len(signals) == 1 and isinstance(signals[0], TextEmbeddingSignal)


def prepare_directory(path: str | Path, overwrite: bool) -> Path:
    """Refuse a finished index unless ``overwrite``; clear all but the resumable ``_work/``."""
    path = Path(path)
    if (path / MANIFEST).exists() and not overwrite:
        raise FileExistsError(f"{path} already holds an index; pass overwrite=True to rebuild")
    path.mkdir(parents=True, exist_ok=True)
    for child in path.iterdir():
        if child.name != WORK:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    return path


def unusable_rows(
    ids: Sequence[object], ok: dict[str, np.ndarray], reasons: dict[str, list], names
) -> tuple[np.ndarray, list[dict]]:
    """Items no signal could use are quarantined, never silently dropped: the rows kept and
    the quarantine rows of the rest."""
    ok_any = np.logical_or.reduce([ok[n] for n in names]) if names else np.zeros(len(ids), bool)
    rows = [
        {
            ITEM_ID: ids[r],
            "row": -1,
            "stage": "encode",
            "reason": "; ".join(f"{n}: {reasons[n][r]}" for n in names if reasons[n][r]),
        }
        for r in np.flatnonzero(~ok_any)
    ]
    return ok_any, rows


def signal_entry(
    signal: Signal,
    spec: dict,
    index,
    count: int,
    index_bytes: int,
    build_s: float,
    sdir: Path,
    files: list[str],
    layout: dict | None = None,
) -> dict:
    """One signal's manifest entry (the same for every engine)."""
    return {
        **spec,
        "metric": signal.metric,
        "index_key": index.key,
        "nprobe": index.nprobe,
        "count": int(count),
        "index_bytes": int(index_bytes),
        "build_seconds": round(build_s, 3),
        **(layout or {}),
        "checksums": {f: sha256_file(sdir / f) for f in files},
    }


def write_signal_files(sdir: Path, ids: Sequence[object], evidence: dict[str, np.ndarray]):
    """``ids.parquet`` (and ``evidence.parquet`` when the signal records per-item evidence);
    returns the file names written and the evidence table (or None)."""
    sdir.mkdir(parents=True, exist_ok=True)
    id_col = pa.array([str(i) for i in ids], pa.string())
    write_parquet(pa.table({ITEM_ID: id_col}), sdir / "ids.parquet")
    files, table = ["ids.parquet"], None
    if evidence:
        columns = {ITEM_ID: id_col, **{k: pa.array(v) for k, v in evidence.items()}}
        table = pa.table(columns)
        write_parquet(table, sdir / "evidence.parquet")
        files.append("evidence.parquet")
    return files, table


def encode_local(
    items: pa.Table,
    signals: list[Signal],
    work: Path,
    chunk_size: int,
    show_progress: bool,
) -> Encoded:
    """Embed ``items`` chunk by chunk with every signal, reusing chunks a killed run (of either
    engine) finished and saving each new one before the next starts."""
    names = [s.name for s in signals]
    # Chunks are named by their rows' content, not their ids: a chunk embedded from other
    # texts (or other image files) under the same ids is never reused.
    keys = row_digests(items, base_dirs=signal_base_dirs(signals))
    chunk_ids = [keys[s : s + chunk_size] for s in range(0, len(keys), chunk_size)]
    files = chunk_files(work, chunk_ids, [s.describe() for s in signals], names)
    by_name = dict(zip(names, signals))
    tables, resumed = [], 0
    bar = tqdm(files, desc="encode " + ",".join(names), unit="chunk", disable=not show_progress)
    for i, path in enumerate(bar):
        if path.exists():
            tables.append(load_chunk(path))
            resumed += 1
            continue
        work.mkdir(parents=True, exist_ok=True)
        table = embed_chunk(by_name, items.slice(i * chunk_size, len(chunk_ids[i])))
        save_chunk(table, path)
        tables.append(table)
    out = concat_chunks(tables, names, {s.name: s.dim for s in signals})
    out.chunks, out.resumed = len(files), resumed
    return out


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
    signals = check_signals(signals)
    path = prepare_directory(path, overwrite)
    items, quarantined = validate_inventory(inventory, require_text=requires_text(signals))
    t0 = time.time()
    enc = encode_local(items, signals, path / WORK, chunk_size, show_progress)
    names = [s.name for s in signals]
    ids_all = items.column(ITEM_ID).to_pylist()
    ok_any, extra = unusable_rows(ids_all, enc.ok, enc.reasons, names)
    if extra:
        quarantined = pa.concat_tables([quarantined, quarantine_table(extra)])
    meta_cols = [c for c in items.column_names if c != IMAGE_BYTES]
    write_parquet(items.filter(pa.array(ok_any)).select(meta_cols), path / "items.parquet")
    write_parquet(quarantined, path / "quarantine.parquet")

    entries = {}
    for signal in signals:
        ok, sdir = enc.ok[signal.name], path / signal.name
        vecs = np.ascontiguousarray(enc.vectors[signal.name][ok])
        sig_ids = [ids_all[i] for i in np.flatnonzero(ok)]
        files, _ = write_signal_files(
            sdir, sig_ids, {k: v[ok] for k, v in enc.evidence[signal.name].items()}
        )
        tb = time.time()
        index = signal.build_index(vecs, key=key, max_memory=max_memory, use_gpu=use_gpu)
        build_s = time.time() - tb
        index.save(sdir / "index.faiss")
        np.save(sdir / "vectors.npy", vecs)
        index_bytes = (sdir / "index.faiss").stat().st_size
        entries[signal.name] = signal_entry(
            signal,
            signal.describe(),
            index,
            len(sig_ids),
            index_bytes,
            build_s,
            sdir,
            ["index.faiss", *files, "vectors.npy"],
        )
    write_manifest(
        path,
        {
            "engine": "local",
            "seconds": round(time.time() - t0, 3),
            "chunks": {"total": enc.chunks, "resumed": enc.resumed},
            "max_memory": str(max_memory),
            "items": {
                "input": items.num_rows + quarantined.num_rows - len(extra),
                "indexed": int(ok_any.sum()),
                "quarantined": quarantined.num_rows,
            },
            "signals": entries,
            "files": checksum_files(path, ["items.parquet", "quarantine.parquet"]),
        },
    )
    shutil.rmtree(path / WORK, ignore_errors=True)
    return InventoryIndex.load(
        path, verify=False, use_gpu=use_gpu, signals={s.name: s for s in signals}
    )

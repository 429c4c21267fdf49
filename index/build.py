"""``build_index``: validate -> encode (resumable chunks) -> one index per signal -> write.

The one path every index is built by. ``engine="local"`` runs it in this process;
``engine="ray"`` (``index.ray_engine.engine.RayEngine``) replaces the steps that parallelise
(reading and validating, embedding, adding to shards; see ``index.engine``) and keeps the
rest: the overwrite rule, the quarantine rule, the files, the chunk format and the manifest.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from riskrank.index.checksums import checksum_files
from riskrank.index.chunks import DEFAULT_CHUNK_SIZE, WORK, chunk_files
from riskrank.index.content_digest import signal_base_dirs
from riskrank.index.engine import (
    BuiltSignal,
    Embedding,
    Engine,
    ValidItems,
    chunk_keys,
    resolve_engine,
)
from riskrank.index.manifest import MANIFEST, sha256_file, write_manifest
from riskrank.index.schema import (
    ABSENT_REASONS,
    IMAGE_BYTES,
    ITEM_ID,
    SIGNAL_FAILURES,
    quarantine_table,
    refuse_all_quarantined,
    signal_failure_table,
)
from riskrank.index.signals.base import IndexKind, Signal
from riskrank.index.signals.text import TextEmbeddingSignal
from riskrank.index.store import InventoryIndex
from riskrank.index.tables import TableLike, write_parquet
from riskrank.index.vectors.faiss_index import parse_bytes


def check_signals(signals: Sequence[Signal] | None) -> list[Signal]:
    """The signals to build with (default: text), refusing two with one name."""
    signals = list(signals) if signals else [TextEmbeddingSignal()]
    names = [s.name for s in signals]
    if len(set(names)) != len(names):
        raise ValueError(f"signals: duplicate names {names}")
    return signals


def check_signals_load(signals: Sequence[Signal]) -> list[dict]:
    """Each signal's ``describe()``, which loads or finds its model: a missing extra
    (``riskrank[nsfw]``) or weight file is refused here, before a directory is made (a library
    build left an empty index folder behind its ImportError)."""
    return [s.describe() for s in signals]


def requires_text(signals: Sequence[Signal]) -> bool:
    """A text-only index needs a text column; with image signals text is optional."""
    return len(signals) == 1 and isinstance(signals[0], TextEmbeddingSignal)


# What an index directory holds (index/store.py) and what a killed build leaves in it; the
# standing index's delta build keeps its digest stamp beside them (index/standing.py).
INDEX_FILES = frozenset(
    {MANIFEST, "items.parquet", "quarantine.parquet", SIGNAL_FAILURES, WORK, "inventory.digest"}
)


def prepare_directory(
    path: str | Path, overwrite: bool, names: Sequence[str] = (), *, check_only: bool = False
) -> Path:
    """Refuse a finished index unless ``overwrite``; clear all but the resumable ``_work/``
    (``check_only``: refuse, touch nothing).

    Only an index's own files are ever removed: a directory holding anything else (a
    user's ``--out .``, a sweep's outputs, photos) is refused before anything is touched,
    with or without ``overwrite``. ``names``: the signals about to be built (their folders
    are an index's own, as are those the directory's manifest records)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} is a file; an index is written into a directory")
    finished = (path / MANIFEST).exists()
    if finished and not overwrite:
        raise FileExistsError(f"{path} already holds an index; pass overwrite=True to rebuild")
    if path.exists():
        own = set(INDEX_FILES) | set(names)
        if finished:
            own |= set(json.loads((path / MANIFEST).read_text()).get("signals", {}))
        foreign = sorted(
            p.name for p in path.iterdir() if not (_index_file(p.name, own) or _signal_folder(p))
        )
        if foreign:
            listed = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise FileExistsError(
                f"{path} holds files that are not a riskrank index ({listed}); building an "
                "index there would delete them: choose a new or empty directory"
            )
    if check_only:
        return path
    path.mkdir(parents=True, exist_ok=True)
    for child in path.iterdir():
        if child.name != WORK:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    return path


# What a signal's folder holds (index/store.py); a killed build's folder of a signal not in
# this build (a standing delta re-run with other signals) is still the index's own.
SIGNAL_FILES = frozenset(
    {"ids.parquet", "evidence.parquet", "keys.parquet", "vectors.npy", "index.faiss", "shards"}
)


def _signal_folder(path: Path) -> bool:
    entries = list(path.iterdir()) if path.is_dir() else []
    return bool(entries) and all(_index_file(c.name, set(SIGNAL_FILES)) for c in entries)


def _index_file(name: str, own: set[str]) -> bool:
    """An index's own entry, or the temp file of one a killed write left (``<name>.<pid>.tmp``,
    index/tables.py ``write_parquet``)."""
    if name in own:
        return True
    stem, _, pid = name.removesuffix(".tmp").rpartition(".")
    return name.endswith(".tmp") and pid.isdigit() and stem in own


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


def signal_failures(
    ids: Sequence[object],
    ok: dict[str, np.ndarray],
    reasons: dict[str, list],
    names: Sequence[str],
    ok_any: np.ndarray,
) -> pa.Table:
    """Why each signal holds no vector for an item that had content for it (a corrupt image
    beside a good text: the item is kept by its text), and for a quarantined item (no signal
    could use it) every signal's reason, as its quarantine row joins them."""
    rows: dict[str, list] = {ITEM_ID: [], "signal": [], "reason": []}
    for name in names:
        why = reasons[name]
        for r in np.flatnonzero(~ok[name]):
            w = why[r]
            if w is None or (ok_any[r] and w in ABSENT_REASONS):
                continue
            rows[ITEM_ID].append(str(ids[r]))
            rows["signal"].append(name)
            rows["reason"].append(w)
    return signal_failure_table(rows)


def write_items(path: Path, valid: ValidItems, emb: Embedding, names: list[str]) -> pa.Table:
    """``items.parquet`` (the indexed items' metadata), ``quarantine.parquet`` (validation's
    rows, then the items no signal could embed) and ``signal_failures.parquet`` (why a
    signal lacks an item it had content for); returns the quarantine."""
    ids = valid.items.column(ITEM_ID).to_pylist()
    ok_any, extra = unusable_rows(ids, emb.ok, emb.reasons, names)
    quarantined = valid.quarantined
    if extra:
        quarantined = pa.concat_tables([quarantined, quarantine_table(extra)])
    meta_cols = [c for c in valid.items.column_names if c != IMAGE_BYTES]
    write_parquet(valid.items.filter(pa.array(ok_any)).select(meta_cols), path / "items.parquet")
    write_parquet(quarantined, path / "quarantine.parquet")
    failures = signal_failures(ids, emb.ok, emb.reasons, names, ok_any)
    write_parquet(failures, path / SIGNAL_FAILURES)
    return quarantined


def index_signal(
    engine: Engine, emb: Embedding, signal: Signal, sdir: Path, ids: np.ndarray, **build_kw
) -> tuple[dict, BuiltSignal]:
    """One signal's index (built by the engine), ids and evidence files, and manifest entry."""
    ok = emb.ok[signal.name]
    sdir.mkdir(parents=True, exist_ok=True)
    built = engine.index_signal(emb, signal, sdir, **build_kw)
    more, table = write_signal_files(
        sdir, ids[ok], {k: v[ok] for k, v in emb.evidence[signal.name].items()}
    )
    built.files += more
    built.ids, built.evidence = ids[ok], table
    index_bytes = sum((sdir / f).stat().st_size for f in built.index_files)
    entry = signal_entry(
        signal,
        signal.describe(),
        built.index,
        int(ok.sum()),
        index_bytes,
        built.seconds,
        sdir,
        built.files,
        built.layout,
    )
    return entry, built


def check_index_key(key: str | None, signals: Sequence[Signal]) -> None:
    """Refuse a forced FAISS key (``key=``, ``index_key=``, ``--index-key``) that a signal's
    index cannot be made of, before anything is embedded: "NotAFactory", "PQ7" (384 is not a
    multiple of 7) or "BFlat" for a float signal was a C++ RuntimeError from inside FAISS
    after the whole inventory was embedded (outsider CD). A hash signal takes only a binary
    key ("B..."); another key leaves it its own choice (``standing.index_key_for``)."""
    if not key:
        return
    import re

    import faiss

    for signal in signals:
        binary = signal.index_kind is IndexKind.BINARY_HASHES
        if binary and not key.startswith("B"):
            continue
        try:
            if binary:
                faiss.index_binary_factory(signal.dim, key)
            else:
                faiss.index_factory(signal.dim, key, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            said = re.search(r"\.(?:cpp|h):\d+: (.*)", str(exc))
            what = f"{signal.dim}-bit hashes" if binary else f"{signal.dim}-dimensional vectors"
            raise ValueError(
                f"index key {key!r}: FAISS cannot make an index of it for the {signal.name} "
                f"signal ({what}): {said.group(1) if said else exc}"
            ) from None


def build_index(
    inventory: TableLike,
    path: str | Path,
    *,
    signals: Sequence[Signal] | None = None,
    engine: str | Engine = "local",
    max_memory: int | str = "4G",
    key: str | None = None,
    use_gpu: bool | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    show_progress: bool = True,
    overwrite: bool = False,
    empty_ok: bool = False,
) -> InventoryIndex:
    """Embed an inventory with each signal and persist one FAISS index per signal.

    An inventory none of whose rows a signal could embed is refused (``SchemaError``, the
    commonest reasons counted), unless ``empty_ok``: a standing update's delta, the day's new
    rows only, may all be unreadable while the index keeps yesterday's (index/standing.py).

    ``engine``: ``"local"`` (this process), ``"ray"`` or a configured
    ``index.ray_engine.engine.RayEngine(num_shards=..., ...)`` (the Ray cluster this process
    joined; the inventory may then be a Parquet file, directory, list of files or URI). Both
    write the same files and read each other's chunks.

    Resumable: the chunks a killed run (of either engine) finished are under ``path/_work/``
    when it raises, and the next run of the same items and signals reuses them.

    >>> idx = build_index("inventory.parquet", "runs/idx", max_memory="2G")  # doctest: +SKIP
    """
    engine = resolve_engine(engine)
    signals = check_signals(signals)
    parse_bytes(max_memory)  # a typo is refused now, not after the embedding
    names = [s.name for s in signals]
    prepare_directory(path, overwrite, names, check_only=True)  # cheap refusals first
    specs = check_signals_load(signals)
    check_index_key(key, signals)
    path = prepare_directory(path, overwrite, names)
    t0 = time.time()
    with engine.session(show_progress):
        valid = engine.read(
            inventory, require_text=requires_text(signals), base_dirs=signal_base_dirs(signals)
        )
        refuse_all_quarantined(valid.items.num_rows, valid.quarantined)
        # Chunks are named by their rows' content, not their ids: a chunk embedded from other
        # texts (or other image files) under the same ids is never reused.
        files = chunk_files(path / WORK, chunk_keys(valid.keys, chunk_size), specs, names)
        (path / WORK).mkdir(parents=True, exist_ok=True)
        emb = engine.embed(
            valid, signals, files, chunk_size=chunk_size, show_progress=show_progress
        )
    t_embed = time.time() - t0
    quarantine = write_items(path, valid, emb, names)
    indexed = int(np.logical_or.reduce([emb.ok[n] for n in names]).sum())
    # Rows no signal could embed count as validation's (the index is left unfinished: no
    # manifest, so the next build clears it): see index/standing.py _write_version.
    if not empty_ok:
        refuse_all_quarantined(indexed, quarantine)
    ids = np.asarray(valid.items.column(ITEM_ID).to_pylist(), dtype=object)
    entries, built = {}, {}
    for signal in signals:
        entries[signal.name], built[signal.name] = index_signal(
            engine,
            emb,
            signal,
            path / signal.name,
            ids,
            key=key,
            max_memory=max_memory,
            use_gpu=use_gpu,
        )
    manifest = write_manifest(
        path,
        {
            "engine": engine.name,
            "seconds": round(time.time() - t0, 3),
            "embed_seconds": round(t_embed, 3),
            "chunks": {"total": emb.chunks, "resumed": emb.resumed},
            "max_memory": str(max_memory),
            "items": {"input": valid.n_in, "indexed": indexed, "quarantined": quarantine.num_rows},
            "signals": entries,
            **engine.manifest(),
            "files": checksum_files(path, ["items.parquet", "quarantine.parquet", SIGNAL_FAILURES]),
        },
    )
    shutil.rmtree(path / WORK, ignore_errors=True)
    items = pq.read_table(path / "items.parquet")
    return engine.open(path, json.loads(manifest.read_text()), built, items, signals, use_gpu)

"""A persisted, multi-signal inventory index: a directory with a manifest.

Layout::

    my-index/
      manifest.json          how it was made: signals (encoder, version, dim, metric), index
                             type, counts, file checksums
      items.parquet          item_id + metadata columns, in index order (no content bytes)
      quarantine.parquet     rows that could not be indexed, with the reason
      signal_failures.parquet  why a signal lacks an item that had content for it (a
                             corrupt image beside a good text), per item and signal
      <signal>/index.faiss   the FAISS index of that signal (positions = rows of ids.parquet)
      <signal>/ids.parquet   position -> item_id
      <signal>/vectors.npy   the vectors themselves (exact evidence, density, re-ranking;
                             read row by row as asked, index/vectors/stored.py)
      <signal>/shards/       instead of index.faiss + vectors.npy when built on Ray
                             (the Ray engine): shard-NNNNN.faiss + shard-NNNNN.npy per shard

Built by ``index.build.build_index``; the manifest is written last, so a directory without
one is never mistaken for a finished index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from riskrank.index.checksums import ChecksumError, verify_checksums
from riskrank.index.content_digest import PICTURES_FILE
from riskrank.index.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    SELF_DIGEST,
    manifest_digest,
    sha256_file,
)
from riskrank.index.schema import ITEM_ID, SIGNAL_FAILURES, signal_failure_table
from riskrank.index.signals.base import Signal
from riskrank.index.signals.registry import signal_from_manifest
from riskrank.index.tables import SchemaError
from riskrank.index.vectors.sharded import ShardedIndex, ShardVectors
from riskrank.index.vectors.stored import StoredVectors


def current_version(path: Path) -> Path:
    """The directory of the version a standing index (index/standing.py) names as current;
    any other path as it is."""
    state = path / "standing.json"
    if not state.is_file():
        return path
    try:
        version = int(json.loads(state.read_text())["current"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise SchemaError(f"{state}: unreadable standing-index state ({exc})") from exc
    return path / "versions" / f"v{version:06d}"


class IndexMismatchError(ValueError):
    """A query encoder differs from the one the index was built with."""


# A standing index version's content key per position (written by index/standing.py).
KEYS = "keys.parquet"


@dataclass
class SignalIndex:
    """One signal's part of an inventory index."""

    signal: Signal
    entry: dict
    index: object
    ids: np.ndarray  # position -> item_id
    directory: Path
    # Given instead of read from ``directory`` (shards, or Ray workers without the files).
    preloaded_vectors: np.ndarray | StoredVectors | ShardVectors | None = None
    preloaded_evidence: pa.Table | None = None
    # File name -> its file, opened by ``InventoryIndex.hold`` (read from it when first asked:
    # an open file outlives its version's removal).
    opened: dict[str, pq.ParquetFile] = field(default_factory=dict)

    def __getstate__(self) -> dict:
        """Pickled (to a Ray worker) with what the opened files hold read, not the files."""
        state = dict(self.__dict__)
        if self.opened:
            state["preloaded_evidence"] = self.evidence
            state["content_keys"] = self.content_keys
            state["opened"] = {}
        return state

    def _table(self, name: str, columns=None) -> pa.Table | None:
        """``directory / name`` read (from the file ``hold`` opened, if it did); None if the
        version has no such file."""
        if name in self.opened:
            return self.opened[name].read(columns=columns)
        path = self.directory / name
        return pq.read_table(path, columns=columns) if path.exists() else None

    @property
    def evidence(self) -> pa.Table | None:
        """Per-item evidence the signal recorded (``item_id`` + e.g. ``pdq_quality``), in index
        order, or None if it records none."""
        if self.preloaded_evidence is not None:
            return self.preloaded_evidence
        return self._table("evidence.parquet")

    @property
    def vectors(self) -> np.ndarray | StoredVectors:
        """Position -> vector, read from ``vectors.npy`` row by row as asked (never the whole
        file held, index/vectors/stored.py)."""
        if self.preloaded_vectors is None:
            self.preloaded_vectors = StoredVectors(self.directory / "vectors.npy")
        return self.preloaded_vectors

    @cached_property
    def content_keys(self) -> list[str] | None:
        """The content key of every position where this is a standing index version
        (index/standing.py writes ``keys.parquet``), else None; read once per loaded index
        (recall's neighbourhoods and the campaign links both ask)."""
        if self.directory is None:
            return None
        table = self._table(KEYS, columns=["content_key"])
        if table is None:
            return None
        keys = table.column("content_key").to_pylist()
        return keys if len(keys) == len(self.ids) else None


class InventoryIndex:
    """Searchable inventory: one index per signal plus the item table.

    >>> idx = build_index(items, "runs/idx")           # doctest: +SKIP
    >>> idx = InventoryIndex.load("runs/idx")          # doctest: +SKIP
    >>> idx.signals["text"].ids[:3]                    # doctest: +SKIP
    """

    def __init__(
        self,
        path: Path,
        manifest: dict,
        signals: dict[str, SignalIndex],
        items: pa.Table | None = None,
    ):
        self.path = path
        self.manifest = manifest
        self.signals = signals
        self._items = items  # None: read from path when first asked
        self._opened: dict[str, pq.ParquetFile] = {}  # ``hold``: opened at load

    @property
    def items(self) -> pa.Table:
        """item_id + metadata of every indexed item."""
        if self._items is None:
            self._items = self._table("items.parquet")
            if self._items is None:
                raise FileNotFoundError(f"{self.path / 'items.parquet'}: the index's item table")
        return self._items

    def picture_shas(self) -> dict[str, bytes]:
        """item_id -> sha256 of the picture of each item whose picture came as
        ``image_bytes``, which an index does not keep (a standing version keeps their
        digests: index/content_digest.py ``PICTURES_FILE``; other indexes: none)."""
        t = self._table(PICTURES_FILE)
        if t is None:
            return {}
        return dict(zip(t[ITEM_ID].to_pylist(), t["image_sha256"].to_pylist()))

    def keeps_picture_digests(self) -> bool:
        """Whether this version keeps its pictures' digests (``picture_shas``): a standing
        version written since they were kept; none before, nor any other index."""
        return (
            PICTURES_FILE in self._opened
            or PICTURES_FILE in self.__dict__.get("_tables", {})
            or (self.path / PICTURES_FILE).exists()
        )

    @property
    def quarantine(self) -> pa.Table:
        t = self._table("quarantine.parquet")
        if t is None:
            raise FileNotFoundError(f"{self.path / 'quarantine.parquet'}: the index's quarantine")
        return t

    def _table(self, name: str) -> pa.Table | None:
        """``path / name`` read (from the file ``hold`` opened, if it did); None if the
        version has no such file."""
        if name in self._opened:
            return self._opened[name].read()
        if name in self.__dict__.get("_tables", {}):  # read before it was pickled
            return self._tables[name]
        path = self.path / name
        return pq.read_table(path) if path.exists() else None

    def __getstate__(self) -> dict:
        """Pickled (to a Ray worker) with the opened files' tables read, not the files."""
        state = dict(self.__dict__)
        if self._opened:
            state["_items"] = self.items
            state["_opened"] = {}
            state["_tables"] = {
                n: f.read() for n, f in self._opened.items() if n != "items.parquet"
            }
        return state

    def hold(self) -> InventoryIndex:
        """Open now the files otherwise opened when first read (items, quarantine, failures,
        pictures; each signal's vectors, keys and evidence), their contents still read when
        asked: a standing index keeps its two newest versions, so a reader that outlived two
        updates found its version's files gone half-way (a bare FileNotFoundError, an
        outsider's report). An open file survives its version's removal."""
        names = ("items.parquet", "quarantine.parquet", SIGNAL_FAILURES, PICTURES_FILE)
        self._opened = {n: pq.ParquetFile(self.path / n) for n in names if (self.path / n).exists()}
        for si in self.signals.values():
            _ = si.vectors  # (StoredVectors holds its file open)
            for n in (KEYS, "evidence.parquet"):
                if si.directory is not None and (si.directory / n).exists():
                    si.opened[n] = pq.ParquetFile(si.directory / n)
        return self

    @property
    def signal_failures(self) -> pa.Table:
        """Why a signal holds no vector for an item that had content for it (item_id,
        signal, reason): a corrupt image beside a good text keeps the item, by its text,
        and is listed here. Empty for an index written before the table existed."""
        t = self._table(SIGNAL_FAILURES)
        if t is None:
            return signal_failure_table({}).drop(["key"])
        return t.select([ITEM_ID, "signal", "reason"])

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
        hold: bool = True,
    ) -> InventoryIndex:
        """Open an index directory, checking the manifest and (``verify``) file checksums.

        ``signals`` may supply query encoders (e.g. an already-loaded model); each is checked
        against what the manifest recorded and refused with ``IndexMismatchError`` if different.

        A standing index's version has its files opened now (``hold``; an update reading
        the version it replaces, under its lock, need not): its reader survives the updates
        that retire it. One that two updates retired between finding it current and opening it is
        found again (the new current one).
        """
        kw = {"verify": verify, "use_gpu": use_gpu, "signals": signals, "hold": hold}
        first = current_version(Path(path))
        try:
            return cls._load(Path(path), **kw)
        except (FileNotFoundError, ChecksumError):
            if current_version(Path(path)) == first:  # not retired as it was opened
                raise
            return cls._load(Path(path), **kw)  # retired as it was opened: the current one

    @classmethod
    def _load(
        cls,
        path: Path,
        *,
        verify: bool,
        use_gpu: bool | None,
        signals: dict[str, Signal] | None,
        hold: bool,
    ) -> InventoryIndex:
        path = current_version(path)
        mpath = path / MANIFEST
        if not mpath.exists():
            raise FileNotFoundError(
                f"{path} is not a riskrank index (no {MANIFEST}; an interrupted build leaves none: "
                f"run the build again to resume it)"
            )
        try:
            manifest = json.loads(mpath.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SchemaError(f"{mpath}: unreadable manifest ({exc})") from exc
        if manifest.get("format_version") != FORMAT_VERSION:
            raise SchemaError(
                f"{mpath}: format_version {manifest.get('format_version')} unsupported"
            )
        if verify:  # (indexes from before these were recorded have neither: nothing to check)
            recorded = manifest.get(SELF_DIGEST)
            if recorded is not None and recorded != manifest_digest(manifest):
                raise ChecksumError(f"{mpath}: checksum mismatch (manifest changed or corrupt)")
            verify_checksums(path, manifest.get("files", {}), what="index")
        loaded = {}
        for name, entry in manifest["signals"].items():
            sdir = path / name
            if verify:
                for fname, digest in entry["checksums"].items():
                    if sha256_file(sdir / fname) != digest:
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
            if "shards" in entry:  # written by the Ray engine: searched shard by shard here
                index = ShardedIndex.load(sdir, entry)
                vectors = ShardVectors.load(sdir, entry)
            else:
                index = signal.load_index(sdir / "index.faiss", entry, use_gpu=use_gpu)
                vectors = None
            loaded[name] = SignalIndex(signal, entry, index, ids, sdir, preloaded_vectors=vectors)
        index = cls(path, manifest, loaded)
        # A standing index's version (index/standing.py VERSIONS) is removed two updates on.
        return index.hold() if hold and path.parent.name == "versions" else index

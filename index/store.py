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
from dataclasses import dataclass
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

    @property
    def evidence(self) -> pa.Table | None:
        """Per-item evidence the signal recorded (``item_id`` + e.g. ``pdq_quality``), in index
        order, or None if it records none."""
        if self.preloaded_evidence is not None:
            return self.preloaded_evidence
        path = self.directory / "evidence.parquet"
        return pq.read_table(path) if path.exists() else None

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
        path = Path(self.directory) / KEYS if self.directory is not None else None
        if path is None or not path.exists():
            return None
        keys = pq.read_table(path, columns=["content_key"]).column("content_key").to_pylist()
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
        self._held: dict[str, object] = {}  # ``hold``: read at load, not when first asked

    @property
    def items(self) -> pa.Table:
        """item_id + metadata of every indexed item."""
        if self._items is None:
            self._items = pq.read_table(self.path / "items.parquet")
        return self._items

    def picture_shas(self) -> dict[str, bytes]:
        """item_id -> sha256 of the picture of each item whose picture came as
        ``image_bytes``, which an index does not keep (a standing version keeps their
        digests: index/content_digest.py ``PICTURES_FILE``; other indexes: none)."""
        if "pictures" in self._held:
            return self._held["pictures"]
        path = self.path / PICTURES_FILE
        if not path.exists():
            return {}
        t = pq.read_table(path)
        return dict(zip(t[ITEM_ID].to_pylist(), t["image_sha256"].to_pylist()))

    @property
    def quarantine(self) -> pa.Table:
        if "quarantine" in self._held:
            return self._held["quarantine"]
        return pq.read_table(self.path / "quarantine.parquet")

    def hold(self) -> InventoryIndex:
        """Read now what is otherwise read when first asked (items, quarantine, failures,
        pictures, each signal's keys and evidence; the vectors' file opened): a standing
        index keeps its two newest versions, so a reader that outlives two updates found its
        version's files gone half-way (a bare FileNotFoundError, an outsider's report). Open
        files and tables read survive the version's removal."""
        _ = self.items
        self._held["quarantine"] = self.quarantine
        self._held["signal_failures"] = self.signal_failures
        self._held["pictures"] = self.picture_shas()
        for si in self.signals.values():
            _ = si.vectors, si.content_keys
            si.preloaded_evidence = si.evidence
        return self

    @property
    def signal_failures(self) -> pa.Table:
        """Why a signal holds no vector for an item that had content for it (item_id,
        signal, reason): a corrupt image beside a good text keeps the item, by its text,
        and is listed here. Empty for an index written before the table existed."""
        if "signal_failures" in self._held:
            return self._held["signal_failures"]
        path = self.path / SIGNAL_FAILURES
        if not path.exists():
            return signal_failure_table({}).drop(["key"])
        return pq.read_table(path).select([ITEM_ID, "signal", "reason"])

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

        A standing index's version is read whole now (``hold``; an update reading the
        version it replaces, under its lock, need not): its reader survives the updates that
        retire it. One that two updates retired between finding it current and opening it is
        found again (the new current one).
        """
        kw = {"verify": verify, "use_gpu": use_gpu, "signals": signals, "hold": hold}
        try:
            return cls._load(Path(path), **kw)
        except FileNotFoundError:
            if current_version(Path(path)) == Path(path):  # not a standing index: no newer one
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

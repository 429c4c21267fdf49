"""A standing index: the one index a team's daily sweeps update, never rebuild.

A sweep over today's full inventory embeds only what it has not seen: every item carries, per
signal, a **content key** (the digest of what the signal reads, ``Signal.content_columns``: for
image signals the picture itself, as ``image_bytes`` or as the file behind an ``image_path``
under any name; and of the encoder's ``describe()``). Today's rows whose key the current
version holds reuse its vector; the others are embedded, each distinct content once (copies of
one ad under many ids cost one embedding), and each signal apart (a new image beside an
unchanged text costs an image embedding, not a text one too); items gone from the inventory,
or named in a deletion list, leave the index. A changed text under the same id has
another key, so it is always re-embedded: never stale. Content another standing index holds
under the same key (a ``donor``: the sweep's index when reviewed items join a model's history
index) takes its vector from there instead of being embedded again.

Layout::

    my-standing-index/
      standing.json        {"current": 3, ...}: the version readers open (replaced atomically)
      versions/v000003/    an ordinary index directory (index/store.py), plus per signal
                           keys.parquet: the content key of every position, and
                           pictures.parquet: the sha256 of each picture that came as
                           image_bytes (which no version keeps; rank/reviewed.py)
      versions/v000002/    the previous version, kept while readers may still hold it
      _delta/<signals>/    an update in progress: per group of signals that need the same
                           rows, the build of the contents to embed (resumable)
      .readers/            pins of the versions readers re-open by path (``pinned``)

**Crash safety.** A version directory is written whole before ``standing.json`` names it, and
never changed after; an update killed at any moment leaves the previous version current and
complete, and running it again resumes the embedding (``_delta`` is an ordinary resumable
build) and finishes. A reader (``StandingIndex.load``, ``InventoryIndex.load``) opens the
version ``standing.json`` names and sees that version only, its files opened as it opens it
(``InventoryIndex.hold``). The two newest versions are kept; a reader that outlives more
updates reads its own version's files still (open files outlive their removal). The Ray
engine's tasks open the vector files again by path, on other machines: its driver pins the
version while they run (``pinned``), and an update keeps a pinned version.

**The FAISS index of each signal** keeps positions in inventory order, as a rebuild's would, so
that a sweep's queue equals a from-scratch sweep's (ties are ordered by position):

- an exact index (``Flat``, ``BFlat``) is its vectors: it is re-laid from the kept and new
  vectors (a copy, no training);
- an IVF index is updated in place: removed items are deleted from their lists, kept items
  renumbered, new ones added (``FaissIndex.update_in_place``), with the quantizer it was
  trained with. It is **retrained** (a fresh build) when

  1. the index type the current size calls for differs (``choose_index_key``: e.g. the
     inventory grew past the size where the list count doubles, or crossed the exact-index
     limit), or a forced ``key`` changed;
  2. more than ``RETRAIN_ADDED_SHARE`` (half) of today's items were added after the quantizer
     was trained: its centroids describe another inventory;
  3. the lists' imbalance factor grew past ``RETRAIN_IMBALANCE_GROWTH`` (2x) the one measured
     right after training: new content piles into few lists and searches slow down;
  4. its recall fell: ``RECALL_QUERIES`` of today's vectors (itself left out of each one's
     answer) are searched as a sweep searches, and the share of the exact top 10 it finds
     (index/vectors/recall_check.py) is more than ``RETRAIN_RECALL_DROP`` (0.01) below the
     share measured the same way right after training (or more than three standard errors
     of that difference, where sampling noise is larger: ``_recall_margin``). The first
     three rules count what changed; this one measures what a sweep would miss (new content
     far from every centroid can be added without tipping any count). It costs an exact
     search of 500 queries: 4.6 s wall over 1,000,000 vectors of 384 floats on 2 CPUs. An
     index trained before this rule (its manifest holds no ``recall_at_training``, or no
     ``recall_sd_at_training`` beside it) is neither measured nor checked until its next
     retrain.

  Each version's manifest records, per signal, what was done and why (``update``).

>>> idx, stats = StandingIndex("runs/standing").update(today, signals)   # doctest: +SKIP
>>> stats.embedded, stats.reused, stats.removed                            # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import heapq
import json
import math
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from riskrank.index.build import (
    build_index,
    check_index_key,
    check_signals,
    check_signals_load,
    requires_text,
    signal_entry,
    write_signal_files,
)
from riskrank.index.checksums import checksum_files, verify_checksums
from riskrank.index.chunks import DEFAULT_CHUNK_SIZE, WORK, signals_digest
from riskrank.index.content_digest import (
    IMAGE_CELLS,
    IMAGE_COLUMNS,
    IMAGES,
    PICTURES_FILE,
    build_digest,
    file_only,
    picture_shas,
    reading_files_afresh,
    reading_files_once,
    row_digests,
    signal_base_dirs,
)
from riskrank.index.engine import Engine, resolve_engine
from riskrank.index.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    ids_digest,
    package_version,
    write_json_atomic,
    write_manifest,
    write_text_atomic,
)
from riskrank.index.output_lock import HOLDER, output_lock, pid_alive, process_started
from riskrank.index.paths import EMPTY_IMAGE, NOT_FOUND
from riskrank.index.run_log import get_logger
from riskrank.index.schema import (
    IMAGE_BYTES,
    IMAGE_PATH,
    ITEM_ID,
    SIGNAL_FAILURES,
    TEXT,
    check_inventory_table,
    inputs_warned,
    is_blank,
    quarantine_table,
    refuse_all_quarantined,
    signal_failure_table,
    validate_inventory,
)
from riskrank.index.signals.base import IndexKind, Signal
from riskrank.index.signals.images import CHANGED_WHILE_READ, PASSING_FAILURES, UNRECOGNISED
from riskrank.index.store import KEYS, IndexMismatchError, InventoryIndex, SignalIndex
from riskrank.index.tables import (
    SchemaError,
    TableLike,
    as_table,
    expand_pattern,
    file_runs,
    known_id,
    read_text_csv,
    read_text_file,
    write_parquet,
)
from riskrank.index.vectors.faiss_index import choose_index_key, parse_bytes
from riskrank.index.vectors.hamming import choose_binary_index_key
from riskrank.index.vectors.recall_check import (
    RECALL_K,
    RECALL_QUERIES,
    RecallSample,
    recall_sample,
)
from riskrank.index.vectors.stored import StoredVectors, open_npy

log = get_logger(__name__)

STATE = "standing.json"
VERSIONS = "versions"
DELTA = "_delta"
LOCK = ".update.lock"  # one writer at a time (index/output_lock.py); readers need no lock
KEEP_VERSIONS = 2
# Readers that open a version's files again by path (the Ray engine's tasks) pin it here
# (``pinned``): an update keeps a pinned version past KEEP_VERSIONS. A pin from another
# machine, whose process cannot be asked, counts for PIN_HOURS after it was taken.
READERS = ".readers"
PIN_HOURS = 24
RETRAIN_ADDED_SHARE = 0.5
RETRAIN_IMBALANCE_GROWTH = 2.0
RETRAIN_RECALL_DROP = 0.01
SHOWN_UNKNOWN = 100  # unknown deletion ids kept in JSON (all are counted; the log names 5)
DELTA_KEY = "Flat"  # the delta build only carries vectors: an exact index costs a copy


class NotAStandingIndexError(ValueError):
    """An update was pointed at a directory that holds something else."""


@dataclass
class UpdateStats:
    """What one update did (also in the version's manifest and a sweep's report)."""

    version: int
    items_in: int = 0  # rows read: invalid + deleted + added + changed + unchanged
    invalid: int = 0  # rows refused as they were read (wrong types, no content, repeated id)
    deleted: int = 0  # rows left out because the deletion list names them
    deletions_unknown: list[str] = field(default_factory=list)  # named, but never indexed
    added: int = 0  # ids the previous version did not hold
    changed: int = 0  # ids whose content (for some signal) changed
    unchanged: int = 0
    removed: int = 0  # ids the previous version indexed, gone from today's inventory (or deleted)
    # rows sent to at least one signal's encoder (one per distinct content), those it could not
    # read included (a missing picture file: listed in signal_failures)
    embedded: int = 0
    embedded_by_signal: dict[str, int] = field(default_factory=dict)  # contents per signal
    reused_vectors: int = 0  # (item, signal) vectors taken from the previous version
    donated_vectors: int = 0  # (item, signal) vectors taken from the donor index
    shared_content: int = 0  # rows whose new content was all embedded through other rows
    # Chunks of the embedding (per delta build), and those a killed run of this same update
    # had finished: their contents count as embedded above, but were not embedded again.
    chunks: int = 0
    chunks_resumed: int = 0
    indexed: int = 0  # items the new version holds
    quarantined: int = 0  # rows in the new version's quarantine: invalid + not embeddable
    signals: dict[str, dict] = field(default_factory=dict)  # per signal: index action, why
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """As JSON keeps it (the state, a version's manifest, a sweep's report): one shape
        everywhere, the unknown deletions' count and the first ``SHOWN_UNKNOWN`` of their ids
        in sorted order (the report said a list where the state said a count; a report that
        listed every id grew with a mistaken list of thousands)."""
        out = asdict(self)
        unknown = out.pop("deletions_unknown")
        out["deletions_unknown"] = len(unknown)
        out["deletions_unknown_ids"] = unknown[:SHOWN_UNKNOWN]
        return out


@dataclass
class _Previous:
    """One signal's part of the current version: what an update can reuse."""

    ids: np.ndarray
    keys: list[str]
    vectors: object  # positions -> vectors (np.ndarray / StoredVectors)
    evidence: pa.Table | None
    index: object | None  # the FAISS index, loaded when it may be updated in place
    entry: dict
    # Contents this signal could not embed (a corrupt image): content key -> reason, and
    # item_id -> content key. The same content is not tried again (it would fail again), and
    # its item counts as unchanged, not as changed every day.
    failed: dict[str, str] = field(default_factory=dict)
    failed_items: dict[str, str] = field(default_factory=dict)


NOTHING = "-none"  # the key's ending where a row has nothing for the signal (no image)
# Content keys written since 2026-12-05 digest an image as the picture, not its path too
# (index/content_digest.py), and leave a signal's recall settings out; a signal's manifest
# entry says so (absent: the keys before).
KEY_FORMAT = 2


def signal_content_keys(
    table: pa.Table, signal: Signal, legacy: bool = False, spec: dict | None = None
) -> list[str]:
    """Per row, the digest of what ``signal`` reads (its content columns, the picture behind
    an ``image_path``) and of the encoder itself (``describe()`` less its
    ``recall_settings``): equal keys, equal vectors. Item ids are not part of it, so copies
    of one content under many ids share a key. A row with nothing for the signal (a
    text-only ad under an image signal) gets the key ending in ``NOTHING``: there is nothing
    to embed, today or any other day. ``legacy``: the keys of versions written before
    ``KEY_FORMAT`` 2 (image cells and paths digested, every ``describe()`` key); ``spec``:
    the ``describe()`` those were made with, where it differs from today's."""
    spec = signal.describe() if spec is None else spec
    if not legacy:
        spec = signal.content_spec(spec)
    spec = signals_digest([spec], [signal.name])
    images = IMAGE_CELLS if legacy else IMAGES
    cols = [c for c in signal.content_columns if c in table.column_names]
    if not cols:
        return [f"{spec}{NOTHING}"] * table.num_rows
    # Null cells add nothing: an all-null column appearing in a day's table (an export that
    # now writes image_path) changes no item's key, so nothing is embedded again for it.
    digests = row_digests(
        table, columns=cols, base_dirs=signal_base_dirs([signal]), skip_nulls=True, images=images
    )
    absent = np.ones(table.num_rows, bool)
    for c in cols:
        values = table.column(c).to_pylist()
        absent &= np.array(
            [v is None or (isinstance(v, str) and is_blank(v)) for v in values], bool
        )
    return [f"{spec}{NOTHING}" if a else f"{spec}-{d}" for a, d in zip(absent, digests)]


def read_deletions(deletions, *, what: str = "deletions") -> list[str] | None:
    """A deletion list as item ids: a list (or any iterable) of ids, a table or DataFrame with
    an ``item_id`` column, or a file: text (one id per line, spaces around it dropped),
    Parquet or CSV with ``item_id`` (ids as written). A string used to be split into its
    characters (the taken-down ad stayed, any one-character id went), and 3.0 (a float column
    with a null) never matched item 3: ids are text, and a whole float is read as its digits."""
    if deletions is None:
        return None
    if isinstance(deletions, (str, os.PathLike)):
        path = Path(deletions)
        if not path.is_file():
            raise FileNotFoundError(f"{what}: {path} is not a file (a deletion list)")
        if path.suffix.lower() in (".parquet", ".csv"):
            csv = path.suffix.lower() == ".csv"
            where = f"{what} {path}"
            deletions = read_text_csv(path, what=where) if csv else as_table(str(path), what=where)
        else:
            return [line.strip() for line in _id_lines(path, what) if line.strip()]
    module = type(deletions).__module__.split(".")[0]
    tabular = module in ("pandas", "polars") and hasattr(deletions, "columns")  # not a Series
    if isinstance(deletions, pa.Table) or tabular:
        table = as_table(deletions, what=what)
        if ITEM_ID not in table.column_names:
            raise SchemaError(f"{what}: needs an {ITEM_ID} column, has {table.column_names}")
        deletions = table.column(ITEM_ID).to_pylist()
    out = []
    for i in deletions:
        if i is None or (isinstance(i, float) and i != i):
            continue
        if isinstance(i, float) and i.is_integer():
            i = int(i)
        # As written, as inventory ids are: stripped, an id "ad 7 " could not be taken down
        # (an outsider's property run). A text list's lines are stripped (typed by hand).
        out.append(str(i))
    return out


def check_outside_inventory(path: str | Path, inventory, what: str) -> None:
    """Refuse ``path`` (a sweep's output folder, a standing index) that is, or lies inside,
    the inventory's directory: the next read of that directory took this run's files for
    inventory and failed on them (``report.json``, ``standing.json``: an outsider's report,
    then a reviewer's for the index)."""
    # Each folder a list or a path pattern names, too (a pattern matching day-1/ wrote the
    # index inside it, and the next update read its files as inventory: reviewer CE).
    sources = expand_pattern(inventory, "inventory")
    here = Path(path).resolve()
    for named in sources if isinstance(sources, (list, tuple)) else [sources]:
        if not isinstance(named, (str, os.PathLike)) or "://" in str(named):
            continue
        source = Path(named).resolve()
        if source.is_dir() and (here == source or source in here.parents):
            raise ValueError(
                f"{what} {path} is inside the inventory directory {named}: the next read of "
                "that directory would take its files for inventory; name a directory of its own"
            )


def _id_lines(path: Path, what: str) -> list[str]:
    """The lines of a text deletion list (``read_text_file``: UTF-8 with or without its mark,
    UTF-16 with it)."""
    text = read_text_file(path, what=what, fix="save the deletion list as UTF-8, one id per line")
    if "\x00" in text:  # UTF-16 without its mark reads as ids full of NULs: nothing deleted
        raise SchemaError(
            f"{what}: {path} holds NUL characters (UTF-16 without a byte-order mark?): save "
            "the deletion list as UTF-8, one item_id per line"
        )
    return text.splitlines()


# Which rows validation keeps (index/schema.py) is part of what an update was made from: a
# version made under older rules is not "up to date" for the same inventory (a reviewer's
# finding: after an upgrade, an ad in two day folders stayed quarantined and an id with a NUL
# stayed queued until the inventory changed). Raise it when those rules change; vectors are
# reused by content key all the same.
VALIDATION_RULES = "rules-2026-12-05"


def inventory_digest(inventory: pa.Table, signals: Sequence[Signal], deletions) -> str:
    """What an update was made from: every cell and image file, the encoders, and the
    deletions that take effect (the named ids today's inventory lists). A deletion list that
    names nothing listed, or is empty, makes the same version as no list: the same again is
    a no-op, not a new identical version that pushes an older one out."""
    ids = inventory.schema.field(ITEM_ID).type if ITEM_ID in inventory.column_names else None
    if ids is not None and pa.types.is_integer(ids):  # ids are text: 7 and "7" are one id
        at = inventory.column_names.index(ITEM_ID)
        inventory = inventory.set_column(at, ITEM_ID, inventory[ITEM_ID].cast(pa.string()))
    named = {str(i) for i in deletions} if deletions is not None else set()
    listed = set()
    if named and ITEM_ID in inventory.column_names:  # (a table without ids is refused later)
        listed = {str(i) for i in inventory.column(ITEM_ID).to_pylist() if i is not None}
    effective = sorted(resolve_deletions(named, listed)[0])
    # Which rows came from hive partition folders decides which copy of an ad exported on two
    # days is kept (schema.duplicate_reasons): the same cells from flat files are not the same
    # inventory (a reviewer's finding). Only the folders' columns count, not the file names.
    runs = file_runs(inventory)
    layout = [[sorted(k for k, _ in (run[2] if len(run) > 2 else [])), run[1]] for run in runs]
    layout = layout if any(run[2:] for run in runs) else []
    layout_digest = ids_digest([json.dumps(part) for part in layout]) if layout else ""
    digest = f"{build_digest(inventory, signals)}-{ids_digest(effective)}-{bool(effective)}"
    return digest + (f"-{layout_digest}" if layout_digest else "") + f"-{VALIDATION_RULES}"


def resolve_deletions(named, known: set[str]) -> tuple[set[str], list[str]]:
    """(the ids of ``known`` that ``named`` takes out, the named ids it holds none of). An
    id is matched as written, else by its form without surrounding spaces: ids are taken as
    written (an ad whose id ends in a space must be deletable), but a list read with
    ``readlines()`` or a hand-typed CSV cell ``ad-2 `` deleted nothing (a reviewer's finding;
    an inventory id never holds a line break, which validation quarantines)."""
    hit, unknown = set(), []
    for i in named:
        found = known_id(i, known)
        if found in known:
            hit.add(found)
        else:
            unknown.append(i)
    return hit, sorted(unknown)


def _warn_unknown(unknown: list[str]) -> None:
    if unknown:
        quoted = sum(len(i) > 1 and i[0] == i[-1] and i[0] in "\"'" for i in unknown)
        hint = (
            f"; {quoted} of them in quotes: a deletion list's ids are read as written, quotes "
            "and all (write them bare)"
            if quoted
            else ""
        )
        log.warning(
            "deletion list: %d id(s) neither today's inventory nor the index's latest version "
            "holds (ignored: never indexed, or removed by an earlier update): %s%s",
            len(unknown), ", ".join(map(repr, unknown[:5])), hint,
        )  # fmt: skip


def index_key_for(signal: Signal, n: int, max_memory, key: str | None) -> str:
    """The FAISS key a fresh build of ``n`` vectors of ``signal`` would use."""
    if signal.index_kind is IndexKind.BINARY_HASHES:
        return key if key and key.startswith("B") else choose_binary_index_key(n, signal.dim)
    return key or choose_index_key(n, signal.dim, max_memory)


class StandingIndex:
    """A directory of index versions that ``update`` advances (see the module docstring).

    >>> standing = StandingIndex("runs/standing")                      # doctest: +SKIP
    >>> idx, stats = standing.update("today.parquet", [TextEmbeddingSignal()])  # doctest: +SKIP
    >>> idx = standing.load()                  # the current version    # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- reading ---------------------------------------------------------------------------
    @staticmethod
    def is_standing(path: str | Path) -> bool:
        return (Path(path) / STATE).is_file()

    def state(self) -> dict | None:
        path = self.path / STATE
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SchemaError(f"{path}: unreadable standing-index state ({exc})") from exc

    def last_update(self) -> dict:
        """What the update that made the current version did (``UpdateStats.as_dict()``, the
        unknown deletions as a count) and when; ``{}`` for an index written before this was
        kept, or no index."""
        state = self.state() or {}
        if "update" not in state:
            return {}
        return {**state["update"], "updated_at": state.get("updated_at")}

    @property
    def version(self) -> int | None:
        state = self.state()
        return None if state is None else int(state["current"])

    def version_dir(self, version: int) -> Path:
        return self.path / VERSIONS / f"v{version:06d}"

    def current_dir(self) -> Path:
        version = self.version
        if version is None:
            raise FileNotFoundError(f"{self.path} is not a standing index (no {STATE})")
        return self.version_dir(version)

    def keep_recorded(self, signals: Sequence[Signal]) -> list[Signal]:
        """``signals``, each replaced by the one the current version was built with where the
        signal allows it (``Signal.recorded_instead``: a text backend that was only ``auto``'s
        choice); as given where there is no version yet."""
        if self.version is None:
            return list(signals)
        manifest = self.current_dir() / MANIFEST
        try:
            entries = json.loads(manifest.read_text()).get("signals", {})
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SchemaError(f"{manifest}: unreadable manifest ({exc})") from exc
        out = []
        for signal in signals:
            entry = entries.get(signal.name)
            out.append((signal.recorded_instead(entry) if entry else None) or signal)
        return out

    def signal_names(self) -> list[str]:
        """The signals the current version holds, from its manifest alone (nothing loaded)."""
        return list(self._manifest_signals())

    def recorded_signals(self) -> list[Signal]:
        """The signals the current version was made with, rebuilt from its manifest with
        their settings (``signal_from_manifest``); none where there is no version yet."""
        from riskrank.index.signals.registry import signal_from_manifest

        if self.version is None:
            return []
        return [signal_from_manifest(entry) for entry in self._manifest_signals().values()]

    def _manifest_signals(self) -> dict[str, dict]:
        manifest = self.current_dir() / MANIFEST
        try:
            return json.loads(manifest.read_text()).get("signals", {})
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SchemaError(f"{manifest}: unreadable manifest ({exc})") from exc

    def load(self, signals: Sequence[Signal] | None = None, **kw) -> InventoryIndex:
        """The current version (``kw``: ``InventoryIndex.load``'s ``verify``, ``use_gpu``)."""
        by_name = {s.name: s for s in signals} if signals else None
        # The root, not the current version's directory: a version two updates retire as
        # it is opened is found again (InventoryIndex.load).
        return InventoryIndex.load(self.path, signals=by_name, **kw)

    def check_target(self) -> None:
        """Refuse, before anything is written, a directory that holds anything but a standing
        index (or the leftovers of its own first, interrupted, update)."""
        if not self.path.exists() or self.is_standing(self.path):
            return
        if not self.path.is_dir():
            raise NotAStandingIndexError(f"{self.path} is a file, not a standing index")
        # The lock's holder file stays when a first update is killed (kill -9 runs no
        # ``finally``): every retry was refused as "other files" (an outsider's kill trials).
        own = {DELTA, VERSIONS, LOCK, LOCK + HOLDER, READERS}
        other = sorted(p.name for p in self.path.iterdir() if p.name not in own)
        if other:
            what = "a plain index (riskrank index build)" if MANIFEST in other else "other files"
            raise NotAStandingIndexError(
                f"{self.path} is not a riskrank standing index: it holds {what} "
                f"({', '.join(other[:5])}); point the standing index (--index; index_dir= "
                "in Python) at a new or empty directory"
            )

    # -- updating --------------------------------------------------------------------------
    def update(
        self,
        inventory: TableLike,
        signals: Sequence[Signal] | None = None,
        *,
        deletions: Iterable[object] | None = None,
        donor: str | Path | None = None,
        engine: str | Engine = "local",
        key: str | None = None,
        max_memory: int | str = "4G",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        use_gpu: bool | None = None,
        show_progress: bool = True,
    ) -> tuple[InventoryIndex, UpdateStats | None]:
        """Make today's ``inventory`` the current version: embed only new and changed content
        (on ``engine``), drop what is gone or in ``deletions``, reuse every other vector.

        ``deletions``: item ids to take out even if the inventory still lists them; ids the
        index never held are reported (``stats.deletions_unknown``), not an error. ``donor``:
        another standing index (or one of its versions) whose vector is taken for any content
        it holds under the same content key instead of embedding that content again, e.g. a
        sweep's index when its reviewed items join a model's history index. The key digests
        the content and the encoder, so a donor made with other encoders offers nothing.
        Returns the
        new version and what the update did; ``None`` instead of the stats when the current
        version was made from exactly this inventory, deletions and encoders (nothing is
        written then). See the module docstring for the guarantees.
        """
        self.check_target()
        check_outside_inventory(self.path, inventory, "the standing index")
        # A signal whose settings were only defaults (the text backend 'auto') takes the
        # encoder this index was built with, as train and the CLI's update do.
        signals = self.keep_recorded(check_signals(signals))
        check_signals_load(signals)  # a missing extra or weight file: before the folder is made
        check_index_key(key, signals)  # (and a key FAISS cannot make)
        # So are the inventory's table-level problems (integer texts, no ids, no rows): a first
        # update refused for them left a folder holding only its lock, which the next run took
        # for a standing index (an outsider's week). Nothing is removed after the fact: a
        # refused run that removed "its" new folder removed another run's lock with it.
        inventory = as_table(inventory, what="inventory", files=True)
        check_inventory_table(inventory, require_text=requires_text(signals))
        engine = resolve_engine(engine)
        parse_bytes(max_memory)  # a typo is refused now, not after the embedding
        self.path.mkdir(parents=True, exist_ok=True)
        lock = output_lock(self.path, what="standing index", lock_file=self.path / LOCK)
        with lock, reading_files_once():  # (each picture file read once, not once per use)
            return self._update(
                inventory, signals, deletions=deletions, donor=donor, engine=engine, key=key,
                max_memory=max_memory, chunk_size=chunk_size, use_gpu=use_gpu,
                show_progress=show_progress,
            )  # fmt: skip

    def _update(
        self, inventory, signals, *, deletions, donor, engine, key, max_memory, chunk_size,
        use_gpu, show_progress,
    ) -> tuple[InventoryIndex, UpdateStats | None]:  # fmt: skip
        signals = check_signals(signals)
        deletions = read_deletions(deletions)  # (the inventory, engine and sizes: in update)
        digest = inventory_digest(inventory, signals, deletions)
        # (A version written before a signal refused some content may hold vectors of it:
        # the same inventory again is then planned, not taken as up to date.)
        under_rule = self._written_under(UNREADABLE_RULE)  # (its manifest, read once)
        if (
            (self.state() or {}).get("inventory_digest") == digest
            and self._laid_out_as(signals, key, max_memory)
            and under_rule
        ):
            self._warn_unlisted(inventory, deletions)
            return self.load(signals, use_gpu=use_gpu), None
        t0 = time.time()
        version = (self.version or 0) + 1
        stats = UpdateStats(version)
        prev = self._previous(signals)
        donated = _donor(donor, signals) if donor is not None else {}
        items, quarantined = self._read(inventory, signals, deletions, prev, stats)
        keys = {s.name: signal_content_keys(items, s) for s in signals}
        _read_legacy_keys(items, signals, keys, prev, donated)
        # Contents a signal refuses (``Signal.unreadable``) are looked for among the stored
        # ones once: a version written under the rule holds none, a donor's may.
        checked = not donated and under_rule
        unreadable = {} if checked else _unreadable_keys(items, keys, signals)
        plan = _plan(items, keys, prev, stats, donated, unreadable)
        if self._holds_already(items, quarantined, stats, prev, signals, key, max_memory):
            # Another inventory, the same index: the export caught up with yesterday's
            # deletion list, say. Recorded as the current version's, not written again as a
            # new identical version that pushes an older one out (a noted gap).
            # (``_read`` said which deletions name ids this version and today's inventory
            # lack, as an update does.)
            self._record_digest(digest)
            return self.load(signals, use_gpu=use_gpu), None
        stats.seconds["read"] = time.time() - t0
        delta = self._embed(items, plan, signals, engine, chunk_size, show_progress, stats)
        _refuse_lost_folder(delta, prev, items, keys)
        _drop_rewritten_files(items, plan, keys, signals)
        stats.seconds["embed"] = time.time() - t0 - stats.seconds["read"]
        vdir = self.version_dir(version)
        shutil.rmtree(vdir, ignore_errors=True)  # a version never made current: redo it
        vdir.mkdir(parents=True)
        t1 = time.time()
        try:
            written = _write_version(
                vdir, items, quarantined, keys, plan, prev, delta, signals, stats,
                key=key, max_memory=max_memory, donated=donated,
            )  # fmt: skip
        except SchemaError:  # nothing indexed: refused, the index left as it was
            shutil.rmtree(vdir, ignore_errors=True)
            shutil.rmtree(self.path / DELTA, ignore_errors=True)
            raise
        stats.seconds["index"] = time.time() - t1
        self._commit(version, written, digest, stats)
        return self.load(signals, verify=False, use_gpu=use_gpu), stats

    def _written_under(self, rule: int) -> bool:
        """Whether the current version was written under ``UNREADABLE_RULE`` (or there is
        none): its stored vectors then hold no content a signal refuses, and today's
        inventory need not be read for such content again (tokenising every non-ASCII text
        of a large multilingual inventory each day)."""
        if self.version is None:
            return True
        try:
            manifest = json.loads((self.current_dir() / MANIFEST).read_text())
        except (OSError, ValueError):
            return False
        return (manifest.get("standing") or {}).get("unreadable_rule") == rule

    def still_unreadable(self, index: InventoryIndex, signals: Sequence[Signal]) -> list[str]:
        """Ids of ``index``'s (the current version's) items whose stored vectors a signal now
        refuses: only a version written before ``UNREADABLE_RULE`` can hold any. Its next
        update drops them; a sweep without an inventory, which does not update, would search
        them (emoji-only texts that all share one vector, chaining into one campaign)."""
        if self._written_under(UNREADABLE_RULE):
            return []
        ids = np.asarray(index.items.column(ITEM_ID).to_pylist(), dtype=object)
        found: set[str] = set()
        for signal in signals:
            if signal.name in index.signals:
                held = set(index.signals[signal.name].ids)
                found |= {i for i in ids[signal.unreadable(index.items)] if i in held}
        return sorted(found)

    def _holds_already(self, items, quarantined, stats, prev, signals, key, max_memory) -> bool:
        """Whether the current version is exactly what this update would write: no id added,
        changed or removed, nothing to embed, the same signals laid out the same way, no row
        quarantined today or in that version, and the same items table. Any doubt: False,
        and a new version is written as before."""
        if self.version is None or stats.embedded or stats.added or stats.changed:
            return False
        if IMAGE_BYTES in items.column_names:
            # Pictures as bytes are not in items.parquet; their digests, which tell a reviewed
            # picture unchanged, are the version's (a reviewer's finding: under a text-only
            # model a swapped picture kept its old digest and its old verdict).
            return False
        if stats.removed or quarantined.num_rows or any(p.failed for p in prev.values()):
            return False  # (failures and quarantine: written as before)
        if set(prev) != {s.name for s in signals} or not self._laid_out_as(
            signals, key, max_memory
        ):
            return False
        current = self.current_dir()
        try:
            manifest = json.loads((current / MANIFEST).read_text())
            entries = manifest.get("signals", {})
            if set(entries) != {s.name for s in signals}:
                return False
            # A setting recorded in the manifest (PDQ's match threshold, say) or another
            # riskrank: a new version records it, as before.
            if (
                manifest.get("format_version") != FORMAT_VERSION
                or manifest.get("riskrank_version") != package_version()
            ):
                return False
            for signal in signals:
                entry = entries[signal.name]
                described = json.loads(json.dumps(signal.describe()))  # as the manifest holds it
                if any(entry.get(k) != v for k, v in described.items()):
                    return False
            if pq.read_metadata(current / "quarantine.parquet").num_rows:
                return False
            held = pq.read_table(current / "items.parquet")
        except (OSError, TypeError, ValueError, pa.ArrowException):
            return False  # (json.JSONDecodeError and UnicodeDecodeError are ValueErrors)
        # Types too: seller ids sent as text where they were numbers cast alike (a reviewer).
        if not items.schema.equals(held.schema, check_metadata=False):
            return False
        return items.equals(held)

    def _warn_unlisted(self, inventory: pa.Table, deletions) -> None:
        """The same inventory again (a no-op): say which deletions name ids neither today's
        inventory, the current version nor the one it was made from lists, as the update
        that made it said. Checked against today's inventory alone, an id that update
        removed was one the index did not hold on every re-run (a reviewer's report)."""
        named = {str(i) for i in deletions or ()}
        if not named or ITEM_ID not in inventory.column_names:
            return
        listed = {str(i) for i in inventory.column(ITEM_ID).to_pylist() if i is not None}
        unknown = resolve_deletions(named, listed)[1]
        held: set[str] = set()
        for v in (self.version or 0, (self.version or 0) - 1):
            items = self.version_dir(v) / "items.parquet" if v >= 1 else None
            if unknown and items is not None and items.exists():
                held.update(map(str, pq.read_table(items, columns=[ITEM_ID])[ITEM_ID].to_pylist()))
        _warn_unknown(resolve_deletions(set(unknown), held)[1] if unknown else [])

    def _record_digest(self, digest: str) -> None:
        """The state says the current version was also made from ``digest``: running the
        same inventory again is then a no-op (one atomic replace; the versions stay)."""
        state = dict(self.state() or {})
        state.update(inventory_digest=digest, updated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ"))
        write_json_atomic(state, self.path / STATE)

    def _laid_out_as(self, signals: list[Signal], key, max_memory) -> bool:
        """Whether each signal's index in the current version is the one an update with this
        ``key`` and ``max_memory`` would keep (``index_key_for``). The same inventory swept
        with another ``index_key`` searched yesterday's index type, while a from-scratch sweep
        searched the key asked for (an outsider's property run)."""
        manifest = self.current_dir() / MANIFEST
        try:
            entries = json.loads(manifest.read_text()).get("signals", {})
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SchemaError(f"{manifest}: unreadable manifest ({exc})") from exc
        for signal in signals:
            entry = entries.get(signal.name)
            if entry is None:
                return False
            if entry.get("count") is None:  # (a manifest without it: as before, by content)
                continue
            want = index_key_for(signal, int(entry["count"]), max_memory, key)
            if entry.get("index_key") != want:
                return False
        return True

    def _previous(self, signals: list[Signal]) -> dict[str, _Previous]:
        """What the current version offers each of ``signals`` (nothing from an index built
        with another encoder: its vectors are not today's)."""
        if self.version is None:
            return {}
        try:
            # The caller's signals open it: a plug-in encoder need not be constructible from
            # the manifest alone (the stand-in of benchmarks/scale.py is not).
            current = InventoryIndex.load(
                self.current_dir(),
                signals={s.name: s for s in signals},
                verify=True,
                use_gpu=False,
                hold=False,  # kept while this update holds the lock: read what it needs only
            )
        except IndexMismatchError as exc:
            raise IndexMismatchError(
                f"{self.path}: this standing index was built with another encoder ({exc}); "
                "update it with the encoder it was built with, or start a new standing index "
                "(a new directory) for the new encoder"
            ) from exc
        if dropped := sorted(set(current.signals) - {s.name for s in signals}):
            log.warning(
                "standing index %s: signal(s) %s are not in this update, so the new version "
                "leaves them out (version %d keeps them until it is pruned; an update with them "
                "embeds every item for them again)", self.path, dropped, self.version,
            )  # fmt: skip
        failures = _failures_by_signal(current.path)
        out = {}
        for signal in signals:
            si = current.signals.get(signal.name)
            if si is None:  # a signal new to this index: every item is embedded for it
                log.info("standing index: signal %r is new, embedding every item", signal.name)
                continue
            out[signal.name] = _previous_signal(si)
            out[signal.name].failed, out[signal.name].failed_items = failures.get(
                signal.name, ({}, {})
            )
        return out

    def _read(self, inventory, signals, deletions, prev, stats) -> tuple[pa.Table, pa.Table]:
        """Validated rows of today's inventory less the deletion list, and the quarantine."""
        items, quarantined = validate_inventory(inventory, require_text=requires_text(signals))
        refuse_all_quarantined(items.num_rows, quarantined)
        stats.items_in = items.num_rows + quarantined.num_rows
        stats.invalid = quarantined.num_rows
        if deletions is None:
            return items, quarantined
        named = {str(i) for i in deletions}
        ids = items.column(ITEM_ID).to_pylist()
        listed = {str(i) for i in quarantined.column(ITEM_ID).to_pylist() if i is not None}
        known = set(ids) | listed | {str(i) for p in prev.values() for i in p.ids}
        gone, stats.deletions_unknown = resolve_deletions(named, known)
        keep = np.array([i not in gone for i in ids], bool)
        stats.deleted = int((~keep).sum())
        if not keep.any():  # the export itself passed as --delete, say: as refuse_all_quarantined
            raise SchemaError(
                f"deletion list: it names every valid row of the inventory ({len(ids):,}): "
                "nothing would be left to index (a standing index keeps its current version; "
                "to empty the index on purpose, build it anew)"
            )
        _warn_unknown(stats.deletions_unknown)
        return items.filter(pa.array(keep)), quarantined

    def _embed(self, items, plan, signals, engine, chunk_size, show_progress, stats):
        """Embed the contents no version holds: per group of signals that need the same rows,
        an ordinary, resumable build under ``_delta/<signals>`` (reused as it is when a killed
        update had finished it). Returns each signal's delta build (absent: nothing to embed)."""
        ddir = self.path / DELTA
        if (ddir / MANIFEST).exists() or (ddir / WORK).exists():
            shutil.rmtree(ddir)  # a killed update of the one-build layout: its build is redone
        groups: dict[tuple, list[Signal]] = {}
        for signal in signals:
            rows = plan["embed"][signal.name]
            if len(rows):
                groups.setdefault(tuple(rows.tolist()), []).append(signal)
        out = {}
        for rows, group in groups.items():
            delta = self._embed_group(
                items.take(pa.array(rows, pa.int64())), group, ddir, engine, chunk_size,
                show_progress,
            )  # fmt: skip
            out.update((s.name, delta) for s in group)
            chunks = delta.manifest.get("chunks", {})
            stats.chunks += int(chunks.get("total", 0))
            stats.chunks_resumed += int(chunks.get("resumed", 0))
        return out

    def _embed_group(self, table, signals, ddir, engine, chunk_size, show_progress):
        gdir = ddir / "+".join(s.name for s in signals)
        stamp, digest = gdir / "inventory.digest", build_digest(table, signals)
        # Never on a GPU: the delta's index is dropped unsearched (below), and a GPU clone of it
        # cost GPU memory and FAISS's GPU set-up for nothing.
        if (gdir / MANIFEST).exists() and stamp.exists() and stamp.read_text() == digest:
            delta = InventoryIndex.load(gdir, signals={s.name: s for s in signals}, use_gpu=False)
            chunks = delta.manifest.get("chunks", {})  # a killed update built all of it
            delta.manifest["chunks"] = {**chunks, "resumed": chunks.get("total", 0)}
        else:
            with inputs_warned():  # _read validated these rows and warned of them
                delta = build_index(
                    table, gdir, signals=signals, engine=engine, key=DELTA_KEY,
                    chunk_size=chunk_size, show_progress=show_progress, overwrite=True,
                    use_gpu=False, empty_ok=True,
                )  # fmt: skip
            write_text_atomic(digest, stamp)
        # Only the delta's vectors, ids and evidence are read; its exact index (a copy of the
        # vectors) is never searched, and holding it beside the new version's index was 1.5 GB
        # more at 1M items.
        for si in delta.signals.values():
            si.index = None
        return delta

    def _commit(self, version: int, written: Path, digest: str, stats: UpdateStats) -> None:
        """Make ``version`` current (one atomic replace), then forget what is no longer needed.
        The state keeps what the update did: a sweep killed after this point and run again
        finds nothing to do, and its report still says what made the version."""
        made = stats.as_dict()
        write_json_atomic(
            {
                "current": version,
                "format": 1,
                "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "inventory_digest": digest,  # what it was made from: the same again is a no-op
                "update": made,
            },
            self.path / STATE,
        )
        shutil.rmtree(self.path / DELTA, ignore_errors=True)
        keep = {self.version_dir(v).name for v in range(version - KEEP_VERSIONS + 1, version + 1)}
        keep |= pinned_versions(self.path)
        for old in (self.path / VERSIONS).iterdir():
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)


def _standing_root(version_dir: Path) -> Path | None:
    """The standing index ``version_dir`` is a version of (None: an index of its own)."""
    root = version_dir.parent.parent
    return root if version_dir.parent.name == VERSIONS and StandingIndex.is_standing(root) else None


@contextmanager
def pinned(version_dir: str | Path, *, reopens: bool = False) -> Iterator[None]:
    """Keep a standing index's version (``version_dir``, as ``InventoryIndex.path``) from
    being pruned while this block runs: for readers that open its files again by path, as
    the Ray engine's tasks do (a sweep that outlived two updates failed there; one machine's
    readers hold the files open). A directory that is not a standing version is not pinned;
    a pin that cannot be written is warned about, not an error.

    ``reopens``: the block opens the version's files again by path, so a version pruned
    before the pin was written (two updates between its load and the pin) is an error that
    says so, not a bare missing file later."""
    version_dir = Path(version_dir)
    root = _standing_root(version_dir)
    pin = None
    if root is not None:
        host, pid = socket.gethostname(), os.getpid()
        pin = root / READERS / f"{version_dir.name}.{host}.{pid}.{uuid.uuid4().hex[:8]}.json"
        info = {"host": host, "pid": pid, "started": process_started(pid), "since": time.time()}
        # Pins of readers gone go now, not only when an update prunes: a killed sweep's
        # stayed after its re-run, which found the index current and wrote nothing.
        pinned_versions(root)
        try:
            pin.parent.mkdir(exist_ok=True)
            write_json_atomic(info, pin)
        except OSError as exc:  # (a read-only copy: this process's open files still hold)
            say = log.warning if reopens else log.debug
            say("%s: could not pin the version being read (%s)", version_dir, exc)
            pin = None
    try:
        if reopens and root is not None and not version_dir.is_dir():
            raise FileNotFoundError(
                f"{version_dir}: the standing index version this sweep read was pruned by "
                "later updates before it could be pinned (two updates within moments of its "
                "start): run the sweep again"
            )
        yield
    finally:
        if pin is not None:
            pin.unlink(missing_ok=True)


def pinned_versions(root: str | Path) -> set[str]:
    """The version directories of the standing index at ``root`` that a live reader pinned;
    pins of readers gone (a dead process on this machine, or older than PIN_HOURS) are
    removed. A process here is the pin's if its pid is alive and, where the pin and the
    system both say, it started when the pin's did (a later process can reuse a pid)."""
    out: set[str] = set()
    here = socket.gethostname()
    for pin in sorted((Path(root) / READERS).glob("*.json")):
        try:
            info = json.loads(pin.read_text())
            if info.get("host") == here:
                pid = int(info["pid"])
                started = info.get("started")
                now = process_started(pid) if started is not None else None
                live = pid_alive(pid) and (now is None or now == started)
            else:
                live = time.time() - float(info["since"]) < PIN_HOURS * 3600
        except (OSError, ValueError, KeyError, TypeError):
            live = False  # unreadable: not a pin this code wrote whole
        if live:
            out.add(pin.name.split(".", 1)[0])
        else:
            # Best effort: a pin this process cannot remove (another user's, in a shared
            # folder) holds nothing, and must not stop a reader's own pin or an update.
            with contextlib.suppress(OSError):
                pin.unlink(missing_ok=True)
    return out


def _read_legacy_keys(items, signals, keys, *holders: dict[str, _Previous]) -> None:
    """Rewrite the image keys a version (or donor) written before ``KEY_FORMAT`` 2 holds,
    which digested the image's path as well as the picture, as today's keys of the same
    content: the first update after an upgrade embeds nothing again for them. Only contents
    in today's inventory can be matched (the others are gone anyway)."""
    for signal in signals:
        if not set(signal.content_columns) & set(IMAGE_COLUMNS) and not signal.recall_settings:
            continue  # such keys are the same in both formats
        old = [
            h[signal.name]
            for h in holders
            if signal.name in h and h[signal.name].entry.get("content_keys") != KEY_FORMAT
        ]
        if not old:
            continue
        by_spec: dict[str, dict[str, str]] = {}  # legacy key -> today's, per old describe()
        for p in old:
            # Old keys digested every describe() key, recall settings too: match them with the
            # settings that version was made with (a PDQ threshold changed on the upgrade day).
            was = {k: p.entry[k] for k in signal.recall_settings if k in p.entry}
            spec = {**signal.describe(), **was}
            tag = json.dumps(spec, sort_keys=True, default=str)
            if tag not in by_spec:
                legacy = signal_content_keys(items, signal, legacy=True, spec=spec)
                by_spec[tag] = dict(zip(legacy, keys[signal.name]))
            now = by_spec[tag]
            p.keys = [now.get(k, k) for k in p.keys]
            p.failed = {now.get(k, k): w for k, w in p.failed.items()}
            p.failed_items = {i: now.get(k, k) for i, k in p.failed_items.items()}


def _donor(donor: str | Path, signals: list[Signal]) -> dict[str, _Previous]:
    """What the standing index (or version directory) ``donor`` offers each of ``signals``:
    its ids, content keys, vectors and evidence, each file checked against the checksum its
    manifest recorded (nothing else of it is opened: not its FAISS index, not its other
    signals). A signal the donor holds with another encoder, in shards, or without content
    keys (an index that is not a standing one) offers nothing; a directory that holds no
    index is refused."""
    path = Path(donor)
    if StandingIndex.is_standing(path):
        path = StandingIndex(path).current_dir()
    if not (path / MANIFEST).exists():
        raise NotAStandingIndexError(f"donor {donor}: not an index (no {MANIFEST})")
    entries = json.loads((path / MANIFEST).read_text()).get("signals", {})
    out = {}
    for signal in signals:
        entry = entries.get(signal.name)
        why = "not indexed" if entry is None else signal.compatible_with(entry)
        why = why or ("sharded" if "shards" in entry else "")
        why = why or ("no content keys" if not (path / signal.name / KEYS).exists() else "")
        if why:
            log.info("donor %s offers nothing for %r: %s", donor, signal.name, why)
            continue
        sdir = path / signal.name
        read = {f: d for f, d in entry["checksums"].items() if f != "index.faiss"}
        verify_checksums(sdir, read, what="donor index")
        ids = pq.read_table(sdir / "ids.parquet").column(ITEM_ID).to_numpy(zero_copy_only=False)
        si = SignalIndex(signal, entry, None, ids, sdir)
        keys = _content_keys(si)
        out[signal.name] = _Previous(si.ids, keys, si.vectors, si.evidence, None, entry)
    return out


def _previous_signal(si: SignalIndex) -> _Previous:
    ivf = str(si.entry["index_key"]).startswith(("IVF", "BIVF")) and "shards" not in si.entry
    keys = _content_keys(si)
    return _Previous(si.ids, keys, si.vectors, si.evidence, si.index if ivf else None, si.entry)


def _content_keys(si: SignalIndex) -> list[str]:
    """A version's content keys (``SignalIndex.content_keys``, the one reader of the file),
    refused unless there is one per item."""
    if si.content_keys is None:
        raise SchemaError(f"{Path(si.directory) / KEYS}: one content key per item expected")
    return si.content_keys


# Which contents signals refuse (``Signal.unreadable``; 1: the text signal's unknown tokens,
# 2026-12-06). A version records the rule it was written under; bump it when a signal starts
# refusing more, so that the next update looks for such content among the stored vectors.
UNREADABLE_RULE = 1


def _unreadable_keys(items: pa.Table, keys: dict[str, list[str]], signals) -> dict[str, set]:
    """Per signal, the content keys of today's rows it refuses to embed (``unreadable``): a
    vector an earlier version (or a donor) stored for one is not reused, so the content is
    embedded again, fails with the signal's reason, and is remembered as failed."""
    out = {}
    for signal in signals:
        rows = np.flatnonzero(signal.unreadable(items))
        out[signal.name] = {keys[signal.name][r] for r in rows}
    return out


def _plan(
    items: pa.Table,
    keys: dict[str, list[str]],
    prev: dict,
    stats: UpdateStats,
    donated: dict,
    unreadable: dict[str, set] | None = None,
) -> dict:
    """Per signal, which rows need embedding for it (one per distinct content of that signal
    neither the current version nor the donor holds, or that the signal now refuses:
    ``unreadable``), and for each row the row it takes that signal's new vector from. Signals
    are planned apart: a new image under an unchanged text costs an image embedding only, and
    one text under many images is embedded once."""
    source: dict[str, np.ndarray] = {}  # per signal, per row: the row it embeds through, or -1
    embed: dict[str, np.ndarray] = {}  # per signal: the rows embedded for it
    for name, k in keys.items():
        stored = {
            *(prev[name].keys if name in prev else ()),
            *(donated[name].keys if name in donated else ()),
        }
        known = {
            *(stored - (unreadable or {}).get(name, set())),
            *(prev[name].failed if name in prev else ()),
        }
        rep_of: dict[str, int] = {}
        src = np.full(items.num_rows, -1, np.int64)
        for r, key in enumerate(k):
            if key not in known and not key.endswith(NOTHING):
                src[r] = rep_of.setdefault(key, r)
        source[name], embed[name] = src, np.array(sorted(rep_of.values()), np.int64)
    rows = np.unique(np.concatenate([np.zeros(0, np.int64), *embed.values()]))
    stats.embedded = len(rows)
    stats.embedded_by_signal = {n: len(e) for n, e in embed.items()}
    needing = np.zeros(items.num_rows, bool)
    for src in source.values():
        needing |= src >= 0
    stats.shared_content = int(needing.sum()) - len(rows)
    _count_changes(items, keys, prev, stats)
    return {"embed_rows": rows, "embed": embed, "source": source, "unreadable": unreadable or {}}


LOST_FOLDER_MIN = 10  # picture files not found, none read: a wrong folder, not a few gone


def _refuse_lost_folder(delta: dict, prev: dict, items: pa.Table, keys: dict) -> None:
    """Refuse an update in which a signal found none of the picture files it was to read (or
    decoded none of the pictures it was given), and could not use those of at least
    ``LOST_FOLDER_MIN`` items whose pictures the current version holds, at least half of
    them: a sweep run without its
    ``--image-base-dir`` (or from another directory) wrote a version without a picture,
    warned, and the next right run embedded them all again (an outsider's report). Nothing is
    written; the current version stays, as for an inventory none of whose rows passes.
    Where it read as many of the pictures the version holds today (``LOST_FOLDER_MIN``, or as
    many as were lost), the folder is right: files are gone, as a retention job removes an
    export's older folders (such a day was refused, with advice to check the folder: an
    outsider's week)."""
    for name, index in delta.items():
        failures = index.signal_failures
        if name not in prev or not len(prev[name].ids) or failures is None:
            continue
        # Only items whose picture the version holds: a day's new ads whose files were not
        # delivered are not a lost folder (12 of them were refused: an outsider's report).
        had = set(prev[name].ids)
        held = len(index.signals[name].ids) if name in index.signals else 0
        rows = list(zip(*(failures[c].to_pylist() for c in (ITEM_ID, "signal", "reason"))))
        for start, said in _LOST_PICTURES:
            lost = [f"{i}: {r}" for i, n, r in rows if n == name and i in had
                    and str(r).startswith(start)]  # fmt: skip
            # Files gone beside many read (a retention job removed older folders): no wrong
            # folder. One held picture that happened to be in the wrong folder is not enough
            # (it let a version keep 1 of 30 pictures: a reviewer's finding).
            if start == NOT_FOUND and len(lost) >= max(LOST_FOLDER_MIN, len(had) / 2):
                read = _held_files_read(items, keys[name], prev[name])
                if read >= min(LOST_FOLDER_MIN, len(lost)):
                    continue
            if len(lost) >= max(LOST_FOLDER_MIN, len(had) / 2) and not held:
                raise SchemaError(
                    said.format(name=name, n=len(lost), e=lost[0], had=len(had))
                    + " Nothing was written; the current version stays"
                )


def _held_files_read(items: pa.Table, keys: list[str], prev: _Previous) -> int:
    """How many rows whose picture comes as a file (a path, no bytes) were read today as a
    picture the version holds (its content key is one of the version's)."""
    held = set(prev.keys)
    return sum(keys[r] in held for r, by_file in enumerate(file_only(items)) if by_file)


# Per kind of failure, what a version none of whose pictures it could use says. Pictures that
# came but none decodes too: an export that wrote them as hex text into image_bytes took
# every picture out of the version, with exit 0 and no warning (an outsider's report).
_LOST_PICTURES = (
    (
        NOT_FOUND,
        "{name}: none of the {n:,} picture files this update was to read were found (e.g. "
        "{e}), while the current version holds {had:,} pictures: is the image base directory "
        "right (--image-base-dir; relative image paths are read from it)?",
    ),
    (
        UNRECOGNISED,
        "{name}: none of the {n:,} pictures of this update could be decoded (e.g. {e}), while "
        "the current version holds {had:,} pictures: is the export's image column right?",
    ),
)


def _drop_rewritten_files(items: pa.Table, plan: dict, keys: dict, signals) -> None:
    """Digest again the image files just embedded: a file rewritten since the update keyed
    it (an exporter writing into the folder meanwhile) may have given a vector of other
    bytes than its key names, which a later item with the old picture would reuse. Such a
    content's vector is not kept: it is listed (``CHANGED_WHILE_READ``) and embedded again
    by the next update. (A file changed and changed back between the reads goes unseen.)"""
    plan["rewritten"] = {}
    for signal in signals:
        rows = plan["embed"][signal.name]
        if not len(rows) or IMAGE_PATH not in items.column_names:
            continue
        if not set(signal.content_columns) & set(IMAGE_COLUMNS):
            continue
        with reading_files_afresh():
            now = signal_content_keys(items.take(pa.array(rows, pa.int64())), signal)
        moved = {int(r) for r, k in zip(rows, now) if k != keys[signal.name][r]}
        if moved:
            log.warning(
                "standing index: %d image file(s) changed while this update read them (%s): "
                "not kept, embedded again next update", len(moved),
                ", ".join(str(items[ITEM_ID][r]) for r in sorted(moved)[:3]),
            )  # fmt: skip
            src = plan["source"][signal.name]
            hit = np.isin(src, list(moved))
            plan["rewritten"][signal.name] = set(np.flatnonzero(hit).tolist())
            src[hit] = -1


def _count_changes(items: pa.Table, keys: dict, prev: dict, stats: UpdateStats) -> None:
    before: dict[str, dict[str, str]] = {}
    for name, p in prev.items():
        for item_id, k in zip(p.ids, p.keys):
            before.setdefault(str(item_id), {})[name] = k
        for item_id, k in p.failed_items.items():
            before.setdefault(item_id, {})[name] = k
    ids = items.column(ITEM_ID).to_pylist()
    for r, item_id in enumerate(ids):
        old = before.get(item_id)
        if old is None:
            stats.added += 1
        elif any(_differs(old.get(n), keys[n][r]) for n in keys):
            stats.changed += 1
        else:
            stats.unchanged += 1
    # Removed from the index: held by some signal yesterday. An item quarantined yesterday
    # (no signal could use its content) that is gone today was never in the index.
    held = {str(i) for p in prev.values() for i in p.ids}
    stats.removed = len(held - set(ids))


def _differs(before: str | None, key: str) -> bool:
    """Whether an item's content for one signal changed (``before``: None where that signal
    did not index the item: it had nothing for it, or what it had could not be used)."""
    return before != key if before is not None else not key.endswith(NOTHING)


@dataclass
class _Assembled:
    """One signal's new version: rows of ``items`` it indexes, in order, and where each one's
    vector comes from (``vectors`` once ``_write_vectors`` has written them)."""

    rows: np.ndarray
    keys: list[str]
    evidence: dict[str, np.ndarray]
    old_position: np.ndarray  # per new position, the previous version's position or -1
    delta_position: np.ndarray  # per new position, the delta build's position or -1
    donor_position: np.ndarray  # per new position, the donor's position or -1
    sources: tuple  # (the previous version's vectors, the delta's, the donor's); any may be None
    width: int
    dtype: np.dtype
    vectors: StoredVectors | None = None


def _assemble(
    signal: Signal, ids, keys: list[str], plan: dict, prev, delta, donor=None
) -> _Assembled:
    """Vectors for every row of today's items: the previous version's where it holds the
    content (the item's own position when its content is unchanged, so that an IVF index
    keeps its entry), else the donor's, else the delta's (the row the content was embedded
    through)."""
    n = len(keys)
    old_pos_of = {k: p for p, k in enumerate(prev.keys)} if prev else {}
    donor_pos_of = {k: p for p, k in reversed(list(enumerate(donor.keys)))} if donor else {}
    own_pos = {str(i): p for p, i in enumerate(prev.ids)} if prev else {}
    dsi = delta.signals.get(signal.name) if delta is not None else None
    source = plan["source"][signal.name]
    delta_pos = {str(i): p for p, i in enumerate(dsi.ids)} if dsi is not None else {}
    embed_ids = plan["delta_ids"]
    old = np.full(n, -1, np.int64)
    new = np.full(n, -1, np.int64)
    given = np.full(n, -1, np.int64)
    refused = plan.get("unreadable", {}).get(signal.name, set())
    for r, k in enumerate(keys):
        if k in refused:  # a vector stored before the signal refused such content: not reused
            if source[r] >= 0:
                new[r] = delta_pos.get(embed_ids[int(source[r])], -1)
            continue
        p = own_pos.get(ids[r])
        if p is None or prev.keys[p] != k:
            p = old_pos_of.get(k)
        if p is not None:
            old[r] = p
        elif k in donor_pos_of:
            given[r] = donor_pos_of[k]
        elif source[r] >= 0:
            new[r] = delta_pos.get(embed_ids[int(source[r])], -1)
    rows = np.flatnonzero((old >= 0) | (new >= 0) | (given >= 0))
    evidence = _assemble_evidence(
        ((prev and prev.evidence, old[rows]), (dsi and dsi.evidence, new[rows]),
         (donor and donor.evidence, given[rows]))
    )  # fmt: skip
    sources = tuple(s.vectors if s is not None else None for s in (prev, dsi, donor))
    return _Assembled(
        rows, [keys[r] for r in rows], evidence, old[rows], new[rows], given[rows], sources,
        signal_width(signal), np.dtype(_dtype(signal)),
    )  # fmt: skip


def _write_vectors(path: Path, asm: _Assembled, block: int = 65_536) -> StoredVectors:
    """Write the new version's ``vectors.npy`` block by block from the previous version's and
    the delta's files, and read it back as ``StoredVectors``: the whole matrix is never in
    memory (at 1M items it is 1.5 GB, as much again as the IVF-Flat index built next)."""
    n = len(asm.rows)
    with open_npy(path, n, asm.width, asm.dtype) as f:
        for start in range(0, n, block):
            stop = min(n, start + block)
            part = np.empty((stop - start, asm.width), asm.dtype)
            positions = (asm.old_position, asm.delta_position, asm.donor_position)
            for pos, source in zip((p[start:stop] for p in positions), asm.sources):
                if (pos >= 0).any():
                    part[pos >= 0] = source[pos[pos >= 0]]
            part.tofile(f)
    return StoredVectors(path)


def signal_width(signal: Signal) -> int:
    """Columns of the signal's vector array (bytes for a binary hash)."""
    return signal.dim // 8 if signal.index_kind is IndexKind.BINARY_HASHES else signal.dim


def _dtype(signal: Signal):
    return np.uint8 if signal.index_kind is IndexKind.BINARY_HASHES else np.float32


def _assemble_evidence(sources) -> dict[str, np.ndarray]:
    """Per-item evidence columns of the new positions, from the (evidence table, position per
    new position or -1) pairs of the sources their vectors came from (the previous version,
    the delta build, the donor)."""
    cols = next((t.column_names for t, _ in sources if t is not None), None)
    if cols is None:
        return {}
    out = {}
    for name in (c for c in cols if c != ITEM_ID):
        parts = np.empty(len(sources[0][1]), dtype=object)
        for table, pos in sources:
            if table is not None:
                values = table.column(name).to_numpy(zero_copy_only=False)
                hit = pos >= 0
                parts[hit] = values[pos[hit]]
        out[name] = np.asarray(parts.tolist())
    return out


def _write_version(
    vdir, items, quarantined, keys, plan, prev, delta, signals, stats, *, key, max_memory, donated
) -> Path:
    """Every file of the new version, the manifest last."""
    ids = np.asarray(items.column(ITEM_ID).to_pylist(), dtype=object)
    plan["delta_ids"] = {r: str(ids[r]) for r in plan["embed_rows"]}
    entries, indexed = {}, np.zeros(items.num_rows, bool)
    held, assembled = {}, {}  # per signal: which rows it indexes, and from where
    for signal in signals:
        asm = _assemble(
            signal, ids, keys[signal.name], plan, prev.get(signal.name), delta.get(signal.name),
            donated.get(signal.name),
        )  # fmt: skip
        stats.reused_vectors += int((asm.old_position >= 0).sum())
        stats.donated_vectors += int((asm.donor_position >= 0).sum())
        indexed[asm.rows] = True
        held[signal.name] = np.zeros(items.num_rows, bool)
        held[signal.name][asm.rows] = True
        assembled[signal.name] = asm
    failures = _failures(ids, keys, signals, indexed, held, plan, prev, delta)
    quarantined = _quarantine(quarantined, ids, indexed, failures, [s.name for s in signals])
    # Rows that passed validation and that no signal could embed (emoji-only texts, pictures
    # that do not decode): refused as validation's are, before anything of this version is
    # written (a forced IVF key failed to train on no vectors first: reviewer CE). Ten of
    # them swept into an empty queue, exit 0, and emptied the index (outsider CD).
    refuse_all_quarantined(int(indexed.sum()), quarantined)
    for signal in signals:
        asm = assembled[signal.name]
        entries[signal.name] = _write_signal(
            vdir / signal.name, signal, ids[asm.rows], asm, prev.get(signal.name), stats,
            key=key, max_memory=max_memory,
        )  # fmt: skip
    meta = [c for c in items.column_names if c != IMAGE_BYTES]
    kept = items.filter(pa.array(indexed))
    write_parquet(kept.select(meta), vdir / "items.parquet")
    write_parquet(quarantined, vdir / "quarantine.parquet")
    write_parquet(failures, vdir / SIGNAL_FAILURES)
    files = ["items.parquet", "quarantine.parquet", SIGNAL_FAILURES]
    # The pictures' bytes are not kept: their digests are, so that a sweep tells a reviewed
    # picture unchanged from the rows the index kept (rank/reviewed.py). Written even when
    # empty: its presence says the version keeps them (one written before does not).
    write_parquet(_picture_digests(kept, signals), vdir / PICTURES_FILE)
    files.append(PICTURES_FILE)
    input_rows = stats.items_in - stats.deleted
    stats.indexed, stats.quarantined = int(indexed.sum()), quarantined.num_rows
    write_manifest(
        vdir,
        {
            "engine": "standing",
            "items": {
                "input": input_rows,
                "indexed": int(indexed.sum()),
                "quarantined": quarantined.num_rows,
                "deleted": stats.deleted,
            },
            "signals": entries,
            "standing": {
                "version": stats.version,
                "update": stats.as_dict(),
                "unreadable_rule": UNREADABLE_RULE,
                **({"image_base_dirs": dirs} if (dirs := _image_dirs(items, signals)) else {}),
            },
            "files": checksum_files(vdir, files),
        },
    )
    return vdir


def _picture_digests(kept: pa.Table, signals: Sequence[Signal]) -> pa.Table:
    """item_id -> sha256 of each kept item's picture: its ``image_bytes``, else the file its
    ``image_path`` names, read where the signals read it (``picture_file_sha``), so that a
    sweep of this version without the inventory tells a reviewed picture unchanged even once
    the folder is gone (it found such items changed, and queued them again: an outsider's
    report). Where no signal reads paths, or the file was not read, none."""
    if (
        not any(IMAGE_PATH in s.content_columns for s in signals)
        and IMAGE_PATH in kept.column_names
    ):
        kept = kept.drop_columns([IMAGE_PATH])  # (no signal read the files: bytes only)
    shas = picture_shas(kept, signal_base_dirs(signals))  # (as the review digests read them)
    column = pa.array(shas, pa.binary(32))
    return pa.table({ITEM_ID: kept[ITEM_ID], "image_sha256": column}).filter(pc.is_valid(column))


def _image_dirs(items: pa.Table, signals: Sequence[Signal]) -> list[str]:
    """Where this update read the items' ``image_path`` files from (absolute; the working
    directory for a signal given none): a sweep of the version as it stands, given no folder,
    reads its reviewed items' pictures there (``recorded_image_dir``)."""
    if IMAGE_PATH not in items.column_names or items[IMAGE_PATH].null_count == len(items):
        return []
    reading = [s for s in signals if IMAGE_PATH in s.content_columns]
    dirs = signal_base_dirs(reading) if reading else []
    return [str(Path(os.getcwd() if d is None else d).resolve()) for d in dirs]


def recorded_image_dir(manifest: dict) -> str | None:
    """The one folder a version's update read ``image_path`` files from (``_image_dirs``):
    where a sweep of it as it stands, and an import of verdicts on its queue, read reviewed
    pictures when told no folder. None where it read none, or several, or for a version
    written before they were recorded."""
    dirs = manifest.get("standing", {}).get("image_base_dirs", [])
    return dirs[0] if len(dirs) == 1 else None


def _failures(ids, keys, signals, indexed, held, plan, prev, delta) -> pa.Table:
    """Today's ``signal_failures``, as a from-scratch build would list them (index/build.py
    ``signal_failures``): per signal, the rows with content for it that it does not hold,
    and for rows no signal holds every signal's reason. The reason is the delta build's
    where the content was embedded today, else the one recorded when it failed before."""
    from_delta: dict[tuple[str, str], str] = {}
    for built in {id(d): d for d in delta.values()}.values():
        t = built.signal_failures
        cols = (t[ITEM_ID].to_pylist(), t["signal"].to_pylist(), t["reason"].to_pylist())
        from_delta.update(((i, n), w) for i, n, w in zip(*cols))
    rows: dict[str, list] = {ITEM_ID: [], "signal": [], "reason": [], "key": []}
    for signal in signals:
        name, k = signal.name, keys[signal.name]
        old = prev[name].failed if name in prev else {}
        lacking = ~held[name]
        for r in np.flatnonzero(lacking):
            if indexed[r] and k[r].endswith(NOTHING):
                continue  # no content of this kind: nothing failed
            source = int(plan["source"][name][r])
            why = from_delta.get((plan["delta_ids"].get(source), name)) if source >= 0 else None
            if r in plan.get("rewritten", {}).get(name, ()):
                why = CHANGED_WHILE_READ
            if why is None and k[r].endswith(NOTHING):
                why = _absent_reason(signal)
            rows[ITEM_ID].append(str(ids[r]))
            rows["signal"].append(name)
            rows["reason"].append(why or old.get(k[r]) or "could not be embedded")
            # A failure that may not recur (memory pressure, an unexpected decoder error) is
            # listed but not remembered: the next update tries that content again.
            rows["key"].append(k[r] if _lasting(rows["reason"][-1]) else None)
    return signal_failure_table(rows)


def _lasting(reason: str) -> bool:
    """Whether the same content would fail again for the same reason (corrupt bytes, too
    many pixels, a path outside the base directory), so need not be tried again."""
    return not reason.startswith(PASSING_FAILURES)


def _absent_reason(signal: Signal) -> str:
    """What a signal says of a row with no content of its kind (as ``embed_items`` does)."""
    return "no text" if tuple(signal.content_columns) == (TEXT,) else "no image"


def _failures_by_signal(vdir: Path) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """A version's ``signal_failures`` per signal: (content key -> reason, item_id -> key).
    A version written before the table existed has none: its failed contents are tried again
    once, and recorded then."""
    path = vdir / SIGNAL_FAILURES
    if not path.exists():
        return {}
    t = pq.read_table(path)
    out: dict[str, tuple[dict, dict]] = {}
    for i, n, w, k in zip(*(t[c].to_pylist() for c in (ITEM_ID, "signal", "reason", "key"))):
        if k is None:
            continue
        by_key, by_item = out.setdefault(n, ({}, {}))
        by_key[k] = _RENAMED_REASONS.get(w, w)
        by_item[i] = k
    return out


# Reasons a version remembers under an older wording: an empty picture has one reason now,
# file or bytes (one content, one key); an index kept from before lists it as a rebuild does.
_RENAMED_REASONS = {
    "image_bytes is empty (0 bytes)": EMPTY_IMAGE,
    "image file is empty (0 bytes)": EMPTY_IMAGE,
}


def _quarantine(quarantined: pa.Table, ids, indexed, failures: pa.Table, names) -> pa.Table:
    """Validation's rows, then today's items no signal indexed, each with every signal's
    reason joined as a from-scratch build joins them (index/build.py ``unusable_rows``)."""
    missing = np.flatnonzero(~indexed)
    if not len(missing):
        return quarantined
    why: dict[str, dict[str, str]] = {}
    for i, n, w in zip(*(failures[c].to_pylist() for c in (ITEM_ID, "signal", "reason"))):
        why.setdefault(i, {})[n] = w
    rows = []
    for r in missing:
        reasons = why.get(str(ids[r]), {})
        rows.append(
            {
                ITEM_ID: ids[r],
                "row": -1,
                "stage": "encode",
                "reason": "; ".join(f"{n}: {reasons[n]}" for n in names if n in reasons)
                or "no signal could embed the item's content",
            }
        )
    return pa.concat_tables([quarantined, quarantine_table(rows)])


def _write_signal(sdir: Path, signal, ids, asm: _Assembled, prev, stats, *, key, max_memory):
    """One signal's files in the new version; returns its manifest entry."""
    sdir.mkdir(parents=True, exist_ok=True)
    asm.vectors = _write_vectors(sdir / "vectors.npy", asm)  # the index is built from the file
    t0 = time.time()
    index, action, why, ivf = _maintain_index(signal, asm, prev, stats.version, key, max_memory)
    seconds = time.time() - t0
    index.save(sdir / "index.faiss")
    files, _ = write_signal_files(sdir, ids, asm.evidence)
    write_parquet(pa.table({"content_key": pa.array(asm.keys, pa.string())}), sdir / KEYS)
    stats.signals[signal.name] = {"index": action, "why": why, "key": index.key}
    return signal_entry(
        signal,
        signal.describe(),
        index,
        len(ids),
        (sdir / "index.faiss").stat().st_size,
        seconds,
        sdir,
        ["index.faiss", "vectors.npy", *files, KEYS],
        {"content_keys": KEY_FORMAT, **({"ivf": ivf} if ivf else {})},
    )


def _maintain_index(signal, asm: _Assembled, prev, version: int, key, max_memory):
    """The signal's FAISS index for the new version: (index, action, why, IVF bookkeeping).
    An IVF index is updated in place unless a retrain rule (module docstring) fires."""
    n = len(asm.rows)
    key_now = index_key_for(signal, n, max_memory, key)
    if prev is None:
        return _fresh(signal, asm, key_now, version, "built", "no previous version")
    if prev.entry["index_key"] != key_now:
        why = f"index key {prev.entry['index_key']} -> {key_now} for {n:,} items"
        return _fresh(signal, asm, key_now, version, "retrained", why)
    if prev.index is None:
        return _fresh(signal, asm, key_now, version, "re-laid", "exact index: its vectors")
    info = prev.entry["ivf"]
    first_use, keep_old = np.unique(asm.old_position, return_index=True)
    kept = first_use >= 0
    added = np.setdiff1d(np.arange(n), keep_old[kept])
    since = int(info["added_since_training"]) + len(added)
    if n and since / n > RETRAIN_ADDED_SHARE:
        why = f"{since / n:.0%} of the items were added since the quantizer was trained"
        return _fresh(signal, asm, key_now, version, "retrained", why)
    index = prev.index
    old_to_new = np.full(index.ntotal, -1, np.int64)
    old_to_new[first_use[kept]] = keep_old[kept]
    index.update_in_place(old_to_new, asm.vectors[added], added)
    limit = RETRAIN_IMBALANCE_GROWTH * float(info["imbalance_at_training"])
    if index.imbalance() > limit:
        why = f"list imbalance {index.imbalance():.2f} > {limit:.2f}"
        return _fresh(signal, asm, key_now, version, "retrained", why)
    # A value measured before lossy indexes were re-scored as recall searches them (no
    # ``recall_sd_at_training`` beside it) is another measurement: not compared (a reviewer
    # measured IVF128,PQ16 at 0.46 raw and 0.88 re-scored, which had turned the rule off).
    trained = info.get("recall_at_training") if "recall_sd_at_training" in info else None
    sample = _recall(index, asm) if trained is not None else None  # (older: nothing to compare)
    if sample is not None:
        margin = _recall_margin(sample, info.get("recall_sd_at_training"))
        if sample.mean < trained - margin:
            why = (
                f"sampled recall@{RECALL_K} {sample.mean:.4f}, below the {trained:.4f} "
                f"measured after training by more than {margin:.4f}"
            )
            return _fresh(signal, asm, key_now, version, "retrained", why)
    ivf = {**info, "added_since_training": since}
    if sample is not None:
        ivf |= {"recall": round(sample.mean, 4), "recall_sd": round(sample.sd, 4)}
    return index, "in-place", f"{len(added):,} added, {int((old_to_new < 0).sum()):,} removed", ivf


def _recall_margin(sample: RecallSample, sd_at_training: float | None) -> float:
    """How far below its value after training the sampled recall may fall before rule 4
    retrains: ``RETRAIN_RECALL_DROP``, or three standard errors of the difference of two
    samples where that is more. A binary index at recall ~0.6 was retrained 4 times in 36
    days of inventory that never changed in kind, and 3 of the 4 gained less than 0.01 (a
    reviewer's run): at that recall the per-query shares spread widely. The samples share
    most of their queries (``_recall``), so this overstates the noise: it errs toward
    keeping the index."""
    sd0 = sample.sd if sd_at_training is None else float(sd_at_training)
    noise = 3.0 * math.sqrt((sd0**2 + sample.sd**2) / max(1, sample.queries))
    return max(RETRAIN_RECALL_DROP, noise)


def _fresh(signal, asm: _Assembled, key: str, version: int, action: str, why: str):
    index = signal.build_index(asm.vectors, key=key, use_gpu=False)
    ivf = None
    if index.is_ivf:
        sample = _recall(index, asm)
        ivf = {
            "trained_items": len(asm.rows),
            "trained_version": version,
            "added_since_training": 0,
            "imbalance_at_training": round(index.imbalance(), 4),
            "recall_at_training": None if sample is None else round(sample.mean, 4),
            "recall_sd_at_training": None if sample is None else round(sample.sd, 4),
        }
    return index, action, why, ivf


def _recall(index, asm: _Assembled) -> RecallSample | None:
    """An IVF index's sampled recall (rule 4 of the module docstring). Its queries are the
    contents whose keys sort first (digests: a draw blind to the vectors), so the contents
    that stay are asked again day after day and the comparison with the recall at training
    is nearly paired: two independent draws differ by sampling noise alone, which for an
    index of low recall (binary hashes) can be as large as the rule's margin."""
    first: dict[str, int] = {}
    for p, key in enumerate(asm.keys):
        first.setdefault(key, p)
    picked = heapq.nsmallest(RECALL_QUERIES, first)
    positions = np.array([first[key] for key in picked], np.int64)
    return recall_sample(index, asm.vectors, k=RECALL_K, positions=positions)

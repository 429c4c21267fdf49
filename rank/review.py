"""Verdicts back in: reviewers' decisions on a queue become history, and the model retrains.

Verdict file columns (Parquet or CSV)
-------------------------------------
``item_id``      the reviewed item, or
``campaign_id``  a whole campaign (from the queue): the verdict applies to every member the
                 queue lists (``campaign_members`` in campaign mode, rows with that
                 ``campaign_id`` otherwise), and ``verdict_source`` says so. A member's own item
                 verdict, where there is one, wins over its campaign's (and a member whose own
                 rows were quarantined takes none). A row naming both is the item's verdict
                 (the item must be a member), except the row a campaign-mode queue showed for
                 the campaign, its representative: that is the campaign's verdict.
``campaign_members`` / ``campaign_size``  optional, on campaign rows: the members (or their
                 count) the campaign was decided on, as a campaign-mode queue row carries them;
                 a row whose members differ from the queue's is quarantined (the same id can
                 name another group on another day), and the import warns how many campaign
                 rows carried neither.
``verdict``      integer 0-3 (0 benign, 1 borderline, 2 violating, 3 severe).
``policy``       optional: default (also for a blank cell) the policy the queue showed the
                 item under.

Ids are text; integer ids are read as their digits, as the inventory reads them. Every row
is either imported or quarantined with its reason (``verdicts_quarantine.parquet`` in the
new model directory; ``row`` counts the file's data rows from 0, so a CSV's line is row +
2): unknown item or campaign ids, a missing or out-of-range or non-integer verdict, a policy
the model has no seeds for, duplicate or conflicting verdicts (all rows of a conflict are
quarantined: nobody can tell which one is right), a campaign verdict that reaches no member,
an item the history already has another verdict for on the same content (the same verdict
again, or on an item the inventory given no longer holds, is set apart as
``stage="already_recorded"``, and one a later sweep's review supersedes as
``stage="superseded"``: nothing to change, no bad row, even with ``strict``), an item whose
content cannot be found or is empty, or is not what the queue showed (the start of its text: an
``--inventory`` edited since the sweep). An item whose content changed since its review (the
sweep queued it as ``reviewed="changed"``) takes the new verdict: its new history row
replaces the old one, and the next sweep sees it reviewed and unchanged. ``strict=True``
raises ``SchemaError`` naming the rows instead, and nothing is imported. Refused before
anything is written: an ``out_dir`` that already holds a model or holds a user's files, and
a queue made by a later model version than ``model_dir`` or by another model of its version
(its ``report.json`` names the model). A file that imports nothing (no rows, or every row
quarantined) is refused with the reasons counted: a new version would be its parent again.

Models are versioned: ``model.json`` records ``version``, ``parent_version``,
``history_digest`` (sha256 of the sorted item/policy/verdict rows) and ``created_at``; the
directory keeps ``history.parquet`` and ``seeds.parquet``, which the next import starts from.
``retrain=False`` (``--no-retrain``) writes the new history with ``pending.json`` instead of
a model; ``retrain_pending`` trains it later with the same lineage.

>>> result = import_verdicts("verdicts.csv", "runs/day1/queue.parquet", "models/v1",
...                          out_dir="models/v2")                       # doctest: +SKIP
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from riskrank.index.content_digest import signal_base_dirs
from riskrank.index.manifest import MANIFEST, read_json_object, sha256_file
from riskrank.index.output_lock import holds_output_lock
from riskrank.index.paths import not_found_in, read_image_file, resolve_image_path
from riskrank.index.run_log import get_logger
from riskrank.index.schema import (
    ABSENT_REASONS,
    IMAGE_BYTES,
    IMAGE_PATH,
    ITEM_ID,
    NO_CONTENT,
    SIGNAL_FAILURES,
    has_content,
    inputs_warned,
    is_blank,
    quarantine_table,
)
from riskrank.index.signals.images import reads_only_pictures
from riskrank.index.signals.registry import signal_class
from riskrank.index.standing import (
    DELTA,
    KEY_FORMAT,
    LOCK,
    StandingIndex,
    _failures_by_signal,
    recorded_image_dir,
    signal_content_keys,
)
from riskrank.index.store import KEYS, current_version
from riskrank.index.tables import (
    PANDAS_ATTRS,
    WHOLE_NUMBER,
    SchemaError,
    TableLike,
    as_table,
    header_key,
    known_id,
    read_text_csv,
    write_parquet,
)
from riskrank.rank import sweep_output
from riskrank.rank.campaigns import MEMBER_DIGESTS
from riskrank.rank.queue import shown_text, text_digest_forms, text_digests
from riskrank.rank.reviewed import content_digests
from riskrank.rank.reviewed import text_as_seen as reads_text_as_seen
from riskrank.recall.history import (
    GRADES_IN_WORDS,
    HISTORY_SCHEMA,
    VERDICT_MAX,
    VERDICT_WORDS,
    verdict_grade,
    zero_one,
)
from riskrank.recall.seeds import SeedSet

HISTORY_FILE = "history.parquet"
SEEDS_FILE = "seeds.parquet"
QUARANTINE_FILE = "verdicts_quarantine.parquet"
PENDING_FILE = "pending.json"  # what a --no-retrain import leaves for retrain_pending
PENDING_UNFINISHED = ".pending-unfinished"  # beside a --no-retrain import's files until then
CONTENT = ("text", "image_bytes", "image_path")


def history_digest(history: pa.Table) -> str:
    """sha256 of the history's (item_id, policy, verdict) rows, in sorted order."""
    rows = sorted(
        zip(
            map(str, history[ITEM_ID].to_pylist()),
            map(str, history["policy"].to_pylist()),
            map(str, history["verdict"].to_pylist()),
        )
    )
    return hashlib.sha256("\n".join("\x1f".join(r) for r in rows).encode()).hexdigest()


def lineage_info(history: pa.Table, parent: dict | None = None) -> dict:
    """The version stamp a model's ``model.json`` carries (``parent``: the parent model's
    info; None = a first model)."""
    return {
        "version": int(parent.get("version", 1)) + 1 if parent else 1,
        "parent_version": int(parent.get("version", 1)) if parent else None,
        "parent_history_digest": parent.get("history_digest") if parent else None,
        "history_digest": history_digest(history),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def keep_pictures(history: pa.Table, signals: list) -> pa.Table:
    """``history`` (or a seed table) with each picture that comes as a file also as its bytes
    (where a base directory of ``signals`` has it), as an import keeps reviewed pictures: a
    model keeps what its reviewers saw, not paths into an export folder. A retrain after the
    folder had moved lost the pictures of the first model's 120 reviews (an outsider's
    report)."""
    if IMAGE_PATH not in history.column_names or not _reads_pictures(signals):
        return history
    rows = history.select(
        [c for c in (IMAGE_BYTES, IMAGE_PATH) if c in history.column_names]
    ).to_pylist()
    data = [_with_picture(r, signals).get(IMAGE_BYTES) for r in rows]
    column = pa.array(data, pa.binary())
    if IMAGE_BYTES in history.column_names:
        return history.set_column(history.schema.get_field_index(IMAGE_BYTES), IMAGE_BYTES, column)
    return history.append_column(IMAGE_BYTES, column)


def stored_history(history: pa.Table) -> pa.Table:
    """``history`` as a model keeps it: ``verdict`` as ``HISTORY_SCHEMA``'s int8 and without
    the pandas metadata of a frame it came from. A frame whose verdicts were words kept that
    metadata, and pandas read the saved int8 grades back as text (``verdict >= 2`` raised);
    an import's history came out int64 (an outsider's report)."""
    meta = {k: v for k, v in (history.schema.metadata or {}).items() if k != b"pandas"}
    history = history.replace_schema_metadata(meta or None)
    i = history.schema.get_field_index("verdict")
    if i >= 0 and pa.types.is_integer(history.schema.field(i).type):
        kind = HISTORY_SCHEMA.field("verdict").type
        history = history.set_column(i, "verdict", history.column(i).cast(kind))
    return history


def lineage_tables(history: pa.Table, seeds: SeedSet, signals: list) -> dict[str, pa.Table]:
    """The history and seeds a model was trained on, saved (and checksummed) with it: the
    next import starts from them. Seed pictures given as files are kept as bytes too
    (``keep_pictures``), as the reviewed ones are: an import or retrain run elsewhere, or
    without the training's ``--image-base-dir``, trained a version without the seeds'
    pictures, which ranked exact copies of a seed picture last (an outsider's report)."""
    return {
        HISTORY_FILE.removesuffix(".parquet"): stored_history(history),
        SEEDS_FILE.removesuffix(".parquet"): keep_pictures(seeds.table, signals),
    }


def add_seeds(seeds: SeedSet, more: TableLike, signals: list = ()) -> SeedSet:
    """``seeds`` (a model's) plus ``more`` (a sweep's seed file, which may list the model's
    own seeds too): a seed_id in both must name the same seed (policy, kind and content).
    ``signals``: where ``more``'s picture files are read (its pictures are compared by their
    bytes, as the model keeps them: a seed whose file was replaced under the same path passed
    as the model's own, an outsider's report)."""
    extra = keep_pictures(SeedSet.from_table(more, what="seeds to add").table, list(signals))
    same = ["policy", "kind", *(c for c in CONTENT if c in seeds.table.column_names)]
    have = {r["seed_id"]: r for r in seeds.table.select(["seed_id", *same]).to_pylist()}
    keep = []
    for r in extra.to_pylist():
        old = have.get(r["seed_id"])
        if old is not None and any(_differs(old, r, c) for c in same):
            raise SchemaError(
                f"seeds to add: seed '{r['seed_id']}' differs from the model's seed of that id "
                "(give a new seed a new seed_id)"
            )
        keep.append(old is None)
    added = extra.filter(pa.array(keep, pa.bool_()))
    if not added.num_rows:
        return seeds
    merged = pa.concat_tables([seeds.table, added], promote_options="permissive")
    return SeedSet.from_table(merged, what="the model's seeds with the seeds to add")


def seeds_unlike_models(seeds: SeedSet, model_dir: Path | None) -> list[str]:
    """A warning naming the sweep's seeds that share an id with the model's seeds but not
    their policy (but for case and spaces: said apart), kind or text: the queue is recalled
    with today's, and an import without ``--seeds`` keeps the model's under that id (an
    outsider's week found it unsaid). Only columns both seed tables have are compared (a
    model of picture seeds has no text: a reviewer's crash), a blank text as none."""
    path = model_dir / SEEDS_FILE if model_dir is not None else None
    if path is None or not path.is_file():
        return []
    try:
        kept = SeedSet.from_table(path, what="the model's seeds").table
    except (OSError, SchemaError, pa.ArrowException):
        return []
    cols = [
        c
        for c in ("policy", "kind", "text")
        if c in seeds.table.column_names and c in kept.column_names
    ]

    def key(row: dict) -> tuple:
        return tuple(_seed_cell(c, row[c]) for c in cols)

    have = {r["seed_id"]: key(r) for r in kept.select(["seed_id", *cols]).to_pylist()}
    unlike = [
        r["seed_id"]
        for r in seeds.table.select(["seed_id", *cols]).to_pylist()
        if r["seed_id"] in have and have[r["seed_id"]] != key(r)
    ]
    if not unlike:
        return []
    return [
        f"{len(unlike)} seed(s) share an id with the model's seeds but not their policy, kind "
        f"or text: {', '.join(map(repr, unlike[:5]))}. This sweep recalls with the seeds given; "
        "`review import` keeps the model's under those ids (give a changed seed a new seed_id)"
    ]


def _seed_cell(column: str, value):
    """A seed's cell as ``seeds_unlike_models`` compares it."""
    if column == "policy" and isinstance(value, str):
        return value.strip().casefold()
    if column == "text" and (value is None or (isinstance(value, str) and not value.strip())):
        return None
    return value


def _differs(kept: dict, given: dict, column: str) -> bool:
    """Whether a seed to add differs from the model's seed of its id in ``column``. A model
    keeps its seeds' pictures as bytes beside their paths (``lineage_tables``), so the bytes
    are compared only where both sides have them (the paths still are)."""
    if column == IMAGE_BYTES and (kept.get(column) is None or given.get(column) is None):
        return False
    if column == IMAGE_PATH and kept.get(IMAGE_BYTES) is not None:
        # Both pictures read: the bytes decide (the same file by an absolute path, or given
        # as bytes, was refused as another seed: an outsider's report).
        if given.get(IMAGE_BYTES) is not None:
            return False
    return kept.get(column) != given.get(column)


VERDICT_COLUMNS = (ITEM_ID, "campaign_id", "policy", "verdict")
# The quarantine's stage of a verdict the history already holds, on the same content: kept
# apart from rows that went wrong (nothing is lost or in conflict there).
ALREADY = "already_recorded"
# ... and of a verdict on content a later sweep's review in the history judged since.
SUPERSEDED = "superseded"
SET_APART = (ALREADY, SUPERSEDED)


def read_verdicts(data: TableLike) -> pa.Table:
    """A verdict table from Parquet, CSV (every column read as text) or a DataFrame/Table."""
    if isinstance(data, (str, Path)) and str(data).lower().endswith(".csv"):
        table = read_text_csv(data, what="verdicts")
    else:
        if isinstance(data, (str, Path)):
            _check_verdict_file(Path(data))
        table = as_table(data, what="verdicts")
    return _typed_columns(_known_headers(table))


NOT_PARQUET = (".tsv", ".txt", ".json", ".jsonl", ".ndjson", ".gz", ".zip", ".xlsx", ".xls")


def _check_verdict_file(path: Path) -> None:
    """A file that is neither CSV nor Parquet is named as such: a .tsv, .jsonl or .csv.gz
    was answered "magic bytes not found ... corrupted" (an outsider's report)."""
    if path.suffix.lower() not in NOT_PARQUET:  # (a dated name, verdicts.2026-12-05, is)
        return
    raise SchemaError(
        f"verdicts: {path} is read as CSV (.csv) or Parquet; {''.join(path.suffixes)} is "
        "neither: save it as one of them"
    )


def _known_headers(table: pa.Table) -> pa.Table:
    """``Policy``, ``policy ``, ``Campaign ID``: a header that is one of ``VERDICT_COLUMNS``
    but for case, spaces or hyphens is that column. A ``Policy`` column was kept as a
    reviewer's note and every verdict went in under the queue's policy (an outsider's
    repro); two headers that are the same column this way are refused."""
    names = table.column_names
    renamed = list(names)
    for want in (*VERDICT_COLUMNS, "campaign_members", "campaign_size"):
        alike = [i for i, n in enumerate(names) if header_key(n) == want]
        if len(alike) > 1:
            listed = ", ".join(repr(names[i]) for i in alike)
            raise SchemaError(f"verdicts: the columns {listed} are all {want!r}; keep one")
        if alike and names[alike[0]] != want:
            renamed[alike[0]] = want
    return table.rename_columns(renamed) if renamed != names else table


def _typed_columns(table: pa.Table) -> pa.Table:
    """Ids and policy as text (integer ids as their digits, as the inventory reads them), a
    verdict column of numbers or text: other types are refused, naming the column."""
    names = table.column_names
    if repeated := sorted({c for c in names if names.count(c) > 1}):
        raise SchemaError(f"verdicts: the column(s) {repeated} appear twice")
    for name in (ITEM_ID, "campaign_id", "policy"):
        if name not in names:
            continue
        if table[name].null_count == table.num_rows:
            # All blank: pandas reads an empty column as float NaN (a blank policy is the
            # queue's), and the whole file was refused for it (an outsider's report).
            table = table.set_column(names.index(name), name, pa.nulls(table.num_rows, pa.string()))
            continue
        kind = table.schema.field(name).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if pa.types.is_floating(kind) and name != "policy":
            # pandas makes an integer id column holding a blank (campaign rows beside item
            # rows) float: whole numbers are read as their digits (a reviewer's report).
            floats = table[name].cast(kind)  # (a dictionary of floats decoded)
            table = table.set_column(names.index(name), name, _whole_floats(floats, name))
            continue
        if not (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_integer(kind)
            or pa.types.is_null(kind)
        ):
            raise SchemaError(f"verdicts: column {name!r} is {kind}; it must hold text or integers")
        table = table.set_column(names.index(name), name, pc.cast(table[name], pa.string()))
    if "verdict" in names:
        kind = table.schema.field("verdict").type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_temporal(kind):
            raise SchemaError(f"verdicts: column 'verdict' is {kind}; it must hold grades 0-3")
    return table


def _whole_floats(column: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    """A float id column as text: each whole number as its digits (NaN is a blank); any
    other number is refused, naming it."""
    values = pc.if_else(pc.is_nan(column), None, column)
    # (Past 2**53 a float holds no exact id: refused as well.)
    exact = pc.less_equal(pc.abs(values), float(2**53))
    whole = pc.and_(exact, pc.equal(pc.floor(values), values))
    if pc.all(whole).as_py() not in (True, None):
        bad = pc.filter(values, pc.invert(pc.fill_null(whole, True)))[0].as_py()
        raise SchemaError(
            f"verdicts: column {name!r} holds numbers, {bad!r} among them; ids must be text "
            "or whole numbers"
        )
    return pc.cast(pc.cast(values, pa.int64()), pa.string())


parse_verdict = verdict_grade  # an int, an integral float, a numeric string or the word


log = get_logger("riskrank")
# What a queue's null ``text_sha256`` stands for in ``QueueIndex.shown_digest``: the item had
# no text when swept (a verdict on its picture was stored on a caption added since: a reviewer).
NO_TEXT_SHOWN = "(no text)"
PROVENANCE_KEY = b"riskrank.queue"  # the queue table's metadata: which model and run made it
PROVENANCE_ATTR = "riskrank.queue"  # the same, in a DataFrame's attrs (``PANDAS_ATTRS``)
# A history row's column: when the sweep whose queue its verdict answered ran (null: the
# first model's reviews, or a queue that did not say).
QUEUE_SWEPT_AT = "queue_swept_at"


def _later(a: str | None, b: str | None) -> bool:
    """Whether sweep time ``a`` is after ``b`` (both known; ISO 8601 UTC strings)."""
    return a is not None and b is not None and a > b


def with_provenance(
    queue: pa.Table,
    model: dict | None,
    run_id: str,
    swept_at: str | None = None,
    index_version_dir: str | None = None,
) -> pa.Table:
    """``queue`` with the model that made it (version, history digest, when), the run's id,
    when it swept (UTC, ISO 8601 to the microsecond) and the index version it searched (where
    ``review import`` finds what was swept for a queue handed over in memory: the README's
    library example imported nothing, an outsider found) in its schema metadata, which
    Parquet keeps; also as pandas' ``DataFrame.attrs`` (``PANDAS_ATTRS``, which
    ``pd.read_parquet`` restores), since a DataFrame drops Arrow's metadata and a queue read
    with pandas went unchecked (an outsider's repro)."""
    about = {"model": model or {}, "run_id": run_id, "swept_at": swept_at}
    if index_version_dir:
        about["index_version_dir"] = index_version_dir
    meta = dict(queue.schema.metadata or {})
    try:
        attrs = json.loads(meta.get(PANDAS_ATTRS, b"{}"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        attrs = {}
    attrs = {**(attrs if isinstance(attrs, dict) else {}), PROVENANCE_ATTR: about}
    meta.update({PROVENANCE_KEY: json.dumps(about).encode(), PANDAS_ATTRS: json.dumps(attrs)})
    return queue.replace_schema_metadata(meta)


def queue_provenance(queue: pa.Table) -> dict | None:
    """What ``with_provenance`` wrote, or None (a queue from before, or one rebuilt by hand):
    Arrow's metadata of a queue table or file, else the attrs of a DataFrame read from the
    file with pandas (``as_table`` keeps them as ``PANDAS_ATTRS``)."""
    meta = queue.schema.metadata or {}
    try:
        if meta.get(PROVENANCE_KEY):
            return json.loads(meta[PROVENANCE_KEY])
        about = json.loads(meta.get(PANDAS_ATTRS, b"{}")).get(PROVENANCE_ATTR)
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return about if isinstance(about, dict) else None


class QueueIndex:
    """Which items and campaigns a queue showed, under which policy."""

    def __init__(self, queue: pa.Table) -> None:
        if ITEM_ID not in queue.column_names or "policy" not in queue.column_names:
            raise SchemaError(f"queue: needs item_id and policy columns, has {queue.column_names}")
        judged = [c for c in ("verdict", "label") if c in queue.column_names]
        if judged and "rank" not in queue.column_names:
            raise SchemaError(
                f"queue: has a {judged[0]!r} column and no 'rank': a verdicts or labels file, "
                "not a sweep's queue; pass the queue.parquet the reviewers worked from"
            )
        evidence = [c for c in queue.column_names if c.endswith("_best_sim")]
        if evidence and "rank" not in queue.column_names:
            # With one policy candidates.parquet lists each item once, so the check below
            # passes, and every verdict was quarantined as "edited since the sweep" (an
            # outsider's note): it has the evidence columns and no rank.
            raise SchemaError(
                f"queue: has evidence columns ({evidence[0]!r}) and no 'rank': a sweep's "
                "candidates.parquet, not its queue; pass the queue.parquet the reviewers "
                "worked from"
            )
        self.columns = list(queue.column_names)
        self.unpadded: dict[str, str] | None = None  # (``_zeros_lost``)
        ids, pols = queue[ITEM_ID].to_pylist(), queue["policy"].to_pylist()
        # A queue lists an item once, under the policy it was shown for; candidates.parquet
        # (beside it) lists it once per policy, and was taken as the queue: the last row's
        # policy won, and insults were imported as spam (an outsider's report).
        repeated = sorted({i for i, n in Counter(ids).items() if n > 1})
        if repeated:
            raise SchemaError(
                f"queue: item_id {repeated[0]!r} (and {len(repeated) - 1} more) is listed more "
                "than once, which a sweep's queue never does (candidates.parquet lists an item "
                "per policy): pass the queue.parquet the reviewers worked from"
            )
        self.policy = dict(zip(ids, pols))
        # What a reviewer saw of each row's text (the queue cuts it to QUEUE_TEXT_CHARS).
        self.shown_text: dict[str, str] = {}
        if "text" in queue.column_names:
            self.shown_text = {i: t for i, t in zip(ids, queue["text"].to_pylist()) if t}
        # The whole text's digest (queues since text_sha256): the start alone let a text
        # edited after its 300th character pass as the one shown (an outsider's report).
        # A null digest in a queue that has the column: the item had no text when swept (a
        # picture-only ad), so a text found now is not what the reviewer saw (NO_TEXT_SHOWN).
        self.shown_digest: dict[str, str] = {}
        if "text_sha256" in queue.column_names:
            self.shown_digest = {
                i: NO_TEXT_SHOWN if d is None else d
                for i, d in zip(ids, queue["text_sha256"].to_pylist())
            }
        self.members: dict[str, list[str]] = {}
        # The campaign_size each campaign's rows show (``_same_count``).
        self.shown_size: dict[str, object] = {}
        if "campaign_id" in queue.column_names and "campaign_size" in queue.column_names:
            for cid, n in zip(queue["campaign_id"].to_pylist(), queue["campaign_size"].to_pylist()):
                self.shown_size.setdefault(cid, n)
        # Campaign mode: one row per campaign, its representative (the row a reviewer saw).
        self.shown_for: dict[str, str] = {}
        if "campaign_members" in queue.column_names:
            for col in ("campaign_members", MEMBER_DIGESTS):
                kind = queue.schema.field(col).type if col in queue.column_names else None
                if kind is not None and not (
                    pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_null(kind)
                ):
                    # A CSV export read back (or a sheet's joined list) holds text: it was
                    # read character by character, and every verdict quarantined with
                    # reasons naming '[' and 's' (an outsider's report).
                    raise SchemaError(
                        f"queue: {col!r} is {kind}, not a list of item ids (a CSV export or a "
                        "spreadsheet loses list columns): pass the queue.parquet the reviewers "
                        "worked from"
                    )
            for cid, ms, pol, rep in zip(
                queue["campaign_id"].to_pylist(), queue["campaign_members"].to_pylist(), pols, ids
            ):
                self.members[cid] = list(ms or [])
                self.shown_for[rep] = cid
                for m in self.members[cid]:
                    self.policy.setdefault(m, pol)
            # Members have no row of their own: their digests ride on the campaign's row.
            if MEMBER_DIGESTS in queue.column_names:
                for ms, ds in zip(
                    queue["campaign_members"].to_pylist(), queue[MEMBER_DIGESTS].to_pylist()
                ):
                    for m, d in zip(ms or [], ds or []):
                        self.shown_digest.setdefault(m, NO_TEXT_SHOWN if d is None else d)
        elif "campaign_id" in queue.column_names:
            for cid, item_id in zip(queue["campaign_id"].to_pylist(), ids):
                self.members.setdefault(cid, []).append(item_id)

    def member_ids(self) -> list[str]:
        """Campaign-mode members without a row of their own (no text or digest shown)."""
        shown = set(self.shown_for)
        return [m for ms in self.members.values() for m in ms if self.shown_for and m not in shown]


@dataclass
class VerdictCheck:
    """Verdict rows split into accepted (item_id, policy, verdict, verdict_source, row) and
    quarantined (item_id, row, stage, reason) tables."""

    accepted: pa.Table
    quarantine: pa.Table


def _text(value) -> str | None:
    """A cell as text, None where it is empty (a blank CSV cell means 'not given')."""
    return None if value is None or not str(value).strip() else str(value)


_QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""


def _member_list(cell) -> list[str] | None:
    """A verdict row's ``campaign_members`` as item ids: a list (Parquet), or a list written
    out as text by a CSV writer (JSON, Python's ``['a', 'b']``, NumPy's ``['a' 'b']``,
    DuckDB's ``[a, b]``); None where it cannot be read as the whole list (NumPy writes
    ``[... ...]`` for a long one)."""
    if isinstance(cell, (list, tuple)):
        return [str(m) for m in cell]
    text = str(cell).strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    try:
        value = json.loads(text)
        return [str(m) for m in value] if isinstance(value, list) else None
    except ValueError:
        pass
    inner = text[1:-1]
    tokens = re.findall(_QUOTED, inner)
    if not tokens:  # unquoted (DuckDB), or empty
        return [p.strip() for p in inner.split(",")] if inner.strip() else []
    rest = re.sub(_QUOTED, "", inner)
    if rest.replace(",", "").strip():  # "..." of a shortened array, or stray text
        return None
    try:
        return [str(ast.literal_eval(t)) for t in tokens]
    except (ValueError, SyntaxError):
        return None


def _membership_differs(camp: str, listed, size, q: QueueIndex) -> tuple[str, bool]:
    """(Why a campaign verdict row does not answer this queue's campaign ``camp``, whether
    it could be checked at all): the members (``campaign_members``, as a campaign-mode queue
    row copied back carries them) or their count (``campaign_size``) it was decided on
    differ from the queue's. A campaign id names one of its members, so the same id comes
    back another day over another group: a day-1 verdict imported with the day-2 queue went
    to members nobody reviewed (an outsider's loop). A member list that cannot be read whole
    is not held against the row (the size, where given, is checked instead)."""
    members = q.members[camp]
    names = None
    if listed is not None and not (isinstance(listed, str) and not listed.strip()):
        names = _member_list(listed)
    if names is not None:
        missing, extra = set(members) - set(names), set(names) - set(members)
        if missing or extra:
            return (
                f"campaign {camp!r}: the row lists {len(set(names))} members, the queue's "
                f"campaign has {len(members)} ({len(missing)} of them not listed, {len(extra)} "
                "listed not in it): decided on another queue (another day's sweep, where this "
                "id named another group?); import it with the queue it was made from (--queue)"
            ), True
        return "", True
    if _text(size) is None:
        return "", False
    try:
        n = float(str(size))
    except ValueError:
        return f"campaign {camp!r}: campaign_size {size!r} is not a number", True
    if n != n:  # NaN: not given
        return "", False
    if not math.isfinite(n) or n != int(n) or n < 0:
        return f"campaign {camp!r}: campaign_size {size!r} is not a count of members", True
    if int(n) != len(members):
        return (
            f"campaign {camp!r}: the row's campaign_size is {int(n)}, the queue's campaign has "
            f"{len(members)} members: decided on another queue (another day's sweep, where "
            "this id named another group?); import it with the queue it was made from "
            "(--queue)"
        ), True
    return "", True


def _unit(item: str | None, camp: str | None, q: QueueIndex) -> tuple[str, str | None, str]:
    """What a row judges: (kind, ref, problem). A row naming both an item and its campaign
    is an item verdict, except the row a campaign-mode queue showed for the campaign (its
    representative): that is the campaign's verdict."""
    if item and camp:
        if camp not in q.members:
            return "campaign", camp, f"unknown campaign_id {camp!r}: not in the queue"
        if item not in q.members[camp]:
            return "item", item, f"item_id {item!r} is not a member of campaign_id {camp!r}"
        return ("campaign", camp, "") if q.shown_for.get(item) == camp else ("item", item, "")
    if item:
        if item in q.policy:
            return "item", item, ""
        return "item", item, f"unknown item_id {item!r}: not in the queue{_zeros_lost(item, q)}"
    if camp:
        known = camp in q.members
        return "campaign", camp, "" if known else f"unknown campaign_id {camp!r}: not in the queue"
    return "item", None, "neither item_id nor campaign_id is given"


def _same_count(given, shown) -> bool:
    """Whether a row's ``campaign_size`` cell is the count the queue shows (3, "3", 3.0)."""
    if shown is None or _text(given) is None:
        return False
    try:
        return float(str(given)) == float(shown)
    except ValueError:
        return False


def _zeros_lost(item: str, q: QueueIndex) -> str:
    """A hint where ``item`` is a queued id without its leading zeros (a spreadsheet reads
    "0000699" as the number 699): a team was told the rows came from another day's queue
    (an outsider's week)."""
    whole = WHOLE_NUMBER.fullmatch(item.strip())  # (" 699", "699.0": as known_id reads them)
    item = whole.group(1) if whole else item.strip()
    if not item.isdigit():
        return ""
    if q.unpadded is None:  # built once per import, on the first unknown id
        q.unpadded = {}
        for queued in q.policy:
            if queued.isdigit() and queued.startswith("0"):
                q.unpadded.setdefault(queued.lstrip("0") or "0", queued)
    padded = q.unpadded.get(item.lstrip("0") or "0")
    return f" (the queue has {padded!r}: leading zeros lost in a spreadsheet?)" if padded else ""


def _row_problem(verdict, policy, policies) -> str:
    blank = isinstance(verdict, str) and not verdict.strip()  # (a CSV's blank cell reads "")
    if verdict is None or blank or (isinstance(verdict, float) and verdict != verdict):
        # (a NaN read back from a sheet's blank cell read "verdict None is not a grade")
        return (
            f"verdict is missing (a blank cell): give a grade 0-{VERDICT_MAX} ({GRADES_IN_WORDS})"
        )
    if parse_verdict(verdict) is None:
        return f"verdict {verdict!r} is not a grade 0-{VERDICT_MAX} ({GRADES_IN_WORDS})"
    if policy is not None and policy not in policies:
        alike = sorted(p for p in policies if p.casefold() == policy.strip().casefold())
        if alike:
            # Advice to bring a new policy's seeds split one policy in two, "Scam" beside
            # "scam" (a reviewer's report).
            return (
                f"policy {policy!r} differs from the model's {alike[0]!r} only by case"
                f"{' and spaces' if policy != policy.strip() else ''}: "
                f"write {alike[0]!r} (or leave the cell blank: the policy the queue showed)"
            )
        return (
            f"policy {policy!r} is not one of the model's seed policies {sorted(policies)}: a "
            "new policy's verdicts import with its seeds (--seeds / seeds=, the seed file its "
            "sweep ran)"
        )
    return ""


def _dedupe(rows: list[dict], bad: dict[int, str]) -> list[dict]:
    """Keep the first of identical verdicts; quarantine every row of a conflict."""
    by_key: dict[tuple, list[dict]] = {}
    for r in rows:
        by_key.setdefault((r["kind"], r["ref"], r["policy"]), []).append(r)
    keep = []
    for (kind, ref, pol), group in by_key.items():
        verdicts = {r["verdict"] for r in group}
        if len(verdicts) > 1:
            listed = ", ".join(f"row {r['row']} = {r['verdict']}" for r in group)
            for r in group:
                bad[r["row"]] = f"conflicting verdicts for {kind} {ref!r} ({pol}): {listed}"
            continue
        keep.append(group[0])
        for r in group[1:]:
            bad[r["row"]] = f"duplicate verdict for {kind} {ref!r} (same as row {group[0]['row']})"
    return keep


def check_verdicts(verdicts: pa.Table, q: QueueIndex, policies: set[str]) -> VerdictCheck:
    """Validate verdict rows against the queue they answer; expand campaign verdicts.

    A member's own item verdict wins over its campaign's; a member whose own rows were
    quarantined (a bad grade, a conflict) takes no verdict from its campaign either: the
    reviewer meant to judge it alone. A campaign verdict that reaches no member is
    quarantined, so every row is accounted for."""
    cols = verdicts.column_names
    if "verdict" not in cols or not ({ITEM_ID, "campaign_id"} & set(cols)):
        raise SchemaError(
            f"verdicts: need a 'verdict' column and an 'item_id' or 'campaign_id' column "
            f"(columns present: {cols})"
        )

    def col(name):
        return verdicts[name].to_pylist() if name in cols else [None] * verdicts.num_rows

    bad: dict[int, str] = {}
    rows, own_rows = [], {}  # item -> the rows that judge it alone
    refs = []
    listed, sizes = col("campaign_members"), col("campaign_size")
    unchecked = 0
    for i, (item, camp, v, pol) in enumerate(
        zip(col(ITEM_ID), col("campaign_id"), col("verdict"), col("policy"))
    ):
        item, camp = known_id(_text(item), q.policy), known_id(_text(camp), q.members)
        kind, ref, problem = _unit(item, camp, q)
        if kind == "campaign" and not problem:
            problem, checked = _membership_differs(ref, listed[i], sizes[i], q)
            unchecked += not checked
        elif camp and not problem:
            # An item row that names its campaign with the members or size it was decided
            # on: a row from another day's queue where that id named another group is one
            # decided on content this queue did not show (it replaced a review with a verdict
            # on an edit nobody saw: an outsider's week). A size the queue itself shows for
            # the campaign is this queue's (a budget-cut queue written before 65ee04b showed
            # the whole campaign's: a reviewer's report).
            size = None if _same_count(sizes[i], q.shown_size.get(camp)) else sizes[i]
            problem, _ = _membership_differs(camp, listed[i], size, q)
        refs.append(ref)
        if kind == "item" and ref is not None:
            own_rows.setdefault(ref, []).append(i)
        pol = known_id(_text(pol), policies)
        if not problem and pol is None:  # a blank cell: the policy the queue showed
            pol = q.policy[ref] if kind == "item" else q.policy[q.members[ref][0]]
        problem = problem or _row_problem(v, pol, policies)
        if problem:
            bad[i] = problem
            continue
        rows.append(
            {"row": i, "kind": kind, "ref": ref, "policy": pol, "verdict": parse_verdict(v)}
        )
    if unchecked:
        log.warning(
            "%d campaign verdict rows carry neither campaign_members nor campaign_size (or "
            "a list that cannot be read whole): each is taken to answer the queue given and "
            "reaches its members there. A campaign id names one of its members and can name "
            "another group on another day: keep one of those columns in verdict files so that "
            "a row from another day's queue is refused",
            unchecked,
        )
    rows = _dedupe(rows, bad)
    own_bad = {m: [i for i in rs if i in bad] for m, rs in own_rows.items()}
    out, skipped = _expand(rows, q, own_bad, bad)
    accepted = pa.table(
        {
            ITEM_ID: pa.array([k[0] for k in out], pa.string()),
            "policy": pa.array([k[1] for k in out], pa.string()),
            "verdict": pa.array([r["verdict"] for r in out.values()], pa.int8()),
            "verdict_source": pa.array([r["verdict_source"] for r in out.values()], pa.string()),
            "row": pa.array([r["row"] for r in out.values()], pa.int64()),
        }
    )
    quarantine = [
        {ITEM_ID: refs[i], "row": i, "stage": "verdicts", "reason": why}
        for i, why in sorted(bad.items())
    ]
    return VerdictCheck(accepted, quarantine_table(sorted(quarantine + skipped, key=_by_row)))


BINARY_SCALE_MIN = 10  # verdicts, all 0 or 1, from which an import says what 1 means here


ONES_MEAN = ("violating", "borderline")


def _binary_scale(verdicts: list[int]) -> bool:
    """Whether many verdicts are all 0 or 1, some of them 1: a file on a 0/1 scale."""
    return len(verdicts) >= BINARY_SCALE_MIN and zero_one(verdicts)


def _numbers_written(table: pa.Table) -> dict[int, int]:
    """The file's rows whose verdict is written as a number (not a word), with its grade:
    what a 0/1 scale is told by, and what ``--ones-mean`` reads ("borderline" written as a
    word is borderline whatever the file's numbers mean: a reviewer's report)."""
    if "verdict" not in table.column_names:
        return {}
    out = {}
    for row, value in enumerate(table["verdict"].to_pylist()):
        grade = parse_verdict(value)
        word = isinstance(value, str) and value.strip().lower() in VERDICT_WORDS
        if grade is not None and not word:
            out[row] = grade
    return out


def _ones_read(check: VerdictCheck, table: pa.Table, ones_mean: str | None) -> VerdictCheck:
    """The accepted verdicts with a 1 written as a number read as ``ones_mean`` says. A file
    whose many verdict rows (numbers, not words; campaign rows count once) are all 0 or 1 is
    refused without it: a team that writes 1 for "violating" had its confirmed violations
    stored as borderline (not violating, never queued again), and the warning that said so
    scrolled past (outsiders' reports)."""
    if ones_mean is not None and ones_mean not in ONES_MEAN:
        raise ValueError(f"ones_mean={ones_mean!r}: expected one of {list(ONES_MEAN)} or None")
    numbers = _numbers_written(table)
    if ones_mean is None and _binary_scale(list(numbers.values())):
        raise SchemaError(
            f"verdicts: every one of the file's {len(numbers)} verdicts written as numbers is "
            "0 or 1. On riskrank's 0-3 scale 1 is borderline (not violating) and violating is "
            "2 or 3: say what your reviewers' 1 means, --ones-mean violating (imported as 2) "
            "or --ones-mean borderline (as written; ones_mean= in Python); nothing was imported"
        )
    if ones_mean is None and zero_one(list(numbers.values())):
        # Too few rows to refuse on (a genuine day of borderline verdicts looks the same),
        # but said: 9 confirmed spams stored as borderline went unsaid (an outsider's week).
        log.warning(
            "verdicts: the file's %d verdicts written as numbers are all 0 or 1; on the 0-3 "
            "scale 1 is borderline (not violating). If 1 means violating here, import into a "
            "fresh --out with --ones-mean violating (ones_mean='violating' in Python)",
            len(numbers),
        )  # fmt: skip
    if ones_mean != "violating":
        return check
    if any(g >= 2 for g in numbers.values()):
        raise SchemaError(
            "verdicts: --ones-mean violating, but the file holds grades 2-3 too (the 0-3 "
            "scale); import it without --ones-mean"
        )
    ones = {r for r, g in numbers.items() if g == 1}
    rows, verdicts = check.accepted["row"].to_pylist(), check.accepted["verdict"].to_pylist()
    read = pa.array([2 if r in ones else v for r, v in zip(rows, verdicts)], pa.int8())
    accepted = check.accepted.set_column(
        check.accepted.column_names.index("verdict"), "verdict", read
    )
    return VerdictCheck(accepted, check.quarantine)


def _expand(
    rows: list[dict], q: QueueIndex, own_bad: dict[str, list[int]], bad: dict[int, str]
) -> tuple[dict[tuple, dict], list[dict]]:
    """One verdict per (item, policy): item verdicts first (they win), then each campaign's
    to its other members, except members whose own rows (``own_bad``) were quarantined. A
    campaign verdict that reaches nobody goes to ``bad``. Returns the verdicts and the
    quarantine entries of the members passed over."""
    out: dict[tuple, dict] = {}
    skipped: list[dict] = []
    for r in sorted(rows, key=lambda r: r["kind"] != "item"):
        if r["kind"] == "item":
            out[(r["ref"], r["policy"])] = {**r, ITEM_ID: r["ref"], "verdict_source": "item"}
            continue
        reached, passed_over = 0, 0
        for m in q.members[r["ref"]]:
            if (m, r["policy"]) in out:
                continue  # the member's own verdict
            if own_bad.get(m):  # the reviewer judged it alone, in rows quarantined
                listed = ", ".join(map(str, own_bad[m]))
                why = (
                    f"campaign {r['ref']!r} verdict not applied to member {m!r}: its own "
                    f"verdict rows ({listed}) were quarantined"
                )
                skipped.append({ITEM_ID: m, "row": r["row"], "stage": "verdicts", "reason": why})
                passed_over += 1
                continue
            out[(m, r["policy"])] = {**r, ITEM_ID: m, "verdict_source": f"campaign:{r['ref']}"}
            reached += 1
        if not reached and not passed_over:
            bad[r["row"]] = (
                f"campaign {r['ref']!r} verdict reaches no member: each has its own verdict"
            )
    return out, skipped


def _by_row(entry: dict) -> int:
    return entry["row"]


@dataclass
class ImportResult:
    """What an import did: rows imported (one per item, campaign verdicts expanded), rows
    quarantined, the new history, and the retrained model (None with ``retrain=False``)."""

    imported: pa.Table
    quarantine: pa.Table
    history: pa.Table
    model: object | None
    version: int
    rows: int  # verdict rows in the file
    replaced: int = 0  # re-reviews of edited items that replaced their old history row
    seeds_added: int = 0  # seed rows ``seeds=`` added to the model's
    # ``out_dir`` already held what this import makes (a re-run of one that finished): it
    # was returned as it stands and nothing was written.
    already_done: bool = False

    @property
    def added_nothing(self) -> bool:
        """No verdict, re-review or seed came in: a retrain would give the parent again."""
        return self.imported.num_rows == 0 and self.seeds_added == 0


def seed_history_index(model_dir: Path, out_dir: Path) -> None:
    """Start the next version's history index from its parent's (a standing index,
    index/standing.py): the retrain then embeds only the newly reviewed items, not the whole
    history again."""
    parent, child = model_dir / "history_index", out_dir / "history_index"
    if child.exists() or not StandingIndex.is_standing(parent) or model_dir == out_dir:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".history_index.copy"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(parent, tmp, ignore=shutil.ignore_patterns(DELTA, LOCK))
    tmp.rename(child)


def _swept_version(queue_path: Path | None, about: dict) -> Path | None:
    """The index version the queue's sweep searched: named by the report.json beside
    ``queue_path``, else by the queue's provenance (a queue in memory); None if unnamed."""
    named = _sweep_report(queue_path).get("index_version_dir")
    if named:
        return Path(named)
    named = about.get("index_version_dir")
    return Path(named) if isinstance(named, str) and named else None


def _swept_image_dir(swept: Path | None) -> str | None:
    """The folder the sweep's index version read ``image_path`` files from (its manifest;
    ``recorded_image_dir``), None where unknown. An import told no folder quarantined every
    verdict on a picture given by path, the index version naming the folder (an outsider's
    five days: 39-112 verdict entries lost a day, no picture in the history)."""
    manifest = read_json_object(swept / MANIFEST) if swept is not None else None
    return recorded_image_dir(manifest) if manifest is not None else None


def _sweep_items_path(queue_path: Path | None, about: dict | None = None) -> Path | None:
    """The items table of the index version the queue's sweep searched (``_swept_version``; a
    standing index keeps the two newest versions), else the current version of that standing
    index (the named one was pruned by later sweeps: its items' content may have changed
    since, which ``_new_rows`` checks against what the queue showed), else the current
    version of the index in the sweep's directory."""
    candidates = []
    named = _swept_version(queue_path, about or {})
    if named is not None:
        candidates.append(named)
        standing = named.parent.parent  # <standing>/versions/v000001
        if StandingIndex.is_standing(standing):
            candidates.append(current_version(standing))
    if queue_path is not None:
        candidates.append(current_version(queue_path.parent / "index"))
    return next((c / "items.parquet" for c in candidates if (c / "items.parquet").exists()), None)


def _swept_digests(
    queue_path: Path | None, about: dict, item_ids: list[str], known: dict[str, str]
) -> dict[str, str]:
    """text_sha256 of the swept text of ``item_ids`` the queue gives no digest for (campaign
    members of a queue without ``campaign_members_text_sha256``, queues written before
    digests), read from the index version the sweep searched while it is kept: content
    found in an inventory is checked against it."""
    want = sorted({i for i in item_ids if i not in known})
    vdir = _swept_version(queue_path, about)
    if not want or vdir is None or not (vdir / "items.parquet").exists():
        return {}
    items = pq.read_table(vdir / "items.parquet")
    if "text" not in items.column_names:
        return {}
    items = items.filter(
        pc.is_in(pc.cast(items[ITEM_ID], pa.string()), value_set=pa.array(want, pa.string()))
    )
    ids, texts = items[ITEM_ID].to_pylist(), items["text"].to_pylist()
    return {str(i): d for i, t, d in zip(ids, texts, text_digests(items["text"]).to_pylist()) if t}


def _content(
    item_ids: list[str],
    inventory: TableLike | None,
    queue_path: Path | None,
    signals=(),
    about: dict | None = None,
):
    """item_id -> content row, from ``inventory`` or else the index the queue's sweep searched
    (the queue's own ``text`` is cut to 300 characters, so it is never used), and the ids
    whose picture the index could not give (it came as ``image_bytes``, which an index does
    not keep: their history rows would lose it)."""
    items = _sweep_items_path(queue_path, about) if inventory is None else None
    if inventory is not None:
        table = as_table(inventory, what="inventory")
    elif items is not None:
        table = pq.read_table(items)
    else:
        return {}, set()
    want = pa.array(sorted(set(item_ids)), pa.string())
    table = table.filter(pc.is_in(pc.cast(table[ITEM_ID], pa.string()), value_set=want))
    cols = [c for c in CONTENT if c in table.column_names]
    content = {
        str(r[ITEM_ID]): {c: r[c] for c in cols} for r in table.select([ITEM_ID, *cols]).to_pylist()
    }
    lost = set() if items is None else _pictures_not_kept(items.parent, content, signals)
    return content, lost


def _pictures_not_kept(vdir: Path, content: dict[str, dict], signals=()) -> set[str]:
    """Ids an image signal of the index at ``vdir`` holds whose row there names no
    ``image_path``: their picture came as bytes, and only the inventory still has it. Where
    the index keeps content keys (a standing index) and ``signals`` holds that signal, also
    the ids whose file today is not the picture the sweep embedded (it had bytes beside the
    path, or the file was replaced since)."""
    lost = {
        i
        for _, held, _ in _image_signals(vdir, signals)
        for i in held
        if i in content and is_blank(content[i].get(IMAGE_PATH))
    }
    rest = {i: row for i, row in content.items() if i not in lost}
    return lost | _pictures_not_swept(vdir, rest, signals)


def _image_signals(vdir: Path, signals=()) -> list[tuple[object, list[str], list[str] | None]]:
    """(signal, held ids, content keys) of each signal of the index at ``vdir`` that reads
    nothing but the picture (one that reads every column, a plug-in's default, may hold an
    item by its text alone). Signal and keys are None where they cannot be compared: a
    signal not in ``signals``, or keys of an index written before (another format)."""
    by_name = {s.name: s for s in signals}
    out = []
    for name, entry in json.loads((vdir / MANIFEST).read_text()).get("signals", {}).items():
        try:
            kind = signal_class(entry.get("type", ""))
        except (KeyError, ValueError):
            continue  # a plug-in not registered here: nothing known of what it reads
        if not reads_only_pictures(kind):
            continue
        if not (vdir / name / "ids.parquet").exists():
            continue
        held = pq.read_table(vdir / name / "ids.parquet").column(ITEM_ID).to_pylist()
        keys_file = vdir / name / KEYS
        if name in by_name and keys_file.exists() and entry.get("content_keys") == KEY_FORMAT:
            keys = pq.read_table(keys_file).column("content_key").to_pylist()
            out.append((by_name[name], held, keys))
        else:
            out.append((None, held, None))
    return out


def _pictures_not_swept(
    vdir: Path, content: dict[str, dict], signals=(), *, held: bool = True
) -> set[str]:
    """Ids whose picture found now (an inventory's bytes or file, or a later index version's
    file) is not the one the sweep searched at ``vdir`` embedded: a verdict on a picture
    replaced under its path, or edited in the inventory, was stored on the new picture (an
    outsider's report). An item that version's image signal did not hold had no picture it
    could read (a missing or corrupt file, or none): a picture found now is not one a reviewer
    saw unless its key is the failed one (before, two benign verdicts on broken files were
    stored on exact copies of a scam seed put there since: an outsider's report). ``held``:
    compare the pictures it held too."""
    changed: set[str] = set()
    failures = _failures_by_signal(vdir)
    for signal, held_ids, keys in _image_signals(vdir, signals):
        if signal is None:
            continue
        had = set(held_ids)
        failed = failures.get(signal.name, ({}, {}))[1]
        unheld = [i for i in content if i not in had and _has_picture(content[i])]
        if unheld:
            now = signal_content_keys(_picture_rows(content, unheld), signal)
            changed |= {i for i, n in zip(unheld, now) if failed.get(i) != n}
        pairs = [(i, k) for i, k in zip(held_ids, keys or []) if i in content and held]
        if not pairs:
            continue
        now = signal_content_keys(_picture_rows(content, [i for i, _ in pairs]), signal)
        changed |= {i for (i, k), n in zip(pairs, now) if n != k}
    return changed


def _picture_rows(content: dict[str, dict], ids: list[str]) -> pa.Table:
    """The picture columns of ``ids``' content, as an image signal keys them."""
    return pa.table(
        {
            IMAGE_BYTES: pa.array([content[i].get(IMAGE_BYTES) for i in ids], pa.binary()),
            IMAGE_PATH: pa.array([content[i].get(IMAGE_PATH) for i in ids], pa.string()),
        }
    )


def _picture_unreadable(content: dict) -> str | None:
    """The path of an item's picture that names a file ``_with_picture`` could not read (the
    row has a path and no bytes), else None: stored as it is, the history row would keep a
    dead path and the retrain drop the picture (an outsider's report: a moved export folder
    made 35 good reviews "re-reviews of edited items" without their pictures)."""
    path = content.get(IMAGE_PATH)
    return None if content.get(IMAGE_BYTES) is not None or is_blank(path) else str(path)


def _reads_pictures(signals) -> bool:
    """Whether a signal reads nothing but the picture (an image signal)."""
    return any(reads_only_pictures(s) for s in signals)


def _has_picture(content: dict) -> bool:
    return content.get(IMAGE_BYTES) is not None or not is_blank(content.get(IMAGE_PATH))


def _picture_problems(
    content: dict[str, dict],
    swept: Path | None,
    found_in: Path | None,
    from_inventory: bool,
    signals: list,
    unread: set[str] = frozenset(),
    pictured: set[str] = frozenset(),
) -> dict[str, str]:
    """item_id -> why its verdict cannot be stored with the picture found for it: a file no
    base directory has; a picture that is not the one the sweep embedded (content from an
    inventory, or from a later index version, checked against the version the sweep
    searched); or, without an inventory and with that version gone, a picture nothing can
    check (a late import put day-1 verdicts on pictures added on day 3: an outsider)."""
    if not content or not _reads_pictures(signals):
        return {}
    problems: dict[str, str] = {}
    # A picture the sweep could not read either (a CDN URL, a file gone from the export, an
    # empty one): the reviewer saw none and judged the rest, and the verdict is stored on
    # that, with the path as it was. Every such verdict was refused, telling the user to
    # pass the --image-base-dir they had passed (an outsider's report).
    unread = set(unread) | _unread_at_sweep(swept, signals)
    for item_id, row in content.items():  # (pictures already read: import_verdicts)
        if (path := _picture_unreadable(row)) is not None and item_id not in unread:
            problems[item_id] = (
                f"its picture cannot be read ({_why_unreadable(path, signals)}) and the sweep "
                "read it: pass the sweep's --image-base-dir (or an inventory with the pictures)"
            )
    kept = swept is not None and (swept / MANIFEST).exists()
    from_swept = kept and found_in is not None and found_in.parent == swept
    if kept:  # (from that version: pictures it held are _pictures_not_kept's to check)
        for item_id in _pictures_not_swept(swept, content, signals, held=not from_swept) - set(
            problems
        ):
            problems[item_id] = (
                ("the inventory given holds" if from_inventory else "the index now holds")
                + " another picture for the item than the sweep embedded (replaced or edited "
                "since the sweep?): pass the inventory the sweep ran on"
            )
    elif not kept and not from_inventory and found_in is not None:
        for item_id, row in content.items():
            # (A picture the sweep held no vector for was not seen: nothing to check.)
            if item_id not in problems and item_id not in unread and _has_picture(row):
                problems[item_id] = (
                    "its picture cannot be checked: the index version the sweep searched is gone "
                    "and the queue carries no digest of pictures; pass the inventory the sweep "
                    "ran on (--inventory; inventory= in Python), or after a sweep without one "
                    "(new seeds over the standing index) an export that still holds the "
                    "pictures the reviewers saw"
                )
    elif not kept and from_inventory:
        # A picture the sweep held and the inventory lacks: removed since (a verdict given on
        # text and picture was stored on the text alone, uncounted: an outsider's report).
        for item_id, row in content.items():
            if item_id in pictured and item_id not in problems and not _has_picture(row):
                problems[item_id] = (
                    "the sweep held a picture for the item and the inventory given holds none "
                    "(removed since the sweep?): pass the inventory the sweep ran on"
                )
        unchecked = sum(_has_picture(r) for i, r in content.items() if i not in problems)
        if unchecked:
            log.warning(
                "%d items' pictures in the inventory cannot be checked against what the sweep "
                "embedded (the index version it searched is not named or is gone): verdicts "
                "stored on them take the inventory's pictures as they are",
                unchecked,
            )
    return problems


def _why_unreadable(path: str, signals: list) -> str:
    """Why an image signal cannot read ``path`` (the first base directory's reason)."""
    for base in signal_base_dirs(signals) or [None]:
        _, why = read_image_file(path, base)
        if why:
            return why
    return f"image file {path!r}"


def _picture_vectors(
    queue: pa.Table, queue_path: Path | None, signals: list
) -> tuple[set[str], set[str]]:
    """(items the sweep held no vector for under any image signal, items it held one for):
    their evidence of it is null (or not) in the queue, or in the ``candidates.parquet``
    beside it (campaign members have no queue row). Read from the sweep's own output, so it
    holds after the index version it searched is pruned (verdicts on items without one were
    refused again then: an outsider's report)."""
    names = [f"{s.name}_best_sim" for s in signals if reads_only_pictures(s)]
    tables = [queue]
    beside = queue_path.parent / "candidates.parquet" if queue_path is not None else None
    if beside is not None and beside.exists():
        try:
            have = set(pq.read_schema(beside).names)
            wanted = [ITEM_ID, *[c for c in names if c in have]]
            tables.append(pq.read_table(beside, columns=wanted))
        except (OSError, pa.ArrowException):
            pass
    out: set[str] = set()
    held: set[str] = set()
    for table in tables:
        cols = [c for c in names if c in table.column_names]
        if not cols or ITEM_ID not in table.column_names:
            continue
        ids = table[ITEM_ID].to_pylist()
        pols = table["policy"].to_pylist() if "policy" in table.column_names else [None] * len(ids)
        blank = {c: table[c].is_null(nan_is_null=True).to_pylist() for c in cols}
        # A column says "no vector" only under a policy with picture seeds: with text seeds
        # alone every row's picture evidence is null (imports then skipped the picture check
        # for every item: an outsider's report).
        told = {(c, p) for c in cols for p, b in zip(pols, blank[c]) if not b}
        for r, (item, policy) in enumerate(zip(ids, pols)):
            asked = [c for c in cols if (c, policy) in told]
            if asked and all(blank[c][r] for c in asked):
                out.add(item)
            elif not all(blank[c][r] for c in cols):
                held.add(item)
    return out, held


def _unread_at_sweep(swept: Path | None, signals: list) -> set[str]:
    """Items whose picture an image signal could not read in the version the sweep searched
    (``signal_failures.parquet``): it kept them by their other content."""
    path = swept / SIGNAL_FAILURES if swept is not None else None
    if path is None or not path.exists():
        return set()
    image = {s.name for s in signals if reads_only_pictures(s)}
    failures = pq.read_table(path, columns=[ITEM_ID, "signal", "reason"]).to_pylist()
    return {
        r[ITEM_ID] for r in failures if r["signal"] in image and r["reason"] not in ABSENT_REASONS
    }


def _shown_differs(content: dict, shown: str | None, digest: str | None = None) -> bool:
    """Whether an item's content is not what the queue showed of it: its whole text's digest
    where the queue has one (``NO_TEXT_SHOWN``: it had no text), else its text's start."""
    text = content.get("text")
    if digest == NO_TEXT_SHOWN:
        return isinstance(text, str)  # a text now where the sweep had none (a caption added)
    if digest is not None:
        # Either form: a queue digests the text as seen (a CRLF re-export of the ad shown
        # is the text shown), and queues before that digested its bytes.
        return not isinstance(text, str) or digest not in text_digest_forms(text)
    if shown is None or not isinstance(text, str):
        return False  # nothing shown to compare (a campaign member, an image-only item)
    return shown_text(pa.array([text], pa.string()))[0].as_py() != shown


def _changed_since_review(
    history: pa.Table,
    rows: list[int],
    contents: list[dict],
    signals: list,
    text_as_seen: bool = True,
) -> list[bool]:
    """Per reviewed history row, whether the content now found for its item differs: with
    the text read as the model whose queue it answers reads it (``text_as_seen``; rank/
    reviewed.py). A model from before reads the bytes: its sweep queued a CRLF re-export as
    changed, and an import reading it as seen refused the re-reviews as unchanged, so the
    model was never retrained into the new reading (a reviewer's repro)."""
    if not rows:
        return []
    old = content_digests(
        history.take(pa.array(rows, pa.int64())), signals, text_as_seen=text_as_seen
    )
    new = content_digests(_content_table(contents), signals, text_as_seen=text_as_seen)
    return [a != b for a, b in zip(old, new)]


def _said_source(source: object) -> str:
    """A row's ``verdict_source`` in words: "an item verdict", "campaign c-1's verdict"
    (the reason printed the bare source, "this row's verdict: item", which read as the
    verdict itself: an outsider's audit)."""
    text = str(source or "item")
    if text.startswith("campaign:"):
        return f"campaign {text.removeprefix('campaign:')}'s verdict"
    return f"an {text} verdict"


def _lost_picture_reason(row: dict, signals: list) -> str:
    """Why a verdict's picture cannot be had (``_pictures_not_kept``), of the three ways: it
    came as bytes, which an index does not keep; its file is gone; its file was replaced. One
    reason named all three, with advice that could not help where a retention job had
    removed the folder (an outsider's week)."""
    path = row.get(IMAGE_PATH)
    if is_blank(path):
        return (
            "its picture came as image_bytes, which the sweep's index does not keep: pass the "
            "inventory the sweep ran on (--inventory; inventory= in Python)"
        )
    dirs = signal_base_dirs(signals)
    if not_found_in(str(path), dirs):
        where = ", ".join(str(d or ".") for d in dirs)
        return (
            f"its image file {path} is not found (folder {where}): the picture the sweep saw "
            "is gone; if the folder moved, pass it (--image-base-dir), else an inventory with "
            "the picture's bytes (--inventory; inventory= in Python)"
        )
    # Read here, or not readable for another reason (outside the folder, a remote address):
    # that reason, not "replaced" (a reviewer's finding).
    why = next((w for d in dirs if (w := resolve_image_path(str(path), d)[1])), None)
    if why is not None:
        return (
            f"its image file cannot be read here ({why}): pass the inventory the sweep ran on "
            "(--inventory; inventory= in Python), or the sweep's --image-base-dir"
        )
    return (
        f"its image file {path} is not the picture the sweep saw (replaced since): pass the "
        "inventory the sweep ran on (--inventory; inventory= in Python)"
    )


def _content_table(contents: list[dict]) -> pa.Table:
    types = {"text": pa.string(), "image_bytes": pa.binary(), "image_path": pa.string()}
    return pa.table({c: pa.array([r.get(c) for r in contents], types[c]) for c in CONTENT})


def _batch_id(history: pa.Table, version: int) -> str:
    """The new rows' ``sweep_id``: ``review-v<version>``, or with ``-2``, ``-3``... where the
    history holds that id already. A model trained from scratch on an imported history starts
    at version 1 again, and its next import's batch shared ``review-v2`` with an older one:
    two review rounds in one ranking group (an outsider's loop)."""
    base = f"review-v{version}"
    taken = (
        set(history.column("sweep_id").to_pylist()) if "sweep_id" in history.column_names else set()
    )
    if base not in taken:
        return base
    return next(f"{base}-{n}" for n in range(2, len(taken) + 3) if f"{base}-{n}" not in taken)


def _new_rows(
    check: VerdictCheck,
    history: pa.Table,
    content: dict,
    sweep_id: str,
    shown: dict[str, str] | None = None,
    signals: list | None = None,
    pictures_lost: set[str] = frozenset(),
    swept_at: str | None = None,
    digests: dict[str, str] | None = None,
    from_inventory: bool = False,
    unverifiable: set[str] = frozenset(),
    pictures: dict[str, str] | None = None,
    corrections: bool = False,
    text_as_seen: bool = True,
) -> tuple[pa.Table, pa.Table, list[dict], list[int]]:
    """History rows for accepted verdicts, the accepted rows they came from, the rows that
    cannot be used (for the quarantine), and the history rows the new ones replace.

    An item already in the history under the policy takes a new verdict only when its
    content changed since that review (the sweep queued it as ``reviewed="changed"``): the
    new review replaces the old row, so the model learns today's content under the new
    verdict and the next sweep sees it as reviewed, unchanged. Content found for an item
    (in ``--inventory`` or the sweep's index) must be what the queue showed the reviewer
    (``shown``: the start of its text), or the verdict would be stored on other content.

    ``swept_at``: when the queue's sweep ran. A review in the history taken from a later
    sweep's queue (``QUEUE_SWEPT_AT``) judged later content than these verdicts did: a late
    file from an older queue does not replace it (it did: a day-2 re-review of an edited
    item, verdict 3, went back to the day-1 text under verdict 0). Sweep times, not model
    versions, order them: a model retrained from scratch starts again at version 1, and a
    late file imported first must not make the live text's verdict look the older."""
    shown, digests = shown or {}, digests or {}
    reviewed_at = (
        history[QUEUE_SWEPT_AT].to_pylist()
        if QUEUE_SWEPT_AT in history.column_names
        else [None] * history.num_rows
    )
    sources = (
        history["verdict_source"].to_pylist()
        if "verdict_source" in history.column_names
        else [None] * history.num_rows
    )
    at = {
        key: (verdict, row)
        for row, (key, verdict) in enumerate(
            zip(
                zip(history[ITEM_ID].to_pylist(), history["policy"].to_pylist()),
                history["verdict"].to_pylist(),
            )
        )
    }
    accepted = check.accepted.to_pylist()
    again = [r for r in accepted if (r[ITEM_ID], r["policy"]) in at and r[ITEM_ID] in content]
    changed = dict(
        zip(
            ((r[ITEM_ID], r["policy"]) for r in again),
            _changed_since_review(
                history,
                [at[(r[ITEM_ID], r["policy"])][1] for r in again],
                [content[r[ITEM_ID]] for r in again],
                signals or [],
                text_as_seen,
            ),
        )
    )
    rows, kept, bad, replaced = [], [], [], []
    for r in accepted:
        key = (r[ITEM_ID], r["policy"])
        why = ""
        # Set apart, not bad rows (a cumulative verdict file imported again with --strict
        # failed on both: an outsider's loop): a later sweep's review supersedes this one
        # whatever the content; the same verdict on an item whose content is gone changes
        # nothing.
        if key in at and _later(reviewed_at[at[key][1]], swept_at):
            why = (
                f"a review from a later sweep is in the history (verdict {at[key][0]}, on the "
                f"content swept {reviewed_at[at[key][1]]}); this verdict is on the content of "
                f"an earlier sweep ({swept_at}) and does not replace it"
            )
            bad.append({ITEM_ID: r[ITEM_ID], "row": r["row"], "stage": SUPERSEDED, "reason": why})
            continue
        if (
            from_inventory  # taken down: the inventory given lacks it (else it may be an
            # edited item's re-review whose new text was not found: a reviewer's repro)
            and key in at
            and r[ITEM_ID] not in content
            and at[key][0] == r["verdict"]
        ):
            why = (
                f"already in the history with this verdict ({at[key][0]}); its content is not "
                "found now (taken down since?): nothing to change"
            )
            bad.append({ITEM_ID: r[ITEM_ID], "row": r["row"], "stage": ALREADY, "reason": why})
            continue
        if from_inventory and r[ITEM_ID] not in content:
            # The user did pass one: telling them to pass it helps nobody (an outsider).
            why = "not in the inventory given (taken down since the sweep?)"
        elif key in at and r[ITEM_ID] not in content:
            why = (
                f"already in the history with verdict {at[key][0]}; no content found to tell "
                "whether it changed since: pass the inventory (--inventory; inventory= in Python)"
            )
        elif r[ITEM_ID] not in content:
            why = (
                "no content found for the item: pass the inventory (--inventory; inventory= in "
                "Python)"
            )
        elif r[ITEM_ID] in pictures_lost:  # (first: an image-only item's row is empty)
            why = _lost_picture_reason(content[r[ITEM_ID]], signals or [])
        elif not has_content(content[r[ITEM_ID]]):
            why = NO_CONTENT
        elif r[ITEM_ID] in (pictures or {}):
            why = pictures[r[ITEM_ID]]
        elif r[ITEM_ID] in unverifiable:
            why = (
                "a campaign member whose text the queue carries no digest of (no "
                "campaign_members_text_sha256), and the index version its sweep searched is "
                "gone: the text found now may not be the one swept; pass the inventory the "
                "sweep ran on (--inventory; inventory= in Python)"
            )
        elif digests.get(r[ITEM_ID]) == NO_TEXT_SHOWN and _shown_differs(
            content[r[ITEM_ID]], None, NO_TEXT_SHOWN
        ):
            why = (
                "the item has a text now, and the queue showed none (it had no text when "
                "swept): edited since the sweep? pass the inventory the sweep ran on"
            )
        elif from_inventory and _shown_differs(
            content[r[ITEM_ID]], shown.get(r[ITEM_ID]), digests.get(r[ITEM_ID])
        ):
            why = (
                "the inventory given holds another text for the item than the queue showed "
                "(another text_sha256, or its start differs): edited since the sweep? pass "
                "the inventory the sweep ran on"
            )
        elif _shown_differs(content[r[ITEM_ID]], shown.get(r[ITEM_ID]), digests.get(r[ITEM_ID])):
            why = (
                "the content found for the item is not the text the queue showed (another "
                "text_sha256, or its start differs): the item was edited since the sweep, or "
                "the sweep's index version is gone; pass the inventory the sweep ran on "
                "(--inventory; inventory= in Python)"
            )
        elif key in at and not changed.get(key) and at[key][0] == r["verdict"]:
            # Not a conflict, with or without --correct: a campaign verdict whose members were
            # judged alike before read as 45 rows "to overturn" (an outsider's week).
            why = (
                f"already in the history with this verdict ({at[key][0]}), content unchanged: "
                "nothing to change"
            )
            bad.append({ITEM_ID: r[ITEM_ID], "row": r["row"], "stage": ALREADY, "reason": why})
            continue
        elif (
            key in at
            and not changed.get(key)
            and str(r["verdict_source"]).startswith("campaign:")
            # A training history's rows carry no source: they are item verdicts too.
            and not str(sources[at[key][1]] or "").startswith("campaign:")
        ):
            # In one file a member's own verdict wins over its campaign's; across imports a
            # campaign correction overwrote it (an outsider's repro: two 0s became 3s).
            why = (
                f"has its own item verdict {at[key][0]} in the history; a campaign verdict "
                "does not overturn it: correct it by its item_id"
            )
        elif key in at and not changed.get(key) and not corrections:
            why = (
                f"already in the history with verdict {at[key][0]}, content unchanged "
                f"(this row's verdict: {r['verdict']}, {_said_source(r['verdict_source'])}; to "
                "overturn it, import with --correct / corrections=True)"
            )
        if why:
            bad.append({ITEM_ID: r[ITEM_ID], "row": r["row"], "stage": "verdicts", "reason": why})
            continue
        source = r["verdict_source"]
        if key in at:
            replaced.append(at[key][1])
            if not changed.get(key):  # the same content judged again: a correction
                source = f"{source} correction"
        kept.append({**r, "verdict_source": source})  # (as the history stores it)
        rows.append(
            {
                ITEM_ID: r[ITEM_ID],
                "policy": r["policy"],
                "verdict": r["verdict"],
                "sweep_id": sweep_id,
                "verdict_source": source,
                QUEUE_SWEPT_AT: swept_at,
                **_with_picture(content[r[ITEM_ID]], signals or []),
            }
        )
    names = list(dict.fromkeys(k for row in rows for k in row))  # (from_pylist: the first's)
    new = pa.Table.from_pylist([{k: row.get(k) for k in names} for row in rows])
    return new, pa.Table.from_pylist(kept, check.accepted.schema), bad, replaced


MAX_NOTE_COLUMNS = 32  # verdict files' own columns (reviewer, notes) a history takes in all
# A history's columns that are not notes: its schema's, and what imports write.
HISTORY_OWN = (
    *HISTORY_SCHEMA.names,
    "sweep_id",
    "verdict_source",
    QUEUE_SWEPT_AT,
    "campaign_id",
    "row",
)


def _reviewer_columns(
    new: pa.Table, imported: pa.Table, verdicts: pa.Table, history: pa.Table, shown: list[str]
) -> pa.Table:
    """``new`` history rows with the verdict file's own columns (``reviewer``, ``reviewed_at``,
    notes: the audit trail of who decided what, when), which were dropped without a word (an
    outsider's report). Not kept: the columns a verdict names (``item_id``, ``verdict``...),
    the history's own (``sweep_id``, content), and the queue's, copied back beside a verdict
    (``shown``: ranks and evidence are the sweep's, not the reviewer's). A column the history
    holds under another type is read as that type, or left out with a warning."""
    # Content is the item's, never a verdict file's: a reviewer's "text" note became an
    # image-only item's text in the history, and its next sweep called it changed (a
    # reviewer's finding).
    reserved = {ITEM_ID, "campaign_id", "verdict", "policy", "row", *CONTENT, *new.column_names}
    reserved |= set(shown)
    # Nor a pandas index written beside the data ('' or "Unnamed: 0" from a CSV,
    # __index_level_0__ from Parquet): row numbers, not a reviewer's (a reviewer's finding).
    index_like = re.compile(r"^(\s*|Unnamed: \d+|__index_level_\d+__)$")
    extra = [c for c in verdicts.column_names if c not in reserved and not index_like.match(c)]
    # Columns the history already keeps first; new ones up to MAX_NOTE_COLUMNS in all: every
    # kept column stays in every later version (a 3,000-column file made a 3,006-column
    # history, an outsider's repro).
    extra.sort(key=lambda c: c not in history.column_names)
    own = {*HISTORY_OWN, *CONTENT, *new.column_names}
    notes = [c for c in history.column_names if c not in own and not index_like.match(c)]
    room = max(MAX_NOTE_COLUMNS - len(notes), 0)  # over the history's lifetime, not a file's
    fresh = [c for c in extra if c not in history.column_names]
    if len(fresh) > room:
        log.warning(
            "verdicts: %d columns not kept (%s...): the history keeps at most %d of a verdict "
            "file's own columns (reviewer, notes)",
            len(fresh) - room,
            ", ".join(fresh[room : room + 5]),
            MAX_NOTE_COLUMNS,
        )
        extra = extra[: len(extra) - len(fresh) + room]
    if not extra or not new.num_rows:
        return new
    rows = pa.array(imported["row"].to_pylist(), pa.int64())
    dropped = []
    for name in extra:
        values = verdicts[name].take(rows)
        if name in history.column_names:
            want = history.schema.field(name).type
            try:
                values = values if values.type == want else pc.cast(values, want)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                dropped.append(f"{name} ({values.type}, the history's is {want})")
                continue
        new = new.append_column(name, values)
    if dropped:
        log.warning(
            "verdicts: column(s) %s not kept: their values cannot be read as the history's "
            "type (give them as the history does)",
            ", ".join(dropped),
        )
    return new


def _with_picture(content: dict, signals: list) -> dict:
    """A history row's content with its picture's bytes when it names only a file: the
    history keeps what the reviewer saw, not a path into an export folder that a later day
    rotates away (the retrain would find nothing there, drop the picture from the review,
    and the next sweep queue the item again as changed). The path is kept beside the bytes
    (bytes win when an image is decoded, and digest as the same picture). A file that
    cannot be read is left as a path: the retrain lists why."""
    path = content.get(IMAGE_PATH)
    if content.get(IMAGE_BYTES) is not None or is_blank(path):
        return content
    for base in signal_base_dirs(signals):
        data, _ = read_image_file(str(path), base)
        if data is not None:
            return {**content, IMAGE_BYTES: data}
    return content


@holds_output_lock("out_dir", what="model directory")  # as train holds it: one writer
def import_verdicts(
    verdicts: TableLike,
    queue: TableLike,
    model_dir: str | Path,
    *,
    out_dir: str | Path,
    inventory: TableLike | None = None,
    strict: bool = False,
    retrain: bool = True,
    seeds: TableLike | None = None,
    image_base_dir: str | Path | None = None,
    show_progress: bool = False,
    corrections: bool = False,
    ones_mean: str | None = None,
) -> ImportResult:
    """Import reviewers' verdicts on ``queue``, append them to the history of the model in
    ``model_dir`` and train the next model version into ``out_dir``.

    ``ones_mean``: ``"violating"`` reads a file of 0/1 verdicts as 0 and 2, ``"borderline"``
    as written; a file whose many verdicts (10 or more) are all 0 or 1 is refused without it.

    ``corrections``: a verdict on an item the history already judged under that policy, on
    the same content, replaces the earlier verdict where it differs (a mistaken decision
    overturned; ``verdict_source`` ends in ``correction``). Without it such rows are
    quarantined as already reviewed, and a mistake could only be undone by editing the
    history.

    ``seeds``: seeds to add to the model's own (``add_seeds``), e.g. a new policy's from the
    sweep that ran it retroactively: without them its verdicts are quarantined (the model
    has no seeds for that policy), with them the next version learns it.

    ``image_base_dir``: where relative ``image_path`` values live (as the sweep's): the
    reviewed pictures are read there, kept in the history and embedded by the retrain.
    ``inventory``: where the reviewed items' content is (default: the sweep's index beside a
    queue given as a path). ``strict``: raise ``SchemaError`` on any bad row instead of
    quarantining it.
    """
    from riskrank.rank.model import RiskModel, with_image_base_dir

    seeds_to_add = seeds
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.exists() and out_dir.resolve() == model_dir.resolve():
        raise ValueError(f"out_dir {out_dir}: must differ from model_dir (models are versioned)")
    if (model_dir / PENDING_FILE).exists():
        raise ValueError(
            f"{model_dir} is a --no-retrain import (a history, not a model): train it first "
            f"(`riskrank review retrain {model_dir} --out DIR`), then import into that model"
        )
    old = RiskModel.load(model_dir)  # verifies every file's checksum, history.parquet too
    old = with_image_base_dir(old, image_base_dir)  # reviewed pictures are read, embedded there
    parent = old.info
    if not (model_dir / HISTORY_FILE).exists():
        raise FileNotFoundError(
            f"{model_dir}: no {HISTORY_FILE} (a model trained before versioning); retrain it "
            "with `riskrank train` first"
        )
    # Before anything is written. What a finished run of this same import left is known only
    # once the verdicts are checked (below): a cron retry after a late kill is not an error.
    finished = check_out_dir(out_dir, retrain, finished_ok=True)
    queue_path = Path(queue) if isinstance(queue, (str, Path)) else None
    queue = as_table(queue, what="queue")
    made_by = check_queue_model(queue_path, model_dir, parent, queue)
    if made_by is None:
        log.warning(
            "the queue does not say which model made it (a table without riskrank's metadata "
            "and no report.json beside it): verdicts cannot be checked against this model's "
            "line, nor against reviews of content swept after the queue was made"
        )
    history = pq.read_table(model_dir / HISTORY_FILE)
    seeds = SeedSet.from_table(model_dir / SEEDS_FILE, what=f"the model's seeds ({model_dir})")
    model_seeds = seeds.table.num_rows
    if seeds_to_add is not None:
        seeds = add_seeds(seeds, seeds_to_add, old.signals)
    table = read_verdicts(verdicts)
    q = QueueIndex(queue)
    check = check_verdicts(table, q, set(seeds.policies))
    _warn_another_queue(check.quarantine, len(table))
    check = _ones_read(check, table, ones_mean)
    _warn_representatives_alone(check.accepted, q)
    version = int(parent.get("version", 1)) + 1
    about = queue_provenance(queue) or {}
    if image_base_dir is None:  # read the pictures where the sweep's index version read them
        old = with_image_base_dir(old, _swept_image_dir(_swept_version(queue_path, about)))
    accepted_ids = check.accepted[ITEM_ID].to_pylist()
    content, pictures_lost = _content(accepted_ids, inventory, queue_path, old.signals, about)
    if _reads_pictures(old.signals):  # each picture read once: checked, then stored
        content = {i: _with_picture(row, old.signals) for i, row in content.items()}
    digests = dict(q.shown_digest)
    swept_at = _swept_at(about, queue_path)
    swept = _swept_version(queue_path, about)
    found_in = None if inventory is not None else _sweep_items_path(queue_path, about)
    if not (swept is not None and found_in is not None and found_in.parent == swept):
        # Content from an inventory, or from a later version of the index (the one searched
        # was pruned): check it against what was swept, where that version is kept.
        digests.update(_swept_digests(queue_path, about, accepted_ids, digests))
    # Members have no row of their own: without digests their text was not checked at all.
    unchecked = {
        m
        for m in q.member_ids()
        if m not in digests and isinstance(content.get(m, {}).get("text"), str)
    }
    if inventory is not None and unchecked:
        log.warning(
            "%d campaign members' verdicts are stored on the inventory's text unchecked: the "
            "queue carries no text digest for them (campaign_members_text_sha256: written "
            "before it, or the column was dropped), and the index version its sweep searched "
            "is not named or is gone",
            len(unchecked),
        )
    # Without an inventory the text found is a later version's, and nothing tells whether
    # the member was edited since: quarantined (a reviewer's repro stored five edited texts).
    later = inventory is None and found_in is not None and found_in.parent != swept
    unread, pictured = _picture_vectors(queue, queue_path, old.signals)
    pictures = _picture_problems(
        content, swept, found_in, inventory is not None, old.signals, unread=unread,
        pictured=pictured,
    )  # fmt: skip
    new, imported, more_bad, replaced = _new_rows(
        check, history, content, _batch_id(history, version), shown=q.shown_text,
        signals=old.signals,
        pictures_lost=pictures_lost, swept_at=swept_at, digests=digests,
        from_inventory=inventory is not None,
        unverifiable=unchecked if later else frozenset(), pictures=pictures,
        corrections=corrections,
        text_as_seen=old.reviewed is not None and reads_text_as_seen(old.reviewed),
    )  # fmt: skip
    new = _reviewer_columns(new, imported, table, history, q.columns)
    if replaced and swept_at is None:
        log.warning(
            "%d verdict(s) replaced an earlier review of the item in the history, and the "
            "queue does not say when it was swept (no sweep time in its metadata or in a "
            "report.json beside it): if this file is older than those reviews, the newer "
            "verdicts are gone from this version; import into its parent again with the "
            "queue file as the sweep wrote it", len(replaced),
        )  # fmt: skip
    if replaced:  # re-reviews of edited items: the new row takes the old one's place
        gone = set(replaced)
        history = history.filter(pa.array([i not in gone for i in range(history.num_rows)]))
    quarantine = pa.concat_tables([check.quarantine, quarantine_table(more_bad)])
    # A verdict the history already holds on the same content is no bad row: a cumulative
    # verdict file (yesterday's rows and today's) could never be imported strictly.
    bad = quarantine.filter(pc.invert(pc.is_in(quarantine["stage"], pa.array(SET_APART))))
    if strict and bad.num_rows:
        listed = "; ".join(
            f"row {r['row']} ({r[ITEM_ID]}): {r['reason']}" for r in bad.to_pylist()[:20]
        )
        # A campaign's row is one entry per member: count the file's rows too (an outsider
        # read "750 bad rows" for a file of 100).
        rows = len(set(bad["row"].to_pylist()))
        raise SchemaError(
            f"verdicts: {rows} bad rows ({bad.num_rows} item verdicts), nothing imported: {listed}"
        )
    seeds_added = seeds.table.num_rows - model_seeds
    if imported.num_rows == 0 and not seeds_added and retrain:
        # A new version trained on the parent's history and seeds alone would be the parent
        # again. (New seeds alone make a new version, as --no-retrain's retrain does: the two
        # disagreed, a reviewer found.)
        why = _why(quarantine, len(table))
        raise SchemaError(f"verdicts: nothing to import, no new model version trained: {why}")
    if imported.num_rows == 0 and not seeds_added:
        # Without a retrain nothing is refused: said, since a caller who did not read
        # ``added_nothing`` had a silent no-op (outsider CD: every row lacked its content).
        log.warning(
            "verdicts: none of the %d verdict row(s) was imported (%s)",
            len(table), _why(quarantine, len(table)),
        )  # fmt: skip
    if imported.num_rows == 0 and seeds_added and len(table):
        # The version is made for the seeds; said, since the rows' reasons were all a
        # reviewer saw beside "model version 2" (an outsider's retroactive picture import).
        log.warning(
            "verdicts: none of the %d verdict row(s) was imported (%s); the new model version "
            "adds only the %d new seed(s)", len(table), _why(quarantine, len(table)), seeds_added,
        )  # fmt: skip
    merged = (
        pa.concat_tables([history, new], promote_options="permissive") if new.num_rows else history
    )
    result = partial(
        ImportResult, imported, quarantine, merged, version=version, rows=len(table),
        replaced=len(replaced), seeds_added=seeds_added,
    )  # fmt: skip
    if finished is not None:
        return _finished(out_dir, finished, parent, merged, seeds, result)
    sweep_items = _sweep_items_path(queue_path, about)
    if not retrain:
        news = imported.num_rows + seeds_added
        write_pending(
            out_dir, model_dir, parent, merged, seeds, quarantine, sweep_items, news, old.signals
        )
        return result(None)
    model = _train_next(
        model_dir, old, merged, seeds, out_dir, quarantine=quarantine, sweep_items=sweep_items,
        show_progress=show_progress,
    )  # fmt: skip
    return result(model)


def _train_next(
    model_dir: Path,
    old,
    merged: pa.Table,
    seeds: SeedSet,
    out_dir: Path,
    *,
    quarantine: pa.Table,
    sweep_items: Path | None,
    show_progress: bool,
):
    """Train ``old``'s next version on ``merged`` into ``out_dir`` and save it once, with its
    lineage and the verdict quarantine, all sealed together."""
    from riskrank.rank.pipeline import fit_model

    parent = old.info
    seed_history_index(Path(model_dir), out_dir)
    # The reviewed items' vectors, where the sweep's standing index holds them, are not
    # embedded again for the history index (matched by content and encoder).
    # The history keeps each reviewed picture's bytes beside its path, by design: every
    # import and retrain warned of "rows carrying both" about riskrank's own rows, which the
    # user can do nothing about (an outsider's report).
    with inputs_warned():
        model, _, history_quarantine = fit_model(
            merged, seeds, out_dir, signals=old.signals, k=parent.get("k"),
            index_donor=sweep_items.parent if sweep_items is not None else None,
            show_progress=show_progress,
            # The model's own seeds: one no signal can use (accepted by an older version) is
            # named, not a refusal the user could not act on (an import only adds seeds).
            unusable_seeds="warn",
        )  # fmt: skip
    model.info.update(lineage_info(merged, parent=parent))
    tables = {
        "history_quarantine": history_quarantine,
        **lineage_tables(merged, seeds, model.signals),
    }
    tables[QUARANTINE_FILE.removesuffix(".parquet")] = quarantine
    model.save(out_dir, tables=tables)
    return model


def write_pending(
    out_dir: Path,
    model_dir: Path,
    parent: dict,
    history: pa.Table,
    seeds: SeedSet,
    quarantine: pa.Table,
    sweep_items: Path | None,
    news: int,
    signals: list,
) -> None:
    """What ``--no-retrain`` leaves: the new history, the seeds (with any ``--seeds`` added),
    the quarantine, and ``pending.json`` naming the parent model (its directory, version and
    history digest), what the import added and each file's sha256, written last:
    ``retrain_pending`` trains the next version from them, with the lineage an import would
    have given it, and refuses files edited since."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # Says "these files are this import's, unfinished" until pending.json is written: a
    # re-run writes them again (``_pending_leftovers``), and a user's own files never are.
    (out_dir / PENDING_UNFINISHED).write_text(json.dumps({"pid": os.getpid()}))
    write_parquet(quarantine, out_dir / QUARANTINE_FILE)
    write_parquet(stored_history(history), out_dir / HISTORY_FILE)
    write_parquet(keep_pictures(seeds.table, signals), out_dir / SEEDS_FILE)
    pending = {
        "parent_dir": str(model_dir.resolve()),
        "parent_version": int(parent.get("version", 1)),
        "parent_history_digest": parent.get("history_digest"),
        # What the import added (verdicts, re-reviews, seeds): none, and a retrain would
        # give the parent again. The files' own digests tell any later edit.
        "imported": int(news),
        "files": {f: sha256_file(out_dir / f) for f in (HISTORY_FILE, SEEDS_FILE, QUARANTINE_FILE)},
        "sweep_items": str(sweep_items.resolve()) if sweep_items is not None else None,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = out_dir / f".{PENDING_FILE}.tmp"
    tmp.write_text(json.dumps(pending, indent=1))
    tmp.replace(out_dir / PENDING_FILE)
    (out_dir / PENDING_UNFINISHED).unlink(missing_ok=True)


@holds_output_lock("out_dir", what="model directory")
def retrain_pending(
    pending_dir: str | Path,
    *,
    out_dir: str | Path,
    model_dir: str | Path | None = None,
    image_base_dir: str | Path | None = None,
    show_progress: bool = False,
):
    """Train the next model version from a ``--no-retrain`` import (``import_verdicts(...,
    retrain=False)``): its parent is the model it was imported into (``pending.json``;
    ``model_dir`` if that directory has moved), so the new model carries the same version,
    parent and history digest an import with a retrain would have given it.

    Refused, before anything is written: a directory that is not a ``--no-retrain`` import,
    a history edited since (its digest), a parent whose history is not the one the import
    started from, and an ``out_dir`` that holds a model or a user's files.
    """
    from riskrank.rank.model import RiskModel, with_image_base_dir

    pending_dir, out_dir = Path(pending_dir), Path(out_dir)
    marker = pending_dir / PENDING_FILE
    if not marker.exists():
        unfinished = pending_dir.is_dir() and any(pending_dir.iterdir())
        if unfinished and _pending_leftovers(pending_dir):
            raise FileNotFoundError(
                f"{pending_dir}: no {PENDING_FILE}; an unfinished `riskrank review import "
                "--no-retrain` (killed before it wrote it): run that import again"
            )
        raise FileNotFoundError(
            f"{pending_dir}: no {PENDING_FILE}; not the output of `riskrank review import "
            "--no-retrain`"
        )
    pending = json.loads(marker.read_text())
    model_dir = Path(model_dir) if model_dir is not None else Path(pending["parent_dir"])
    for name, digest in pending["files"].items():
        if not (pending_dir / name).exists() or sha256_file(pending_dir / name) != digest:
            raise ValueError(
                f"{pending_dir / name} changed since the import wrote it; import the verdicts again"
            )
    history = pq.read_table(pending_dir / HISTORY_FILE)
    # The same retrain run again (a retry after a kill that came too late) is answered with
    # the model it left, as an import's retry is; it was refused as "import into a new
    # directory" (an outsider's report).
    try:
        done = json.loads((out_dir / "model.json").read_text())
    except (OSError, ValueError):
        done = None
    if (
        isinstance(done, dict)
        and done.get("parent_history_digest") == pending["parent_history_digest"]
        and done.get("history_digest") == history_digest(history)
        # The history digest does not cover the seeds: another pending import of the same
        # verdicts with other seeds is not this one (its added policy went untrained).
        and _same_seeds(out_dir / SEEDS_FILE, pending_dir / SEEDS_FILE)
    ):
        log.info("%s already holds this retrain's model (version %s)", out_dir, done.get("version"))
        return RiskModel.load(out_dir)
    check_out_dir(out_dir, True)
    if not pending["imported"]:
        raise SchemaError(
            f"{pending_dir}: the import took no verdicts (see {QUARANTINE_FILE}); a new "
            "version would be its parent again"
        )
    old = RiskModel.load(model_dir)  # verifies every file's checksum
    old = with_image_base_dir(old, image_base_dir)  # where the history's relative image paths live
    if old.info.get("history_digest") != pending["parent_history_digest"]:
        raise ValueError(
            f"{model_dir} (version {old.info.get('version')}) is not the model {pending_dir} "
            f"was imported into (version {pending['parent_version']}, history digest "
            f"{str(pending['parent_history_digest'])[:12]}): pass that model's directory"
        )
    seeds = SeedSet.from_table(pending_dir / SEEDS_FILE)
    quarantine = pq.read_table(pending_dir / QUARANTINE_FILE)
    sweep_items = Path(pending["sweep_items"]) if pending.get("sweep_items") else None
    if sweep_items is not None and not sweep_items.exists():
        sweep_items = None  # pruned since: the reviewed items are embedded instead
    return _train_next(
        model_dir, old, history, seeds, out_dir, quarantine=quarantine,
        sweep_items=sweep_items, show_progress=show_progress,
    )  # fmt: skip


def _swept_at(about: dict, queue_path: Path | None) -> str | None:
    """When the queue's sweep ran: its metadata says, else the report.json beside it (a queue
    re-saved by a tool that drops Arrow's metadata let a late file's verdict replace a newer
    review: a reviewer's report). None where neither says."""
    return about.get("swept_at") or _sweep_report(queue_path).get("swept_at")


def _sweep_report(queue_path: Path | None) -> dict:
    """The report.json of the sweep beside ``queue_path`` ({} where there is none, or it
    cannot be read: ``check_queue_model`` has refused the import by then where that matters)."""
    if queue_path is None:
        return {}
    try:
        made = json.loads((queue_path.parent / "report.json").read_text())
    except (OSError, ValueError):
        return {}
    return made if isinstance(made, dict) else {}


def _same_seeds(a: Path, b: Path) -> bool:
    """Two seed files hold the same seed rows (``False`` where one cannot be read)."""
    try:
        return _seed_rows(pq.read_table(a)) == _seed_rows(pq.read_table(b))
    except (OSError, pa.ArrowException):
        return False


def _warn_representatives_alone(accepted: pa.Table, q: QueueIndex) -> None:
    """A campaign-mode queue's row is its campaign, shown by the representative: verdicts
    naming representatives by ``item_id`` alone judge those items only, and their members get
    none (the README's loop with ``item_id`` for ``campaign_id``: 100 verdicts where the same
    decisions by campaign gave 750; an outsider's report). Said, not changed: a reviewer may
    mean the one item."""
    if not q.shown_for or not accepted.num_rows:
        return
    judged = set()
    for item_id, source in zip(
        accepted[ITEM_ID].to_pylist(), accepted["verdict_source"].to_pylist()
    ):
        if source == "item" and item_id in q.shown_for:
            judged.add(q.shown_for[item_id])
    campaigns = {s[len("campaign:") :] for s in accepted["verdict_source"].to_pylist()
                 if str(s).startswith("campaign:")}  # fmt: skip
    alone = [c for c in judged - campaigns if len(q.members.get(c, [])) > 1]
    if alone:
        left = sum(len(q.members[c]) - 1 for c in alone)
        log.warning(
            "%d campaigns were judged by their representative's item_id alone, without "
            "campaign_id: that judges the item only, and the %d other members of those "
            "campaigns get no verdict (the next sweep queues them again); give campaign_id "
            "to judge a campaign",
            len(alone),
            left,
        )


def _warn_another_queue(quarantine: pa.Table, rows: int) -> None:
    """Where most of a file's rows name ids the queue given does not hold, the likeliest
    mistake is the queue: said, with the flag (yesterday's campaign verdicts imported with
    today's queue were 100 "unknown campaign_id" rows and no pointer: an outsider's audit)."""
    if not rows or not quarantine.num_rows:
        return
    unknown = {
        r["row"]
        for r in quarantine.select(["row", "reason"]).to_pylist()
        if str(r["reason"]).startswith(("unknown item_id", "unknown campaign_id"))
        and "leading zeros lost" not in str(r["reason"])  # (explained row by row)
    }
    if len(unknown) * 2 > rows:
        log.warning(
            "verdicts: %d of the file's %d rows name ids the queue given does not hold: were "
            "they decided on another day's queue? Import them with the queue they were made "
            "from (--queue; queue= in Python)",
            len(unknown), rows,
        )  # fmt: skip


def _why(quarantine: pa.Table, rows: int) -> str:
    """Why an import took nothing: an empty file, or each reason with how many rows had it."""
    if rows == 0:
        return "the file has no rows"
    reasons = Counter(quarantine.column("reason").to_pylist())
    listed = "; ".join(f"{why} ({n})" for why, n in reasons.most_common(10))
    # Campaign verdicts count once per member in the quarantine (an outsider added up 100
    # reasons under "all 56 rows").
    counted = "" if quarantine.num_rows == rows else f" ({quarantine.num_rows} item verdicts)"
    stages = set(quarantine.column("stage").to_pylist())
    if stages <= set(SET_APART):
        # Not "quarantined": the CLI counts these rows apart (a reviewer's finding).
        return (
            f"all {rows} rows{counted} are already in the history or superseded by a later "
            f"review, nothing new: {listed}"
        )
    what = "quarantined or set apart" if stages & set(SET_APART) else "quarantined"
    return f"all {rows} rows{counted} were {what}: {listed}"


def check_out_dir(out_dir: Path, retrain: bool, *, finished_ok: bool = False) -> str | None:
    """Refuse, before anything is written, an ``out_dir`` an import must not write into:
    a finished model (versions are not overwritten), a user's own directory, and, without a
    retrain, any directory with files in it (the history written there is not a model).

    ``finished_ok``: a finished model (with a retrain) or a finished ``--no-retrain`` import
    (without) is not refused here but named (``"model"``, ``"pending"``): the caller decides,
    once it knows what it would write, whether it is its own earlier run (``_finished``)."""
    from riskrank.rank.model import MODEL_JSON, check_model_dir

    if not out_dir.exists():
        return None
    if (out_dir / MODEL_JSON).exists():
        if finished_ok and retrain:
            return "model"
        raise _holds_model(out_dir)
    if finished_ok and not retrain and (out_dir / PENDING_FILE).exists():
        return "pending"
    if retrain:
        check_model_dir(out_dir)  # leftovers of a killed import (its history index) are kept
    elif any(out_dir.iterdir()):
        if _pending_leftovers(out_dir):
            # A --no-retrain import killed (or out of disk) between its writes: no
            # pending.json, so nothing trusts these files; written again (its re-run was
            # refused as "not empty": a reviewer's report).
            log.info("%s: an unfinished --no-retrain import's files, written again", out_dir)
            return None
        raise FileExistsError(f"{out_dir} is not empty: --no-retrain writes into an empty one")


def _pending_leftovers(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds only what ``write_pending`` writes before ``pending.json``
    (and its temporary files), under its mark: a user's own ``history.parquet`` is not."""
    if not (out_dir / PENDING_UNFINISHED).is_file():
        return False
    own = {QUARANTINE_FILE, HISTORY_FILE, SEEDS_FILE, PENDING_UNFINISHED}
    for path in out_dir.iterdir():
        name = path.name
        temp = name.endswith(".tmp") and (
            name == f".{PENDING_FILE}.tmp" or name.split(".parquet.")[0] + ".parquet" in own
        )
        if not path.is_file() or (name not in own and not temp):
            return False
    return True


def _holds_model(out_dir: Path) -> FileExistsError:
    from riskrank.rank.model import MODEL_JSON

    info = json.loads((out_dir / MODEL_JSON).read_text())
    return FileExistsError(
        f"{out_dir} already holds a model (version {info.get('version')}); models are "
        "versioned: import into a new directory"
    )


def _seed_rows(table: pa.Table) -> list[tuple[str, ...]]:
    """A seed set's rows as an import compares them: id, policy, kind and text (a seed whose
    text was edited under the same id is another seed: a reviewer's report)."""
    cols = [c for c in ("seed_id", "policy", "kind", "text") if c in table.column_names]
    return sorted(zip(*(map(str, table[c].to_pylist()) for c in cols)))


def _finished(out_dir: Path, kind: str, parent: dict, merged: pa.Table, seeds, result):
    """``out_dir`` holds a finished import (``kind``: a model, or a ``--no-retrain``
    import's files): this one again, from the same parent with the same verdicts and seeds,
    is answered with it and writes nothing (a retry of a run killed after it finished);
    anything else is refused as before."""
    from riskrank.rank.model import MODEL_JSON, RiskModel

    if kind == "model":
        done = json.loads((out_dir / MODEL_JSON).read_text())
        parent_of = (done.get("parent_version"), done.get("parent_history_digest"))
        digest = done.get("history_digest")
    else:
        pending = json.loads((out_dir / PENDING_FILE).read_text())
        parent_of = (pending.get("parent_version"), pending.get("parent_history_digest"))
        files = pending.get("files") or {}
        if not files or any(
            not (out_dir / n).exists() or sha256_file(out_dir / n) != d for n, d in files.items()
        ):
            raise FileExistsError(f"{out_dir} is not empty: --no-retrain writes into an empty one")
        digest = history_digest(pq.read_table(out_dir / HISTORY_FILE))
    same = (
        parent_of == (int(parent.get("version", 1)), parent.get("history_digest"))
        and digest == history_digest(merged)
        and _seed_rows(pq.read_table(out_dir / SEEDS_FILE)) == _seed_rows(seeds.table)
    )
    if not same:
        if kind == "model":
            raise _holds_model(out_dir)
        took = "" if pending.get("imported") else ", one that took nothing (see its quarantine)"
        raise FileExistsError(
            f"{out_dir} holds another --no-retrain import (other verdicts, seeds or parent"
            f"{took}): import into an empty directory, or remove that one"
        )
    log.warning(
        "%s already holds this import (the same parent, verdicts and seeds): a run of it "
        "finished before; nothing was written",
        out_dir,
    )
    return result(RiskModel.load(out_dir) if kind == "model" else None, already_done=True)


def check_queue_model(
    queue_path: Path | None, model_dir: Path, parent: dict, queue: pa.Table | None = None
) -> dict | None:
    """Refuse verdicts on a queue made by a model that is not ``model_dir``'s or one of its
    ancestors (the queue's own metadata names the model, else the sweep's report): a later
    version (the new one would lack the reviews that model was trained on), or another model
    of the same version (a sibling: two imports from one parent). Only the version and the
    history digest are recorded, so an older model on another branch cannot be told from an
    ancestor and is let through. Returns the model that made the queue, where known.

    A queue handed over in memory (``result.queue``, a DataFrame read from the file) was let
    through unchecked: it carries its model now (``with_provenance``)."""
    known = queue_provenance(queue) if queue is not None else None
    if known is not None:
        _check_made_by(known.get("model") or {}, queue_path or "the queue", model_dir, parent)
    if queue_path is None:
        return (known or {}).get("model")
    folder, report = queue_path.parent, queue_path.parent / "report.json"
    if not report.exists():
        # A queue on its own is let through; beside the other outputs of a sweep, a missing
        # report means the sweep died after writing the queue (a reviewer's finding: the
        # check was skipped and verdicts went to the wrong model).
        if _beside_its_tables(folder):
            # (Its marker said missing where it was there: an outsider's audit.)
            marker = "" if sweep_output.marker(folder) else f", no {sweep_output.MARKER}"
            raise ValueError(
                f"{queue_path}: the sweep that wrote it did not finish (no report.json beside "
                f"it{marker}), so which model made it cannot be checked; run the sweep again "
                "and review its queue"
            )
        return (known or {}).get("model")
    made = json.loads(report.read_text())
    marker = sweep_output.marker(folder)
    if marker is None and made.get("run_id") and _beside_its_tables(folder):
        # A sweep that wrote report.json and died before its reports and marker (an
        # outsider's kill trial): `riskrank info` said "not complete", the import took it.
        raise ValueError(
            f"{queue_path}: the sweep that wrote it did not finish (no {sweep_output.MARKER} "
            "beside it); run the sweep again (it finishes the run) and review its queue"
        )
    if marker is not None and marker.get("run_id") != made.get("run_id"):
        raise ValueError(
            f"{queue_path}: its {sweep_output.MARKER} and report.json are from different sweep "
            "runs; run the sweep again and review its queue"
        )
    if known is not None and known.get("run_id") != made.get("run_id"):
        raise ValueError(
            f"{queue_path}: the queue is from another sweep run than the report.json beside "
            "it; review the queue of the run that wrote that folder, or move it with its files"
        )
    made_by = made.get("model") or {}
    _check_made_by(made_by, queue_path, model_dir, parent)
    return made_by


def _beside_its_tables(folder: Path) -> bool:
    """Whether ``folder`` holds a sweep's other tables: the queue was not copied on its own."""
    return any((folder / f).exists() for f in ("candidates.parquet", "quarantine.parquet"))


def _check_made_by(made_by: dict, queue_path, model_dir: Path, parent: dict) -> None:
    if made_by.get("history_digest") in (None, parent.get("history_digest")):
        return
    made, have = int(made_by.get("version") or 0), int(parent.get("version") or 1)
    if made < have:
        return
    which = "later than" if made > have else "a different model of the same version as"
    raise ValueError(
        f"{queue_path} was made by model version {made_by['version']} (created "
        f"{made_by.get('created_at')}, history digest {str(made_by['history_digest'])[:12]}), "
        f"{which} {model_dir} (version {parent.get('version')}, history digest "
        f"{str(parent.get('history_digest'))[:12]}): import into the model that made the "
        "queue or a later one"
    )

"""The inventory contract: what an item is, and how bad rows are quarantined.

Its columns are ``INVENTORY_SCHEMA`` (``validate_inventory`` checks a table against it, and the
README's inventory table is generated from it); any other column is metadata, passed through
untouched to candidates and the queue. Integer ids (a DataFrame index, a database key) are
carried as their decimal strings: the queue and every output hold ``"7"`` for ``7``, and
uniqueness is checked on those strings.

An item needs at least one modality. Rows that break the contract are not dropped: they go to
the quarantine table (``item_id``, ``row``, ``stage``, ``reason``) so that
``items in == items indexed + items quarantined`` always holds.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextvars import ContextVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskrank.index.run_log import get_logger
from riskrank.index.tables import (
    SchemaError,
    TableLike,
    as_table,
    check_columns,
    doc_field,
    file_runs,
    string_bytes,
    without_files,
)

ITEM_ID = "item_id"
TEXT = "text"
log = get_logger(__name__)

IMAGE_BYTES = "image_bytes"
IMAGE_PATH = "image_path"
CONTENT_COLUMNS = (TEXT, IMAGE_BYTES, IMAGE_PATH)


INVENTORY_SCHEMA = pa.schema(
    [
        doc_field(
            ITEM_ID,
            pa.string(),
            "unique id of the item; an integer is carried as its decimal string",
            required=True,
            is_id=True,
        ),
        doc_field(TEXT, pa.string(), "text content (UTF-8); optional when the item has an image"),
        doc_field(IMAGE_BYTES, pa.binary(), "encoded image (JPEG/PNG/WebP/GIF); optional"),
        doc_field(IMAGE_PATH, pa.string(), "image path/URI, resolved against a base dir; optional"),
    ],
    metadata={"doc": "inventory item; any other column is metadata and passes through"},
)

QUARANTINE_SCHEMA = pa.schema(
    [
        doc_field(ITEM_ID, pa.string(), "id of the row (null when the id itself was missing)"),
        doc_field("row", pa.int64(), "row number in the input (-1: found after validation)"),
        doc_field(
            "stage",
            pa.string(),
            "where it was refused: validate, encode (the inventory); history, history-index (a "
            "history row whose item has no usable content); verdicts (review import)",
        ),
        doc_field("reason", pa.string(), "why, in words"),
        doc_field(
            "file",
            pa.string(),
            "the inventory's Parquet file of a row refused at validation (a directory's file "
            "relative to it; a listed path as given); null for a table made in memory, a URI "
            "and the other stages",
        ),
        doc_field("file_row", pa.int64(), "row number within that file"),
    ],
    metadata={"doc": "a row that could not be used, with the reason"},
)


# Characters that render as nothing but are not whitespace to str.strip(): zero-width space
# and joiners, word joiner, BOM, Hangul and braille fillers, variation selectors. A text made
# only of them (a spam trick to dodge "empty text" checks) is empty.
_INVISIBLE = frozenset("\u115f\u1160\u180e\u200b\u200c\u200d\u2060\u2800\u3164\ufeff\uffa0")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


# Control characters in an id (NUL, escapes, DEL; an outsider's report: "x5\x00" was queued).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# C0 and the line breaks (U+0085 too: str.splitlines breaks there); the rest of C1 is left
# out, as Latin-1 mojibake of UTF-8 holds it.
_C0_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def has_control(name: object, *, c1: bool = True) -> bool:
    """True for an id or a policy name holding a control character (NUL, a line break, an
    escape): it cuts the name short in C tools, splits CSV and Markdown rows, and cannot be
    typed back by a reviewer. ``c1=False`` lets U+0080-U+009F pass (policy names: a name
    read as Latin-1, ``childrenâ\\x80\\x99s safety``, breaks no row, and models trained on one
    were refused).

    >>> has_control("ad-1\\x00"), has_control("ad-1"), has_control("a\\x80", c1=False)
    (True, False, False)
    """
    if not isinstance(name, str):
        return False
    return (_CONTROL if c1 else _C0_CONTROL).search(name) is not None


def is_blank(text: object) -> bool:
    """True for None, and for text with nothing visible (whitespace, zero-width, fillers).

    >>> is_blank("\u200b\u200d "), is_blank("hi\u200b")
    (True, False)
    """
    if text is None:
        return True
    for ch in str(text):
        if ch in _INVISIBLE or "\ufe00" <= ch <= "\ufe0f" or "\U000e0100" <= ch <= "\U000e01ef":
            continue
        if unicodedata.category(ch) not in _INVISIBLE_CATEGORIES:
            return False
    return True


# Why a signal holds no vector for an item (``signal_failures.parquet`` beside the quarantine):
# an item kept by one signal but not another (a good text beside a corrupt image) is not
# quarantined, and without this table nobody could tell why its image matched nothing.
SIGNAL_FAILURES = "signal_failures.parquet"
SIGNAL_FAILURE_SCHEMA = pa.schema(
    [
        (ITEM_ID, pa.string()),
        ("signal", pa.string()),
        ("reason", pa.string()),
        ("key", pa.string()),  # the content key (a standing index's versions; else null)
    ]
)
# A signal's reason where a row has no content of its kind at all: nothing failed.
ABSENT_REASONS = frozenset({"no text", "no image"})


def signal_failure_table(rows: dict[str, list]) -> pa.Table:
    """``{item_id: [...], signal: [...], reason: [...], key: [...]}`` as the table."""
    n = len(rows.get(ITEM_ID, ()))
    cols = {f.name: rows.get(f.name, [None] * n) for f in SIGNAL_FAILURE_SCHEMA}
    return pa.table(cols, schema=SIGNAL_FAILURE_SCHEMA)


def quarantine_table(rows: list[dict]) -> pa.Table:
    """Build a quarantine table from ``[{item_id, row, stage, reason[, file, file_row]}, ...]``
    (no file: null)."""
    return pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)


_REASON_DETAIL = re.compile(r"'[^']*'|\"[^\"]*\"|\d[\d,.]*")
_LISTED = re.compile(r"(\b(\w+) …)(?:,? \2 …)+")


def reason_kind(reason: str | None) -> str:
    """A quarantine reason without its particulars (quoted ids and texts, numbers, and what
    follows its first parenthesis or semicolon): "duplicate item_id 'ad7' (the same as row 3
    ...)" -> "duplicate item_id …", so that reasons can be counted by kind."""
    if not reason:
        return "(no reason given)"
    kind = _REASON_DETAIL.sub("…", reason)
    kind = _LISTED.sub(r"\1", kind)  # "row … row … row …" -> "row …": any number listed
    kind = re.split(r" \(|;", kind, maxsplit=1)[0].strip()
    return kind if len(kind) <= 100 else kind[:99] + "…"


def quarantine_kinds(quarantine: pa.Table, top: int = 8) -> dict[str, int]:
    """How many quarantined rows each kind of reason (``reason_kind``) holds, most first; past
    ``top`` kinds the rest are counted as "other reasons"."""
    if quarantine.num_rows == 0 or "reason" not in quarantine.column_names:
        return {}
    counts = Counter(reason_kind(r) for r in quarantine.column("reason").to_pylist())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kinds = dict(ranked[:top])
    if rest := sum(n for _, n in ranked[top:]):
        kinds["other reasons"] = rest
    return kinds


class SourceFiles:
    """Which file an input row came from: the runs of rows ``tables.FILES_KEY`` records
    (none for a table made in memory). ``where(row)`` -> ``{"file", "file_row"}``."""

    def __init__(self, runs: list[list]) -> None:
        self.names = [run[0] for run in runs]
        self.starts = np.cumsum([0] + [int(run[1]) for run in runs])
        # Per file, the columns its hive partition folders made (as the reader decoded them),
        # and their values in folder order, as what the newest of two exports is judged by.
        parts = [run[2] if len(run) > 2 else [] for run in runs]
        self.keys = [frozenset(k for k, _ in p) for p in parts]
        # (Nulls first, numbers before text: listed folders are typed each on its own.)
        self.order = [
            tuple((v is not None, isinstance(v, str), 0 if v is None else v) for _, v in p)
            for p in parts
        ]

    @classmethod
    def of(cls, table: pa.Table) -> SourceFiles:
        return cls(file_runs(table))

    def where(self, row: int) -> dict:
        if not self.names or not 0 <= row < self.starts[-1]:
            return {}
        i = int(np.searchsorted(self.starts, row, side="right")) - 1
        return {"file": self.names[i], "file_row": int(row - self.starts[i])}

    def partition_columns(self, row: int) -> frozenset[str]:
        """The columns the hive partition folders of ``row``'s file made
        (``day=2026-12-01/part-0.parquet`` -> ``{"day"}``), as the reader recorded them: below
        the directory read, decoded (``export%20day=`` -> ``export day``)."""
        if not self.names or not 0 <= row < self.starts[-1]:
            return frozenset()
        return self.keys[self._run(row)]

    def partition_order(self, row: int) -> tuple:
        """``row``'s partition values in folder order, typed as pyarrow reads them (``month=10``
        after ``month=9``; a null folder, Hive's default partition, first)."""
        return self.order[self._run(row)]

    def _run(self, row: int) -> int:
        return int(np.searchsorted(self.starts, row, side="right")) - 1

    def label(self, row: int) -> str:
        """``row`` as a reason names it: the input's row number, and where a file is known,
        the file (quoted as Python quotes a string, so any name reads back) and its own row
        (``"row 7 ('part-1.parquet' row 2)"``)."""
        where = self.where(row)
        if not where:
            return f"row {row}"
        return f"row {row} ({where['file']!r} row {where['file_row']})"

    def relabel(self, reason: str, item_id: str | None) -> str:
        """``reason`` with each row it names after the quoted ``item_id`` (``label``'s form,
        with or without a file) named by this input's files: an up-to-date index keeps the
        reasons of the day it was made, when the same rows may have come in other files. The
        id itself is left alone (an id may read ``row 5``); a reason without it is unchanged."""
        quoted = f"'{item_id}'"
        at = reason.find(quoted) if item_id is not None else -1
        if at < 0:
            return reason
        cut = at + len(quoted)
        return reason[:cut] + _ROW_LABEL.sub(lambda m: self.label(int(m.group(1))), reason[cut:])


# A row as ``SourceFiles.label`` names it, with or without its file part: the name is a
# Python string literal, read to its closing quote whatever it holds (") ", parentheses).
_ROW_LABEL = re.compile(r"""\brow (\d+)(?: \((?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*") row \d+\))?""")


def name_files(quarantine: pa.Table, files: SourceFiles) -> pa.Table:
    """``quarantine`` (of any version of ``QUARANTINE_SCHEMA``) with ``file``/``file_row``
    from ``files``, today's input: an index found up to date returns the quarantine the
    version was made with, whose files were that day's (the same rows under other names)."""
    rows = quarantine.to_pylist()
    for r in rows:
        at = r.get("row")
        where = files.where(at) if r.get("stage") == "validate" and at is not None else {}
        r["file"], r["file_row"] = where.get("file"), where.get("file_row")
        if r.get("stage") == "validate" and r.get("reason"):
            r["reason"] = files.relabel(r["reason"], r.get(ITEM_ID))
    return quarantine_table(rows)


def _check_utf8(table: pa.Table, what: str) -> None:
    """Refuse a string column other than ``text`` holding bytes that are not UTF-8 (Arrow
    reads Parquet's without checking), naming the column, the row and its file: an id or a
    path cannot be quarantined per row when it is unreadable, and a metadata column broke the
    report after the embedding (a reviewer's finding). ``text`` is checked per row
    (``_as_text_column``)."""
    for name in table.column_names:
        col = table.column(name)
        if name == TEXT or not (
            pa.types.is_string(col.type)
            or pa.types.is_large_string(col.type)
            or (pa.types.is_dictionary(col.type) and pa.types.is_string(col.type.value_type))
        ):
            continue
        try:
            col.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        for row, value in enumerate(string_bytes(col).to_pylist()):
            try:
                value is None or value.decode("utf-8")
            except UnicodeDecodeError as exc:
                where = SourceFiles.of(table).label(row)
                raise SchemaError(
                    f"{what}: column {name!r} holds bytes that are not UTF-8 at {where} "
                    f"({exc.reason} at byte {exc.start}): re-export the file as UTF-8"
                ) from None


def _as_text_column(table: pa.Table, bad: dict[int, str]) -> pa.Array:
    """Return ``text`` as a string array; rows that are not valid UTF-8 are recorded in ``bad``."""
    col = table.column(TEXT).combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = col.cast(pa.string())
        try:
            col.validate(full=True)
            return col
        except pa.ArrowInvalid:
            # Arrow does not check the UTF-8 of a Parquet string column it reads, and other
            # writers put invalid bytes there: checked here, row by row, as bytes would be
            # (it raised a UnicodeDecodeError from the content digest: an outsider's report).
            col = string_bytes(col)
    if pa.types.is_null(col.type):
        return pa.nulls(len(col), pa.string())
    out = []
    for i, value in enumerate(col.to_pylist()):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(value.decode("utf-8"))
        except UnicodeDecodeError as exc:
            bad[i] = f"text is not valid UTF-8 ({exc.reason} at byte {exc.start})"
            out.append(None)
    return pa.array(out, pa.string())


NO_CONTENT = "no content: text is empty (or only invisible characters) and there is no image"


def has_content(row: Mapping) -> bool:
    """A row carries something to match: visible text, image bytes or an image path.

    >>> has_content({"text": " \u200b"}), has_content({"text": "", "image_path": "a.png"})
    (False, True)
    """
    if not is_blank(row.get(TEXT)):
        return True
    return any(row.get(c) is not None and len(row[c]) > 0 for c in (IMAGE_BYTES, IMAGE_PATH))


def _cell(value):
    """A cell as a hashable value that equals itself (NaN is no value, like null)."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, list):
        return tuple(_cell(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _cell(v)) for k, v in value.items()))
    return value


def row_key(cells: Mapping[str, object]) -> tuple:
    """What two rows of one id are compared by: every non-null cell, by column name (a
    column absent from one file and null in another is the same nothing)."""
    kept = ((name, _cell(value)) for name, value in cells.items())
    return tuple(sorted((name, value) for name, value in kept if value is not None))


def repeated_row_keys(
    repeated: Sequence[int], cells: Sequence[Mapping[str, object]], files: SourceFiles
) -> tuple[dict[int, tuple], dict[int, tuple]]:
    """For rows whose id repeats (``cells``: each one's columns but ``item_id``), what
    ``duplicate_reasons`` compares them by: every cell, and for a row of a hive partition
    folder, its cells but the partition columns, with its folders' values (which export is
    newer)."""
    contents, exports = {}, {}
    for r, row in zip(repeated, cells):
        contents[r] = row_key(row)
        if parts := files.partition_columns(r):
            bare = row_key({k: v for k, v in row.items() if k not in parts})
            exports[r] = (bare, files.partition_order(r))
    return contents, exports


def duplicate_reasons(
    ids: Sequence[str | None],
    contents: Mapping[int, Hashable],
    refused: Mapping[int, str],
    label: Callable[[int], str] = lambda row: f"row {row}",
    exports: Mapping[int, tuple[Hashable, tuple]] | None = None,
) -> dict[int, str]:
    """Rows to quarantine for sharing an id, whatever the rows' order: among rows not refused
    for another reason, an id whose rows are the same (``contents``: a key per row, for rows
    whose id repeats) keeps its first row (the copies are quarantined); an id whose rows differ,
    in content or metadata, keeps none, since which one is live is unknown (first-row-wins made
    a shuffled export's other text the item's content). A refused row (``refused``: no content,
    not UTF-8) counts in that comparison and keeps its own reason. ``label`` names a row in a reason
    (``SourceFiles.label``: with its file and the file's row where the input had files).

    Rows of one id in different hive partition folders (``exports``: per row, its key without
    the partition columns and its folders' values, ``repeated_row_keys``) are one ad exported
    on several days (``day=2026-12-01/``, ``day=2026-12-02/``): the row of the newest folder
    is kept (by the folders' values as pyarrow types them, outermost first: ``month=10``
    after ``month=9``), the others are older exports of it, edited since or not. Every such ad
    was dropped, since the folder's value made its rows differ, and an ad edited between two
    exports was never swept again (two outsiders' reports). Rows of one id in one folder that
    differ still keep none.

    >>> duplicate_reasons(["a", "a", "b", "b"], dict(enumerate("xxyz")), {})[1]
    "duplicate item_id 'a' (the same as row 0)"
    """
    # Rows refused for their content (none, or not UTF-8) take part in the comparison and keep
    # their own reason: an ad blanked in a newer export beside its older text was swept on the
    # old text (an outsider's report: 4 of 5,000 re-exported ids at 325,000 rows).
    rows_of: dict[str, list[int]] = defaultdict(list)
    for i, item_id in enumerate(ids):
        if item_id:
            rows_of[item_id].append(i)
    out: dict[int, str] = {}
    for item_id, rows in rows_of.items():
        if len(rows) < 2:
            continue
        if len({contents[r] for r in rows}) == 1:
            for r in rows[1:]:
                out[r] = f"duplicate item_id '{item_id}' (the same as {label(rows[0])})"
            continue
        if exports is not None and all(r in exports for r in rows):
            # Per folder, its rows must be one row (copies of it allowed); then the newest
            # folder's first row stands for the ad, every other row is a copy or an older export.
            folders: dict[tuple, list[int]] = defaultdict(list)
            for r in rows:
                folders[exports[r][1]].append(r)
            if all(len({contents[r] for r in rs}) == 1 for rs in folders.values()):
                newest = folders[max(folders)][0]
                for r in rows:
                    if r == newest:
                        continue
                    if exports[r][1] == exports[newest][1]:
                        out[r] = f"duplicate item_id '{item_id}' (the same as {label(newest)})"
                    elif exports[r][0] == exports[newest][0]:
                        out[r] = (
                            f"duplicate item_id '{item_id}' (the same as {label(newest)} but "
                            "for its partition folder, an older one: an older export of it)"
                        )
                    else:
                        out[r] = (
                            f"item_id '{item_id}' is also in {label(newest)}, a newer partition "
                            "folder: an older export of it, edited since"
                        )
                continue
        listed = ", ".join(map(label, rows[:10])) + (", ..." if len(rows) > 10 else "")
        for r in rows:
            out[r] = (
                f"item_id '{item_id}' differs between {listed} (content or metadata): "
                "which one is live is unknown, so none is indexed"
            )
    return {r: why for r, why in out.items() if r not in refused}


def refuse_all_quarantined(n_valid: int, quarantined: pa.Table, what: str = "inventory") -> None:
    """Refuse an inventory none of whose rows passed validation, naming the commonest reasons:
    a broken export (a text column come out all null) swept "successfully" into an empty
    queue and an emptied standing index, exit 0 and no warning (an outsider's fuzz)."""
    if n_valid or not quarantined.num_rows:
        return
    counts = Counter(
        str(r).split(":")[0] if str(r).startswith("item_id") else str(r)
        for r in quarantined.column("reason").to_pylist()
    )
    top = "; ".join(f"{n:,} x {why}" for why, n in counts.most_common(3))
    raise SchemaError(
        f"{what}: every row ({quarantined.num_rows:,}) was quarantined ({top}): nothing "
        "indexed (a standing index keeps its current version)"
    )


# Set while a standing update builds its delta from rows it has validated (and warned about)
# already: one update logged the same warning twice (an outsider's review).
_INPUTS_WARNED: ContextVar[bool] = ContextVar("riskrank_inputs_warned", default=False)


@contextlib.contextmanager
def inputs_warned() -> Iterator[None]:
    """Validation inside this block stays quiet about what the caller has warned of."""
    token = _INPUTS_WARNED.set(True)
    try:
        yield
    finally:
        _INPUTS_WARNED.reset(token)


def empty_bytes_as_null(table: pa.Table) -> pa.Table:
    """``image_bytes`` cells of ``b""`` as null: they hold no picture. Bytes win over a path,
    so an export that wrote ``b""`` beside each row's (valid) ``image_path`` lost every picture,
    with only a per-item "image is empty (0 bytes)" (an outsider's picture inventory); as null,
    the path is read, and a row with neither is "no content", as an empty text is.

    >>> t = empty_bytes_as_null(pa.table({"image_bytes": [b"", b"x", None]}))
    >>> t.column("image_bytes").to_pylist()
    [None, b'x', None]
    """
    if IMAGE_BYTES not in table.column_names:
        return table
    col = table.column(IMAGE_BYTES)
    if not (pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type)):
        return table  # check_columns names a column of another type
    empty = pc.equal(pc.binary_length(col), 0)
    if not pc.any(empty).as_py():
        return table
    kept = pc.if_else(empty, pa.scalar(None, col.type), col)
    return table.set_column(table.column_names.index(IMAGE_BYTES), IMAGE_BYTES, kept)


def mixed_picture_rows(image_bytes: list | None, image_path: list | None) -> list[int]:
    """Rows that carry both a picture's bytes and a path (the bytes are what is read)."""
    if image_bytes is None or image_path is None:
        return []
    return [
        i for i, (data, path) in enumerate(zip(image_bytes, image_path))
        if data and not is_blank(path)
    ]  # fmt: skip


def warn_mixed_pictures(ids: list, what: str = "inventory") -> None:
    """One warning for the whole inventory (an outsider's export mixed the two: a shirt shown
    beside a scam's match); quiet inside ``inputs_warned``."""
    if ids and not _INPUTS_WARNED.get():
        log.warning(
            "%s: %d row(s) carry both image_bytes and image_path (%s): the bytes are the "
            "picture an image signal reads; the path is not read, though a report may show "
            "its file", what, len(ids), ", ".join([*map(repr, ids[:3]), "..."][: min(len(ids), 4)]),
        )  # fmt: skip


def check_inventory_table(
    data: TableLike, *, what: str = "inventory", require_text: bool = False
) -> pa.Table:
    """The inventory as a table, its table-level problems raised as ``SchemaError`` (those
    ``validate_inventory`` raises; it calls this): a standing index checks them before it
    makes its folder, so a refused first update leaves nothing behind."""
    table = as_table(data, what=what, files=True)
    # Ids, content of another type (a text column of ints or bools) and the like are input
    # errors, not data: named here, before anything is embedded.
    check_columns(table, INVENTORY_SCHEMA, what=what)
    if table.num_rows == 0:
        raise SchemaError(f"{what}: 0 rows; nothing to index")
    table = empty_bytes_as_null(table)
    present = [c for c in CONTENT_COLUMNS if c in table.column_names]
    if not present:
        raise SchemaError(
            f"{what}: needs at least one content column of {list(CONTENT_COLUMNS)}, "
            f"got {table.column_names}"
        )
    if require_text and TEXT not in table.column_names:
        raise SchemaError(f"{what}: this index has a text signal but there is no 'text' column")
    return table


def validate_inventory(
    data: TableLike,
    *,
    what: str = "inventory",
    require_text: bool = False,
    duplicates: bool = True,
    warn_images: bool = True,
) -> tuple[pa.Table, pa.Table]:
    """Split inventory into (clean items, quarantined rows).

    Raises ``SchemaError`` for table-level problems (``INVENTORY_SCHEMA``: missing ``item_id``,
    a column of a type it cannot be read as; no content column);
    row-level problems (null/duplicate id, no content, bad UTF-8) are quarantined: of rows
    sharing an id, one is kept if they are the same (content and metadata), none if they
    differ (``duplicate_reasons``). ``duplicates=False`` leaves repeated ids to the caller (the Ray
    engine judges them across all blocks), as ``warn_images=False`` leaves the warning about rows
    with both picture columns (``warn_mixed_pictures``: the Ray driver warns once for all blocks).

    >>> items, bad = validate_inventory({"item_id": ["a", "a"], "text": ["x", "y"]})
    >>> items.num_rows, bad.column("reason")[0].as_py().split(":")[0]
    (0, "item_id 'a' differs between row 0, row 1 (content or metadata)")
    """
    table = check_inventory_table(data, what=what, require_text=require_text)
    present = [c for c in CONTENT_COLUMNS if c in table.column_names]
    _check_utf8(table, what)
    ids = table.column(ITEM_ID).combine_chunks()
    if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
        ids = pc.cast(ids, pa.string())
    bad: dict[int, str] = {}
    text = _as_text_column(table, bad) if TEXT in present else None

    id_list = ids.to_pylist()
    for i, item_id in enumerate(id_list):
        if is_blank(item_id):  # " " or a zero-width space names nothing a reviewer can find
            bad.setdefault(i, "item_id is null, empty or blank")
        elif has_control(item_id):  # a NUL cuts the id short in C tools, CSV and HTML
            bad.setdefault(i, f"item_id {item_id!r} holds a control character")

    columns = {c: table.column(c).to_pylist() for c in present if c != TEXT}
    if text is not None:
        columns[TEXT] = text.to_pylist()
    for i in range(table.num_rows):
        if not has_content({c: v[i] for c, v in columns.items()}):
            bad.setdefault(i, NO_CONTENT)
    if require_text and text is not None:
        for i, t in enumerate(text.to_pylist()):
            if is_blank(t):
                bad.setdefault(i, "text is empty or invisible (this index embeds text)")

    if text is not None:
        table = table.set_column(table.column_names.index(TEXT), TEXT, text)
    table = table.set_column(table.column_names.index(ITEM_ID), ITEM_ID, ids.cast(pa.string()))
    files = SourceFiles.of(table)
    if duplicates:
        counts = Counter(i for i in id_list if i)
        repeated = [r for r, i in enumerate(id_list) if i and counts[i] > 1]
        if repeated:  # only these rows' cells are read
            rows_of = table.drop([ITEM_ID]).take(pa.array(repeated)).to_pylist()
            contents, exports = repeated_row_keys(repeated, rows_of, files)
            bad.update(duplicate_reasons(id_list, contents, dict(bad), files.label, exports))
    if warn_images:  # the rows that pass, as the Ray driver counts them
        rows = mixed_picture_rows(columns.get(IMAGE_BYTES), columns.get(IMAGE_PATH))
        warn_mixed_pictures([id_list[i] for i in rows if i not in bad], what)
    keep = pa.array([i not in bad for i in range(table.num_rows)], pa.bool_())
    rows = [
        {ITEM_ID: id_list[i], "row": i, "stage": "validate", "reason": reason, **files.where(i)}
        for i, reason in sorted(bad.items())
    ]
    return without_files(table.filter(keep)), quarantine_table(rows)

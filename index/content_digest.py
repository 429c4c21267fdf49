"""Digests of what an index was built from: the content of every row, and the encoders.

Reusing an index or a saved chunk is only safe when the inputs that made it are the same,
and the item ids alone do not say that: an inventory re-exported with the same ids and new
texts would be scored on the old vectors (stale, silently wrong results). So a row's digest
covers its id and its content (text, image bytes, and the bytes of the file an ``image_path``
names), and a build's digest adds the signals' ``describe()`` (encoder, weights fingerprint).

>>> import pyarrow as pa
>>> a = row_digests(pa.table({"item_id": ["x"], "text": ["hello"]}))
>>> b = row_digests(pa.table({"item_id": ["x"], "text": ["hello!"]}))
>>> a == b
False
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import pyarrow as pa
import pyarrow.compute as pc

from riskrank.index.paths import max_image_bytes, resolve_image_path
from riskrank.index.schema import (
    CONTENT_COLUMNS,
    IMAGE_BYTES,
    IMAGE_PATH,
    ITEM_ID,
    TEXT,
    is_blank,
)
from riskrank.index.tables import string_bytes

_BATCH = 8192


def key_digest(*parts: str | None) -> str:
    """A short digest of a few strings (cache keys: rank/sweep_cache.py, recall/lexical.py)."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:  # tagged and length-prefixed: ("ab", "c") and ("a", "bc") differ
        h.update(_encode(part))
    return h.hexdigest()


def _encode(value: object) -> bytes:
    """Unambiguous bytes of one cell: a type tag, a length, the payload."""
    if value is None:
        return b"N"
    if isinstance(value, bytes):
        tag, payload = b"B", value
    elif isinstance(value, str):
        tag, payload = b"S", value.encode("utf-8", "surrogatepass")
    else:  # numbers, dates, lists, dicts: repr is stable and keeps NaN/inf apart
        tag, payload = b"R", repr(value).encode("utf-8", "surrogatepass")
    return tag + len(payload).to_bytes(8, "little") + payload


def _file_token(value: object, base_dirs: Sequence[object]) -> bytes:
    """What the file an ``image_path`` names holds (per base directory a signal reads from):
    its bytes' sha256, or the reason it cannot be read. Oversized files are named by size and
    mtime (they are quarantined unread anyway)."""
    if value is None or str(value).strip() == "":
        return b"-"
    return b"|".join(_file_part(value, base)[0] for base in base_dirs)


def _file_part(value: object, base: object) -> tuple[bytes, bool]:
    """``_file_token``'s part for one base directory, and whether it is the file's sha256."""
    path, reason = resolve_image_path(str(value), base)
    if path is None:
        return b"!" + str(reason).encode("utf-8", "surrogatepass"), False
    try:
        stat = path.stat()
        if stat.st_size > max_image_bytes():
            return f"big:{stat.st_size}:{stat.st_mtime_ns}".encode(), False
        return _file_sha(path, stat), True
    except OSError as exc:  # unreadable (permissions, vanished): the signal says so too
        return f"!cannot read {str(path)!r}: {type(exc).__name__}".encode(), False


def picture_file_sha(value: object, base_dirs: Sequence[object]) -> bytes | None:
    """The sha256 of the picture file an ``image_path`` names where every directory of
    ``base_dirs`` gives one and the same readable file: its digest token is then the one
    its bytes give (``PictureSha``). None otherwise: no path, a file not found, unreadable or
    oversized in one of them, or different files."""
    if value is None or str(value).strip() == "":
        return None
    parts = {_file_part(value, base) for base in base_dirs}
    if len(parts) != 1:
        return None
    ((sha, read),) = parts
    return sha if read else None


def file_only(table: pa.Table) -> list[bool]:
    """Per row, whether its picture comes as a file only: an ``image_path``, no
    ``image_bytes`` (bytes win where a row has both)."""
    if IMAGE_PATH not in table.column_names:
        return [False] * table.num_rows
    paths = table[IMAGE_PATH].to_pylist()
    no_bytes = (
        table[IMAGE_BYTES].is_null().to_pylist()
        if IMAGE_BYTES in table.column_names
        else [True] * table.num_rows
    )
    return [b and not is_blank(p) for p, b in zip(paths, no_bytes)]


def picture_shas(table: pa.Table, base_dirs: Sequence[object]) -> list[bytes | None]:
    """Per row, the sha256 of its picture: its ``image_bytes``', else that of the file its
    ``image_path`` names where every directory of ``base_dirs`` gives it alike
    (``picture_file_sha``); None where it has none, or none was read. What a standing version
    keeps of its pictures and a model of its reviewed ones, so that a picture file gone since
    is still known (index/standing.py, rank/reviewed.py)."""
    shas: list[bytes | None] = [None] * table.num_rows
    if IMAGE_BYTES in table.column_names:
        shas = image_sha256(table[IMAGE_BYTES]).to_pylist()
    if IMAGE_PATH in table.column_names:
        paths = table[IMAGE_PATH].to_pylist()
        shas = [picture_file_sha(p, base_dirs) if s is None else s for s, p in zip(shas, paths)]
    return shas


# The sha256 of picture files read while this is set, by what stat says of the file (device,
# inode, size, mtime, ctime): a standing update reads each picture file for each image
# signal's content keys and once more for the version's pictures file (``picture_file_sha``);
# with it, once. Set for the length of one update only (``reading_files_once``).
_FILE_SHAS: ContextVar[dict | None] = ContextVar("riskrank_file_shas", default=None)


@contextmanager
def reading_files_once():
    """Within it, a picture file unchanged on disk (inode, size, mtime, ctime) is read once."""
    token = _FILE_SHAS.set({})
    try:
        yield
    finally:
        _FILE_SHAS.reset(token)


@contextmanager
def reading_files_afresh():
    """Within it, every picture file is read again, whatever ``reading_files_once`` holds:
    for the check that no file changed while an update read it (an in-place rewrite that
    keeps the size and the mtime would otherwise go unseen)."""
    token = _FILE_SHAS.set(None)
    try:
        yield
    finally:
        _FILE_SHAS.reset(token)


def _file_sha(path, stat: os.stat_result) -> bytes:
    memo = _FILE_SHAS.get()
    key = None
    if memo is not None:
        # The file as stat sees it, in 16 bytes: a tuple with its path held 114 MiB for
        # 300,000 picture files (a reviewer's measurement), this about 40.
        facts = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        key = hashlib.blake2b(repr(facts).encode(), digest_size=16).digest()
        if key in memo:
            return memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if key is not None:
        memo[key] = h.digest()
    return h.digest()


class PictureSha(bytes):
    """The sha256 of a picture's bytes, standing in for the bytes where they are not kept: a
    standing index keeps it for each item whose picture came as ``image_bytes``, or as an
    ``image_path`` whose file the update read (``PICTURES_FILE``), so that a sweep without
    the inventory digests its content as a sweep with it does, even once the files are gone."""


PICTURES_FILE = "pictures.parquet"  # a standing version's item_id -> image_sha256


def image_sha256(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """sha256 of each ``image_bytes`` cell (null where it is null), a slice at a time: the
    whole column as Python bytes doubled the pictures' memory (a reviewer measured +401 MiB
    for 400 MiB of pictures)."""
    out: list[bytes | None] = []
    step = 256  # pictures of up to 50 MiB each (paths.max_image_bytes): rows, not bytes
    for start in range(0, len(column), step):
        out += [
            None if c is None else hashlib.sha256(c).digest()
            for c in column.slice(start, step).to_pylist()
        ]
    return pa.array(out, pa.binary(32))


def _image_token(data: bytes | None, path: object, base_dirs: Sequence[object]) -> bytes | None:
    """The picture an image signal decodes (index/signals/images.py: bytes win over a path):
    the bytes' sha256, else the file's, else None (no image). The same picture digests alike
    whether it came as bytes or as a file, under any name or folder (a daily export that
    writes its creatives to a dated folder changes no item's content)."""
    if data is not None:  # as many times as a path's token has parts: one per base dir
        sha = bytes(data) if isinstance(data, PictureSha) else hashlib.sha256(bytes(data)).digest()
        return b"|".join([sha] * len(base_dirs))
    if path is None or str(path).strip() == "":
        return None
    token = _file_token(path, base_dirs)
    # An unread (oversized) file is named by size and mtime: its path tells two apart.
    return token + b"@" + str(path).encode("utf-8", "surrogatepass") if b"big:" in token else token


IMAGES, IMAGE_CELLS = "content", "cells"


def seen_text(text: str) -> str:
    """A text as a reader sees it: line breaks as ``\\n`` (a Windows export writes
    ``\\r\\n``, an old Mac one ``\\r``) and Unicode in its composed form (NFC: an ``é`` written
    as ``e`` plus a combining accent is the same letter). What a review saw is compared in this
    form (rank/reviewed.py): an export whose only change was CRLF marked every reviewed item
    changed and queued it again (an outsider's loop: 93 of 100 rows). Index content keys keep
    the bytes: another encoder may read a ``\\r``."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def row_digests(
    table: pa.Table,
    *,
    columns: Iterable[str] | None = None,
    base_dirs: Sequence[str | os.PathLike | None] = (None,),
    skip_nulls: bool = False,
    images: str = IMAGES,
    picture_shas: Sequence[bytes | None] | None = None,
    text_as_seen: bool = False,
) -> list[str]:
    """One hex digest per row of ``table`` over ``columns`` (default: ``item_id`` and the
    content columns present), with the file behind each ``image_path`` read from every
    directory in ``base_dirs``. ``skip_nulls``: a null cell adds nothing, so a table with an
    all-null column digests as one without that column (a day's export that adds an empty
    ``image_path`` column changes no item's content). ``picture_shas`` (per row, ``images``
    "content" only): the sha256 of a picture whose ``image_bytes`` the table lacks.
    ``text_as_seen``: the ``text`` column digests as ``seen_text`` gives it (reviews).

    ``images``: ``"content"`` digests ``image_bytes`` and ``image_path`` as one, the picture
    itself (``_image_token``); ``"cells"`` digests each cell as it is, the path's file beside
    it: what a whole build was made from (``build_digest``: the paths are copied into its
    items table), and how content keys and review digests were made before 2026-12-05
    (index/standing.py, rank/reviewed.py read those with it)."""
    wanted = list(columns) if columns is not None else [ITEM_ID, *CONTENT_COLUMNS]
    names = [c for c in wanted if c in table.column_names]
    read = [n for n in IMAGE_COLUMNS if n in names]  # the image columns asked for
    if images == IMAGES and read:  # they become one entry, where the first of them was
        first = min(names.index(n) for n in read)
        names = [n for i, n in enumerate(names) if n not in IMAGE_COLUMNS or i == first]
        names[first] = IMAGE
    if picture_shas is not None:  # (positions: a pandas Series sliced keeps its labels)
        picture_shas = list(picture_shas)
    out: list[str] = []
    for start, part in _row_slices(table.select([n for n in table.column_names if n in wanted])):
        pieces = []
        for name in names:
            cell_by_cell = name in (IMAGE, IMAGE_PATH) or (text_as_seen and name == TEXT)
            piece = None if cell_by_cell else _arrow_piece(part.column(name), name, skip_nulls)
            if piece is None:
                shas = None
                if picture_shas is not None:
                    shas = picture_shas[start : start + part.num_rows]
                piece = _cell_pieces(part, name, read, base_dirs, skip_nulls, shas, text_as_seen)
            pieces.append(piece)
        out += _digests(pieces, part.num_rows)
    return out


_EMPTY = pa.scalar(b"", pa.large_binary())
_BATCH_BYTES = 64 << 20


def _row_slices(table: pa.Table):
    """(first row, slice) of ``_BATCH`` rows, fewer where they hold more than ``_BATCH_BYTES``
    (pictures as ``image_bytes``): a slice's cells are copied several times over while
    digested (about 4.5x the slice at the peak, a reviewer measured)."""
    start = 0
    while start < table.num_rows:
        rows = min(_BATCH, table.num_rows - start)
        while rows > 1 and _cell_bytes(table.slice(start, rows)) > _BATCH_BYTES:
            rows //= 2
        yield start, table.slice(start, rows)
        start += rows


def _cell_bytes(part: pa.Table) -> int:
    """The bytes of a slice's cells, its dictionary columns' dictionaries left out: a slice's
    ``nbytes`` counts a whole dictionary in every slice, and one past ``_BATCH_BYTES`` cut every
    slice to one row (8x slower: a reviewer's 80 MiB categorical column)."""
    return sum(c.nbytes for c in part.columns if not pa.types.is_dictionary(c.type))


def _digests(pieces: list[pa.Array], rows: int) -> list[str]:
    """Per row, the sha256 (16 hex digits) of its pieces joined in order: one hash of the
    bytes the per-entry updates fed before (a stream's digest does not depend on where it is
    cut), so digests stored by an earlier riskrank still match."""
    if not pieces:
        return [hashlib.sha256(b"").hexdigest()[:16]] * rows
    joined = pc.binary_join_element_wise(*pieces, _EMPTY)
    out: list[str] = []
    sha = hashlib.sha256
    for start in range(0, rows, 1024):  # (Python bytes of a slice at a time)
        out += [sha(b).hexdigest()[:16] for b in joined.slice(start, 1024).to_pylist()]
    return out


def _arrow_piece(column: pa.ChunkedArray, name: str, skip_nulls: bool) -> pa.Array | None:
    """``_encode(name) + _encode(cell)`` of each cell of a string or binary column, made by
    Arrow rather than cell by cell (a daily sweep digests its inventory rows in 4 calls: at
    300,000 ads, 3.5 s of a 28 s profiled run); None where that is not the same bytes: another
    type, or a string cell that is not valid UTF-8 (``_cells`` decodes those with
    ``surrogateescape``, ``_encode`` writes them with ``surrogatepass``)."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        tag = b"S"
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        tag = b"B"
    else:
        return None
    column = column.combine_chunks()
    if tag == b"S":
        try:
            column.validate(full=True)
        except pa.ArrowInvalid:
            return None
        column = string_bytes(column)
    values = column.cast(pa.large_binary())
    lengths = pc.binary_length(values).fill_null(0).to_numpy().astype("<u8")
    prefix = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(8), len(values), [None, pa.py_buffer(lengths.tobytes())]
    ).cast(pa.large_binary())
    head = pa.scalar(_encode(name) + tag, pa.large_binary())
    cells = pc.binary_join_element_wise(head, prefix, values, _EMPTY)
    null = b"" if skip_nulls else _encode(name) + _encode(None)
    return pc.if_else(pc.is_null(values), pa.scalar(null, pa.large_binary()), cells)


def _cell_pieces(
    part: pa.Table,
    name: str,
    read: Sequence[str],
    base_dirs: Sequence[object],
    skip_nulls: bool,
    picture_shas: Sequence[bytes | None] | None,
    text_as_seen: bool,
) -> pa.Array:
    """``_arrow_piece`` for any entry, a cell at a time: pictures (``_image_token``), paths
    (and the file each names), texts as seen, numbers and other types."""
    out = []
    for r, value in enumerate(_values(part, name, read)):
        cell = value
        if name == IMAGE:
            sha = picture_shas[r] if picture_shas is not None else None
            if sha is not None and value[0] is None:
                value = (PictureSha(sha), value[1])
            value = _image_token(*value, base_dirs)
        elif text_as_seen and name == TEXT and isinstance(value, str):
            value = seen_text(value)
        if skip_nulls and value is None:
            out.append(b"")
            continue
        piece = _encode(name) + _encode(value)
        if name == IMAGE_PATH:
            piece += _file_token(cell, base_dirs)
        out.append(piece)
    return pa.array(out, pa.large_binary())


# The joint entry of the image columns in a digest: not a name a table's column can have
# (an inventory's metadata column called "image" is digested as itself).
IMAGE = "\x00image"
IMAGE_COLUMNS = (IMAGE_BYTES, IMAGE_PATH)


def _values(table: pa.Table, name: str, read: Sequence[str] = IMAGE_COLUMNS) -> list:
    """One column's cells; for ``IMAGE``, (bytes, path) pairs of the image columns in
    ``read`` (others, and missing ones, as None: a signal that reads only paths is keyed by
    the file even where the row also has bytes)."""
    if name != IMAGE:
        return _cells(table.column(name))
    none = [None] * table.num_rows
    return list(
        zip(
            *(_cells(table.column(c)) if c in read and c in table.column_names else none
              for c in IMAGE_COLUMNS)
        )
    )  # fmt: skip


def _cells(column: pa.ChunkedArray) -> list:
    """A column's cells as Python values. A string column Arrow read from Parquet without
    checking its UTF-8 (another writer's file) gives each cell's bytes decoded as far as they
    go (``surrogateescape``: a valid cell digests as before); validation quarantines the rows
    (index/schema.py). The digest raised a UnicodeDecodeError first: an outsider's report."""
    try:
        return column.to_pylist()
    except UnicodeDecodeError:
        return [
            None if b is None else b.decode("utf-8", "surrogateescape")
            for b in string_bytes(column).to_pylist()
        ]


def signal_base_dirs(signals: Iterable[object]) -> list[str | os.PathLike | None]:
    """The directories the signals read ``image_path`` values from (None: working directory)."""
    return base_dirs_of(
        s.get_runtime_options() if hasattr(s, "get_runtime_options") else {} for s in signals
    )


def base_dirs_of(options: Iterable[dict]) -> list[str | os.PathLike | None]:
    """The same from signals' runtime options (``{"base_dir": ...}``), as Ray workers get them."""
    dirs = []
    for opts in options:
        if "base_dir" in opts and opts["base_dir"] not in dirs:
            dirs.append(opts["base_dir"])
    return dirs or [None]


def build_digest(table: pa.Table, signals: Sequence[object]) -> str:
    """Digest of a whole build: every column of every row (metadata too: it is copied into
    the index's items table), the files behind image paths, and each signal's ``describe()``
    (encoder and weights fingerprint)."""
    specs = [s.describe() for s in signals]
    h = hashlib.sha256()
    h.update(json.dumps([list(table.column_names), specs], default=str).encode())
    h.update(str(table.num_rows).encode())
    dirs = signal_base_dirs(signals)
    for digest in row_digests(
        table, columns=table.column_names, base_dirs=dirs, images=IMAGE_CELLS
    ):
        h.update(digest.encode())
    return h.hexdigest()[:32]

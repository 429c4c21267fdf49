"""Arrow in, Arrow out: the one place that turns user data into ``pyarrow.Table``.

Every stage accepts a pyarrow Table, a pandas or polars DataFrame, or a path to a Parquet
file/directory, and hands back pyarrow Tables (``.to_pandas()`` / ``polars.from_arrow`` away).
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TableLike = Any  # pa.Table | pandas.DataFrame | polars.DataFrame | str | Path
ID_COLUMN = "item_id"
_CONTENT = ("text", "image_bytes", "image_path")  # index.schema.CONTENT_COLUMNS (it imports us)
# Schema metadata of a table read from Parquet: which file each run of rows came from, as
# JSON [[name, rows], ...] in row order, so that a quarantined row names its file
# (index/schema.py ``SourceFiles``). A directory's files are named relative to it.
FILES_KEY = b"riskrank.files"


class SchemaError(ValueError):
    """Input does not have the columns or types a stage needs; the message says which."""


PANDAS_INDEX = re.compile(r"__index_level_\d+__")


def as_table(data: TableLike, *, what: str = "input", files: bool = False) -> pa.Table:
    """Return ``data`` as a pyarrow Table.

    Input Arrow cannot hold (a column mixing strings and numbers, a lone surrogate, two
    columns with one name) is a ``SchemaError`` naming the column and the first bad row.

    ``files``: an inventory read from Parquet records which file each run of its rows came
    from (``FILES_KEY``), for validation to name a quarantined row's file; it is meant for
    that read only (a slice or sort of the table would not match it) and validation drops it.
    Without ``files`` a read from Parquet carries no such record; a table passed in is
    returned as it is.

    >>> as_table({"item_id": ["a"], "text": ["hello"]}).num_rows
    1
    """
    table = _plain_views(_to_arrow(data, what))
    # pandas' index, written as a column when a filtered frame went to Parquet: row numbers,
    # not data (an outsider found it carried into the queue as metadata).
    pandas_index = [c for c in table.column_names if PANDAS_INDEX.fullmatch(c)]
    if pandas_index:
        table = table.drop_columns(pandas_index)
    dupes = sorted({c for c in table.column_names if table.column_names.count(c) > 1})
    if dupes:
        raise SchemaError(f"{what}: duplicate column names {dupes}; every column needs its own")
    table = _typed_empty_content(table)
    if not files and not isinstance(data, pa.Table):
        table = without_files(table)
    return table


# The content columns' types (index/schema.py): for one that holds no value at all, and
# where a table lacks one (rank/reviewed.py).
CONTENT_TYPES = {"text": pa.string(), "image_path": pa.string(), "image_bytes": pa.binary()}


def _typed_empty_content(table: pa.Table) -> pa.Table:
    """A content column without a single value, typed as numbers (pandas reads an empty CSV
    column as float64 NaN) or as nothing, as its content type: a day's export with no
    pictures was refused whole ("column 'image_path' has type double, expected string": an
    outsider's week), where its rows have no picture."""
    for name, typ in CONTENT_TYPES.items():
        if name not in table.column_names:
            continue
        column = table[name]
        kind = column.type
        if kind == typ or column.null_count != len(column) or not len(column):
            continue
        if pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind):
            i = table.schema.get_field_index(name)
            table = table.set_column(
                i, table.schema.field(i).with_type(typ), pa.nulls(len(column), typ)
            )
    return table


def _plain_views(table: pa.Table) -> pa.Table:
    """``string_view`` / ``binary_view`` columns (polars' ``to_arrow`` at its newest
    compatibility level) as ``string`` / ``binary``: the same values, which every check and
    writer here expects (they were refused as "expected string": an outsider's report)."""
    fields = list(table.schema)
    plain = {"string_view": pa.string(), "binary_view": pa.binary()}
    if not any(str(f.type) in plain for f in fields):
        return table
    schema = pa.schema(
        [f.with_type(plain.get(str(f.type), f.type)) for f in fields], table.schema.metadata
    )
    return table.cast(schema)


def without_files(table: pa.Table) -> pa.Table:
    """``table`` without the record of the files it was read from (``FILES_KEY``)."""
    meta = table.schema.metadata or {}
    if FILES_KEY not in meta:
        return table
    return table.replace_schema_metadata({k: v for k, v in meta.items() if k != FILES_KEY})


def expand_pattern(data, what: str):
    """A local path pattern (``exports/day-*.parquet``) as the list of files it matches,
    sorted, as a shell expands it; anything else as it is. A path that exists as written is
    not a pattern; ``*`` and ``?`` are its wildcards, brackets are read as themselves (a
    missing ``data[1].parquet`` read ``data1.parquet`` as a glob class: reviewer CE). A
    library caller's pattern was "no such file or directory" (outsider CD), where the CLI's
    shell had expanded it. Written here: ``glob`` is the standard library."""
    if isinstance(data, (list, tuple)) and all(isinstance(d, (str, Path)) for d in data):
        listed = [expand_pattern(d, what) for d in data]  # (a list of patterns too: CE)
        return [f for d in listed for f in (d if isinstance(d, list) else [d])]
    if not isinstance(data, (str, Path)):
        return data
    text = str(data)
    if "://" in text or not any(c in text for c in "*?") or Path(text).exists():
        return data
    import glob

    found = sorted(glob.glob(text.replace("[", "[[]")))
    if not found:
        raise FileNotFoundError(f"{what}: no file matches the pattern {text}")
    return found


def _to_arrow(data: TableLike, what: str) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    data = expand_pattern(data, what)
    if isinstance(data, (str, Path)):
        return _read_parquet(data, what)
    if isinstance(data, (list, tuple)) and data and all(isinstance(d, (str, Path)) for d in data):
        # Several Parquet files (as Ray reads them): rows in the order of the list.
        tables = [_read_parquet(d, what) for d in data]
        joined = _concat_files(tables, [str(d) for d in data], what)
        # A listed directory's files are named under it (``dir/part-0.parquet``).
        runs = [
            [f"{str(d).rstrip('/')}/{run[0]}" if Path(d).is_dir() else str(d), *run[1:]]
            for d, t in zip(data, tables)
            for run in file_runs(t) or [[str(d), t.num_rows]]
        ]
        return _with_runs(joined, runs)
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        # Named index levels are columns, as pyarrow's from_pandas keeps them: ids kept as the
        # DataFrame's index (a database key), and a `seller` index or a MultiIndex, which
        # was dropped without a word (an outsider's report). An unnamed index is a row number.
        named = [
            n for n in data.index.names if n is not None and str(n) not in map(str, data.columns)
        ]
        if named:
            data = data.reset_index(level=named)
    if isinstance(data, dict) or module == "pandas":
        return _from_columns(data, what)
    if module == "polars":
        # A LazyFrame (a scan or query not yet run) is run here: it raised polars' own
        # AttributeError (an outsider's report).
        frame = data.collect() if type(data).__name__ == "LazyFrame" else data
        # An Object column (Python objects) reached Arrow as 8-byte pointers, written to the
        # queue as such (an outsider's report): refused, naming it, as pandas' are.
        objects = [n for n, t in frame.schema.items() if str(t) == "Object"]
        if objects:
            raise SchemaError(
                f"{what}: column {objects[0]!r} holds Python objects (polars Object), which "
                "Arrow cannot hold; cast it to text (pl.col(...).map_elements(str)) or drop it"
            )
        try:
            return frame.to_arrow()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            # An Int128 column (no Arrow type for it in pyarrow) raised pyarrow's
            # "unsupported format string: '_pli128'" (an outsider's report).
            bad = [n for n, t in frame.schema.items() if str(t) in ("Int128", "UInt128")]
            name = bad[0] if bad else None
            raise SchemaError(
                f"{what}: "
                + (f"column {name!r} is {frame.schema[name]}, which " if name else "a column ")
                + f"Arrow cannot hold ({exc}); cast it to Int64 or text"
            ) from exc
    raise TypeError(
        f"{what}: expected a pyarrow Table, pandas/polars DataFrame (or polars LazyFrame), "
        "dict of columns, a "
        f"Parquet path or a list of them, got {type(data).__name__}"
    )


def string_bytes(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A string column's cells as bytes, unchecked (dictionary-encoded ones decoded first):
    Arrow reads Parquet's strings without checking their UTF-8, and other writers put other
    bytes there, which ``to_pylist`` then fails on."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    return column.view(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary())


def read_text_file(path: str | Path, *, what: str, fix: str) -> str:
    """A text file a person saved: UTF-8 with or without the byte-order mark Windows tools
    write, or UTF-16 with its mark (PowerShell's and spreadsheets' "Unicode text"); other
    bytes are refused naming the file and ``fix``. (A mark became part of a deletion list's
    first id, and UTF-16 raised a bare UnicodeDecodeError: an outsider's report.)"""
    raw = Path(path).read_bytes()
    utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    try:
        return raw.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SchemaError(
            f"{what}: {path} is not {'UTF-16' if utf16 else 'UTF-8'} text ({exc.reason} at byte "
            f"{exc.start}): {fix}"
        ) from None


def csv_read_options(nbytes: int):
    """``pyarrow.csv.ReadOptions`` whose block holds a file of ``nbytes`` whole (up to
    1 GiB): with the default 1 MiB block a quoted text over ~2 MB was refused as "straddling
    object straddles two block boundaries", a setting no user could change (an outsider's
    repro: a pasted mail dump of 2.1 MB)."""
    import pyarrow.csv as pcsv

    return pcsv.ReadOptions(block_size=int(min(max(nbytes + 1, 1 << 20), 1 << 30)))


def read_text_csv(path: str | Path, *, what: str) -> pa.Table:
    """A CSV file with every column read as text (ids keep their leading zeros); a missing or
    unreadable file, or a column named twice, is a clear error."""
    import pyarrow.csv as pcsv

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no such file: {path}")
    # Decoded here: Arrow's reader passes bytes that are not UTF-8 on (a reviewer's finding).
    raw = read_text_file(path, what=what, fix="save it as UTF-8 CSV").encode("utf-8")
    options = csv_read_options(len(raw))
    try:
        names = pcsv.read_csv(io.BytesIO(raw), read_options=options).column_names
        if repeated := sorted({c for c in names if names.count(c) > 1}):
            raise SchemaError(f"{what}: {path} names the column(s) {repeated} twice")
        return pcsv.read_csv(
            io.BytesIO(raw),
            read_options=options,
            convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in names}),
        )
    except pa.ArrowInvalid as exc:
        raise SchemaError(f"{what}: {path} is not a readable CSV file: {exc}") from exc


def _read_parquet(data: str | Path, what: str) -> pa.Table:
    """A Parquet file or directory, or a URI pyarrow reads (``s3://``, ``gs://``, ``file://``).

    A directory's files are read one by one and joined on the union of their columns (a
    column some files lack is null there): pyarrow's dataset reader takes the first file's
    schema and silently drops the columns only later files have, so images, paths or
    metadata in those files were lost depending on the order of the files."""
    if isinstance(data, str) and "://" in data:
        source = data
        check_hive_folders(source, what)
    else:
        source = Path(data)
        if not source.exists():
            raise FileNotFoundError(f"{what}: no such file or directory: {source}")
    try:
        if isinstance(source, Path) and source.is_dir():
            import pyarrow.dataset as ds

            fragments = list(
                ds.dataset(source, format="parquet", partitioning="hive").get_fragments()
            )
            if not fragments:  # (it said "missing column 'item_id' (columns present: [])")
                raise SchemaError(
                    f"{what}: the directory {source} holds no Parquet files (files whose names "
                    "start with '_' or '.', as Spark's _SUCCESS, are not read)"
                )
            _check_partition_columns(fragments, source, what)
            keys = [partition_pairs(f) for f in fragments]
            if len(fragments) > 1:
                tables = [_with_partition_keys(f) for f in fragments]
                joined = _concat_files(tables, [f.path for f in fragments], what)
                names = [relative_to(f.path, source) for f in fragments]
                return with_files(joined, names, tables, keys)
            # One file in partition folders: its values as several files' are (plain
            # columns; pyarrow's directory reader makes them dictionaries).
            if fragments and keys[0]:
                table = _with_partition_keys(fragments[0])
            else:
                table = pq.read_table(source)
            names = [relative_to(f.path, source) for f in fragments] or [str(data)]
            return with_files(table, names[:1], [table], keys[:1])
        table = pq.read_table(source)
        if isinstance(source, str):  # a URI: one dataset, as the Ray engine reads it
            return table
        return with_files(table, [str(data)], [table])
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        if isinstance(source, Path) and source.is_dir():
            _refuse_folder_column_clash(source, what)  # (pyarrow's "Unable to merge" first)
        msg = f"{what}: {source} is not a readable Parquet file/dataset: {exc}"
        name = str(source).lower()
        if name.endswith((".csv", ".tsv", ".txt", ".json", ".jsonl", ".ndjson")):
            # A CSV answered with "magic bytes not found ... corrupted" (an outsider's note).
            # Read as text: ids keep their leading zeros (pandas made 007 the number 7).
            read = (
                f"pandas.read_json({str(source)!r}, lines=True, dtype=str)"
                if name.endswith(("json", "jsonl", "ndjson"))
                else f"pandas.read_csv({str(source)!r}, dtype=str"
                + (", sep='\\t')" if name.endswith(".tsv") else ")")
            )
            msg = (
                f"{what}: {source} is not Parquet; {what} is read from Parquet (a file, a "
                f"directory of them, or a table in memory): convert it, e.g. {read}"
                f".to_parquet('{Path(str(source)).stem}.parquet')"
            )
        elif Path(str(source)).is_dir() and (Path(str(source)) / f"{what}.parquet").is_file():
            # A sweep folder given as the queue read its index's standing.json as Parquet
            # (an outsider's report).
            msg += f"; it is a folder that holds {Path(str(source)) / f'{what}.parquet'}: give that"
        raise SchemaError(msg) from exc


def relative_to(path: str, directory: Path) -> str:
    """A file of ``directory`` named relative to it (as the quarantine names it)."""
    try:
        return Path(path).relative_to(directory).as_posix()
    except ValueError:
        return str(path)


def partition_pairs(fragment) -> list[list]:
    """``[[column, value], ...]`` of a file's hive partition folders, outermost first, as
    pyarrow decodes and types them (``export%20day=`` -> ``export day``, ``month=10`` -> 10)."""
    import pyarrow.dataset as ds

    pairs = ds.get_partition_keys(fragment.partition_expression).items()
    plain = (int, float, str, bool, type(None))
    return [[k, v if isinstance(v, plain) else str(v)] for k, v in pairs]


def with_files(
    table: pa.Table, names: list[str], tables: list[pa.Table], keys: list[list] | None = None
) -> pa.Table:
    """``table`` (``tables`` joined, in order) with ``FILES_KEY``: which file each run of its
    rows came from, and where a file lies in hive partition folders, the columns and values
    they made (``keys``: ``partition_pairs``)."""
    keys = keys or [[] for _ in names]
    return _with_runs(
        table,
        [[name, t.num_rows, *([k] if k else [])] for name, t, k in zip(names, tables, keys)],
    )


def _with_runs(table: pa.Table, runs: list) -> pa.Table:
    import json

    meta = {**(table.schema.metadata or {}), FILES_KEY: json.dumps(runs).encode()}
    return table.replace_schema_metadata(meta)


def file_runs(table: pa.Table) -> list[list]:
    """``FILES_KEY``'s ``[[name, rows], ...]`` (``[name, rows, [[column, value], ...]]`` for a
    file in hive folders: ``partition_pairs``); ``[]`` without one, or where its rows do not
    add up to the table's (a table derived from the read, not the read itself)."""
    import json

    raw = (table.schema.metadata or {}).get(FILES_KEY)
    runs = json.loads(raw) if raw else []
    return runs if sum(int(run[1]) for run in runs) == table.num_rows else []


def renamed_runs(table: pa.Table, renamed: dict[str, str]) -> pa.Table:
    """``table`` after a column rename keeps its ``FILES_KEY``, with partition columns renamed
    alike: ``rename_columns`` drops the schema's metadata (a reviewer's finding: a sweep over
    hive folders holding a ``model`` column lost which file each row came from)."""
    runs = file_runs(table)
    if not runs:
        return table
    for run in runs:
        if len(run) > 2:
            run[2] = [[renamed.get(k, k), v] for k, v in run[2]]
    return _with_runs(table, runs)


def check_hive_folders(source: str | Path, what: str, fragments=None) -> None:
    """``_check_partition_columns`` for a directory or a URI (or its ``fragments``, where the
    caller listed them already): what both engines' readers check before reading (Ray's
    reader kept the file's value where pyarrow's gives the folder's; an outsider's note)."""
    import pyarrow.dataset as ds

    if fragments is None:
        try:
            found = ds.dataset(source, format="parquet", partitioning="hive")
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError):
            if not isinstance(source, str) or "://" not in source:
                _refuse_folder_column_clash(Path(source), what)
            return  # not a dataset pyarrow lists: the reader names the problem
        fragments = list(found.get_fragments())
    _check_partition_columns(fragments, source, what)


# Columns a partition folder may not make: the id and the content of each item.
FOLDER_NOT_COLUMNS = ("item_id", "text", "image_path", "image_bytes")


def _check_partition_columns(fragments, directory: str | Path, what: str) -> None:
    """``_refuse_folder_columns`` for each file of a dataset pyarrow listed."""
    import pyarrow.dataset as ds

    for fragment in fragments:
        keys = ds.get_partition_keys(fragment.partition_expression)
        if keys:  # (a file outside partition folders: its footer is not read for this)
            where = relative_to(fragment.path, Path(directory))
            _refuse_folder_columns(keys, fragment.physical_schema.names, where, what)


def _refuse_folder_column_clash(directory: Path, what: str) -> None:
    """``_refuse_folder_columns`` from the folder names and each file's footer alone, for a
    directory pyarrow could not open as a dataset: a partition folder ``group=zzz/`` over
    files with a text column ``group`` failed inside pyarrow ("Unable to merge: Field group
    has incompatible types: large_string vs string"; outsider CD), before the check."""
    for path in sorted(directory.rglob("*.parquet")):
        rel = path.relative_to(directory)
        if any(part.startswith(("_", ".")) for part in rel.parts):
            continue  # (files pyarrow's reader skips: Spark's _SUCCESS, .crc)
        folders = dict(p.split("=", 1) for p in rel.parts[:-1] if "=" in p)
        if not folders:
            continue
        try:
            names = pq.read_schema(path).names
        except (pa.ArrowInvalid, OSError):
            continue  # (the reader's own error names it)
        _refuse_folder_columns(folders, names, rel.as_posix(), what)


def _refuse_folder_columns(folders: dict, names, where: str, what: str) -> None:
    """Refuse a hive folder (``day=2024-01-01/``) over the file ``where`` that names a column
    the file also holds (pyarrow gives the folder's value, and the file's own values were
    lost without a word: an outsider's report), or an item's id or content (``text=hello/``
    over files without a text column made "hello" every row's text: outsider CD)."""
    if own := sorted(set(folders) & set(FOLDER_NOT_COLUMNS)):
        name = own[0]
        raise SchemaError(
            f"{what}: the partition folder {name}={folders[name]}/ ({where}) would give every "
            f"row in it the {name} {folders[name]!r}: an item's id and content come from its "
            "file's columns; rename the folder"
        )
    if clash := sorted(set(folders) & set(names)):
        name = clash[0]
        raise SchemaError(
            f"{what}: column {name!r} of {where} is also the partition folder "
            f"{name}={folders[name]}/, whose value would replace the file's own: rename the "
            "column or the folder"
        )


def _with_partition_keys(fragment) -> pa.Table:
    """A file's rows with its hive partition values (``day=2024-01-01/``) as columns, as
    pyarrow's own directory reader gives them."""
    import pyarrow.dataset as ds

    table = fragment.to_table()
    for key, value in ds.get_partition_keys(fragment.partition_expression).items():
        if key not in table.column_names:
            table = table.append_column(key, pa.array([value] * table.num_rows))
    return table


def _joined(tables: list[pa.Table]) -> pa.Table:
    """Files' tables joined as Arrow joins them, else with its permissive promotions: a
    metadata column of integers in one file and floats in another, timestamps in ms and in us
    (an outsider's warehouse exports were refused whole for such drift). Types Arrow cannot
    join (a timezone beside none) are still refused, named by the caller."""
    try:
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    kinds: dict[str, set] = {}
    for table in tables:
        for field in table.schema:
            kinds.setdefault(field.name, set()).add(field.type)
    for name, types in kinds.items():
        textual = {pa.types.is_string(t) or pa.types.is_large_string(t) for t in types}
        # Ids and content are not promoted (ints and floats made 123 read 123.0, and the
        # refusal named no file), nor text beside bytes (every row came out as bytes): a
        # reviewer's findings. They are refused by the caller, naming the files.
        if len(types) > 1 and (name in (ID_COLUMN, *_CONTENT) or len(textual) > 1):
            raise pa.ArrowTypeError(f"column {name!r}: {sorted(map(str, types))}")
    return pa.concat_tables(tables, promote_options="permissive")


def _narrow_offsets(table: pa.Table) -> pa.Table:
    """``large_string``/``large_binary`` columns as ``string``/``binary`` (a file's cells are
    far below 2 GiB per column chunk), and dictionary-encoded columns (pandas' categoricals)
    as their values, so that a file with a categorical ``text`` joins one with plain text."""
    narrow = {pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}

    def plain(t: pa.DataType) -> pa.DataType:
        t = t.value_type if pa.types.is_dictionary(t) else t
        return narrow.get(t, t)

    fields = [pa.field(f.name, plain(f.type), f.nullable) for f in table.schema]
    if all(f.type == g.type for f, g in zip(fields, table.schema)):
        return table
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def _concat_files(tables: list[pa.Table], names: list[str], what: str) -> pa.Table:
    """Files' rows in order, on the union of their columns. Ids are text: an ``item_id``
    written as integers in one file and as strings in another is read as digits. Text and
    bytes are one type each, whatever offset width a writer chose (pandas writes a ``str``
    column as ``large_string`` and an ``object`` one as ``string``). A content column
    without a value is of its type in each file (``_typed_empty_content``: one day's file
    of a folder, with no pictures, was refused as disagreeing: a reviewer's finding)."""
    tables = [_typed_empty_content(t) for t in tables]
    try:
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        first = exc
    # Only files that disagree are cast (a 64-bit column chunk over 2 GiB cannot narrow).
    try:
        tables = [_narrow_offsets(t) for t in tables]
        return _joined(tables)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass  # (still disagreeing, or too large to narrow: named below)
    ids = [t.schema.field(ID_COLUMN).type if ID_COLUMN in t.column_names else None for t in tables]
    if any(t is not None and pa.types.is_integer(t) for t in ids):
        tables = [
            t.set_column(
                t.schema.get_field_index(ID_COLUMN), ID_COLUMN, t[ID_COLUMN].cast(pa.string())
            )
            if k is not None and pa.types.is_integer(k)
            else t
            for t, k in zip(tables, ids)
        ]
        try:
            return _joined(tables)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    columns: dict[str, dict[str, str]] = {}
    for table, name in zip(tables, names):
        for field in table.schema:
            columns.setdefault(field.name, {})[name] = str(field.type)
    clash = {c: kinds for c, kinds in columns.items() if len(set(kinds.values())) > 1}
    listed = "; ".join(
        f"'{c}' is " + ", ".join(f"{t} in {Path(n).name}" for n, t in list(kinds.items())[:3])
        for c, kinds in clash.items()
    )
    raise SchemaError(f"{what}: the files' columns do not agree: {listed or first}") from first


_CONVERSION_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    UnicodeEncodeError,
    OverflowError,
    TypeError,
    ValueError,
)


PANDAS_ATTRS = b"PANDAS_ATTRS"  # where pandas keeps DataFrame.attrs in a Parquet file


def _with_attrs(table: pa.Table, attrs: dict) -> pa.Table:
    """``table`` with a DataFrame's ``attrs`` kept as pandas keeps them in Parquet (and
    ``pd.read_parquet`` restores them): ``Table.from_pandas`` drops them, and a queue read
    with pandas lost the record of the sweep that made it (rank/review.py). Attributes JSON
    cannot hold are left out."""
    if not attrs:
        return table
    try:
        body = json.dumps(attrs)
    except (TypeError, ValueError):
        return table
    return table.replace_schema_metadata({**(table.schema.metadata or {}), PANDAS_ATTRS: body})


def _from_columns(data: Any, what: str) -> pa.Table:
    """A dict of columns or a pandas DataFrame as Arrow; a column Arrow cannot hold is
    diagnosed by name and row instead of surfacing the converter's traceback."""
    is_pandas = not isinstance(data, dict)
    names = [str(c) for c in data.columns] if is_pandas else [str(c) for c in data]
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise SchemaError(f"{what}: duplicate column names {dupes}; every column needs its own")
    try:
        if is_pandas:
            return _with_attrs(pa.Table.from_pandas(data, preserve_index=False), data.attrs)
        return pa.table(data)
    except _CONVERSION_ERRORS as exc:
        for name, values in data.items():  # a DataFrame and a dict both iterate this way
            problem = _column_problem(list(values))
            if problem:
                raise SchemaError(f"{what}: column '{name}': {problem}") from exc
        raise SchemaError(f"{what}: cannot convert to Arrow: {exc}") from exc


def _column_problem(values: list) -> str | None:
    """Why ``values`` cannot become one Arrow column (first bad row), or None if they can."""
    try:
        pa.array(values, from_pandas=True)
        return None
    except _CONVERSION_ERRORS as exc:
        error = exc
    first_type: dict[type, int] = {}
    for row, value in enumerate(values):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                return f"row {row}: text is not valid Unicode ({exc.reason} at {exc.start})"
        if value is None or (isinstance(value, float) and value != value):
            continue
        first_type.setdefault(type(value), row)
    if len(first_type) > 1:
        mixed = ", ".join(f"{t.__name__} (row {r})" for t, r in first_type.items())
        return f"mixes value types: {mixed}; give the column a single type"
    return f"cannot be stored as an Arrow column ({error})"


def doc_field(
    name: str, typ: pa.DataType, doc: str, *, required: bool = False, is_id: bool = False
) -> pa.Field:
    """A schema field with its meaning attached (``metadata["doc"]``): the README's column
    tables are generated from these (``python -m riskrank.rank.app.doc_tables``). ``is_id``:
    an id column, which also accepts integers (carried as their decimal strings)."""
    metadata = {"doc": doc, **({"kind": "id"} if is_id else {})}
    return pa.field(name, typ, nullable=not required, metadata=metadata)


def type_family(typ: pa.DataType) -> str:
    """What a column type is read as: ``string``, ``integer``, ``number``, ``binary``, ``list``
    or the type itself."""
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "string"
    if pa.types.is_integer(typ):
        return "integer"
    if pa.types.is_floating(typ):
        return "number"
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        return "binary"
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return "list"
    return str(typ)


def field_family(field: pa.Field) -> str:
    """``id`` for an id column (``doc_field(..., is_id=True)``), else its ``type_family``."""
    return "id" if (field.metadata or {}).get(b"kind") == b"id" else type_family(field.type)


# Input types each family accepts: validation then converts (bytes text is decoded, float
# verdicts from pandas are checked to be whole, integer ids become strings, a dictionary
# column is decoded). Ids refuse floats: 7.0 is not an id.
_ACCEPTS = {
    "string": {"string", "binary"},
    # Not text: an image_bytes column of hex or base64 text crashed deep in hashing (an
    # outsider's report); decoded, it is binary.
    "binary": {"binary"},
    "id": {"string", "integer"},
    "integer": {"integer", "number"},
    "number": {"integer", "number"},
}


# Names a required column goes by elsewhere: said, with the rename, when it is missing.
_ALIASES = {"item_id": ("id", "itemid", "ad_id", "item"), "seed_id": ("id", "seedid")}


def known_id(value: str | None, known) -> str | None:
    """``value``, or its form without surrounding spaces where only that is in ``known``:
    exports pad ids with spaces, a tab or a line end (a spreadsheet, ``readlines()``), and such
    verdicts and deletions matched nothing (outsiders' reports); an id whose spaces are its own
    is kept as it is. A whole number written as a float ("1000.0") is its digits where only
    they are known."""
    if value is None or value in known:
        return value
    stripped = value.strip()
    if stripped in known:
        return stripped
    # pandas writes an integer id column that holds a blank (a campaign row beside item rows)
    # as floats: "1000.0" is item "1000" where only that is known (a reviewer's report: the
    # item rows matched nothing, and their campaign's verdict overwrote the reviewer's own).
    whole = WHOLE_NUMBER.fullmatch(stripped)
    return whole.group(1) if whole and whole.group(1) in known else value


WHOLE_NUMBER = re.compile(r"([-+]?\d+)\.0*")


def header_key(name: str) -> str:
    """A column header as riskrank names columns: ``Item ID``, `` item-id `` -> ``item_id``."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _alike(table: pa.Table, name: str) -> str:
    """``: rename 'Item ID' to 'item_id'``, where the table has a column that is ``name``
    but for case, spaces or hyphens, or one of its usual aliases (an outsider brought ``id``
    and was told only that ``item_id`` was missing)."""
    for c in table.column_names:
        if header_key(c) == name or header_key(c) in _ALIASES.get(name, ()):
            return f": rename {c!r} to {name!r}"
    return ""


EVIDENCE_CHARS = 80


def _first_value(table: pa.Table, name: str) -> str:
    """`` (row 0: 'high')``: the first non-null value of a mistyped column, as evidence, cut
    to ``EVIDENCE_CHARS`` (a picture given as hex text made a 291,528-character message;
    outsider CD). Read from that row alone, not the whole column."""
    column = table.column(name)
    row = pc.index(pc.is_valid(column), True).as_py()
    if row is None or row < 0:
        return ""
    said = repr(column[row].as_py())
    if len(said) > EVIDENCE_CHARS:
        said = f"{said[:EVIDENCE_CHARS]}... ({len(said):,} characters)"
    return f" (row {row}: {name} {said})"


def check_columns(table: pa.Table, schema: pa.Schema, *, what: str) -> None:
    """Check ``table`` against ``schema``: every required (non-nullable) field present, every
    present field of a type validation can read. Raises one ``SchemaError`` naming every
    missing or mistyped column; columns the schema does not name are not checked."""
    problems = []
    for field in schema:
        expected = field_family(field)
        if field.name not in table.column_names:
            if not field.nullable:
                problems.append(
                    f"missing column '{field.name}' ({expected})" + _alike(table, field.name)
                )
            continue
        typ = table.schema.field(field.name).type
        if pa.types.is_dictionary(typ):
            typ = typ.value_type
        readable = _ACCEPTS.get(expected, {expected})
        if not (pa.types.is_null(typ) or type_family(typ) in readable):
            hints = {
                "id": " (strings or integers; floats are refused: 7.0 is not an id)",
                "binary": " (an encoded file's bytes: decode hex or base64 text first, e.g. "
                "bytes.fromhex, base64.b64decode)",
            }
            problems.append(
                f"column '{field.name}' has type {typ}, expected {expected}"
                + hints.get(expected, "")
                + _first_value(table, field.name)
            )
    if problems:
        raise SchemaError(
            f"{what}: " + "; ".join(problems) + f" (columns present: {table.column_names})"
        )


def write_parquet(table: pa.Table, path: str | Path) -> Path:
    """Write atomically (temp file + rename) so a killed run never leaves half a file; the
    temp name is per process, so two writers of one file (a retried Ray task) do not collide."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def read_cache_table(
    path: Path,
    schema: pa.Schema,
    what: str,
    log: logging.Logger,
    *,
    stamp: tuple[str, str] | None = None,
) -> pa.Table | None:
    """A cache file written by ``write_cache_table``: None when it is absent, was made under
    another ``stamp`` (metadata key, value), or cannot be read or has other columns (then
    with a warning on the caller's ``log``): a cache can slow a sweep down, never break it."""
    if not path.exists():
        return None
    try:
        table = pq.read_table(path)
        if table.schema.remove_metadata() != schema.remove_metadata():
            raise ValueError("its columns are not this riskrank's")
    except (OSError, ValueError, pa.ArrowException) as exc:
        log.warning("ignoring the %s %s (%s)", what, path, exc)
        return None
    if stamp is not None and (table.schema.metadata or {}).get(stamp[0].encode()) != (
        stamp[1].encode()
    ):
        return None
    return table


def read_cache_stamp(path: Path, key: str, version: int) -> tuple[dict | None, pa.Schema]:
    """The JSON stamp a cache file keeps in its Parquet schema's metadata under ``key``, and
    the schema (read without the rows). The stamp is None where the file was written in
    another ``format`` than ``version`` (another riskrank's: it is then not used). An
    unreadable file raises as Parquet and ``json`` do (``OSError``, ``ValueError``,
    ``ArrowException``): the caller ignores the cache with a warning."""
    schema = pq.read_schema(path)
    stamp = json.loads((schema.metadata or {}).get(key.encode(), b"{}"))
    if not isinstance(stamp, dict) or stamp.get("format") != version:
        return None, schema
    return stamp, schema


def write_cache_table(table: pa.Table, path: Path, what: str, log: logging.Logger) -> None:
    """``write_parquet``; a failure (e.g. a read-only directory) is only warned about."""
    try:
        write_parquet(table, path)
    except OSError as exc:
        log.warning("could not write the %s %s (%s)", what, path, exc)

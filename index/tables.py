"""Arrow in, Arrow out: the one place that turns user data into ``pyarrow.Table``.

Every stage accepts a pyarrow Table, a pandas or polars DataFrame, or a path to a Parquet
file/directory, and hands back pyarrow Tables (``.to_pandas()`` / ``polars.from_arrow`` away).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

TableLike = Any  # pa.Table | pandas.DataFrame | polars.DataFrame | str | Path


class SchemaError(ValueError):
    """Input does not have the columns or types a stage needs; the message says which."""


def as_table(data: TableLike, *, what: str = "input") -> pa.Table:
    """Return ``data`` as a pyarrow Table.

    >>> as_table({"item_id": ["a"], "text": ["hello"]}).num_rows
    1
    """
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(f"{what}: no such file or directory: {path}")
        try:
            return pq.read_table(path)
        except pa.ArrowInvalid as exc:
            raise SchemaError(
                f"{what}: {path} is not a readable Parquet file/dataset: {exc}"
            ) from exc
    if isinstance(data, dict):
        return pa.table(data)
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False)
    if module == "polars":
        return data.to_arrow()
    raise TypeError(
        f"{what}: expected a pyarrow Table, pandas/polars DataFrame, dict of columns or a "
        f"Parquet path, got {type(data).__name__}"
    )


def doc_field(name: str, typ: pa.DataType, doc: str, *, required: bool = False) -> pa.Field:
    """A schema field with its meaning attached (``metadata["doc"]``): the README's column
    tables are generated from these (``python -m riskrank.rank.app.doc_tables``)."""
    return pa.field(name, typ, nullable=not required, metadata={"doc": doc})


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


# Input types each family accepts: validation then converts (bytes text is decoded, float
# verdicts from pandas are checked to be whole, a dictionary column is decoded).
_ACCEPTS = {
    "string": {"string", "binary"},
    "integer": {"integer", "number"},
    "number": {"integer", "number"},
    "binary": {"binary"},
}


def check_columns(table: pa.Table, schema: pa.Schema, *, what: str) -> None:
    """Check ``table`` against ``schema``: every required (non-nullable) field present, every
    present field of a type validation can read. Raises one ``SchemaError`` naming every
    missing or mistyped column; columns the schema does not name are not checked."""
    problems = []
    for field in schema:
        expected = type_family(field.type)
        if field.name not in table.column_names:
            if not field.nullable:
                problems.append(f"missing column '{field.name}' ({expected})")
            continue
        typ = table.schema.field(field.name).type
        if pa.types.is_dictionary(typ):
            typ = typ.value_type
        readable = _ACCEPTS.get(expected, {expected})
        if not (pa.types.is_null(typ) or type_family(typ) in readable):
            problems.append(f"column '{field.name}' has type {typ}, expected {expected}")
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

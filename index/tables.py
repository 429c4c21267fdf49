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
ID_COLUMN = "item_id"


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
        if ID_COLUMN not in data.columns and data.index.name == ID_COLUMN:
            data = data.reset_index()  # ids kept as the DataFrame's index (a database key)
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            # e.g. an object column mixing 1 and "1": Arrow names the column in its message
            raise SchemaError(f"{what}: a column has values of mixed types: {exc}") from exc
    if module == "polars":
        return data.to_arrow()
    raise TypeError(
        f"{what}: expected a pyarrow Table, pandas/polars DataFrame, dict of columns or a "
        f"Parquet path, got {type(data).__name__}"
    )


def require_columns(table: pa.Table, required: dict[str, str], *, what: str) -> None:
    """Raise ``SchemaError`` naming every missing or mistyped column."""
    problems = []
    for name, kind in required.items():
        if name not in table.column_names:
            problems.append(f"missing column '{name}' ({kind})")
            continue
        typ = table.schema.field(name).type
        ok = {
            "string": pa.types.is_string(typ)
            or pa.types.is_large_string(typ)
            or pa.types.is_binary(typ)
            or pa.types.is_large_binary(typ)
            or pa.types.is_dictionary(typ)
            or pa.types.is_null(typ),
            "integer": pa.types.is_integer(typ) or pa.types.is_floating(typ),
            # ids: strings or integers (a DataFrame index, a database key); carried as strings
            "id": pa.types.is_string(typ)
            or pa.types.is_large_string(typ)
            or pa.types.is_integer(typ)
            or pa.types.is_dictionary(typ)
            or pa.types.is_null(typ),
            "any": True,
        }[kind]
        if not ok:
            hint = (
                " (strings or integers; floats are refused: 7.0 is not an id)"
                if kind == "id"
                else ""
            )
            problems.append(f"column '{name}' has type {typ}, expected {kind}{hint}")
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

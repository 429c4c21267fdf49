"""Reading an inventory on Ray: Parquet -> validated blocks, global row numbers, chunks.

What ``index.build.build_index`` does in one process with ``validate_inventory``, done on a
Ray cluster so that the outcome is the same: the same quarantine (reasons and global row
numbers, duplicate ids across blocks and files included) and the same chunks of consecutive
valid items for the encoders. Only ids, reasons, text and metadata pass through the driver;
image bytes stay in the object store until an encoder reads them.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskrank.index.content_digest import row_digests
from riskrank.index.schema import (
    IMAGE_BYTES,
    IMAGE_PATH,
    ITEM_ID,
    TEXT,
    SourceFiles,
    duplicate_reasons,
    mixed_picture_rows,
    repeated_row_keys,
    validate_inventory,
    warn_mixed_pictures,
)
from riskrank.index.tables import (
    SchemaError,
    as_table,
    check_hive_folders,
    expand_pattern,
    partition_pairs,
    relative_to,
)

_ID, _REASON, _KEY = "__rr_item_id", "__rr_reason", "__rr_key"
# The row's text and image bytes as they are (a digest; the projection keeps every other
# column): what rows of a repeated id are compared by, as validate_inventory compares cells.
_CELLS = "__rr_cells"
_MIXED = "__rr_mixed"  # the row carries both image_bytes and image_path (warned once, _scan)
_HIDDEN = [_ID, _REASON, _KEY, _CELLS, _MIXED]
SAVE_TO = "__rr_save_to"  # a chunk's column: the file its embedding is saved to (resume)


# ----------------------------------------------------------------------------- validate


def _validate(batch: pa.Table, *, require_text: bool, base_dirs: list) -> pa.Table:
    """``validate_inventory`` on one block (a Ray Data task): one row per input row, in order,
    with the item_id as a string, the failure (null when valid), the row's content digest
    (``index.content_digest.row_digests``: what chunks are named by, computed here where the
    image bytes are) and the validated columns (null for invalid rows)."""
    n = batch.num_rows
    # Repeated ids are judged across all blocks (_scan), not within one.
    items, bad = validate_inventory(
        batch, require_text=require_text, duplicates=False, warn_images=False
    )
    keys: list[str | None] = [None] * n
    cells: list[str | None] = [None] * n
    ids: list[str | None] = [None] * n
    reasons: list[str | None] = [None] * n
    for row, item_id, why in zip(
        bad.column("row").to_pylist(),
        bad.column(ITEM_ID).to_pylist(),
        bad.column("reason").to_pylist(),
    ):
        ids[row], reasons[row] = item_id, why
    good = np.flatnonzero([r is None for r in reasons])
    raw = row_digests(items, columns=[TEXT, IMAGE_BYTES], images="cells", skip_nulls=True)
    for row, item_id, key, cell in zip(
        good, items.column(ITEM_ID).to_pylist(), row_digests(items, base_dirs=base_dirs), raw
    ):
        ids[row], keys[row], cells[row] = item_id, key, cell
    mixed = np.zeros(n, bool)
    if (
        IMAGE_BYTES in batch.column_names
        and IMAGE_PATH in batch.column_names
        and not pa.types.is_null(batch.schema.field(IMAGE_BYTES).type)
    ):
        # (the bytes' presence in Arrow: to_pylist copied every picture once more)
        has_bytes = pc.fill_null(pc.greater(pc.binary_length(batch.column(IMAGE_BYTES)), 0), False)
        mixed[mixed_picture_rows(has_bytes.to_pylist(), batch.column(IMAGE_PATH).to_pylist())] = (
            True
        )
    slots = np.full(n, -1)
    slots[good] = np.arange(len(good))
    take = pa.array(slots, mask=slots < 0)
    cols = {
        _ID: pa.array(ids, pa.string()),
        _REASON: pa.array(reasons, pa.string()),
        _KEY: pa.array(keys, pa.string()),
        _CELLS: pa.array(cells, pa.string()),
        _MIXED: pa.array(mixed),
    }
    cols.update({name: items.column(name).take(take) for name in items.column_names})
    return pa.table(cols)


def _read(inventory):
    """A Ray Dataset over the inventory rows, in input order, and which file each run of
    rows comes from (``schema.SourceFiles``: named as ``tables.as_table`` names them, with
    the hive partition columns each file's folders make, so that both engines' quarantines
    and duplicate rules say the same).

    Partition folders count below the directory given, as pyarrow's reader counts them: a
    listed directory is read as its own dataset, a listed file has none. (Ray's reader, left
    to itself, made a column of every ``key=value`` folder of a file's absolute path: a
    listed ``day=2026-12-01/`` folder, or an inventory folder named ``run=7``, gave columns
    the single machine's items lacked; a reviewer's finding.)"""
    import pyarrow.parquet as pq
    import ray

    filesystem, named = None, True
    inventory = expand_pattern(inventory, "inventory")  # (as as_table reads a pattern)
    if isinstance(inventory, (list, tuple)) and all(isinstance(p, (str, Path)) for p in inventory):
        # A listed directory is its files, named under it (as tables.as_table names them).
        parts = [_listed(p) for p in inventory]
    elif isinstance(inventory, str) and "://" in inventory:  # s3://, gs://, file://, ...
        # pyarrow resolves the file system and lists the files in its (sorted) order.
        files, keys, filesystem = _hive_files(inventory)
        parts = [(files, [None] * len(files), keys, inventory)]
        named = False  # (a URI's files are not named: as_table reads it as one dataset)
    elif isinstance(inventory, (str, Path)):
        path = Path(inventory)
        if not path.exists():
            raise FileNotFoundError(f"inventory: no such file or directory: {path}")
        parts = [_listed(path, under="")]
    else:
        table = as_table(inventory, what="inventory")
        step = max(1, -(-table.num_rows // 64))  # some blocks, for parallel validation
        blocks = [table.slice(s, step) for s in range(0, table.num_rows, step)]
        return ray.data.from_arrow(blocks), SourceFiles.of(table)
    if not any(files for files, *_ in parts):
        raise FileNotFoundError(f"inventory: no Parquet files in {inventory}")
    runs = []
    if named:
        try:
            runs = [
                [name, pq.read_metadata(f).num_rows, *([k] if k else [])]
                for files, names, keys, _ in parts
                for f, name, k in zip(files, names, keys)
            ]
        except (OSError, pa.ArrowInvalid):
            runs = []  # Ray's reader names the bad file
    datasets = [
        ray.data.read_parquet(files, filesystem=filesystem, partitioning=_partitioning(base, keys))
        for files, _, keys, base in parts
        if files
    ]
    data = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]
    return data, SourceFiles(runs)


def _listed(p: str | Path, under: str | None = None):
    """One listed path: its files, their names (``under/`` + the name below it; a file
    named as given), the partition columns and values of each, and the directory partitions
    count from (None: a file, read without any)."""
    path = Path(p)
    if not path.is_dir():
        return [str(p)], [str(p)], [[]], None
    root = path.absolute()  # Ray resolves the files' paths: the base must match them
    files, keys, _ = _hive_files(root)
    prefix = f"{str(p).rstrip('/')}/" if under is None else under
    return files, [prefix + relative_to(f, root) for f in files], keys, str(root)


def _hive_files(source) -> tuple[list[str], list[list], object]:
    """The Parquet files of a directory or URI in pyarrow's (sorted) order, the hive
    partition columns and values of each (``tables.partition_pairs``) and the file system."""
    import pyarrow.dataset as pads

    try:
        found = pads.dataset(source, format="parquet", partitioning="hive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        check_hive_folders(source, "inventory")  # a column a folder also names: said so
        raise SchemaError(
            f"inventory: {source} is not a readable Parquet file/dataset: {exc}"
        ) from exc
    fragments = list(found.get_fragments())
    check_hive_folders(source, "inventory", fragments)  # listed once, checked and read
    keys = [partition_pairs(f) for f in fragments]
    return [f.path for f in fragments], keys, found.filesystem


def _partitioning(base: str | None, keys: list[list]):
    """Ray's hive partitioning counted from ``base`` (None: none at all, for a listed file),
    each column typed as pyarrow typed its values (``keys``: ``partition_pairs`` of each
    file): Ray's reader made every partition column a string, the single machine's made
    ``month=10/`` an integer."""
    from ray.data.datasource import Partitioning

    if base is None:
        return None
    types = {
        column: type(value)
        for pairs in keys
        for column, value in pairs
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    # A null folder (Hive's __HIVE_DEFAULT_PARTITION__) stays text to Ray, which parsed it
    # as a number and failed (a reviewer's finding); such a column is read as text there.
    nulls = {column for pairs in keys for column, value in pairs if value is None}
    types = {c: t for c, t in types.items() if c not in nulls}
    return Partitioning("hive", base_dir=base, field_types=types)


def _project(block: pa.Table) -> pa.Table:
    """What the driver reads of a validated block: ids, reasons, text and metadata; not the
    image bytes, which only the encoders read (the index keeps text for recall and the queue)."""
    return block.select([c for c in block.column_names if c != IMAGE_BYTES])


def _scan(
    projections, files: SourceFiles | None = None
) -> tuple[list[np.ndarray], pa.Table, list[dict], int, list[str]]:
    """The blocks' projections in order: global row numbers, and repeated ids judged over all
    of them (``schema.duplicate_reasons``, as a single machine's validation does); ``files``
    names each quarantined row's file.

    Returns per block the rows that passed, the metadata of all passing rows (input order),
    the quarantine rows, the number of rows read and the passing rows' content digests.
    """
    blocks = list(projections)
    ids: list[str | None] = []
    why: dict[int, str] = {}
    mixed: list[int] = []
    for block in blocks:
        for item_id, reason, both in zip(
            block.column(_ID).to_pylist(),
            block.column(_REASON).to_pylist(),
            block.column(_MIXED).to_pylist(),
        ):
            if reason is not None:
                why[len(ids)] = reason
            elif both:
                mixed.append(len(ids))
            ids.append(item_id)
    counts = Counter(i for i in ids if i)
    files = files or SourceFiles([])
    contents: dict[int, tuple] = {}  # what rows of a repeated id are compared by
    exports: dict[int, tuple] = {}  # and without their hive partition columns, and folders
    start = 0
    for block in blocks:
        local = [r for r, i in enumerate(ids[start : start + block.num_rows]) if counts[i] > 1]
        if local:
            shown = block.drop(
                [c for c in (_ID, _REASON, _KEY, _MIXED, ITEM_ID) if c in block.column_names]
            )
            full, bare = repeated_row_keys(
                [start + r for r in local], shown.take(pa.array(local)).to_pylist(), files
            )
            contents.update(full)
            exports.update(bare)
        start += block.num_rows
    why.update(duplicate_reasons(ids, contents, why, files.label, exports))
    warn_mixed_pictures([ids[r] for r in mixed if r not in why])  # the rows that pass
    quarantined = [
        {ITEM_ID: ids[row], "row": row, "stage": "validate", "reason": reason, **files.where(row)}
        for row, reason in sorted(why.items())
    ]
    keys: list[str] = []
    keep_rows: list[np.ndarray] = []
    kept: list[pa.Table] = []
    n_in = 0
    for block in blocks:
        keep = np.array([n_in + i not in why for i in range(block.num_rows)], bool)
        n_in += block.num_rows
        keep_rows.append(np.flatnonzero(keep))
        passed = block.filter(pa.array(keep))
        keys += passed.column(_KEY).to_pylist()
        kept.append(passed.drop(_HIDDEN))
    if not kept:
        raise ValueError("inventory: no rows were read")
    items = pa.concat_tables(kept, promote_options="default")
    return keep_rows, items, quarantined, n_in, keys


def _gather_rows(rows: list[np.ndarray], save_to: str | None, *blocks: pa.Table) -> pa.Table:
    """One chunk of valid items: ``rows[i]`` of ``blocks[i]``, concatenated (a Ray task), with
    the file its embedding is to be saved to (``SAVE_TO``) when there is one."""
    parts = [b.take(pa.array(r)).drop(_HIDDEN) for r, b in zip(rows, blocks)]
    chunk = pa.concat_tables(parts, promote_options="default")
    if save_to is not None:
        chunk = chunk.append_column(SAVE_TO, pa.array([save_to] * chunk.num_rows, pa.string()))
    return chunk


def _chunk_specs(keep_rows: list[np.ndarray], size: int) -> list[list[tuple[int, np.ndarray]]]:
    """Chunks of ``size`` consecutive valid rows as ``[(block, rows in block), ...]``."""
    chunks: list[list[tuple[int, np.ndarray]]] = [[]]
    room = size
    for b, rows in enumerate(keep_rows):
        while len(rows):
            if room == 0:
                chunks.append([])
                room = size
            take, rows = rows[:room], rows[room:]
            chunks[-1].append((b, take))
            room -= len(take)
    return [c for c in chunks if c]


# ----------------------------------------------------------------------------- the stage


@contextmanager
def ordered_data_context(show_progress: bool) -> Iterator[None]:
    """Ray Data settings for the build, restored afterwards: input order is kept (global row
    numbers depend on it) and progress bars follow ``show_progress``, on a terminal only.
    Where stdout is a log file, Ray Data logs its progress instead, a block of lines every
    10 s that said "0/1" for minutes (the build's own bars count the items)."""
    import ray

    ctx = ray.data.DataContext.get_current()
    saved = (
        ctx.execution_options.preserve_order,
        ctx.enable_progress_bars,
        getattr(ctx, "use_datasource_v2", False),
    )
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = show_progress and sys.stdout.isatty()
    # Ray 2.60's V2 Parquet reader lists files from a thread pool whose threads race on
    # importing fsspec's optional HTTP filesystem (ImportError where aiohttp is absent).
    ctx.use_datasource_v2 = False
    # Ray Data's INFO lines on the console (execution plans, parquet batch estimates,
    # "Progress bars disabled. To enable, set ...") are for Ray's developers: the console
    # shows its warnings only. Its session log file still gets everything (the logger's own
    # level is left alone: a file handler that never opened its file during the session
    # failed on Ray's late debug lines once the session directory was gone).
    consoles = [
        h
        for h in logging.getLogger("ray.data").handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]
    for handler in consoles:
        handler.addFilter(_warnings_only)
    try:
        yield
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved[:2]
        ctx.use_datasource_v2 = saved[2]
        for handler in consoles:
            handler.removeFilter(_warnings_only)


def _warnings_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING and "Progress bars disabled" not in str(record.msg)


@dataclass
class ValidatedInventory:
    """The inventory after validation, as ``build_index`` would see it."""

    blocks: list  # ObjectRef[pa.Table] of validated blocks, in input order
    keep_rows: list[np.ndarray]  # per block, the rows that passed
    items: pa.Table  # ids, text and metadata of the rows that passed, in input order
    quarantined: list[dict]  # rows for index.schema.quarantine_table
    n_in: int  # rows read
    keys: list[str]  # content digest of each row that passed (index.content_digest)

    @property
    def num_valid(self) -> int:
        return int(sum(len(r) for r in self.keep_rows))

    def chunk_ids(self, size: int) -> list[list[str]]:
        """The item ids of each chunk of ``size`` consecutive valid items."""
        ids = self.items.column(ITEM_ID).to_pylist()
        return [ids[s : s + size] for s in range(0, len(ids), size)]

    def chunks(
        self,
        size: int,
        *,
        only: Sequence[int] | None = None,
        save_to: Sequence[str | None] | None = None,
        max_retries: int = 3,
    ) -> list:
        """Refs to tables of ``size`` consecutive valid items (content columns included),
        gathered by Ray tasks: every chunk, or the chunk numbers in ``only``. ``save_to[i]``
        rides along with chunk ``i`` as the ``SAVE_TO`` column (where its embedding goes)."""
        import ray

        gather = ray.remote(_gather_rows).options(max_retries=max_retries)
        specs = _chunk_specs(self.keep_rows, size)
        return [
            gather.remote(
                [r for _, r in specs[i]],
                save_to[i] if save_to else None,
                *[self.blocks[b] for b, _ in specs[i]],
            )
            for i in (range(len(specs)) if only is None else only)
        ]


def read_inventory(inventory, *, require_text: bool, base_dirs: list) -> ValidatedInventory:
    """Validate ``inventory`` (a Parquet file, directory, list of files, or table) in Ray Data
    tasks, then number rows and find duplicate ids in one ordered pass on the driver.

    Call inside ``ordered_data_context``.
    """
    import ray

    data, files = _read(inventory)
    valid = data.map_batches(
        _validate,
        fn_kwargs={"require_text": require_text, "base_dirs": base_dirs},
        batch_format="pyarrow",
    )
    blocks = valid.to_arrow_refs()
    project = ray.remote(_project)
    keep_rows, items, quarantined, n_in, keys = _scan(
        (ray.get(ref) for ref in [project.remote(b) for b in blocks]), files
    )
    return ValidatedInventory(blocks, keep_rows, items, quarantined, n_in, keys)

"""Queue rows' reasons, kept from one sweep over a standing index to the next.

A queue row's reasons (rank/reasons.py) are a function of the row's own columns that the
reasons read (``_row_column``: evidence, action, probability and threshold, review marks),
of its item's full text, of its ranker contributions, and of the model, the seeds, ``k``
and the code. The last four, with the index version, are its policy's key (``policy_keys``,
rank/policy_memo.py), and the index version fixes each item's text. So a row whose policy
has the key it had in the last sweep, and whose input columns and contributions equal that
sweep's row of the same item and policy, has that row's reasons: they are taken from this
file instead of being built again in Python. That is issue 12's day 2 (a new policy, the
inventory and the model unchanged): the kept policy's 9,051 queue rows cost 0.92 s of a
6.6 s sweep to explain again (helper BU's profile), all with the same reasons.

Rows are matched by (item, policy), not taken as a policy's block: an item's row is chosen
across policies, so a new policy can take some items from the old one (in the tests' small
inventory, 90 rows of one policy became 19). Columns computed across policies that the
reasons do not read (``campaign_size``, ``other_policies``, ranks) are not compared; a
column becomes compared as soon as ``_row_column`` names it. Floats are compared bit for
bit in effect (NaN equal to NaN, -0.0 not equal to 0.0), lists by value.

The file (``cache/explained.parquet``) holds the last sweep's queue rows: their input
columns, a digest of their contributions and their reasons, with each policy's key in its
stamp. It is rewritten after every sweep that explained a row afresh or queued other rows,
so it never holds more than one sweep. A file that cannot be read, or holds other rows than
its stamp counts, is ignored with a warning (rank/sweep_cache.py's rule: a cache can slow a
sweep down, never break it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from riskrank.index.run_log import get_logger
from riskrank.index.tables import read_cache_stamp, write_cache_table

log = get_logger(__name__)

FILE = "cache/explained.parquet"
FORMAT = 1
REASON = "__reason_"  # prefix of the stored reason columns (the rest are the inputs)
DIGEST = "__contributions_digest"  # per row (``row_digests``)


def row_digests(contributions: np.ndarray | None, n: int) -> list[str]:
    """Per queue row, a digest of its ranker contributions (``n`` rows; None: none kept)."""
    if contributions is None:
        return ["-"] * n
    c = np.ascontiguousarray(contributions, dtype=np.float64)
    return [hashlib.sha256(row.tobytes()).hexdigest() for row in c]


class ExplanationMemo:
    """The last sweep's reasons by queue row (read from ``path``) and this sweep's (``save``).

    ``keys``: today's key per policy (``policy_keys``; None: nothing is reused or kept).
    """

    def __init__(self, path: str | Path, keys: dict[str, str] | None) -> None:
        self.path, self.keys = Path(path), keys or {}
        self.reused: list[str] = []  # policies some of whose rows were taken from the file
        self._table: pa.Table | None = None
        self._stamp: dict = {}
        self._hits = 0

    def reusable(
        self, inputs: pa.Table, contributions: np.ndarray | None
    ) -> tuple[np.ndarray, pa.Table]:
        """The rows of ``inputs`` (the queue's columns the reasons read; ``contributions``
        row by row) whose policy has the key it had in the last sweep and which equal that
        sweep's row of the same item and policy in every input: their positions in
        ``inputs`` and their kept reasons, in that order."""
        self.reused, self._hits = [], 0
        none = np.zeros(0, dtype=np.int64), pa.table({})
        if self.keys and inputs.num_rows:
            self._read()  # (here, not at construction: the reasons stage's time)
        if self._table is None:
            return none
        names = [c for c in self._table.column_names if c.startswith(REASON)]
        stored_inputs = [c for c in self._table.column_names if c not in names and c != DIGEST]
        if stored_inputs != inputs.column_names:
            return none
        try:
            stored = self._table.select(stored_inputs).cast(inputs.schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
            return none
        same_key = [p for p, key in self.keys.items() if self._stamp["keys"].get(p) == key]
        # Today's rows of those policies, and the kept row of the same (item, policy).
        ok = pc.is_in(inputs["policy"], pa.array(same_key, pa.string())).to_numpy(
            zero_copy_only=False
        )
        found = pc.index_in(_row_keys(inputs), value_set=_row_keys(stored).combine_chunks())
        old = found.fill_null(-1).to_numpy(zero_copy_only=False)
        today = np.flatnonzero(ok & (old >= 0))
        old = old[today]
        if not len(today):
            return none
        equal = equal_rows(inputs.take(pa.array(today)), stored.take(pa.array(old)))
        digests = self._table.column(DIGEST).take(pa.array(old)).to_numpy(zero_copy_only=False)
        contrib = None if contributions is None else contributions[today]
        equal &= np.asarray(row_digests(contrib, len(today)), dtype=object) == digests
        today, old = today[equal], old[equal]
        explained = self._table.select(names).take(pa.array(old))
        self.reused = sorted(set(inputs["policy"].take(pa.array(today)).to_pylist()))
        self._hits = len(today)
        return today, explained.rename_columns([c[len(REASON) :] for c in names])

    def save(self, inputs: pa.Table, contributions: np.ndarray | None, explained: pa.Table) -> None:
        """Keep the reasons (``explained``) of the rows of ``inputs`` whose policy has a key.
        Not rewritten where every row was taken from the file and the file holds no other
        (it holds them already)."""
        if not self.keys or inputs.num_rows == 0:
            return
        policy_of = np.asarray(inputs.column("policy").to_pylist(), dtype=object)
        present = [p for p in self.keys if (policy_of == p).any()]
        keys = {p: self.keys[p] for p in present}
        if (
            self._table is not None
            and self._hits == inputs.num_rows == self._table.num_rows
            and self._stamp["keys"] == keys
        ):
            return
        keep = np.flatnonzero(np.isin(policy_of, np.asarray(present, dtype=object)))
        if len(keep) < inputs.num_rows:  # (every queued policy has a key: no copy then)
            inputs, explained = inputs.take(pa.array(keep)), explained.take(pa.array(keep))
            contributions = None if contributions is None else contributions[keep]
        digests = pa.array(row_digests(contributions, len(keep)), pa.string())
        table = inputs.append_column(DIGEST, digests)
        for name in explained.column_names:
            field = explained.schema.field(name)
            table = table.append_column(field.with_name(REASON + name), explained[name])
        stamp = {"format": FORMAT, "keys": keys, "rows": len(keep)}
        table = table.replace_schema_metadata({"explained": json.dumps(stamp)})
        write_cache_table(table, self.path, "reasons cache by row", log)

    def _read(self) -> None:
        if self._table is not None or not self.path.exists():
            return
        try:
            stamp, _ = read_cache_stamp(self.path, "explained", FORMAT)
            if stamp is None:
                return
            if not isinstance(stamp.get("keys"), dict) or not isinstance(stamp.get("rows"), int):
                raise ValueError("its stamp is not one this riskrank writes")
            if not any(stamp["keys"].get(p) == key for p, key in self.keys.items()):
                return  # nothing to reuse: the table is not read at all
            table = pq.read_table(self.path).replace_schema_metadata(None)
            if table.num_rows != stamp["rows"] or DIGEST not in table.column_names:
                raise ValueError("its rows are not the ones its stamp counts")
            for name in ("item_id", "policy"):
                if table.schema.field(name).type != pa.string():
                    raise ValueError(f"its {name} column is not text")
        except (OSError, ValueError, KeyError, AttributeError, pa.ArrowException) as exc:
            log.warning("ignoring the reasons cache by row %s (%s)", self.path, exc)
            return
        self._table, self._stamp = table, stamp


def _row_keys(table: pa.Table) -> pa.ChunkedArray:
    """Each row's item and policy as one string (ids hold no NUL: index/schema.py)."""
    return pc.binary_join_element_wise(table["item_id"], table["policy"], "\x00")


def equal_rows(a: pa.Table, b: pa.Table) -> np.ndarray:
    """Per row, whether ``a``'s and ``b``'s (same columns and types) are equal in every
    column: NaN equal to NaN, with the same sign (0.0 is not -0.0, which prints "-0.00");
    nulls in the same places."""
    equal = np.ones(a.num_rows, dtype=bool)
    for name in a.column_names:
        x, y = a[name].combine_chunks(), b[name].combine_chunks()
        nulls = x.is_null().to_numpy(zero_copy_only=False)
        same_nulls = nulls == y.is_null().to_numpy(zero_copy_only=False)
        if pa.types.is_floating(x.type):
            xv = x.fill_null(0).to_numpy(zero_copy_only=False)
            yv = y.fill_null(0).to_numpy(zero_copy_only=False)
            both_nan = np.isnan(xv) & np.isnan(yv)
            same = ((xv == yv) | both_nan) & (np.signbit(xv) == np.signbit(yv))
        elif pa.types.is_primitive(x.type) or pa.types.is_string(x.type):
            same = pc.fill_null(pc.equal(x, y), True).to_numpy(zero_copy_only=False)
        else:  # (lists: ``reviewed_elsewhere``)
            same = np.asarray([u == v for u, v in zip(x.to_pylist(), y.to_pylist())], bool)
        equal &= same_nulls & (same | nulls)
    return equal


__all__ = ["FILE", "ExplanationMemo", "equal_rows", "row_digests"]

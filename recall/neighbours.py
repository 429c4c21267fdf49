"""Each item's nearest inventory neighbours, kept from one sweep over a standing index to the next.

recall's neighbourhood evidence (``density``, ``neighbour_sim``: ``NEIGHBOURHOOD_EVIDENCE``)
summarises a candidate's ``DENSITY_K`` nearest items in the whole inventory. A search of the
inventory for every candidate was, after the embedding, the largest cost of a daily sweep that
embeds little. Its result for an item changes only if the item changed, if one of its
neighbours left or changed, or if a new item comes closer than they are. So a sweep over a
standing index keeps, per recalled item, its neighbours (ids, content keys, similarities) and
the content key of every item the inventory held (``NeighbourMemo``, next to the standing
index: ``cache/neighbours.parquet``); the next sweep searches, for an item whose content is
unchanged, only the items new since then (``fresh``), and merges them with its stored
neighbours that are still there.

A stored list holds a few more than ``DENSITY_K`` (``STORED``) and the level it is complete to
(``complete_to``: every item of that inventory more similar than it is in the list). Merged
with the fresh items' nearest (complete to their own level), the result is exact above the
higher of the two levels; where that leaves fewer than ``DENSITY_K`` (several neighbours left
or changed), the item's neighbourhood is searched whole.

For this to equal a search of the whole inventory, a neighbour's similarity must not depend on
what else was searched with it: FAISS proposes neighbours in float32 (a few more than needed)
and each similarity is then computed in float64 pair by pair (``pair_inner_products``).
An ``IVF*,Flat`` index (the default past 100,000 items) is searched within the ``nprobe`` lists
nearest each query, so an item's neighbourhood is its nearest items among those lists. A stored
list keeps that meaning while the quantizer and ``nprobe`` stay as they were (an update in
place keeps both: index/standing.py): the fresh items are then searched through an IVF index
of the same quantizer holding only them (``fresh_index``), which probes each query's same lists,
and the merge is exact as above. A retrained quantizer or another ``nprobe`` makes another
search space (``search_space``): that signal's stored lists are not used.

Only cosine signals of a standing index's version (which records content keys), indexed
``Flat`` or ``IVF*,Flat``, take part; any other index (compressed codes, binary hashes, shards)
is searched whole, as before.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskrank.index.run_log import get_logger
from riskrank.index.store import SignalIndex
from riskrank.index.tables import read_cache_table, write_cache_table

log = get_logger(__name__)

FILE = "cache/neighbours.parquet"
SCHEMA = pa.schema(
    [
        pa.field("signal", pa.string()),
        pa.field("item_id", pa.string()),  # every item of that sweep's inventory, in position order
        pa.field("key", pa.string()),
        # positions (rows of this signal here) of its nearest items, best first; null: the
        # item's own neighbours were not needed
        pa.field("neighbours", pa.list_(pa.int32())),
        pa.field("similarities", pa.list_(pa.float64())),
        pa.field("complete_to", pa.float64()),
    ]
)


def pair_inner_products(a: np.ndarray, b: np.ndarray, block: int = 8192) -> np.ndarray:
    """Row-by-row dot products in float64 (products of float32 values are exact there); each
    row's value depends on that row's two vectors only, not on the rows around it."""
    out = np.empty(len(a), np.float64)
    for i in range(0, len(a), block):
        x = np.asarray(a[i : i + block], np.float64)
        out[i : i + block] = (x * np.asarray(b[i : i + block], np.float64)).sum(axis=1)
    return out


def row_neighbour_products(q: np.ndarray, v: np.ndarray, block: int = 512) -> np.ndarray:
    """``pair_inner_products`` of each row of ``q`` (n, d) with each of its neighbours ``v``
    (n, k, d), without repeating the row k times: the same products, summed over the same
    contiguous axis, so the same float64 values bit for bit (``test_neighbours``). The repeated
    rows were read from the stored vectors k times and made most of a daily sweep's density
    time."""
    out = np.empty(v.shape[:2], np.float64)
    for i in range(0, len(q), block):
        x = np.asarray(q[i : i + block], np.float64)[:, None, :]
        out[i : i + block] = (x * np.asarray(v[i : i + block], np.float64)).sum(axis=2)
    return out


def found_products(queries, read_rows, pos: np.ndarray, block: int = 512) -> np.ndarray:
    """``row_neighbour_products`` of each query with the rows at its ``pos`` (-1: none,
    -inf), a block of queries at a time: FAISS finds the rows, float64 scores them pair by
    pair. ``queries(a, b)`` gives queries ``a:b`` as an array; ``read_rows(positions)`` the rows
    at those positions (stored vectors are read a block at a time, not held whole)."""
    out = np.full(pos.shape, -np.inf)
    for i in range(0, len(pos), block):
        p = pos[i : i + block]
        q = np.asarray(queries(i, i + block))
        v = np.asarray(read_rows(np.maximum(p, 0).ravel())).reshape(*p.shape, q.shape[1])
        out[i : i + block] = np.where(p >= 0, row_neighbour_products(q, v), -np.inf)
    return out


def content_keys(si: SignalIndex) -> list[str] | None:
    """The content key of every position of a standing index version's signal (None for an
    index made otherwise; read once per loaded index: ``SignalIndex.content_keys``)."""
    return getattr(si, "content_keys", None)


def ivf_flat(si: SignalIndex):
    """The ``IndexIVFFlat`` inside ``si``'s index (None for any other kind of index)."""
    index = getattr(getattr(si, "index", None), "index", None)
    return index if isinstance(index, faiss.IndexIVFFlat) else None


def search_space(si: SignalIndex) -> str | None:
    """What a neighbourhood found in ``si`` means: ``"Flat"`` (every item), or an IVF index's
    ``nprobe`` and a digest of its quantizer's centroids (the items of the lists nearest each
    query). None where stored neighbourhoods cannot take part (not cosine, other indexes)."""
    if si.signal.metric != "cosine":
        return None
    if getattr(si.index, "key", "") == "Flat":
        return "Flat"
    ivf = ivf_flat(si)
    if ivf is None or ivf.metric_type != faiss.METRIC_INNER_PRODUCT:
        return None
    centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    digest = hashlib.sha256(np.ascontiguousarray(centroids, np.float32).tobytes()).hexdigest()
    return f"IVF{ivf.nlist},nprobe={si.index.nprobe},{digest}"


def fresh_index(si: SignalIndex, vectors: np.ndarray):
    """A FAISS index of ``vectors`` (ids 0..n-1) searched as ``si``'s index searches: exact
    for a ``Flat`` index; for an IVF one, its quantizer's lists and ``nprobe`` (the same
    lists probed per query), so that the fresh items a query finds are the ones a search of
    the whole index could find."""
    ivf = ivf_flat(si)
    if ivf is None:
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return index
    # The quantizer itself, not a copy (nor a clone of the index, which copies every list:
    # 1.5 GB at 1M items); ``si`` owns it and outlives this index (one merge of a sweep).
    index = faiss.IndexIVFFlat(ivf.quantizer, ivf.d, ivf.nlist, ivf.metric_type)
    index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
    index.nprobe = si.index.nprobe
    return index


class NeighbourMemo:
    """The last sweep's neighbours (read from ``path``) and this sweep's (``save``).

    ``rules``: what the stored neighbours mean (how many, how scored); a file written under
    other rules is not used.
    """

    def __init__(self, path: str | Path, rules: dict) -> None:
        self.path = Path(path)
        self.rules = json.dumps(rules, sort_keys=True)
        self._stored: dict[str, pa.Table] = {}
        self._spaces: dict[str, str] = {}  # the stored lists' search space, per signal
        self._now: dict[str, SignalNeighbours] = {}
        self._read()

    def for_signal(self, name: str, si: SignalIndex) -> SignalNeighbours | None:
        """Today's view for one signal (None where it cannot take part: no content keys),
        made once: a memo serves one sweep over one index version."""
        if name in self._now:
            return self._now[name]
        keys, space = content_keys(si), search_space(si)
        if keys is None or space is None:
            return None
        stored = self._stored.get(name) if self._spaces.get(name) == space else None
        view = SignalNeighbours([str(i) for i in si.ids], keys, stored)
        view.space = space
        self._now[name] = view
        return view

    def for_tasks(self, index) -> NeighbourMemo:
        """A copy for recall tasks elsewhere (an engine ships it to each and brings back what
        they ``recorded``): every signal's view of ``index`` (an ``InventoryIndex``) is made
        here, where the version's content keys can be read, and the copy leaves out the item
        ids and keys that only ``save`` needs (1M ids of 10 characters and their keys: 43 MiB
        pickled, 147 MiB once a task unpickles them; measured with tracemalloc)."""
        for name, si in index.signals.items():
            self.for_signal(name, si)
        out = copy.copy(self)
        out._stored = {}
        out._now = {name: view.for_task() for name, view in self._now.items()}
        return out

    def recorded(self) -> dict[str, list]:
        """What this copy's recall found, per signal (``add_recorded`` takes it)."""
        return {name: view.recorded() for name, view in self._now.items()}

    def add_recorded(self, recorded: dict[str, list]) -> None:
        """Neighbours another copy of this memo found (a recall task's ``recorded``).
        An item found by several tasks (a candidate of several policies) is found the same
        by each; the last record of it is kept."""
        for name, records in recorded.items():
            if name in self._now:
                self._now[name].add_recorded(records)

    def keep(self, index, candidates: pa.Table) -> None:
        """Keep for the next sweep the stored neighbourhoods of ``candidates``' items, which
        this sweep took from the last one instead of recalling them (rank/policy_memo.py: the
        same index version, so the stored lists are today's); ``save`` writes only what a
        sweep recorded, and the next day would search them whole."""
        ids = set(candidates.column("item_id").to_pylist())
        for name, si in index.signals.items():
            view = self.for_signal(name, si)
            if view is not None and ids:
                view.keep(np.array([p for p, i in enumerate(view.ids) if i in ids], np.int64))

    def save(self) -> None:
        tables = [view.table(name) for name, view in self._now.items()]
        if not tables:
            return
        spaces = {name: view.space for name, view in self._now.items()}
        table = pa.concat_tables(tables).replace_schema_metadata(
            {"rules": self.rules, "spaces": json.dumps(spaces, sort_keys=True)}
        )
        write_cache_table(table, self.path, "neighbours cache", log)

    def _read(self) -> None:
        table = read_cache_table(
            self.path, SCHEMA, "neighbours cache", log, stamp=("rules", self.rules)
        )
        if table is None:
            return
        names = pc.unique(table.column("signal")).to_pylist()
        spaces = (table.schema.metadata or {}).get(b"spaces")
        try:  # a file from before search spaces held exact (Flat) lists only
            self._spaces = json.loads(spaces) if spaces else dict.fromkeys(names, "Flat")
        except ValueError:
            self._spaces = {}
        for name in names:
            self._stored[name] = table.filter(pc.equal(table.column("signal"), name))


class SignalNeighbours:
    """One signal's stored neighbours (the last sweep's positions), mapped to today's."""

    def __init__(self, ids: list[str], keys: list[str], stored: pa.Table | None) -> None:
        self.ids, self.keys = ids, keys
        n = len(ids)
        # today's position -> the last sweep's position of the same item and content (-1: new)
        self.before = np.full(n, -1, np.int64)
        self._stored = stored
        self.to_today = np.zeros(0, np.int64)
        if stored is not None and stored.num_rows:
            old_ids = stored.column("item_id").to_pylist()
            old_keys = stored.column("key").to_pylist()
            old_pos = {(i, k): q for q, (i, k) in enumerate(zip(old_ids, old_keys))}
            self.before = np.array([old_pos.get(ik, -1) for ik in zip(ids, keys)], np.int64)
            self.to_today = np.full(len(old_ids), -1, np.int64)
            known = self.before >= 0
            self.to_today[self.before[known]] = np.flatnonzero(known)
        self.fresh = np.flatnonzero(self.before < 0)
        self.space = "Flat"  # what the lists mean (``search_space``); set by the memo
        # (rows, (neighbours, similarities, count, complete-to level)) per ``record`` call
        self._records: list[tuple[np.ndarray, tuple]] = []

    def stored(self, positions: np.ndarray, width: int):
        """For those of ``positions`` (today) whose content is as it was and whose neighbours
        were stored: (their positions, neighbours as today's positions (-1: gone or changed
        since, or none), similarities, complete-to levels), ``width`` columns."""
        rows, out_pos, out_sim, levels, _ = self._lists(positions, width)
        out_sim[out_pos < 0] = -np.inf
        return rows, out_pos, out_sim, np.nan_to_num(levels, nan=-np.inf)

    def _lists(self, positions: np.ndarray, width: int | None):
        """``stored``'s lists as they were read (a gone neighbour at -1 keeps its similarity)
        and each one's length; ``width`` None: the longest list's."""
        rows = np.zeros(0, np.int64)
        if self._stored is not None and len(positions):
            old = self.before[positions]
            lists = self._stored.column("neighbours")
            has = old >= 0
            has[has] = pc.is_valid(lists.take(pa.array(old[has]))).to_numpy(zero_copy_only=False)
            rows, old = positions[has], old[has]
        if not len(rows):
            w = width or 0
            return rows, np.zeros((0, w), np.int64), np.zeros((0, w)), np.zeros(0), rows
        nbr = self._stored.column("neighbours").take(pa.array(old)).combine_chunks()
        sim = self._stored.column("similarities").take(pa.array(old)).combine_chunks()
        lens = np.diff(nbr.offsets.to_numpy())
        width = int(lens.max()) if width is None else width
        out_pos = np.full((len(rows), width), -1, np.int64)
        out_sim = np.full((len(rows), width), -np.inf)
        at = (np.repeat(np.arange(len(rows)), lens), _ranks(lens))
        out_pos[at] = self.to_today[pc.list_flatten(nbr).to_numpy().astype(np.int64)]
        out_sim[at] = pc.list_flatten(sim).to_numpy()
        levels = (
            self._stored.column("complete_to").take(pa.array(old)).to_numpy(zero_copy_only=False)
        )
        return rows, out_pos, out_sim, levels, lens

    def record(self, rows, nbr_positions, sims, count, levels) -> None:
        """Each of ``rows``' first ``count`` neighbours (today's positions, best first) and
        the level its list is complete to."""
        self._records.append(
            (
                np.asarray(rows, np.int64),
                (nbr_positions, sims, np.asarray(count), np.asarray(levels)),
            )
        )

    def keep(self, positions: np.ndarray) -> None:
        """Record the stored lists of ``positions`` (today's) again, as they were, where the
        item and every neighbour in its list are as they were (the others are searched whole
        by the next sweep that needs them)."""
        rows, nbrs, sims, levels, lens = self._lists(positions, None)
        whole = (nbrs >= 0).sum(axis=1) == lens
        self.record(rows[whole], nbrs[whole], sims[whole], lens[whole], levels[whole])

    def for_task(self) -> SignalNeighbours:
        """This view without the ids and keys (``NeighbourMemo.for_tasks``), nothing recorded."""
        out = copy.copy(self)
        out.ids = out.keys = None
        out._records = []
        return out

    def recorded(self) -> list:
        return list(self._records)

    def add_recorded(self, records: list) -> None:
        self._records += records

    def table(self, name: str) -> pa.Table:
        """Today's inventory with the neighbours this sweep found, as stored."""
        n = len(self.ids)
        offsets = np.zeros(n + 1, np.int64)
        lengths = np.zeros(n, np.int64)
        level = np.full(n, np.nan)
        nbr_of: dict[int, tuple] = {}
        for rows, (nbrs, sims, count, lev) in self._records:
            for j, p in enumerate(rows):
                nbr_of[int(p)] = (nbrs[j, : count[j]], sims[j, : count[j]])
            lengths[rows] = count
            level[rows] = lev
        has = np.zeros(n, bool)
        has[list(nbr_of)] = True
        offsets[1:] = np.cumsum(lengths)
        order = sorted(nbr_of)
        flat_nbr = np.concatenate([nbr_of[p][0] for p in order] or [np.zeros(0, np.int64)])
        flat_sim = np.concatenate([nbr_of[p][1] for p in order] or [np.zeros(0)])
        mask = pa.array(~has)
        neighbours = pa.ListArray.from_arrays(
            pa.array(offsets, pa.int32()), pa.array(flat_nbr, pa.int32()), mask=mask
        )
        similarities = pa.ListArray.from_arrays(
            pa.array(offsets, pa.int32()), pa.array(flat_sim, pa.float64()), mask=mask
        )
        return pa.table(
            {
                "signal": pa.array([name] * n, pa.string()),
                "item_id": pa.array(self.ids, pa.string()),
                "key": pa.array(self.keys, pa.string()),
                "neighbours": neighbours,
                "similarities": similarities,
                "complete_to": pa.array(np.where(has, level, np.nan), pa.float64(), mask=~has),
            },
            schema=SCHEMA,
        )


def _ranks(lengths: np.ndarray) -> np.ndarray:
    """0, 1, ... within each run of ``lengths``."""
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(int(lengths.sum())) - starts


__all__ = [
    "FILE",
    "NeighbourMemo",
    "SignalNeighbours",
    "content_keys",
    "pair_inner_products",
    "row_neighbour_products",
]

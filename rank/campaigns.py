"""Campaigns: queue items that are near-copies or close paraphrases of each other.

Violating content comes in bursts (the same scam re-posted with a new phone number, the same
insult pasted under many articles). Items are linked when they are within a per-signal
threshold of each other under ANY signal (union across signals); a campaign is a connected
component of that graph (``scipy.sparse.csgraph.connected_components``), found over a radius
graph that FAISS builds (``range_search`` among the queued items).

Queue columns added
-------------------
``campaign_id``       ``c-<item_id of the representative>``; the same for every member.
``campaign_size``     members in the queue (1 = an item that is not part of a campaign).
``campaign_rank``     1 = the representative (the member the ranker found riskiest), 2, 3 ...
``campaign_members``  campaign mode only: the members' item ids, representative first.

>>> labels = link_campaigns({"text": vectors}, {"text": "cosine"})    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping

import faiss
import numpy as np
import pyarrow as pa
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from riskrank.index.store import InventoryIndex

# Per-signal link thresholds. ``text`` (MiniLM cosine): the lowest threshold from which the
# campaigns it forms on SpamAssassin's OLD mail groups (the history side, never the sweeps the
# purity is measured on) keep a worst-case purity >= 0.98 (0.70: 2,041 campaigns of 3,250
# mails, none mixed; at 0.69 one of 140 mails mixes labels). Pairs alone would say 0.53 (pairs
# above it share a label 98% of the time) but links chain: at 0.60 one component holds 560
# mails of both labels. `python benchmarks/campaigns.py` prints the curve (RESULTS.md).
# ``pdq`` (Hamming distance, 256 bits): PDQ's published match threshold (31; the README's
# PDQ recall threshold too), not re-chosen here: no labelled image set ships in a registry.
# ``image`` (CLIP) has none: no real CLIP weights run here, so no threshold could be chosen
# from data; pass ``thresholds={"image": ...}`` to link by CLIP.
CAMPAIGN_THRESHOLDS: dict[str, float] = {"text": 0.70, "pdq": 31}
COSINE_SLACK = 1e-5
CAMPAIGN_COLUMNS = ("campaign_id", "campaign_size", "campaign_rank")


def radius_graph(vectors: np.ndarray, metric: str, threshold: float) -> sparse.coo_matrix:
    """Pairs of rows within ``threshold`` (cosine >= t on unit vectors, or Hamming <= t on
    packed binary hashes), as a sparse n x n adjacency matrix."""
    n = len(vectors)
    if n == 0:
        return sparse.coo_matrix((0, 0), dtype=np.int8)
    if metric == "cosine":
        x = np.ascontiguousarray(vectors, np.float32)
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        # FAISS keeps inner products strictly above the radius; the slack makes ">= t" hold
        # for float32 dot products of identical unit vectors (0.9999999 for 1.0).
        lims, _, nbr = index.range_search(x, float(threshold) - COSINE_SLACK)
    elif metric == "hamming":
        x = np.ascontiguousarray(vectors, np.uint8)
        index = faiss.IndexBinaryFlat(x.shape[1] * 8)
        index.add(x)
        # Binary range search keeps distances strictly below the radius.
        lims, _, nbr = index.range_search(x, int(threshold) + 1)
    else:
        raise ValueError(f"radius_graph: metric {metric!r} is not 'cosine' or 'hamming'")
    rows = np.repeat(np.arange(n), np.diff(lims).astype(np.int64))
    return sparse.coo_matrix((np.ones(len(nbr), np.int8), (rows, nbr)), shape=(n, n))


def link_campaigns(
    vectors: Mapping[str, tuple[np.ndarray, np.ndarray]],
    metrics: Mapping[str, str],
    n_items: int,
    thresholds: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Component label per item (0..n_items-1) from the union of every signal's radius graph.

    ``vectors[signal] = (positions, vectors)``: which of the ``n_items`` items the signal has a
    vector for (an item without that modality simply has no link through it). Signals without a
    threshold are not used.
    """
    thresholds = CAMPAIGN_THRESHOLDS if thresholds is None else thresholds
    graph = sparse.coo_matrix((n_items, n_items), dtype=np.int8).tocsr()
    for name, (positions, vecs) in vectors.items():
        if name not in thresholds or len(positions) == 0:
            continue
        g = radius_graph(vecs, metrics[name], thresholds[name])
        positions = np.asarray(positions, np.int64)
        graph = (
            graph
            + sparse.coo_matrix(
                (g.data, (positions[g.row], positions[g.col])), shape=(n_items, n_items)
            ).tocsr()
        )
    _, labels = connected_components(graph, directed=False)
    return labels


def queue_vectors(
    index: InventoryIndex, item_ids: list[str]
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """Each signal's vectors for the queue's items, and each signal's metric."""
    out, metrics = {}, {}
    for name, si in index.signals.items():
        pos_of = {item_id: p for p, item_id in enumerate(si.ids)}
        have = [(q, pos_of[i]) for q, i in enumerate(item_ids) if i in pos_of]
        queue_pos = np.array([q for q, _ in have], np.int64)
        index_pos = np.array([p for _, p in have], np.int64)
        vecs = np.asarray(si.vectors[index_pos.tolist()]) if len(have) else np.zeros((0, 1))
        out[name] = (queue_pos, vecs)
        metrics[name] = si.signal.metric
    return out, metrics


def add_campaign_columns(queue: pa.Table, labels: np.ndarray) -> pa.Table:
    """``campaign_id`` / ``campaign_size`` / ``campaign_rank`` for a queue in rank order."""
    ids = queue.column("item_id").to_pylist()
    rep: dict[int, str] = {}
    rank = np.zeros(len(ids), np.int64)
    seen: dict[int, int] = {}
    for q, lab in enumerate(labels):  # queue order = riskiest first: first seen represents
        rep.setdefault(int(lab), ids[q])
        seen[int(lab)] = seen.get(int(lab), 0) + 1
        rank[q] = seen[int(lab)]
    cols = {
        "campaign_id": pa.array([f"c-{rep[int(lab)]}" for lab in labels], pa.string()),
        "campaign_size": pa.array([seen[int(lab)] for lab in labels], pa.int64()),
        "campaign_rank": pa.array(rank, pa.int64()),
    }
    for name, col in cols.items():
        if name in queue.column_names:
            queue = queue.drop([name])
        queue = queue.append_column(name, col)
    return queue


def campaign_view(queue: pa.Table) -> pa.Table:
    """Campaign mode: one row per campaign (its representative) with ``campaign_members``."""
    members: dict[str, list[str]] = {}
    for cid, item_id in zip(queue["campaign_id"].to_pylist(), queue["item_id"].to_pylist()):
        members.setdefault(cid, []).append(item_id)
    reps = queue.filter(pa.compute.equal(queue["campaign_rank"], 1))
    return reps.append_column(
        "campaign_members",
        pa.array([members[c] for c in reps["campaign_id"].to_pylist()], pa.list_(pa.string())),
    )


def find_campaigns(
    queue: pa.Table, index: InventoryIndex, thresholds: Mapping[str, float] | None = None
) -> pa.Table:
    """The queue (rank order, one row per item) with its campaign columns, linked through the
    vectors ``index`` holds for the queued items."""
    ids = queue.column("item_id").to_pylist()
    vecs, metrics = queue_vectors(index, ids)
    return add_campaign_columns(queue, link_campaigns(vecs, metrics, len(ids), thresholds))

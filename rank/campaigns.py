"""Campaigns: queue items that are near-copies or close paraphrases of each other.

Violating content comes in bursts (the same scam re-posted with a new phone number, the same
insult pasted under many articles). Items are linked when they are within a per-signal
threshold of each other under ANY signal (union across signals); a campaign is a connected
component of that graph (``scipy.sparse.csgraph.connected_components``). A campaign of m
near-copies has m² links but needs far fewer to be connected: ``radius_components`` covers the
queued items with groups around leaders and searches items against leaders (FAISS
``range_search``, a block at a time), checking group members only where the triangle
inequality leaves a link possible: the components of every link, exactly, at rows x leaders.

A cosine link is proposed by FAISS in float32 a little below the threshold and decided in
float64 pair by pair (``recall.neighbours.pair_inner_products``), so that it is a function of
the two vectors alone, whatever else is searched with them. A sweep over a standing index
therefore keeps the last sweep's links between contents it saw then (``LinkCache``, by content
key) and searches only the new contents against the queue: the same campaigns as a
from-scratch sweep, at a fraction of the search.

Queue columns added
-------------------
``campaign_id``       ``c-<item_id>`` of the member with the lowest item id (digit runs compared
                      as numbers: ``anchor_order``); the same for every member. It does not
                      follow the ranking: a campaign keeps its id from one daily sweep to
                      the next while that member stays in it, as ids that count up (new ads,
                      new ids) leave it the first.
``campaign_size``     members in the queue (1 = an item that is not part of a campaign).
``campaign_rank``     1 = the representative (the member the ranker found riskiest), 2, 3 ...
``campaign_members``  campaign mode only: the members' item ids, representative first.
``campaign_members_text_sha256``  campaign mode only: each member's ``text_sha256``, same order.
``campaign_members_previous_verdict``  campaign mode only: each member's earlier verdict (null:
                      never reviewed), same order.

>>> labels = link_campaigns({"text": vectors}, {"text": "cosine"})    # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

import faiss
import numpy as np
import pyarrow as pa
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from riskrank.index.store import InventoryIndex
from riskrank.recall.neighbours import content_keys, pair_inner_products

MEMBER_DIGESTS = "campaign_members_text_sha256"
MEMBER_VERDICTS = "campaign_members_previous_verdict"

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


# What a stored link means: bump when the rule below changes, so old caches are not used.
LINK_RULE = "float32 proposal, float64 pair decision"
PROPOSE_MARGIN = 1e-3  # float32 error of a 384-d unit dot product is ~1e-6 (2.3e-5 at worst)


PAIRS_PER_SEARCH = 4_000_000  # range-search results held at once (ids and scores: ~48 MB)
STORED_LINKS_PER_CONTENT = 32  # a queue denser in links than this keeps none for the next sweep


def radius_pair_chunks(
    queries: np.ndarray, base: np.ndarray, metric: str, threshold: float
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(query row, base row) of every pair within ``threshold``, a block of queries at a time:
    cosine >= t on unit vectors, or Hamming <= t on packed binary hashes.

    A campaign of near-copies links every member to every other, so the pairs grow as the
    square of its size (a 300,000-ad inventory of template ads made 36 million): the queries
    are searched in blocks sized so that one block's results stay near ``PAIRS_PER_SEARCH``.
    A caller that needs only components uses ``radius_components``, which does not search every
    link. A cosine pair is proposed by FAISS in float32 a little below the threshold and
    decided by ``_decide``, so a link is a function of the two vectors alone, whatever else is
    searched with them."""
    if len(queries) == 0 or len(base) == 0:
        return
    space = _Space(base, metric, threshold)
    x, y = space.cast(queries), space.x
    index = space.index()
    for rows, nbr, score in _range_blocks(index, x, space.radius(space.reach)):
        keep = _decide(metric, threshold, score, x, rows, y, nbr)
        yield rows[keep], nbr[keep]


def _decide(metric, threshold, score, x, rows, y, cols) -> np.ndarray:
    """The link rule on searched pairs (``x[rows]``, ``y[cols]``) and their FAISS scores. A
    cosine score that clears the threshold by more than float32's error is a link, one below
    it by as much is not, and only the pairs in between are decided in float64
    (``recall.neighbours.pair_inner_products``). ``COSINE_SLACK``: ">= t" holds for the dot
    product of a unit vector with itself."""
    if metric == "hamming":
        return np.asarray(score) <= threshold
    score = np.asarray(score)
    keep = score >= float(threshold) + PROPOSE_MARGIN
    near = np.flatnonzero(~keep & (score >= float(threshold) - PROPOSE_MARGIN))
    keep[near] = (
        pair_inner_products(x[rows[near]], y[cols[near]]) >= float(threshold) - COSINE_SLACK
    )
    return keep


def _range_blocks(index, queries: np.ndarray, radius) -> Iterator[tuple[np.ndarray, ...]]:
    """(query row, base row, score) of a range search, a block of queries at a time: the first
    small enough for one dense campaign's rows, the next sized by what came back, so that a
    block's results stay near ``PAIRS_PER_SEARCH``."""
    start, block = 0, 128
    while start < len(queries):
        lims, score, nbr = index.range_search(queries[start : start + block], radius)
        rows = start + np.repeat(np.arange(len(lims) - 1), np.diff(lims).astype(np.int64))
        yield rows, nbr.astype(np.int64), score
        start += block
        per_query = max(1.0, len(score) / block)
        block = int(min(4096, max(1, PAIRS_PER_SEARCH // per_query)))


def radius_pairs(
    queries: np.ndarray, base: np.ndarray, metric: str, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of ``radius_pair_chunks`` at once (for small inputs: they grow as n²)."""
    chunks = list(radius_pair_chunks(queries, base, metric, threshold))
    if not chunks:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def radius_graph(vectors: np.ndarray, metric: str, threshold: float) -> sparse.coo_matrix:
    """Pairs of rows within ``threshold`` (``radius_pairs`` of the rows among themselves), as a
    sparse n x n adjacency matrix."""
    n = len(vectors)
    rows, nbr = radius_pairs(vectors, vectors, metric, threshold)
    return sparse.coo_matrix((np.ones(len(nbr), np.int8), (rows, nbr)), shape=(n, n))


class _Components:
    """The connected components of links added in blocks, in memory that grows with the
    items, not the links: once the links held pass a few per item they are replaced by one
    link from each item to the first item of its component, which joins the same items."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.a: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        self.held = 0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a.append(np.asarray(a, np.int64))
        self.b.append(np.asarray(b, np.int64))
        self.held += len(self.a[-1])
        if self.held > 4 * self.n + PAIRS_PER_SEARCH:
            self._compress()

    def links(self) -> tuple[np.ndarray, np.ndarray]:
        self._compress()
        return self.a[0], self.b[0]

    def labels(self) -> np.ndarray:
        """Each item's component, named by its first item."""
        a, b = self.links()
        root = np.arange(self.n)
        root[a] = b
        return root

    def _compress(self) -> None:
        if self.n == 0:
            self.a, self.b, self.held = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], 0
            return
        a = np.concatenate(self.a) if self.a else np.zeros(0, np.int64)
        b = np.concatenate(self.b) if self.b else np.zeros(0, np.int64)
        graph = sparse.coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(self.n, self.n))
        _, labels = connected_components(graph, directed=False)
        first = np.full(labels.max() + 1, self.n, np.int64)
        np.minimum.at(first, labels, np.arange(self.n))
        root = first[labels]
        joined = np.flatnonzero(root != np.arange(self.n))
        self.a, self.b, self.held = [joined], [root[joined]], len(joined)


# Components without every link: a cover (see ``radius_components``).
COVER_SHARE = 0.5  # a cover group reaches at most this share of the link distance
COVER_BLOCK = 1024  # items given their cover group at a time
RADIUS_TIERS = 4  # searches of the items against cover groups of like radius
COVER_PROBE = 4096  # rows covered first to see whether a cover pays
COVER_MAX_LEADERS = 0.5  # share of the probe's rows leading groups above which it does not


def _unit_rows(x: np.ndarray) -> bool:
    norms = np.linalg.norm(np.asarray(x, np.float32), axis=1)
    return bool(len(norms)) and bool(np.all(np.abs(norms - 1.0) <= 1e-3))


class _Space:
    """The link rule as a distance that keeps the triangle inequality: Euclidean distance
    between unit vectors (cosine ``s >= t`` is ``d <= sqrt(2 - 2t)``) or Hamming distance.
    Cosine scores come from float32, so every distance here is an upper (``high``) or lower
    (``low``) bound that holds within ``PROPOSE_MARGIN`` of the exact score."""

    def __init__(self, vectors: np.ndarray, metric: str, threshold: float) -> None:
        if metric not in ("cosine", "hamming"):
            raise ValueError(f"campaign links: metric {metric!r} is not 'cosine' or 'hamming'")
        self.metric, self.threshold = metric, threshold
        self.x = self.cast(vectors)
        if metric == "cosine":
            self.reach = float(np.sqrt(2.0 - 2.0 * (float(threshold) - COSINE_SLACK)))
        else:
            self.reach = float(threshold)
        self.cover = COVER_SHARE * self.reach

    def cast(self, vectors: np.ndarray) -> np.ndarray:
        """Vectors as FAISS takes them: float32 (cosine) or packed uint8 bits (Hamming)."""
        return np.ascontiguousarray(vectors, np.float32 if self.metric == "cosine" else np.uint8)

    def index(self, rows: np.ndarray | None = None):
        """An exact FAISS index of ``rows`` (all by default)."""
        if self.metric == "cosine":
            index = faiss.IndexFlatIP(self.x.shape[1])
        else:
            index = faiss.IndexBinaryFlat(self.x.shape[1] * 8)
        index.add(self.x if rows is None else self.x[rows])
        return index

    def high(self, score: np.ndarray) -> np.ndarray:
        if self.metric == "hamming":
            return np.asarray(score, np.float64)
        s = np.asarray(score, np.float64) - PROPOSE_MARGIN
        return np.sqrt(np.maximum(0.0, 2.0 - 2.0 * s))

    def low(self, score: np.ndarray) -> np.ndarray:
        if self.metric == "hamming":
            return np.asarray(score, np.float64)
        s = np.asarray(score, np.float64) + PROPOSE_MARGIN
        return np.sqrt(np.maximum(0.0, 2.0 - 2.0 * s))

    def radius(self, distance: float):
        """The range-search radius that returns every pair with ``low <= distance``."""
        if self.metric == "hamming":
            return int(np.floor(distance)) + 1  # binary range search keeps d < radius
        return float(1.0 - distance**2 / 2.0 - PROPOSE_MARGIN)

    def scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Scores of rows ``a`` against rows ``b`` (a small block), as FAISS would give them."""
        if self.metric == "cosine":
            return self.x[a] @ self.x[b].T
        bits_a = np.unpackbits(self.x[a], axis=1).astype(np.int32)
        bits_b = np.unpackbits(self.x[b], axis=1).astype(np.int32)
        return bits_a @ (1 - bits_b).T + (1 - bits_a) @ bits_b.T

    def nearest(self, index, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        score, pos = index.search(self.x[a], 1)
        return pos[:, 0].astype(np.int64), self.high(score[:, 0])

    def links(self, rows, cols, score) -> np.ndarray:
        """The link rule (``_decide``) on pairs of rows."""
        return _decide(self.metric, self.threshold, score, self.x, rows, self.x, cols)

    def cover_groups(self, probe: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Greedy cover of the rows, in order: a row within ``cover`` of a leader joins its
        group, any other row leads a new group. Returns each group's leader row, each row's
        group and each group's radius (the farthest member's distance from its leader, an
        upper bound). ``probe``: give up (None) as soon as the first ``probe`` rows (a block
        boundary at or past it) are covered if more than ``COVER_MAX_LEADERS`` of them lead:
        the cover would not pay. The probe is the start of the cover, never done twice."""
        n = len(self.x)
        group, dist = np.empty(n, np.int64), np.zeros(n)
        leaders: list[int] = []
        index = None
        for a in range(0, n, COVER_BLOCK):
            if 0 < probe <= a:  # the blocks before ``a`` are covered
                if len(leaders) > COVER_MAX_LEADERS * a:
                    return None
                probe = 0
            rows = np.arange(a, min(n, a + COVER_BLOCK))
            got = np.full(len(rows), -1, np.int64)
            if index is not None:
                pos, d = self.nearest(index, rows)
                hit = d <= self.cover
                got[hit], dist[rows[hit]] = pos[hit], d[hit]
            rest = rows[got < 0]
            if len(rest):
                d = self.high(self.scores(rest, rest))
                open_ = np.ones(len(rest), bool)
                start = len(leaders)
                for i in range(len(rest)):
                    if not open_[i]:
                        continue
                    take = open_ & (d[i] <= self.cover)
                    take[i] = True
                    got[rest[take] - a] = len(leaders)
                    dist[rest[take]] = d[i, take]
                    dist[rest[i]] = 0.0
                    leaders.append(int(rest[i]))
                    open_ &= ~take
                new = np.asarray(leaders[start:], np.int64)
                if index is None:
                    index = self.index(new)
                else:
                    index.add(self.x[new])
            group[rows] = got
        if probe and len(leaders) > COVER_MAX_LEADERS * n:  # fewer rows than the probe
            return None
        leader = np.asarray(leaders, np.int64)
        radius = np.zeros(len(leader))
        np.maximum.at(radius, group, dist)
        return leader, group, radius


def radius_components(vectors: np.ndarray, metric: str, threshold: float) -> np.ndarray:
    """Component label of every row of the radius graph of ``radius_pair_chunks`` (rows linked
    by the same rule), found exactly without searching every link.

    A campaign of m near-copies has m² links; its components need far fewer. Rows are first
    covered by groups of radius at most ``COVER_SHARE`` of the link distance around a leader
    (``_Space.cover_groups``): a member is linked to its leader, so a group is connected. Every
    row is then searched against the leaders only, and linked (by the rule) to those within
    reach. A link x-y with y in group B means x is within reach + radius(B) of B's leader
    (triangle inequality), so the groups in that band that the links so far have not joined
    to x are the only places a missing link can be: x is checked against their members. With
    near-copies the leaders are few, and the work grows with rows x leaders, not rows²
    (``benchmarks/campaign_links.py``). Without them nearly every row leads its own group and
    the cover costs more than it saves: when more than ``COVER_MAX_LEADERS`` of the first
    ``COVER_PROBE`` rows lead, every link is searched instead, as it is for cosine vectors
    that are not unit vectors (the distance is Euclidean between unit vectors)."""
    n = len(vectors)
    parts = _Components(n)
    if n == 0:
        return np.zeros(0, np.int64)
    cover = None
    if metric != "cosine" or _unit_rows(vectors):
        space = _Space(vectors, metric, threshold)
        cover = space.cover_groups(probe=COVER_PROBE)
    if cover is None:
        for rows, nbr in radius_pair_chunks(vectors, vectors, metric, threshold):
            parts.add(rows, nbr)
        return parts.labels()
    leader, group, radius = cover
    parts.add(np.arange(n), leader[group])
    size = np.bincount(group, minlength=len(leader))
    radius[size == 1] = 0.0  # a group of one has no member to find beyond its leader
    band = _Band(n, leader, parts)
    _link_to_leaders(space, leader, size, radius, parts, band)
    _check_members(space, band, group, size, parts)
    return parts.labels()


def _link_to_leaders(space: _Space, leader, size, radius, parts: _Components, band) -> None:
    """Every row searched against the leaders (a search per tier of group radius, so that a
    tight group is searched no wider than it needs): links by the rule go to ``parts``, and
    groups whose members may still be within reach go to ``band``."""
    edges = np.linspace(0.0, space.cover, RADIUS_TIERS + 1)
    tier = np.clip(np.searchsorted(edges, radius, side="left") - 1, 0, RADIUS_TIERS - 1)
    for t in range(RADIUS_TIERS):
        groups = np.flatnonzero(tier == t)
        if not len(groups):
            continue
        index = space.index(leader[groups])
        reach = space.reach + float(radius[groups].max())
        for rows, pos, score in _range_blocks(index, space.x, space.radius(reach)):
            g = groups[pos]
            link = space.links(rows, leader[g], score)
            parts.add(rows[link], leader[g[link]])
            maybe = ~link & (size[g] > 1) & (space.low(score) <= space.reach + radius[g])
            band.add(rows[maybe], g[maybe])


class _Band:
    """(row, group) pairs where the row may link to a member of the group: int32 where rows
    fit, and pruned of the pairs that the links found so far have joined whenever they pass
    ``PAIRS_PER_SEARCH`` (300,000 template ads held 3.3 GB of them unpruned)."""

    def __init__(self, n: int, leader: np.ndarray, parts: _Components) -> None:
        self.leader, self.parts = leader, parts
        self.dtype = np.int32 if n < 2**31 else np.int64
        self.rows: list[np.ndarray] = []
        self.groups: list[np.ndarray] = []
        self.held, self.limit = 0, PAIRS_PER_SEARCH

    def add(self, rows: np.ndarray, groups: np.ndarray) -> None:
        self.rows.append(rows.astype(self.dtype))
        self.groups.append(groups.astype(self.dtype))
        self.held += len(rows)
        if self.held > self.limit:
            self.prune()
            self.limit = max(PAIRS_PER_SEARCH, 2 * self.held)

    def prune(self) -> tuple[np.ndarray, np.ndarray]:
        """The pairs not yet joined, as (rows, groups)."""
        labels = self.parts.labels()
        rows = np.concatenate(self.rows) if self.rows else np.zeros(0, self.dtype)
        groups = np.concatenate(self.groups) if self.groups else np.zeros(0, self.dtype)
        keep = labels[rows] != labels[self.leader[groups]]
        self.rows, self.groups, self.held = [rows[keep]], [groups[keep]], int(keep.sum())
        return self.rows[0], self.groups[0]


def _check_members(space: _Space, band: _Band, group, size, parts: _Components) -> None:
    """Each band row checked by the rule against the members of its group, a group at a
    time, skipping rows that links found meanwhile have joined to the group."""
    xs, gs = band.prune()
    if not len(xs):
        return
    members = np.argsort(group, kind="stable")
    first = np.concatenate([[0], np.cumsum(size)])
    order = np.argsort(gs, kind="stable")
    xs, gs = xs[order], gs[order]
    cuts = np.flatnonzero(np.diff(gs)) + 1
    labels, checked = parts.labels(), 0
    for x_rows, g in zip(np.split(xs, cuts), gs[np.concatenate([[0], cuts])]):
        x_rows = x_rows[labels[x_rows] != labels[band.leader[g]]]
        if not len(x_rows):
            continue
        m = members[first[g] : first[g + 1]]
        a, b = radius_pairs(space.x[x_rows], space.x[m], space.metric, space.threshold)
        parts.add(x_rows[a], m[b])
        checked += len(x_rows) * len(m)
        if len(a) and checked > PAIRS_PER_SEARCH:
            labels, checked = parts.labels(), 0


def _star(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Links from each row to the first row of its component (``_Components.labels``)."""
    joined = np.flatnonzero(labels != np.arange(len(labels)))
    return joined, labels[joined]


def _signal_links(
    name: str, vecs: np.ndarray, metric: str, threshold: float, keys, links
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of ``vecs`` rows that join the same components as the signal's links do. With
    content ``keys`` and a ``LinkCache``: rows of one content are linked to each other, links
    between contents the cache saw are taken from it, only new contents are searched (against
    all of them), and this queue's links are stored for the next sweep unless there are more
    than ``STORED_LINKS_PER_CONTENT`` per content (the next sweep then searches them all)."""
    if keys is None or links is None:
        return _star(radius_components(vecs, metric, threshold))
    first: dict[str, int] = {}
    rep_of = np.array([first.setdefault(k, r) for r, k in enumerate(keys)], np.int64)
    contents, rep_rows = list(first), np.array(list(first.values()), np.int64)
    known = links.known(name)
    new = np.flatnonzero([k not in known for k in contents])
    ca, cb = links.edges(name, {k: j for j, k in enumerate(contents)})
    parts = _Components(len(contents))
    parts.add(ca, cb)
    kept, cap = [(ca, cb)], STORED_LINKS_PER_CONTENT * len(contents)
    for qa, qb in radius_pair_chunks(vecs[rep_rows[new]], vecs[rep_rows], metric, threshold):
        a, b = new[qa], qb
        parts.add(a[a != b], b[a != b])
        kept.append((a[a != b], b[a != b]))
        if sum(len(k[0]) for k in kept) > cap:
            kept = None
            break
    if kept is None:
        # Too dense to store: the components of every content, without every link.
        links.skip(name)
        a, b = _star(radius_components(vecs[rep_rows], metric, threshold))
    else:
        links.put(
            name,
            contents,
            np.concatenate([k[0] for k in kept]),
            np.concatenate([k[1] for k in kept]),
        )
        a, b = parts.links()
    # Rows of one content link to each other as a search would link them (itself within t).
    same = np.arange(len(keys))
    if (
        len(rep_rows)
        and len(radius_pairs(vecs[rep_rows[:1]], vecs[rep_rows[:1]], metric, threshold)[0]) == 0
    ):
        same = np.zeros(0, np.int64)
    return (
        np.concatenate([rep_rows[a], rep_of[same]]),
        np.concatenate([rep_rows[b], same]),
    )


def link_campaigns(
    vectors: Mapping[str, tuple[np.ndarray, np.ndarray]],
    metrics: Mapping[str, str],
    n_items: int,
    thresholds: Mapping[str, float] | None = None,
    keys: Mapping[str, list[str]] | None = None,
    links=None,
) -> np.ndarray:
    """Component label per item (0..n_items-1) from the union of every signal's radius graph.

    ``vectors[signal] = (positions, vectors)``: which of the ``n_items`` items the signal has a
    vector for (an item without that modality simply has no link through it). Signals without a
    threshold are not used. ``keys[signal]``: the content key of each of those vectors
    (index/standing.py) and ``links`` a ``rank.sweep_cache.LinkCache``: links between contents
    the last sweep saw are reused (see the module docstring).
    """
    thresholds = CAMPAIGN_THRESHOLDS if thresholds is None else thresholds
    graph = sparse.coo_matrix((n_items, n_items), dtype=np.int8).tocsr()
    for name, (positions, vecs) in vectors.items():
        if name not in thresholds or len(positions) == 0:
            continue
        sig_keys = (keys or {}).get(name)
        rows, cols = _signal_links(name, vecs, metrics[name], thresholds[name], sig_keys, links)
        positions = np.asarray(positions, np.int64)
        graph = (
            graph
            + sparse.coo_matrix(
                (np.ones(len(rows), np.int8), (positions[rows], positions[cols])),
                shape=(n_items, n_items),
            ).tocsr()
        )
    _, labels = connected_components(graph, directed=False)
    return labels


def queue_vectors(
    index: InventoryIndex, item_ids: list[str]
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str], dict[str, list[str]]]:
    """Each signal's vectors for the queue's items, each signal's metric, and (where the index
    is a standing index's version) each of those vectors' content key."""
    out, metrics, keys = {}, {}, {}
    for name, si in index.signals.items():
        pos_of = {item_id: p for p, item_id in enumerate(si.ids)}
        have = [(q, pos_of[i]) for q, i in enumerate(item_ids) if i in pos_of]
        queue_pos = np.array([q for q, _ in have], np.int64)
        index_pos = np.array([p for _, p in have], np.int64)
        vecs = np.asarray(si.vectors[index_pos.tolist()]) if len(have) else np.zeros((0, 1))
        out[name] = (queue_pos, vecs)
        metrics[name] = si.signal.metric
        stored = content_keys(si)
        if stored is not None:
            keys[name] = [stored[p] for p in index_pos]
    return out, metrics, keys


_DIGIT_RUNS = re.compile(r"(\d+)")


def anchor_order(item_id: object) -> tuple:
    """The order in which a campaign's first member names it: digit runs compared as numbers
    ("ad-99" before "ad-100", as ids that count up are issued), then the id as text (so
    "ad-07" and "ad-7" are not equal). Written here: one sort key, not worth a dependency.

    >>> sorted(["ad-100", "ad-99", "b-1", "ad-7", "ad-1²"], key=anchor_order)
    ['ad-1²', 'ad-7', 'ad-99', 'ad-100', 'b-1']
    """
    text = str(item_id)
    parts = _DIGIT_RUNS.split(text)
    # (isdecimal: "²" is a digit to isdigit, and int() refuses it: a reviewer's find)
    return tuple((0, int(t), "") if t.isdecimal() else (1, 0, t) for t in parts), text


def campaign_ids(labels, item_ids: list) -> list[str]:
    """Each row's ``campaign_id``: ``c-`` and the item id first in ``anchor_order`` of the
    rows with its label (any hashable: a component number, an earlier campaign id).

    The representative (the riskiest member) named campaigns before, and the name followed
    the ranks: on ``benchmarks/incremental.py``'s days 0 and 1, 10% of the rows queued on both
    days moved to another campaign id, though 96% kept the same members
    (benchmarks/results/incremental*.md, "campaign ids kept")."""
    first: dict = {}
    for lab, item_id in zip(labels, item_ids):
        if lab not in first or anchor_order(item_id) < anchor_order(first[lab]):
            first[lab] = item_id
    return [f"c-{first[lab]}" for lab in labels]


def add_campaign_columns(queue: pa.Table, labels: np.ndarray) -> pa.Table:
    """``campaign_id`` / ``campaign_size`` / ``campaign_rank`` for a queue in rank order."""
    ids = queue.column("item_id").to_pylist()
    rank = np.zeros(len(ids), np.int64)
    seen: dict[int, int] = {}
    for q, lab in enumerate(labels):  # queue order = riskiest first: first seen represents
        seen[int(lab)] = seen.get(int(lab), 0) + 1
        rank[q] = seen[int(lab)]
    cols = {
        "campaign_id": pa.array(campaign_ids(labels, ids), pa.string()),
        "campaign_size": pa.array([seen[int(lab)] for lab in labels], pa.int64()),
        "campaign_rank": pa.array(rank, pa.int64()),
    }
    for name, col in cols.items():
        if name in queue.column_names:
            queue = queue.drop([name])
        queue = queue.append_column(name, col)
    return queue


def campaign_view(queue: pa.Table) -> pa.Table:
    """Campaign mode: one row per campaign (its representative) with ``campaign_members`` and,
    in the same order, what the members' own rows would have said where the queue has it:
    ``campaign_members_text_sha256`` (a campaign verdict is stored on a member only if its
    text is still the one swept, as an item verdict is) and
    ``campaign_members_previous_verdict`` (a member re-reviewed after an edit, whose earlier
    verdict was the opposite of the representative's, was hidden behind the representative's
    row: an outsider's report)."""
    cids_of_rows = queue["campaign_id"].to_pylist()
    reps = queue.filter(pa.compute.equal(queue["campaign_rank"], 1))
    cids = reps["campaign_id"].to_pylist()
    for name, source, kind in (
        ("campaign_members", "item_id", pa.string()),
        (MEMBER_DIGESTS, "text_sha256", pa.string()),
        (MEMBER_VERDICTS, "previous_verdict", pa.int8()),
    ):
        if source not in queue.column_names:
            continue
        lists: dict[str, list] = {}
        for cid, value in zip(cids_of_rows, queue[source].to_pylist()):
            lists.setdefault(cid, []).append(value)
        reps = reps.append_column(name, pa.array([lists[c] for c in cids], pa.list_(kind)))
    return reps


def find_campaigns(
    queue: pa.Table,
    index: InventoryIndex,
    thresholds: Mapping[str, float] | None = None,
    links=None,
) -> pa.Table:
    """The queue (rank order, one row per item) with its campaign columns, linked through the
    vectors ``index`` holds for the queued items. ``links``: a ``rank.sweep_cache.LinkCache``
    (a standing index's sweeps), saved with this queue's links."""
    ids = queue.column("item_id").to_pylist()
    vecs, metrics, keys = queue_vectors(index, ids)
    labels = link_campaigns(vecs, metrics, len(ids), thresholds, keys, links)
    if links is not None:
        links.save()
    return add_campaign_columns(queue, by_policy(labels, queue.column("policy").to_pylist()))


def by_policy(labels: np.ndarray, policies: list) -> np.ndarray:
    """Linked items split by the policy each is queued under: a campaign is one decision
    under one policy. Across policies a spam campaign took in items queued under insult (an
    item reviewed for spam stays queued for insult), its verdict was given to them under
    spam, and members already reviewed for spam were listed again (an outsider's report).

    >>> by_policy(np.array([0, 0, 0, 1]), ["spam", "insult", "spam", "spam"]).tolist()
    [0, 1, 0, 2]
    """
    out: dict[tuple[int, object], int] = {}
    return np.array(
        [out.setdefault((int(lab), pol), len(out)) for lab, pol in zip(labels, policies)],
        np.int64,
    )

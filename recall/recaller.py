"""Seeds in, candidate table out.

For every policy and signal: the seeds query the index for their ``k`` nearest items; the union
of those items becomes the policy's candidates; then exact evidence is computed between every
candidate and every seed from the stored vectors, so a candidate found by one seed (or one
signal) still gets its similarity to all the others.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskrank.index import progress
from riskrank.index.run_log import get_logger
from riskrank.index.schema import ITEM_ID, TEXT
from riskrank.index.signals.base import CandidateMatch, Signal, SignalBatch
from riskrank.index.store import InventoryIndex, SignalIndex
from riskrank.index.tables import TableLike
from riskrank.index.vectors.faiss_index import is_compressed, order_ties_by_position
from riskrank.recall.allowlist import benign_evidence
from riskrank.recall.candidates import (
    KEY_COLUMNS,
    MATCH_EVIDENCE,
    NEIGHBOURHOOD_EVIDENCE,
    candidate_schema,
    seed_evidence_name,
)
from riskrank.recall.history import ReviewedExemplars
from riskrank.recall.lexical import LexicalProbe, ProbeScores
from riskrank.recall.neighbours import (
    NeighbourMemo,
    SignalNeighbours,
    found_products,
    fresh_index,
    pair_inner_products,
)
from riskrank.recall.seeds import SeedSet, check_seed_vectors

log = get_logger(__name__)

DENSITY_K = 10
MARGIN = 8  # neighbours fetched beyond DENSITY_K: float32 proposes, float64 decides
STORED = DENSITY_K + 4  # neighbours kept for the next sweep (recall/neighbours.py)
# What a stored neighbourhood means (recall/neighbours.py): change it when the rule changes.
NEIGHBOUR_RULES = {
    "k": DENSITY_K,
    "stored": STORED,
    "similarity": "float32 proposal, float64 pair",
}
# Items a signal's similarity background holds: all of an inventory up to this size, a sample
# by id above it (``background_positions``). 2,048 made the shipped sets (2,647 and 2,796
# items) one arbitrary sample each: another draw moved Insults' replay by 15 decisions.
BACKGROUND_SAMPLE = 8192
# Neighbours per seed and signal, the one default of the library and the CLI: inventories of up
# to 5,000 items are covered whole; past that, each seed's 5,000 nearest (k=None: every item).
DEFAULT_K = 5000
# Bound on FAISS's float32 inner product of two unit vectors against the float64 one: each of
# the d products and partial sums rounds by ~6e-8 relative (d=512: < 4e-5 in the worst case;
# observed ~1e-7). A float32 score this far below a level is below it in float64 too (scaled by
# the product of the two vectors' norms where that exceeds 1).
FLOAT32_SLACK = 1e-3
TIED_SIMILARITY = 1e-6  # similarities this close rank alike in a seed's neighbour list


def _thresholds(si: SignalIndex) -> tuple[float, float]:
    return tuple(si.signal.match_thresholds)


def background_positions(ids, size: int | None = None, seed: int = 0) -> np.ndarray:
    """Positions of the items drawn as a signal's similarity background (the z-scores'
    mean and spread): all of them up to ``size``, else the ``size`` whose ids hash lowest
    under ``seed``. The same inventory in another row order draws the same items: drawn by
    position, a shuffled 2,796-row inventory moved ``text_best_sim_z`` by up to 0.75 of a
    standard deviation and 4 of the queue's top 200 rows (outsider CD). pandas' hash_array:
    vectorised SipHash, the same on every machine."""
    n, size = len(ids), BACKGROUND_SAMPLE if size is None else size
    if n <= size:
        return np.arange(n)
    from pandas.util import hash_array

    hashed = hash_array(np.asarray(ids, dtype=object), hash_key=f"riskrank{seed:08d}")
    return np.sort(np.argpartition(hashed, size - 1)[:size])


class _SignalState:
    """Per-signal lookups reused across policies."""

    def __init__(
        self, si: SignalIndex, seed: int = 0, memo: SignalNeighbours | None = None
    ) -> None:
        self.si = si
        # recall/neighbours.py: the last sweep's neighbours (where its index can take part:
        # ``NeighbourMemo.for_signal`` gives None elsewhere)
        self.memo = memo
        self.vectors = si.vectors
        self.pos_of = {item_id: i for i, item_id in enumerate(si.ids)}
        n = len(si.ids)
        self.background = np.asarray(self.vectors[background_positions(si.ids, seed=seed)])
        # Per position: how many of its DENSITY_K nearest reach ``hi`` and their mean
        # similarity (``fill_density``); -1 / NaN until computed. Arrays, not a dict: a sweep
        # reads them for every candidate of every policy.
        self.density_count = np.full(n, -1, np.int64)
        self.density_mean = np.full(n, np.nan)
        # Item-level evidence a signal recorded at index time (``SignalBatch.evidence``), handed
        # back to the signal by its own key.
        ev = si.evidence if hasattr(si, "evidence") else None
        self.item_evidence = {
            c: ev.column(c).to_numpy(zero_copy_only=False)
            for c in (ev.column_names if ev is not None else [])
            if c != ITEM_ID
        }

    def similarity(self, q: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.si.signal.similarity(q, items)

    def _every_item(self, q: np.ndarray, block: int = 262_144) -> np.ndarray:
        """Every item's position, best first, from the stored vectors. ``k=None`` promises
        every indexed item; an IVF index searched for all of them still visits only
        ``nprobe`` of its lists (a 300,000-ad sweep with ``--k all`` recalled 9.4% of them)."""
        n = self.si.index.ntotal
        sims = np.empty((len(q), n), np.float32)
        for a in range(0, n, block):
            sims[:, a : a + block] = self.similarity(q, np.asarray(self.vectors[a : a + block]))
        return np.argsort(-sims, axis=1, kind="stable")

    def neighbours(self, q: np.ndarray, k: int) -> np.ndarray:
        """Positions of each seed query's ``k`` nearest items, best first (ties by position).

        An exact index is searched. An approximate one (IVF, binary IVF, SQ/PQ) is not: the
        seeds are few and their lists deep, so each is scored against every stored vector
        (``_exact_top_k``). Searched through the index, ``IVF512,Flat`` at its default nprobe
        (16 of 512 lists) returned 67-71% of each seed's true 5,000 nearest items at 300,000
        items, and a standing index and a rebuild of the same day disagreed on a quarter of
        their queues (an outsider's run); its own check, recall@10, read 0.996. The index
        still serves the small-k searches made for every candidate (density, campaigns).
        """
        key = getattr(self.si.index, "key", "")
        if k >= self.si.index.ntotal and (key.startswith(("IVF", "BIVF")) or is_compressed(key)):
            return self._every_item(q)
        if key.startswith(("IVF", "BIVF")) or is_compressed(key):
            return self._exact_top_k(q, k)
        return self.si.index.search(q, k).positions

    def _exact_top_k(
        self, q: np.ndarray, k: int, block: int = 65_536, among: np.ndarray | None = None
    ) -> np.ndarray:
        """Each query's ``k`` best positions over the stored vectors (``among``: over these
        positions only, ascending), best first, ties by position (``order_ties_by_position``,
        as an exact index orders them), a block of vectors at a time: the memory held is the
        block and each query's best ``k``, not a query x inventory matrix."""
        best_s = np.empty((len(q), 0), np.float32)
        best_p = np.empty((len(q), 0), np.int64)
        n = self.si.index.ntotal if among is None else len(among)
        for a in range(0, n, block):
            where = np.arange(a, min(a + block, n)) if among is None else among[a : a + block]
            sims = np.asarray(self.similarity(q, np.asarray(self.vectors[where])))
            positions = np.broadcast_to(where, sims.shape)
            s, p = order_ties_by_position(
                np.concatenate([best_s, sims], axis=1), np.concatenate([best_p, positions], axis=1)
            )
            best_s, best_p = s[:, :k], p[:, :k]
        return best_p

    def fill_density(self, positions: np.ndarray, hi: float) -> None:
        """Neighbourhood of each position, computed once per item for all policies: its
        ``DENSITY_K`` nearest other items (recall/neighbours.py: the last sweep's where they
        still hold, merged with the nearest of the items new since then)."""
        positions = np.asarray(positions, np.int64)
        todo = positions[self.density_count[positions] < 0]
        if self.memo is not None and len(todo):
            todo = self._merge_stored(todo, hi)
        # A few more than needed: the float64 similarities decide which DENSITY_K they are,
        # and the first STORED of them are kept for the next sweep.
        fetch = DENSITY_K + 1 + (MARGIN if self.rescore else 0)
        for start in range(0, len(todo), 4096):
            chunk = todo[start : start + 4096]
            res = self.si.index.search(np.asarray(self.vectors[chunk]), fetch)
            nbrs = np.where(res.positions == chunk[:, None], -1, res.positions)
            scores = self._pair_scores(chunk, nbrs) if self.rescore else res.scores
            nbrs, scores = _best_first(nbrs, scores)
            self._set_density(chunk, nbrs, scores, hi)
            if self.memo is not None:
                found = (nbrs >= 0).sum(1)
                # Complete to the STORED-th (the rest is margin); everything, if all was found.
                whole = found < fetch - 1
                last = min(STORED, fetch) - 1  # FAISS returns fewer columns on a tiny index
                level = scores[:, last] if scores.shape[1] > last else -np.inf
                levels = np.where(whole, -np.inf, level)
                self.memo.record(chunk, nbrs, scores, np.minimum(found, STORED), levels)

    @property
    def rescore(self) -> bool:
        """Similarities computed pair by pair in float64 (cosine signals)."""
        return self.si.signal.metric == "cosine"

    def _pair_scores(self, rows: np.ndarray, nbrs: np.ndarray) -> np.ndarray:
        """Float64 inner product of each row's vector with each of its ``nbrs`` (-1: none),
        pair by pair: a value does not depend on the other pairs computed with it."""
        return found_products(
            lambda a, b: self.vectors[rows[a:b].tolist()],
            lambda p: self.vectors[p.tolist()],
            nbrs,
        )

    def _sparse_pair_scores(self, rows: np.ndarray, nbrs: np.ndarray) -> np.ndarray:
        """``_pair_scores`` computing only the pairs that exist (-1: none, -inf), for lists
        mostly empty: the same float64 values (``pair_inner_products``, test_neighbours)."""
        out = np.full(nbrs.shape, -np.inf)
        r, c = np.nonzero(nbrs >= 0)
        if len(r):
            a = np.asarray(self.vectors[rows[r].tolist()])
            b = np.asarray(self.vectors[nbrs[r, c].tolist()])
            out[r, c] = pair_inner_products(a, b)
        return out

    def _set_density(self, rows: np.ndarray, nbrs: np.ndarray, scores, hi: float) -> None:
        """From each row's neighbours, best first (-1: none): how many of the first
        ``DENSITY_K`` reach ``hi``, and their mean."""
        top = np.asarray(scores, np.float64)[:, :DENSITY_K]
        valid = nbrs[:, :DENSITY_K] >= 0
        n_valid = valid.sum(1)
        total = np.where(valid, top, 0.0).sum(1)
        self.density_count[rows] = (valid & (top >= hi)).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.density_mean[rows] = np.where(n_valid > 0, total / n_valid, np.nan)

    def density(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``fill_density``'s count and mean similarity of each of ``positions``."""
        return self.density_count[positions].astype(np.float64), self.density_mean[positions]

    def _merge_stored(self, todo: np.ndarray, hi: float) -> np.ndarray:
        """Neighbourhoods of ``todo`` from the stored lists merged with the nearest fresh items,
        where that is exact; returns the positions left to search whole."""
        memo = self.memo
        rows, nbrs, scores, level = memo.stored(todo, STORED)
        if not len(rows):
            return todo
        fresh = memo.fresh
        if len(fresh):
            new = np.ascontiguousarray(self.vectors[fresh.tolist()], np.float32)
            # Exact, or an IVF index probing the lists the whole index would (fresh_index).
            index = fresh_index(self.si, new)
            fetch = min(DENSITY_K + MARGIN, len(fresh))
            q = np.asarray(self.vectors[rows.tolist()], np.float32)
            proposed, found = index.search(q, fetch)
            # Only a fresh item that float32 puts within its rounding of a row's level can
            # enter its list (or raise the level below): the others are left out unscored.
            # Scoring all 18 per row re-read ~250,000 vectors on a 21,000-item daily sweep.
            # The rounding grows with the vectors' norms (1 for a cosine signal's, unless a
            # plug-in's are not): the slack grows with them.
            norms = np.linalg.norm(q, axis=1) * np.linalg.norm(new, axis=1).max()
            slack = FLOAT32_SLACK * np.maximum(1.0, norms)
            near = (found >= 0) & (proposed >= level[:, None] - slack[:, None])
            extra = np.where(near, fresh[np.maximum(found, 0)], -1)
            extra_scores = self._sparse_pair_scores(rows, extra)
            extra, extra_scores = _best_first(extra, extra_scores)
            if fetch < len(fresh):  # complete to the STORED-th fresh item (the rest: margin)
                level = np.maximum(level, extra_scores[:, min(STORED, fetch) - 1])
            nbrs = np.concatenate([nbrs, extra], axis=1)
            scores = np.concatenate([scores, extra_scores], axis=1)
        nbrs, scores = _best_first(nbrs, scores)
        # Exact down to ``level``: enough there for DENSITY_K, or search the item whole.
        enough = ((nbrs >= 0) & (scores >= level[:, None])).sum(1)
        ok = enough >= DENSITY_K
        self._set_density(rows[ok], nbrs[ok], scores[ok], hi)
        count = np.minimum(enough[ok], STORED)
        kept_level = np.where(enough[ok] > STORED, scores[ok][:, STORED - 1], level[ok])
        memo.record(rows[ok], nbrs[ok], scores[ok], count, kept_level)
        return np.setdiff1d(todo, rows[ok])


def _best_first(nbrs: np.ndarray, scores) -> tuple[np.ndarray, np.ndarray]:
    """Each row's neighbours by score, best first, equal scores by position, none (-1) last."""
    scores = np.where(nbrs >= 0, np.asarray(scores, np.float64), -np.inf)
    order = np.lexsort((np.where(nbrs >= 0, nbrs, np.iinfo(np.int64).max), -scores), axis=1)
    return np.take_along_axis(nbrs, order, axis=1), np.take_along_axis(scores, order, axis=1)


def checked_signal_evidence(signal: Signal, match: CandidateMatch) -> dict[str, np.ndarray]:
    """The signal's own evidence, checked against what it declares (a plug-in's mistake is
    named here, not found later as a missing ranker feature)."""
    values = signal.candidate_evidence(match)
    declared = [c.suffix for c in signal.evidence_columns]
    if sorted(values) != sorted(declared):
        raise ValueError(
            f"signal {signal.name!r} ({type(signal).__name__}): candidate_evidence returned "
            f"{sorted(values)}, but evidence_columns declares {declared}"
        )
    n = len(match.items)
    for suffix, v in values.items():
        if np.shape(v) != (n,):
            raise ValueError(
                f"signal {signal.name!r}: evidence {suffix!r} has shape {np.shape(v)}, "
                f"expected ({n},) (one value per candidate)"
            )
    return values


def _seed_evidence(
    state: _SignalState,
    q: np.ndarray,
    seed_ids: list[str],
    cand_pos: np.ndarray,
    ann: np.ndarray,
    k: int,
) -> dict[str, np.ndarray]:
    """Evidence columns of one signal for candidates at ``cand_pos`` (-1 = no vector): recall's
    own (closeness to seeds, neighbourhood), then the signal's (``Signal.candidate_evidence``)."""
    signal = state.si.signal
    name = signal.name
    lo, hi = _thresholds(state.si)
    n = len(cand_pos)
    have = cand_pos >= 0
    suffixes = [
        *(c.suffix for c in MATCH_EVIDENCE),
        *(c.suffix for c in signal.evidence_columns),
        *(c.suffix for c in NEIGHBOURHOOD_EVIDENCE),
    ]
    out = {seed_evidence_name(name, s): np.full(n, np.nan, np.float32) for s in suffixes}
    best_seed = np.full(n, None, dtype=object)
    if have.any():
        pos = cand_pos[have]
        items = np.asarray(state.vectors[pos])
        sims = state.similarity(q, items)  # (n_seeds, n_have)
        order = np.sort(sims, axis=0)[::-1]
        best_j = sims.argmax(0)
        # In float64 over the sorted values: the same mean and spread whatever the order of
        # the background's rows (float32 sums in another order moved z-scores by 5e-6).
        bg = np.sort(np.asarray(state.similarity(q, state.background), np.float64), axis=1)
        mu, sd = bg.mean(1, keepdims=True), bg.std(1, keepdims=True) + 1e-6
        # Rank of each candidate in each seed's ANN list (k + 1 where absent). A run of equal
        # similarities shares its first place: the index lists exact copies of one ad in the
        # inventory's row order, and a copy's evidence must not depend on that. "Equal" is
        # within TIED_SIMILARITY: the same vectors' similarities differ in the last bits
        # between engines (the Ray engine's shards batch them differently).
        rank = np.full(sims.shape, k + 1, np.int32)
        lookup = {int(p): c for c, p in enumerate(pos)}
        for j, row in enumerate(ann):
            run_sim, run_rank = np.inf, 0
            for r, p in enumerate(row):
                c = lookup.get(int(p))
                if c is None:
                    continue
                if abs(sims[j, c] - run_sim) > TIED_SIMILARITY:
                    run_sim, run_rank = sims[j, c], r + 1
                rank[j, c] = run_rank
            # A candidate the list left out (cut at k, or found by another seed or by
            # ``include``) that ties its last run shares that run's place: which of equal
            # copies the cut kept is the index's row order (an exact copy of a seed added at
            # training ranked k + 1 at similarity 1.0: a reviewer's finding).
            if run_rank:
                tied = (rank[j] == k + 1) & (np.abs(sims[j] - run_sim) <= TIED_SIMILARITY)
                rank[j, tied] = run_rank
        cols = {
            "best_sim": order[0],
            "top3_mean": order[: min(3, len(order))].mean(0),
            "n_seeds_hi": (sims >= hi).sum(0),
            "n_seeds_lo": (sims >= lo).sum(0),
            "best_rank": rank[best_j, np.arange(len(pos))],
            "best_sim_z": ((sims - mu) / sd).max(0),
        }
        recorded = {key: values[pos] for key, values in state.item_evidence.items()}
        cols.update(checked_signal_evidence(signal, CandidateMatch(q, items, sims, recorded)))
        state.fill_density(pos, hi)
        cols["density"], cols["neighbour_sim"] = state.density(pos)
        for suffix, values in cols.items():
            out[seed_evidence_name(name, suffix)][have] = values
        best_seed[have] = np.asarray(seed_ids, dtype=object)[best_j]
    out[f"{name}_best_seed_id"] = best_seed
    return out


def texts_of(items: pa.Table, ids) -> list[str | None]:
    """The ``text`` of each of ``ids`` (None where absent), looked up in Arrow: a dict of every
    item's id and text cost ~0.4 KB per inventory item (1M items: ~400 MB) to serve the few
    thousand candidates a policy recalls."""
    item_ids = pc.cast(items.column(ITEM_ID), pa.string()).combine_chunks()
    where = pc.index_in(pa.array([str(i) for i in ids], pa.string()), value_set=item_ids)
    return items.column(TEXT).take(where).to_pylist()


def _neighbours(
    states: dict[str, _SignalState],
    batches: Mapping[str, SignalBatch],
    rows: np.ndarray,
    k: int | None,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]], np.ndarray]:
    """For one policy's seed ``rows``: per signal, the query vectors of the seeds that have its
    modality, those rows, their ``k`` nearest positions and that ``k`` (None: every item); and
    the union of the items found, in the order first found (signal by signal)."""
    per_signal = {}
    cand_ids: dict[str, None] = {}
    for name, state in states.items():
        b = batches[name]
        ok_rows = rows[b.ok[rows]]
        if len(ok_rows) == 0 or state.si.index.ntotal == 0:
            continue
        q = np.ascontiguousarray(b.vectors[ok_rows])
        k_sig = state.si.index.ntotal if k is None else k
        ann = state.neighbours(q, k_sig)
        per_signal[name] = (q, ok_rows, ann, k_sig)
        for p in np.unique(ann[ann >= 0]):
            cand_ids.setdefault(state.si.ids[p], None)
    return per_signal, np.asarray(list(cand_ids), dtype=object)


def _closest_seed_fields(
    cols: dict[str, object], signals: list[str], seeds: pa.Table, rows: np.ndarray
) -> None:
    """``severity`` and ``action`` of each candidate's closest seed under the first signal
    that has evidence; without one, the policy's highest severity and first action."""
    seed_ids = seeds.column("seed_id").to_pylist()
    severity = np.asarray(seeds.column("severity").to_pylist())
    action = np.asarray(seeds.column("action").to_pylist(), dtype=object)
    first_best = next(
        (cols[f"{n}_best_seed_id"] for n in signals if f"{n}_best_seed_id" in cols), None
    )
    row_of = {s: r for r, s in enumerate(seed_ids)}
    sev = np.array([severity[row_of[s]] if s else severity[rows].max() for s in first_best])
    act = np.array([action[row_of[s]] if s else action[rows[0]] for s in first_best], dtype=object)
    cols["severity"] = sev.astype(np.int8)
    cols["action"] = act


def check_k(k: object) -> None:
    """``k`` (neighbours per seed and signal) is a positive whole number, or None for every
    indexed item: 0, -1 or True recalled a few items silently, 2.5 or "5" failed inside
    FAISS after the embedding."""
    whole = isinstance(k, numbers.Integral) and not isinstance(k, bool)
    if k is not None and (not whole or k <= 0):
        raise ValueError(f"k={k!r}: expected a positive number of neighbours (or None: all)")


def recall(
    index: InventoryIndex,
    seeds: SeedSet | TableLike,
    *,
    k: int | None = DEFAULT_K,
    exemplars: Mapping[str, ReviewedExemplars] | None = None,
    exclude_self: bool = False,
    lexical: LexicalProbe | None = None,
    seed_vectors: Mapping[str, SignalBatch] | None = None,
    show_progress: bool = True,
    neighbours: NeighbourMemo | None = None,
    unusable_seeds: str = "refuse",
    include: Mapping[str, Sequence[str]] | None = None,
) -> pa.Table:
    """Recall inventory resembling ``seeds``: one candidate row per (item, policy).

    ``include``: per policy, items among which each of its seeds' ``k`` nearest are its
    candidates too, however many other items are nearer (after those recalled; one absent
    from a seed's list ranks ``k + 1`` there). Training passes each policy's own reviewed
    items: recalled from one history index shared by all policies, they were crowded out of
    its seeds' ``k`` nearest as another policy's reviews grew (an outsider's week: 700 insult
    reviews, 185 -> 98 training rows). Bounded as recall is: seeds x ``k`` per policy.

    ``unusable_seeds``: ``"refuse"`` a seed none of whose content a signal can use
    (``check_seed_vectors``), or ``"warn"`` and recall without it.

    ``k``: neighbours fetched per seed and signal; an item no seed has among its ``k``
    nearest is not a candidate (None: every indexed item is one). ``exemplars``: reviewed
    history per signal (adds ``hist_*`` evidence). ``lexical``: n-gram probe trained on
    reviewed text (adds ``hist_lexical_probe_score``). ``exclude_self``: leave each item's
    own review out (training).
    ``seed_vectors``: precomputed ``embed_queries`` output per signal, rows aligned with the
    seed table (skips re-encoding in repeated experiments). ``neighbours``: the last sweep's
    neighbourhoods over this standing index (recall/neighbours.py); this call's are recorded in
    it (the caller saves it).

    >>> cands = recall(InventoryIndex.load("runs/idx"), seeds, k=500)   # doctest: +SKIP
    >>> cands.to_pandas().sort_values("text_best_sim", ascending=False).head()  # doctest: +SKIP
    """
    check_k(k)
    seeds = seeds if isinstance(seeds, SeedSet) else SeedSet.from_table(seeds)
    states = {
        name: _SignalState(si, memo=neighbours.for_signal(name, si) if neighbours else None)
        for name, si in index.signals.items()
    }
    batches = _seed_batches(states, seeds, seed_vectors)
    signals = [state.si.signal for state in states.values()]
    for warning in check_seed_vectors(seeds, batches, signals, refuse=unusable_seeds != "warn"):
        log.warning(warning)
    run = _RecallRun(
        index=index,
        seeds=seeds,
        states=states,
        batches=batches,
        k=k,
        exemplars=exemplars or {},
        exclude_self=exclude_self,
        lexical=lexical if TEXT in index.items.column_names else None,
        probe_scores=ProbeScores(lexical, seeds.policies) if lexical is not None else None,
        seed_ids=np.asarray(seeds.table.column("seed_id").to_pylist(), dtype=object),
        include=include or {},
    )
    tables = []
    for policy in progress.bar(seeds.policies, show=show_progress, desc="recall", unit="policy"):
        table = _recall_policy(run, policy)
        if table is not None:
            tables.append(table)
    return _finish(tables, index)


@dataclass(frozen=True)
class _RecallRun:
    """What every policy of one ``recall`` call shares."""

    index: InventoryIndex
    seeds: SeedSet
    states: dict[str, _SignalState]
    batches: dict[str, SignalBatch]  # seed vectors per signal, rows aligned with the seeds
    k: int | None
    exemplars: Mapping[str, ReviewedExemplars]
    exclude_self: bool
    lexical: LexicalProbe | None  # None also when the index holds no text
    probe_scores: ProbeScores | None  # the texts the probe scored, shared by the policies
    seed_ids: np.ndarray  # of the seed table's rows
    include: Mapping[str, Sequence[str]]  # per policy, items that are its candidates anyway


@dataclass
class _PolicyCandidates:
    """One policy's candidates and the evidence columns gathered for them, signal by signal."""

    policy: str
    ids: np.ndarray
    cols: dict[str, object]
    # Per candidate: seed id -> its similarity, for seeds matching at the weak threshold.
    matched: list[dict[str, float]]
    # Per signal that ran: which candidates its closest seed matches at the weak threshold.
    signal_matches: list[np.ndarray]


def _seed_batches(
    states: dict[str, _SignalState],
    seeds: SeedSet,
    seed_vectors: Mapping[str, SignalBatch] | None,
) -> dict[str, SignalBatch]:
    """Every signal's seed vectors: the caller's where given, else embedded here."""
    batches = dict(seed_vectors or {})
    for name, state in states.items():
        if name not in batches:
            batches[name] = state.si.signal.embed_queries(seeds.table, show_progress=False)
    return batches


def _recall_policy(run: _RecallRun, policy: str) -> pa.Table | None:
    """One policy's candidate rows (None when its seeds find nothing)."""
    policy_all = np.asarray(run.seeds.table.column("policy").to_pylist(), dtype=object)
    benign_all = run.seeds.benign  # the allowlist: evidence only, never queries
    rows = np.flatnonzero((policy_all == policy) & ~benign_all)
    benign_rows = np.flatnonzero((policy_all == policy) & benign_all)
    per_signal, ids = _neighbours(run.states, run.batches, rows, run.k)
    ids = _with_included(run, policy, per_signal, ids)
    if len(ids) == 0:
        return None
    cands = _PolicyCandidates(
        policy=policy,
        ids=ids,
        cols={ITEM_ID: ids, "policy": np.full(len(ids), policy, dtype=object)},
        matched=[dict() for _ in ids],
        signal_matches=[],
    )
    for name in run.states:
        if name in per_signal:
            _add_signal_evidence(run, cands, name, per_signal[name], benign_rows)
    cols = cands.cols
    if run.lexical is not None:
        texts = texts_of(run.index.items, ids)
        cols.update(
            run.lexical.evidence(
                policy, ids, texts, exclude_self=run.exclude_self, scores=run.probe_scores
            )
        )
    _closest_seed_fields(cols, list(run.states), run.seeds.table, rows)
    cols["matched_seed_ids"] = [
        [s for s, _ in sorted(m.items(), key=lambda kv: -kv[1])] for m in cands.matched
    ]
    hits = cands.signal_matches
    cols["n_signals_matched"] = np.sum(hits, axis=0).astype(np.int8) if hits else 0
    return pa.table(
        {
            name: pa.array(list(v) if isinstance(v, np.ndarray) and v.dtype == object else v)
            for name, v in cols.items()
        }
    )


def _with_included(
    run: _RecallRun, policy: str, per_signal: Mapping[str, tuple], ids: np.ndarray
) -> np.ndarray:
    """``ids``, then those of the policy's ``include`` items that some seed of it has among
    its ``k`` nearest of them (under a signal its seeds queried) and recall did not find,
    signal by signal, each in position order."""
    wanted = run.include.get(policy)
    if not wanted:
        return ids
    found = set(ids.tolist())
    more: dict[str, None] = {}
    for name, (q, _, _, k_sig) in per_signal.items():
        state = run.states[name]
        among = np.unique(
            np.array([state.pos_of[i] for i in wanted if i in state.pos_of], np.int64)
        )
        if len(among) > k_sig:
            among = np.unique(state._exact_top_k(q, k_sig, among=among))
        for p in among:
            item_id = state.si.ids[p]
            if item_id not in found:
                more.setdefault(item_id, None)
    return np.concatenate([ids, np.asarray(list(more), dtype=object)]) if more else ids


def _add_signal_evidence(
    run: _RecallRun,
    cands: _PolicyCandidates,
    name: str,
    found: tuple[np.ndarray, np.ndarray, np.ndarray, int],
    benign_rows: np.ndarray,
) -> None:
    """One signal's evidence for ``cands``: closeness to the policy's seeds, to its benign
    seeds and (with history) to reviewed items; and which seeds each candidate matches."""
    state, batch = run.states[name], run.batches[name]
    q, ok_rows, ann, k_sig = found
    cand_pos = np.array([state.pos_of.get(i, -1) for i in cands.ids], dtype=np.int64)
    ev = _seed_evidence(state, q, list(run.seed_ids[ok_rows]), cand_pos, ann, k_sig)
    cands.cols.update(ev)
    lo, _ = _thresholds(state.si)
    best = ev[seed_evidence_name(name, "best_sim")]
    ok_benign = benign_rows[batch.ok[benign_rows]]
    benign_q = np.ascontiguousarray(batch.vectors[ok_benign])
    cands.cols.update(
        benign_evidence(name, state.similarity, benign_q, state.vectors, cand_pos, best)
    )
    cands.signal_matches.append(np.nan_to_num(best, nan=-np.inf) >= lo)
    for c, sid in enumerate(ev[f"{name}_best_seed_id"]):
        if sid is not None and best[c] >= lo:
            cands.matched[c][sid] = max(cands.matched[c].get(sid, -np.inf), float(best[c]))
    if name in run.exemplars:
        cands.cols.update(_history_columns(run, cands, name, cand_pos, dim=q.shape[1]))


def _history_columns(
    run: _RecallRun, cands: _PolicyCandidates, name: str, cand_pos: np.ndarray, dim: int
) -> dict[str, np.ndarray]:
    """``hist_<signal>_*``: closeness of each candidate to the reviewed items of its policy
    (NaN / None for a candidate without this signal's vector)."""
    state = run.states[name]
    vecs = np.zeros((len(cands.ids), dim), np.float32)
    have = cand_pos >= 0
    vecs[have] = state.vectors[cand_pos[have]]
    hist = run.exemplars[name].evidence(
        cands.policy,
        cands.ids,
        vecs,
        exclude_self=run.exclude_self,
        near_copy_sim=_thresholds(state.si)[1],
    )
    out = {}
    for key, values in hist.items():
        if values.dtype == object:  # the closest reviewed item's id
            out[key] = np.where(have, values, None)
        else:
            out[key] = np.where(have, values, np.nan).astype(np.float32)
    return out


def _finish(tables: list[pa.Table], index: InventoryIndex) -> pa.Table:
    if not tables:
        return pa.table({ITEM_ID: pa.array([], pa.string()), "policy": pa.array([], pa.string())})
    table = pa.concat_tables(tables, promote_options="default")
    front = list(KEY_COLUMNS)
    # Conform to the written-down contract (numpy gives float64/object columns).
    signals = [
        si.signal
        for si in index.signals.values()
        if f"{si.signal.name}_best_seed_id" in table.column_names
    ]
    has_hist = any(n.startswith("hist_") for n in table.column_names)
    for field in candidate_schema(signals, has_hist):
        if field.name in table.column_names and table.schema.field(field.name).type != field.type:
            i = table.column_names.index(field.name)
            table = table.set_column(i, field.name, table.column(field.name).cast(field.type))
    table = table.select(front + [c for c in table.column_names if c not in front])
    meta = index.items
    extra = [c for c in meta.column_names if c not in table.column_names]
    if extra:
        # take() instead of join(): Arrow joins reorder rows and reject list columns.
        row_of = {item_id: r for r, item_id in enumerate(meta.column(ITEM_ID).to_pylist())}
        take = pa.array([row_of.get(i) for i in table.column(ITEM_ID).to_pylist()], pa.int64())
        for c in extra:
            table = table.append_column(c, meta.column(c).take(take))
    return table

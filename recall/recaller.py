"""Seeds in, candidate table out.

For every policy and signal: the seeds query the index for their ``k`` nearest items; the union
of those items becomes the policy's candidates; then exact evidence is computed between every
candidate and every seed from the stored vectors, so a candidate found by one seed (or one
signal) still gets its similarity to all the others.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from riskrank.index.schema import ITEM_ID, TEXT
from riskrank.index.signals.base import SignalBatch
from riskrank.index.store import InventoryIndex, SignalIndex
from riskrank.index.tables import TableLike
from riskrank.index.vectors.faiss_index import is_compressed
from riskrank.recall.allowlist import benign_evidence
from riskrank.recall.candidates import (
    KEY_COLUMNS,
    SEED_EVIDENCE,
    candidate_schema,
    seed_evidence_name,
)
from riskrank.recall.history import ReviewedExemplars
from riskrank.recall.lexical import LexicalProbe
from riskrank.recall.seeds import SeedSet

DENSITY_K = 10
EXPANSION_TOP = 10
BACKGROUND_SAMPLE = 2048
PSEUDO_MIN_POS = 10  # pseudo-positives: at least this many ...
PSEUDO_POS_FRACTION = 0.10  # ... or this share of the candidates
PSEUDO_MAX_NEG = 1000
PSEUDO_ROUNDS = 2
# Neighbours per seed and signal, the one default of the library and the CLI: inventories of up
# to 5,000 items are covered whole; past that, each seed's 5,000 nearest (k=None: every item).
DEFAULT_K = 5000


def _thresholds(si: SignalIndex) -> tuple[float, float]:
    return tuple(si.signal.match_thresholds)


class _SignalState:
    """Per-signal lookups reused across policies."""

    def __init__(self, si: SignalIndex, seed: int = 0) -> None:
        self.si = si
        self.vectors = si.vectors
        self.pos_of = {item_id: i for i, item_id in enumerate(si.ids)}
        n = len(si.ids)
        rng = np.random.default_rng(seed)
        bg = np.sort(rng.choice(n, size=min(n, BACKGROUND_SAMPLE), replace=False)) if n else []
        self.background = np.asarray(self.vectors[bg])
        self.density: dict[int, tuple[int, float]] = {}
        # Item-level evidence a signal recorded at index time (e.g. PDQ hash quality).
        ev = si.evidence if hasattr(si, "evidence") else None
        self.item_evidence = {
            (c if c.startswith(si.signal.name + "_") else f"{si.signal.name}_{c}"): np.asarray(
                ev.column(c).to_numpy(zero_copy_only=False), np.float32
            )
            for c in (ev.column_names if ev is not None else [])
            if c != ITEM_ID
        }

    def similarity(self, q: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.si.signal.similarity(q, items)

    def neighbours(self, q: np.ndarray, k: int) -> np.ndarray:
        """Positions of each query's ``k`` nearest items, best first.

        Lossy (SQ/PQ) indexes fetch 4x as many and re-score them exactly from the stored
        vectors: PQ48 alone found 38% of the true top 10 at 1M items, re-scored 86%.
        """
        key = getattr(self.si.index, "key", "")
        if not is_compressed(key):
            return self.si.index.search(q, k).positions
        fetched = self.si.index.search(q, min(4 * k, self.si.index.ntotal)).positions
        out = np.full((len(q), min(k, fetched.shape[1])), -1, np.int64)
        for j, row in enumerate(fetched):
            row = row[row >= 0]
            exact = self.similarity(q[j : j + 1], np.asarray(self.vectors[np.sort(row)]))[0]
            best = np.sort(row)[np.argsort(-exact, kind="stable")[:k]]
            out[j, : len(best)] = best
        return out

    def fill_density(self, positions: np.ndarray, hi: float) -> None:
        """Neighbourhood of each position, computed once per item for all policies."""
        todo = np.array([p for p in positions if p not in self.density], dtype=np.int64)
        for start in range(0, len(todo), 4096):
            chunk = todo[start : start + 4096]
            res = self.si.index.search(np.asarray(self.vectors[chunk]), DENSITY_K + 1)
            sims = np.where(res.positions == chunk[:, None], np.nan, res.scores)
            sims = np.where(res.positions < 0, np.nan, sims)
            for p, row in zip(chunk, sims):
                row = row[~np.isnan(row)][:DENSITY_K]
                self.density[int(p)] = (
                    int((row >= hi).sum()),
                    float(row.mean()) if len(row) else np.nan,
                )


def _pseudo_probe(seed_vecs: np.ndarray, items: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Log-odds of a linear probe self-trained on pseudo-labels (pseudo-relevance feedback).

    Rank by ``start`` (similarity to the seeds' centre); the seeds and the top items are
    positives, items from the lower half negatives; fit, re-rank by the probe, fit again. A
    policy without review history still has a shape in embedding space that nearest-seed
    similarity misses, and this recovers some of it without a single label.
    """
    from sklearn.linear_model import LogisticRegression

    n = len(items)
    if n < 4 * PSEUDO_MIN_POS:
        return np.full(n, np.nan, np.float32)
    n_pos = max(PSEUDO_MIN_POS, int(PSEUDO_POS_FRACTION * n))
    rng = np.random.default_rng(0)
    score = start
    for _ in range(PSEUDO_ROUNDS):
        order = np.argsort(-score, kind="stable")
        lower = order[n // 2 :]
        neg = rng.choice(lower, size=min(len(lower), PSEUDO_MAX_NEG), replace=False)
        X = np.vstack([seed_vecs, items[order[:n_pos]], items[neg]]).astype(np.float32)
        y = np.r_[np.ones(len(seed_vecs) + n_pos), np.zeros(len(neg))]
        score = LogisticRegression(C=1.0, max_iter=1000).fit(X, y).decision_function(items)
    return score.astype(np.float32)


def _seed_evidence(
    state: _SignalState,
    q: np.ndarray,
    seed_ids: list[str],
    cand_pos: np.ndarray,
    ann: np.ndarray,
    k: int,
) -> dict[str, np.ndarray]:
    """Evidence columns of one signal for candidates at ``cand_pos`` (-1 = no vector)."""
    name = state.si.signal.name
    lo, hi = _thresholds(state.si)
    n = len(cand_pos)
    have = cand_pos >= 0
    out = {seed_evidence_name(name, s): np.full(n, np.nan, np.float32) for s in SEED_EVIDENCE}
    best_seed = np.full(n, None, dtype=object)
    if have.any():
        pos = cand_pos[have]
        items = np.asarray(state.vectors[pos])
        sims = state.similarity(q, items)  # (n_seeds, n_have)
        order = np.sort(sims, axis=0)[::-1]
        best_j = sims.argmax(0)
        bg = state.similarity(q, state.background)
        mu, sd = bg.mean(1, keepdims=True), bg.std(1, keepdims=True) + 1e-6
        # Rank of each candidate in each seed's ANN list (k + 1 where absent).
        rank = np.full(sims.shape, k + 1, np.int32)
        lookup = {int(p): c for c, p in enumerate(pos)}
        for j, row in enumerate(ann):
            for r, p in enumerate(row):
                c = lookup.get(int(p))
                if c is not None:
                    rank[j, c] = r + 1
        centroid = q.mean(0)
        cols = {
            "best_sim": order[0],
            "top3_mean": order[: min(3, len(order))].mean(0),
            "n_seeds_hi": (sims >= hi).sum(0),
            "n_seeds_lo": (sims >= lo).sum(0),
            "best_rank": rank[best_j, np.arange(len(pos))],
            "best_sim_z": ((sims - mu) / sd).max(0),
        }
        if state.si.signal.metric == "cosine":
            centroid = centroid / (np.linalg.norm(centroid) + 1e-12)
            top = np.argsort(-order[0], kind="stable")[:EXPANSION_TOP]
            expansion = items[top].mean(0)
            expansion /= np.linalg.norm(expansion) + 1e-12
            cols["centroid_sim"] = items @ centroid
            cols["expansion_sim"] = items @ expansion
            cols["pseudo_probe"] = _pseudo_probe(q, items, cols["centroid_sim"])
        if state.si.signal.metric == "hamming":
            cols["best_distance"] = np.rint((1.0 - order[0]) * state.si.signal.dim)
        state.fill_density(pos, hi)
        dens = np.array([state.density[int(p)] for p in pos], dtype=np.float64).reshape(-1, 2)
        cols["density"], cols["neighbour_sim"] = dens[:, 0], dens[:, 1]
        for suffix, values in cols.items():
            out.setdefault(seed_evidence_name(name, suffix), np.full(n, np.nan, np.float32))
            out[seed_evidence_name(name, suffix)][have] = values
        for col, values in state.item_evidence.items():
            out[col] = np.full(n, np.nan, np.float32)
            out[col][have] = values[pos]
        best_seed[have] = np.asarray(seed_ids, dtype=object)[best_j]
    out[f"{name}_best_seed_id"] = best_seed
    return out


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
) -> pa.Table:
    """Recall inventory resembling ``seeds``: one candidate row per (item, policy).

    ``k``: neighbours fetched per seed and signal; an item no seed has among its ``k``
    nearest is not a candidate (None: every indexed item is one). ``exemplars``: reviewed
    history per signal (adds ``hist_*`` evidence). ``lexical``: n-gram probe trained on
    reviewed text (adds ``hist_lexical_probe_score``). ``exclude_self``: leave each item's
    own review out (training).
    ``seed_vectors``: precomputed ``embed_queries`` output per signal, rows aligned with the
    seed table (skips re-encoding in repeated experiments).

    >>> cands = recall(InventoryIndex.load("runs/idx"), seeds, k=500)   # doctest: +SKIP
    >>> cands.to_pandas().sort_values("text_best_sim", ascending=False).head()  # doctest: +SKIP
    """
    seeds = seeds if isinstance(seeds, SeedSet) else SeedSet.from_table(seeds)
    text_of = None
    if lexical is not None and TEXT in index.items.column_names:
        text_of = dict(
            zip(index.items.column(ITEM_ID).to_pylist(), index.items.column(TEXT).to_pylist())
        )
    states = {name: _SignalState(si) for name, si in index.signals.items()}
    batches = dict(seed_vectors or {})
    for name, state in states.items():
        if name not in batches:
            batches[name] = state.si.signal.embed_queries(seeds.table, show_progress=False)

    seed_ids_all = np.asarray(seeds.table.column("seed_id").to_pylist(), dtype=object)
    policy_all = np.asarray(seeds.table.column("policy").to_pylist(), dtype=object)
    severity_all = np.asarray(seeds.table.column("severity").to_pylist())
    action_all = np.asarray(seeds.table.column("action").to_pylist(), dtype=object)
    benign_all = seeds.benign  # the allowlist: evidence only, never queries
    tables = []
    for policy in tqdm(seeds.policies, desc="recall", unit="policy", disable=not show_progress):
        rows = np.flatnonzero((policy_all == policy) & ~benign_all)
        benign_rows = np.flatnonzero((policy_all == policy) & benign_all)
        per_signal = {}
        cand_ids: dict[str, None] = {}
        for name, state in states.items():
            b = batches[name]
            ok_rows = rows[b.ok[rows]]
            if len(ok_rows) == 0 or state.si.index.ntotal == 0:
                continue
            q = np.ascontiguousarray(b.vectors[ok_rows])
            k_sig = state.si.index.ntotal if k is None else k
            per_signal[name] = (q, ok_rows, state.neighbours(q, k_sig), k_sig)
            ann = per_signal[name][2]
            for p in np.unique(ann[ann >= 0]):
                cand_ids.setdefault(state.si.ids[p], None)
        ids = np.asarray(list(cand_ids), dtype=object)
        if len(ids) == 0:
            continue
        cols: dict[str, object] = {ITEM_ID: ids, "policy": np.full(len(ids), policy, dtype=object)}
        best_sims, matched = [], [dict() for _ in ids]
        for name, state in states.items():
            if name not in per_signal:
                continue
            q, ok_rows, ann, k_sig = per_signal[name]
            cand_pos = np.array([state.pos_of.get(i, -1) for i in ids], dtype=np.int64)
            ev = _seed_evidence(state, q, list(seed_ids_all[ok_rows]), cand_pos, ann, k_sig)
            cols.update(ev)
            lo, _ = _thresholds(state.si)
            best = ev[seed_evidence_name(name, "best_sim")]
            ok_benign = benign_rows[batches[name].ok[benign_rows]]
            benign_q = np.ascontiguousarray(batches[name].vectors[ok_benign])
            cols.update(
                benign_evidence(name, state.similarity, benign_q, state.vectors, cand_pos, best)
            )
            best_sims.append(np.nan_to_num(best, nan=-np.inf) >= lo)
            for c, sid in enumerate(ev[f"{name}_best_seed_id"]):
                if sid is not None and best[c] >= lo:
                    matched[c][sid] = max(matched[c].get(sid, -np.inf), float(best[c]))
            if exemplars and name in exemplars:
                vecs = np.zeros((len(ids), q.shape[1]), np.float32)
                have = cand_pos >= 0
                vecs[have] = state.vectors[cand_pos[have]]
                hist = exemplars[name].evidence(
                    policy,
                    ids,
                    vecs,
                    exclude_self=exclude_self,
                    near_copy_sim=_thresholds(state.si)[1],
                )
                for key, values in hist.items():
                    if values.dtype == object:  # the closest reviewed item's id
                        cols[key] = np.where(have, values, None)
                    else:
                        cols[key] = np.where(have, values, np.nan).astype(np.float32)
        if text_of is not None:
            texts = [text_of.get(i) for i in ids]
            cols.update(lexical.evidence(policy, ids, texts, exclude_self=exclude_self))
        # The suggested action follows the closest seed of the first signal that matched.
        first_best = next(
            (cols[f"{n}_best_seed_id"] for n in states if f"{n}_best_seed_id" in cols), None
        )
        sid_to_row = {s: r for r, s in enumerate(seed_ids_all)}
        sev = np.array(
            [severity_all[sid_to_row[s]] if s else severity_all[rows].max() for s in first_best]
        )
        act = np.array(
            [action_all[sid_to_row[s]] if s else action_all[rows[0]] for s in first_best],
            dtype=object,
        )
        cols["severity"] = sev.astype(np.int8)
        cols["action"] = act
        cols["matched_seed_ids"] = [
            [s for s, _ in sorted(m.items(), key=lambda kv: -kv[1])] for m in matched
        ]
        cols["n_signals_matched"] = np.sum(best_sims, axis=0).astype(np.int8) if best_sims else 0
        tables.append(
            pa.table(
                {
                    k_: pa.array(list(v) if isinstance(v, np.ndarray) and v.dtype == object else v)
                    for k_, v in cols.items()
                }
            )
        )
    return _finish(tables, index)


def _finish(tables: list[pa.Table], index: InventoryIndex) -> pa.Table:
    if not tables:
        return pa.table({ITEM_ID: pa.array([], pa.string()), "policy": pa.array([], pa.string())})
    table = pa.concat_tables(tables, promote_options="default")
    front = list(KEY_COLUMNS)
    # Conform to the written-down contract (numpy gives float64/object columns).
    names = sorted(
        {n[: -len("_best_seed_id")] for n in table.column_names if n.endswith("_best_seed_id")}
    )
    has_hist = any(n.startswith("hist_") for n in table.column_names)
    for field in candidate_schema(names, has_hist):
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

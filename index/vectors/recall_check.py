"""How well an approximate (IVF) index finds what exact search finds, measured on a sample.

A standing index updates its IVF indexes in place with the quantizer they were trained with
(index/standing.py). Whether those centroids still describe today's inventory is a question
of recall, not of counts: ``sampled_recall`` asks the index for the ``k`` nearest neighbours
of ``queries`` of its own vectors, each query's own position left out (with it, recall@k is
1.0 by construction: a reviewer's finding about an earlier benchmark), and compares them with
an exact search over the same vectors. A returned item is a hit when its exact score is at
least the exact k-th score (tie-aware: copies of one ad are interchangeable).

The exact search reads the vectors a block at a time into an exact index of the signal's own
kind (``Flat`` / ``BFlat``), so its memory is one block, not the inventory. Its cost is
``queries x n`` comparisons. Measured on 2 CPUs at load ~1 (2026-12-06, ``IVF1024,Flat``
over random unit vectors of 384 floats, 500 queries): 0.9 s wall over 200,000 vectors, 4.6 s
wall (7.9 CPU-s) over 1,000,000; in ``benchmarks/incremental_ivf.py --items 50000`` it added
0.6 s to a day-1 update of 1.0 s (a rebuild: 3.2 s). ``_pair_scores`` is written here rather
than taken from recall/neighbours.py: index/ does not import recall/.

>>> import numpy as np
>>> from riskrank.index.vectors.faiss_index import VectorIndex
>>> rng = np.random.default_rng(0)
>>> v = rng.normal(size=(2000, 16)).astype(np.float32)
>>> v /= np.linalg.norm(v, axis=1, keepdims=True)
>>> sampled_recall(VectorIndex.build(v, key="Flat"), v, queries=50) == 1.0
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from riskrank.index.vectors.faiss_index import is_compressed

RECALL_QUERIES = 500
RECALL_K = 10
_BLOCK = 65_536


def _exact_index(vectors: np.ndarray):
    """An exact index of the same kind as an index over ``vectors`` (hashes: Hamming)."""
    if vectors.dtype == np.uint8:
        from riskrank.index.vectors.hamming import BinaryHashIndex

        return BinaryHashIndex.build(vectors, key="BFlat", bits=vectors.shape[1] * 8)
    from riskrank.index.vectors.faiss_index import VectorIndex

    return VectorIndex.build(vectors, key="Flat", use_gpu=False)


def _pair_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The exact score of each row of ``a`` against the same row of ``b`` (as the indexes
    score: inner product, or 1 - Hamming distance / bits)."""
    if a.dtype == np.uint8:
        bits = np.unpackbits(np.bitwise_xor(a, b), axis=-1).sum(axis=-1)
        return 1.0 - bits / (a.shape[-1] * 8)
    return np.einsum("...d,...d->...", a.astype(np.float64), b.astype(np.float64))


def _search(index, q: np.ndarray, k: int):
    """``index.search`` without ordering ties by position where the index offers that
    (``VectorIndex``): a hit is any item scoring at least the exact k-th score, so which of
    several equal items comes back does not matter, and ordering them searched an item with
    many copies deeper and deeper: on ``benchmarks/cli_scale.py``'s 312,042 template ads
    (``IVF512,Flat``, the update's own 500 queries), 4.0-4.4 s wall (7.8-8.5 CPU-s) with
    ties ordered, 1.0-1.1 s (1.8-2.0) without, the same recall, three runs each."""
    from riskrank.index.vectors.faiss_index import VectorIndex

    if isinstance(index, VectorIndex):
        return index.search(q, k, ties=False)
    return index.search(q, k)


@dataclass(frozen=True)
class RecallSample:
    """A sampled recall: its mean over the queries, their standard deviation (per query, the
    share of its exact top k found) and how many queries."""

    mean: float
    sd: float
    queries: int


def sampled_recall(index, vectors, **kwargs) -> float | None:
    """``recall_sample``'s mean (None where there are too few vectors to ask)."""
    sample = recall_sample(index, vectors, **kwargs)
    return None if sample is None else sample.mean


def recall_sample(
    index,
    vectors,
    *,
    queries: int = RECALL_QUERIES,
    k: int = RECALL_K,
    seed: int = 0,
    positions: np.ndarray | None = None,
) -> RecallSample | None:
    """Tie-aware recall@``k`` of ``index``, searched as a sweep searches it (its ``nprobe``;
    a lossy SQ/PQ index fetches 4x as many and re-scores them exactly, as
    recall/recaller.py does), against exact search over ``vectors`` (the index's own, in
    its positions), with ``queries`` of them as queries (drawn with ``seed``, or the
    ``positions`` given), each one's own position left out. None where there are too few
    vectors to ask (``k + 1`` or fewer)."""
    n = len(vectors)
    if n <= k + 1:
        return None
    if positions is None:
        rng = np.random.default_rng(seed)
        positions = rng.choice(n, size=min(queries, n), replace=False)
    pos = np.sort(np.asarray(positions, np.int64))
    q = np.asarray(vectors[pos])
    # Exact: the best k + 1 per query over every block (the query itself is one of them).
    best_s = np.full((len(pos), 0), -np.inf)
    best_p = np.zeros((len(pos), 0), np.int64)
    for start in range(0, n, _BLOCK):
        block = np.asarray(vectors[start : start + _BLOCK])
        res = _search(_exact_index(block), q, k + 1)
        best_s = np.concatenate([best_s, res.scores.astype(np.float64)], axis=1)
        best_p = np.concatenate([best_p, res.positions + start], axis=1)
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, : k + 1]
        best_s = np.take_along_axis(best_s, keep, axis=1)
        best_p = np.take_along_axis(best_p, keep, axis=1)
    not_self = best_p != pos[:, None]
    kth = np.array([row[m][:k][-1] for row, m in zip(best_s, not_self)])
    # Approximate: what the index returns, itself left out, scored exactly.
    lossy = is_compressed(str(getattr(index, "key", "")))
    found = _search(index, q, min(n, 4 * (k + 1) if lossy else k + 1)).positions
    share = np.zeros(len(pos))
    for i, row in enumerate(found):
        row = row[(row >= 0) & (row != pos[i])]
        if lossy:
            row = np.sort(row)
        if not len(row):
            continue
        exact = _pair_scores(np.asarray(vectors[row]), np.repeat(q[i : i + 1], len(row), 0))
        exact = exact[np.argsort(-exact, kind="stable")[:k]] if lossy else exact[:k]
        share[i] = (exact >= kth[i] - 1e-6).sum() / k
    sd = float(share.std(ddof=1)) if len(share) > 1 else 0.0
    return RecallSample(float(share.mean()), sd, len(share))

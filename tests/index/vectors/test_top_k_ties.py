"""Top-k with ties broken by position: defined by the data, and only tied rows searched again."""

from __future__ import annotations

import numpy as np

from riskrank.index.vectors.faiss_index import VectorIndex, top_k_ties_by_position


def _expected(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    sims = queries @ vectors.T
    order = np.lexsort((np.broadcast_to(np.arange(len(vectors)), sims.shape), -sims), axis=1)
    return order[:, :k]


def test_only_rows_with_an_open_tie_are_searched_again():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(400, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[100:160] = vectors[5]  # 61 exact copies: query 0's k-th place is a 61-way tie
    index = VectorIndex.build(vectors, key="Flat")
    queries = np.ascontiguousarray(vectors[[5, 7, 9, 11]])
    asked = []

    def search(n, rows):
        asked.append(None if rows is None else rows.tolist())
        return index.index.search(queries if rows is None else queries[rows], n)

    k = 10
    scores, positions = top_k_ties_by_position(search, k, index.ntotal)
    assert asked[0] is None and len(asked) > 1
    assert all(rows == [0] for rows in asked[1:]), asked  # queries 1-3 have no tie at the cut
    np.testing.assert_array_equal(positions, _expected(vectors, queries, k))
    assert positions[0].tolist() == [5, *range(100, 109)]  # lowest positions among the tied
    np.testing.assert_array_equal(index.search(queries, k).positions, positions)

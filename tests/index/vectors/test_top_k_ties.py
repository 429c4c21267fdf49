"""Top-k with ties broken by position: defined by the data, and only tied rows searched again."""

from __future__ import annotations

import numpy as np

from riskrank.index.vectors.faiss_index import GPU_MAX_K, VectorIndex, top_k_ties_by_position
from riskrank.index.vectors.hamming import BinaryHashIndex


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


class _GpuLike:
    """Stands in for a FAISS GPU index on a CPU: searches the same index, but refuses a k over
    GPU_MAX_K as FAISS's GPU kernels do ("GPU index only supports ... up to 2048")."""

    def __init__(self, index):
        self.index, self.asked = index, []

    def search(self, queries, k):
        self.asked.append(k)
        if k > GPU_MAX_K:
            raise RuntimeError(f"GPU index only supports k up to {GPU_MAX_K} (requested {k})")
        return self.index.search(queries, k)


def test_a_k_over_the_gpu_limit_is_searched_on_the_cpu_index():
    # recall's default k is 5,000: a sweep on a GPU machine failed at its first search.
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(3000, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = np.ascontiguousarray(vectors[:3])
    want = VectorIndex.build(vectors, key="Flat").search(queries, 2500).positions
    index = VectorIndex.build(vectors, key="Flat")
    gpu = index._search_index = _GpuLike(index.index)
    index.on_gpu = True
    assert index.search(queries, 2500).positions.tolist() == want.tolist()
    assert gpu.asked == []  # the CPU index answered
    small = index.search(queries, 100).positions
    assert gpu.asked and max(gpu.asked) <= GPU_MAX_K
    assert small.tolist() == want[:, :100].tolist()

    hashes = rng.integers(0, 256, size=(3000, 32), dtype=np.uint8)
    binary = BinaryHashIndex.build(hashes, key="BFlat")
    want_h = binary.search(hashes[:2], 2500).positions
    gpu_h = binary._search_index = _GpuLike(binary.index)
    binary.on_gpu = True
    assert binary.search(hashes[:2], 2500).positions.tolist() == want_h.tolist()
    assert gpu_h.asked == []
    binary.search(hashes[:2], 50)
    assert gpu_h.asked and max(gpu_h.asked) <= GPU_MAX_K

import numpy as np
import pytest

from riskrank.recall.neighbours import pair_inner_products, row_neighbour_products


@pytest.mark.parametrize("seed", range(3))
def test_row_neighbour_products_equal_pair_products_bit_for_bit(seed):
    # Density and campaign links compare today's similarities with stored ones: the row-wise
    # form must give the float64 values the pair-wise form gives, not merely close ones.
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((300, 384)).astype(np.float32)
    vectors[:10] *= 1e-3  # small and large magnitudes, where summation order shows
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = rng.integers(0, 300, 70)
    nbrs = rng.integers(0, 300, (70, 23))
    q, v = vectors[rows], vectors[nbrs.ravel()].reshape(70, 23, 384)
    expected = pair_inner_products(np.repeat(q, 23, axis=0), v.reshape(-1, 384)).reshape(70, 23)
    for block in (1, 16, 512):  # across block boundaries
        got = row_neighbour_products(q, v, block=block)
        assert got.dtype == np.float64 and np.array_equal(got, expected)


def test_row_neighbour_products_of_no_neighbours():
    q = np.ones((4, 8), np.float32)
    assert row_neighbour_products(q, np.zeros((4, 0, 8), np.float32)).shape == (4, 0)
    assert row_neighbour_products(q[:0], np.zeros((0, 3, 8), np.float32)).shape == (0, 3)

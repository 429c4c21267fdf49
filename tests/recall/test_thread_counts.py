"""Evidence must not depend on how many threads BLAS runs: the local engine runs the
machine's threads, a Ray worker one, and both must write the same queue and candidates (an
outsider's Ray run found ten evidence columns apart by up to 1.4e-6 before this held)."""

import numpy as np
import pyarrow as pa
import pytest
from threadpoolctl import threadpool_limits

from riskrank.index.signals.base import CandidateMatch
from riskrank.index.signals.embedding import embedding_evidence
from riskrank.recall.history import ReviewedExemplars


def _unit(rng, n, d=384):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        if x.dtype == object:
            assert x.tolist() == y.tolist(), k
        else:
            assert np.array_equal(x, y, equal_nan=True), k


@pytest.mark.parametrize("threads", [2, 4])
def test_embedding_and_history_evidence_are_the_same_on_any_thread_count(threads):
    # Sizes where BLAS does split its work across threads (a sweep's, not a toy's).
    rng = np.random.default_rng(0)
    items, queries = _unit(rng, 6000), _unit(rng, 5)
    match = CandidateMatch(queries, items, queries @ items.T)
    ex = _unit(rng, 800)
    table = pa.table(
        {
            "item_id": [f"r{i}" for i in range(800)],
            "policy": ["scam"] * 800,
            "verdict": pa.array(rng.choice([0, 2], 800), pa.int8()),
        }
    )
    ids = np.array([f"i{i}" for i in range(6000)], dtype=object)
    runs = []
    for limit in (1, threads):
        with threadpool_limits(limits=limit):
            exemplars = ReviewedExemplars("text", ex, table)
            runs.append(
                (
                    embedding_evidence(match),
                    exemplars.evidence("scam", ids, items, exclude_self=False),
                    exemplars.probes["scam"][0],
                )
            )
    _same(runs[0][0], runs[1][0])
    _same(runs[0][1], runs[1][1])
    assert np.array_equal(runs[0][2], runs[1][2])


def test_seed_similarities_and_the_probe_do_not_depend_on_the_items_order():
    # Copies of one ad traded similarities by an ulp when an export listed its rows otherwise
    # (a BLAS product sums by position), and the self-trained probe's rows followed positions.
    from riskrank.index.cpu_math import queries_dot

    rng = np.random.default_rng(1)
    items, queries = _unit(rng, 3000), _unit(rng, 5)
    items[1000:1010] = items[0]  # copies
    perm = rng.permutation(len(items))
    with threadpool_limits(limits=2):
        sims = queries_dot(queries, items)
        assert np.array_equal(queries_dot(queries, items[perm]), sims[:, perm])
        a = embedding_evidence(CandidateMatch(queries, items, sims))
        b = embedding_evidence(CandidateMatch(queries, items[perm], sims[:, perm]))
    for k in a:
        assert np.array_equal(np.asarray(a[k])[perm], np.asarray(b[k])), k

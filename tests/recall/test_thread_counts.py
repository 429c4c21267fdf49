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


def test_the_small_fits_are_scikit_learns_and_the_same_on_any_thread_count():
    # scikit-learn's lbfgs fit of these 1,500 rows moved its coefficients by 4.8e-7 from one
    # BLAS thread to two; logistic_fit minimises the same objective without threaded sums.
    from sklearn.linear_model import LogisticRegression

    from riskrank.index.cpu_math import logistic_fit

    rng = np.random.default_rng(0)
    c = rng.standard_normal(384)
    x = rng.standard_normal((1500, 384)) + 0.3 * c * (rng.random((1500, 1)) < 0.3)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    y = x @ c > np.quantile(x @ c, 0.7)
    fits = []
    for limit in (1, 2):
        with threadpool_limits(limits=limit):
            fits.append(logistic_fit(x, y, C=1.0, max_iter=1000))
    assert np.array_equal(fits[0][0], fits[1][0]) and fits[0][1] == fits[1][1]
    with threadpool_limits(limits=1):
        sk = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    assert np.allclose(fits[0][0], sk.coef_[0], atol=1e-5)
    assert abs(fits[0][1] - sk.intercept_[0]) < 1e-5
    # What scikit-learn refuses, it refuses too (not NaN coefficients, or a run to infinity).
    for bad_x, bad_y in ((np.where(x == x[0, 0], np.nan, x), y), (x, np.ones_like(y))):
        with pytest.raises(ValueError, match="logistic_fit"):
            logistic_fit(bad_x, bad_y)


def test_a_sweeps_fits_leave_the_processs_thread_pools_alone(monkeypatch):
    # Holding BLAS to one thread (threadpoolctl) set every OpenBLAS and OpenMP pool in the
    # process, per fit: unsafe while a caller's other threads compute (threadpoolctl issue
    # 205), and the suspect of a segmentation fault in CI (stop 49).
    import threadpoolctl

    from riskrank.rank.calibration import ScoreCalibrator

    def refuse(*a, **k):
        raise AssertionError("riskrank changed the process's thread pools")

    monkeypatch.setattr(threadpoolctl, "threadpool_limits", refuse)
    monkeypatch.setattr(threadpoolctl, "ThreadpoolController", refuse)
    rng = np.random.default_rng(2)
    items, queries = _unit(rng, 2000), _unit(rng, 5)
    assert np.isfinite(
        embedding_evidence(CandidateMatch(queries, items, queries @ items.T))["pseudo_probe"]
    ).all()
    table = pa.table(
        {
            "item_id": [f"r{i}" for i in range(200)],
            "policy": ["scam"] * 200,
            "verdict": pa.array(rng.choice([0, 2], 200), pa.int8()),
        }
    )
    assert "scam" in ReviewedExemplars("text", _unit(rng, 200), table).probes
    assert ScoreCalibrator.fit(rng.standard_normal(400), rng.random(400) < 0.3) is not None

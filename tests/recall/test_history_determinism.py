"""Saved exemplars do not depend on the process's string hashing, nor a row's closest review
on the order FAISS lists ties in."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np

SCRIPT = """
import sys, numpy as np, pyarrow as pa
from riskrank.recall.history import ReviewedExemplars
rng = np.random.default_rng(0)
n = 60
vectors = rng.normal(size=(n, 8)).astype(np.float32)
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
table = pa.table({
    "item_id": [f"h{i}" for i in range(n)],
    "policy": [["scam", "insult", "spam"][i % 3] for i in range(n)],
    "verdict": [2 if i % 2 else 0 for i in range(n)],
    "sweep_id": ["history"] * n,
})
ReviewedExemplars("text", vectors, table).save(sys.argv[1])
"""


def test_identical_exemplars_save_alike_under_any_string_hashing(tmp_path):
    """Two identical imports wrote exemplars.json with its probes in another order (a set of
    policy names, in the process's string-hash order), so the models' checksums, their
    identity that keys the sweep caches, differed (an outsider's week)."""
    digests = []
    for seed in ("1", "2", "3"):
        out = tmp_path / f"ex{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", SCRIPT, str(out)], check=True, env=env)
        digests.append(hashlib.sha256((out / "exemplars.json").read_bytes()).hexdigest())
    assert len(set(digests)) == 1


def test_of_equally_close_reviews_the_first_stored_is_the_nearest():
    """One text reviewed under two ids: FAISS lists the tie in an order that depends on how
    many queries it searched at once, and a Ray shard named the other id than a local sweep
    (an analyst's report: 2 of 2,976 rows)."""
    from riskrank.recall.history import _nearest

    ids = np.array([f"h{i}" for i in range(8)], dtype=object)
    verdict = np.array([0, 0, 2, 0, 0, 2, 0, 0])
    sims = np.array([[0.9, 0.9, 0.5], [np.nan, -np.inf, np.nan], [0.3, 0.8, 0.8]])
    pos = np.array([[5, 2, 1], [-1, -1, -1], [4, 7, 3]])
    for order in ([0, 1, 2], [1, 0, 2]):
        s, p = sims[:, order], pos[:, order]
        out = _nearest("x_", s, p, verdict, ids, verdict[p] >= 2, None)
        assert out["x_nearest_id"].tolist() == ["h2", None, "h3"]
        assert out["x_nearest_verdict"][[0, 2]].tolist() == [2.0, 0.0]


def test_a_policy_with_reviews_and_one_without_give_their_columns_in_one_order():
    """A recall's columns followed the first policy's: a policy without reviews gave its
    history columns in another order than one with, so two days' candidates of one policy
    could not be joined (rank/policy_memo.py), and a model's features (taken in table order)
    depended on which policy came first."""
    import pyarrow as pa

    from riskrank.recall.history import ReviewedExemplars

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = pa.table(
        {
            "item_id": [f"h{i}" for i in range(20)],
            "policy": ["scam"] * 20,
            "verdict": [2 if i % 2 else 0 for i in range(20)],
        }
    )
    ex = ReviewedExemplars("text", vectors, table)
    items = np.array(["a", "b"], dtype=object)
    reviewed = ex.evidence("scam", items, vectors[:2], exclude_self=False)
    unreviewed = ex.evidence("insult", items, vectors[:2], exclude_self=False)
    assert list(reviewed) == list(unreviewed)
    assert list(ex.evidence("scam", items[:0], vectors[:0], exclude_self=False)) == list(reviewed)

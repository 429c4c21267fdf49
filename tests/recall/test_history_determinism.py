"""Saved exemplars do not depend on the process's string hashing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

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

"""Evidence every embedding signal (unit float vectors, cosine) adds to the candidate table.

Beyond closeness to single seeds, an embedding space has a shape: the centre of a policy's
seeds, the centre of the items most like them (query expansion), and a direction a linear
probe self-trained on pseudo-labels finds (pseudo-relevance feedback). Hash signals have no such
geometry, so this lives with the embedding signals rather than in recall.
"""

from __future__ import annotations

import numpy as np

from riskrank.index.cpu_math import logistic_fit, rows_dot
from riskrank.index.signals.base import CandidateMatch, EvidenceColumn, Signal

EXPANSION_TOP = 10
PSEUDO_MIN_POS = 10  # pseudo-positives: at least this many ...
PSEUDO_POS_FRACTION = 0.10  # ... or this share of the candidates
PSEUDO_MAX_NEG = 1000
PSEUDO_ROUNDS = 2

EMBEDDING_EVIDENCE = (
    EvidenceColumn("centroid_sim", "similarity to the centre of the policy's seeds", direction=1),
    EvidenceColumn(
        "expansion_sim",
        "similarity to the centre of the items most like the seeds (query expansion)",
        direction=1,
    ),
    EvidenceColumn(
        "pseudo_probe",
        "log-odds of a classifier self-trained on the seeds and the items most like them",
        direction=1,
    ),
)


def pseudo_probe(seed_vecs: np.ndarray, items: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Log-odds of a linear probe self-trained on pseudo-labels (pseudo-relevance feedback).

    Rank by ``start`` (similarity to the seeds' centre); the seeds and the top items are
    positives, items from the lower half negatives; fit, re-rank by the probe, fit again. A
    policy without review history still has a shape in embedding space that nearest-seed
    similarity misses, and this recovers some of it without a single label.
    """
    n = len(items)
    if n < 4 * PSEUDO_MIN_POS:
        return np.full(n, np.nan, np.float32)
    n_pos = max(PSEUDO_MIN_POS, int(PSEUDO_POS_FRACTION * n))
    rng = np.random.default_rng(0)
    # Equal scores are ordered by a fixed projection of the vector, not by position: the
    # training rows, and so the probe, must not depend on the candidates' order (an export's
    # row order moved it in the last bits). Equal vectors are interchangeable.
    tie = rows_dot(items, np.random.default_rng(1).standard_normal(items.shape[1]))
    score = start
    for _ in range(PSEUDO_ROUNDS):
        order = np.lexsort((tie, -np.asarray(score, np.float64)))
        lower = order[n // 2 :]
        neg = rng.choice(lower, size=min(len(lower), PSEUDO_MAX_NEG), replace=False)
        X = np.vstack([seed_vecs, items[order[:n_pos]], items[neg]]).astype(np.float32)
        y = np.r_[np.ones(len(seed_vecs) + n_pos), np.zeros(len(neg))]
        coef, intercept = logistic_fit(X, y, C=1.0, max_iter=1000)  # the same on any threads
        score = rows_dot(items, coef) + intercept  # row by row, as above
    return score.astype(np.float32)


def embedding_evidence(match: CandidateMatch) -> dict[str, np.ndarray]:
    """``centroid_sim``, ``expansion_sim`` and ``pseudo_probe`` for the candidates."""
    items = match.items
    centroid = match.queries.mean(0)
    centroid = centroid / (np.linalg.norm(centroid) + 1e-12)
    best = match.similarity.max(0)
    top = np.argsort(-best, kind="stable")[:EXPANSION_TOP]
    expansion = items[top].mean(0)
    expansion /= np.linalg.norm(expansion) + 1e-12
    # Row by row in float64, not a BLAS product: the values then do not depend on how many
    # threads BLAS runs (index/cpu_math.py ``rows_dot``), so both engines write the same.
    centroid_sim = rows_dot(items, centroid).astype(np.float32)
    probe = pseudo_probe(match.queries, items, centroid_sim)
    return {
        "centroid_sim": centroid_sim,
        "expansion_sim": rows_dot(items, expansion).astype(np.float32),
        "pseudo_probe": probe,
    }


class EmbeddingSignal(Signal):
    """Base of the float-vector embedding signals (text, CLIP): cosine over unit vectors, with
    the embedding-space evidence above. Subclasses still provide computing, manifest and CLI."""

    evidence_columns = EMBEDDING_EVIDENCE

    def candidate_evidence(self, match: CandidateMatch) -> dict[str, np.ndarray]:
        return embedding_evidence(match)

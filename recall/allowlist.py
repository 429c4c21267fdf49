"""Benign seeds (the allowlist): known look-alikes of a policy's violations that must not be
escalated - a real loan offer next to the scam template, a news article quoting an insult.

They recall nothing. For every candidate they add two evidence columns per signal: how close
it is to the policy's nearest benign seed, and the margin between its nearest violating seed
and that benign seed. The ranker learns what the margin is worth (``recall/candidates.py``
constrains it: closer to a benign seed never means riskier). Where a policy has no benign
seed, or the item has no vector for the signal, both columns are NaN (LightGBM's missing
value), so models trained without an allowlist keep working on candidates that have one.

>>> import numpy as np
>>> sims = lambda q, items: q @ items.T
>>> best = np.array([0.25, 0.5, np.nan])
>>> ev = benign_evidence("text", sims, np.eye(2)[:1], np.eye(2), np.array([0, 1, -1]), best)
>>> ev["text_benign_sim"].tolist(), ev["text_benign_margin"].tolist()
([1.0, 0.0, nan], [-0.75, 0.5, nan])
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from riskrank.recall.candidates import BENIGN_EVIDENCE, seed_evidence_name

Similarity = Callable[[np.ndarray, np.ndarray], np.ndarray]


def empty_benign_evidence(signal: str, n: int) -> dict[str, np.ndarray]:
    """All-NaN benign columns: the policy has no benign seed (or no vector for this signal)."""
    return {
        seed_evidence_name(signal, s): np.full(n, np.nan, np.float32)
        for s in (c.suffix for c in BENIGN_EVIDENCE)
    }


def benign_evidence(
    signal: str,
    similarity: Similarity,
    benign_vectors: np.ndarray,
    vectors: np.ndarray,
    cand_pos: np.ndarray,
    best_violating_sim: np.ndarray,
) -> dict[str, np.ndarray]:
    """Benign evidence for candidates at positions ``cand_pos`` of ``vectors`` (-1: the item
    has no vector for this signal, NaN evidence) against ``benign_vectors``.

    ``similarity``: the signal's own ``similarity(queries, items)`` (cosine or Hamming, same
    scale as the seed evidence); ``best_violating_sim``: the candidates' ``<signal>_best_sim``.
    """
    n = len(cand_pos)
    out = empty_benign_evidence(signal, n)
    have = np.asarray(cand_pos) >= 0
    if len(benign_vectors) == 0 or not have.any():
        return out
    items = np.asarray(vectors[np.asarray(cand_pos)[have]])
    nearest = similarity(benign_vectors, items).max(0).astype(np.float32)
    out[seed_evidence_name(signal, "benign_sim")][have] = nearest
    margin = np.asarray(best_violating_sim, np.float32)[have] - nearest
    out[seed_evidence_name(signal, "benign_margin")][have] = margin
    return out

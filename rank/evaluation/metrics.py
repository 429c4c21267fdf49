"""Ranking quality metrics over a whole labelled population.

Items the system never scored (not recalled) count as ranked last, so a method cannot look
good by recalling little.
"""

from __future__ import annotations

import numpy as np


def _order(scores: np.ndarray, rng_seed: int = 0) -> np.ndarray:
    # Random tie-break: equal scores (e.g. -inf for everything not recalled) must not be ordered
    # by input position, which could leak the label order.
    rng = np.random.default_rng(rng_seed)
    jitter = rng.random(len(scores))
    return np.lexsort((jitter, -np.nan_to_num(scores, nan=-np.inf, neginf=-1e30)))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    y = np.asarray(labels) > 0
    if not y.any():
        return float("nan")
    hits = y[_order(np.asarray(scores, float))]
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(prec[hits].sum() / y.sum())


def precision_at(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    y = np.asarray(labels) > 0
    return float(y[_order(np.asarray(scores, float))][:k].mean())


def recall_at(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    y = np.asarray(labels) > 0
    if not y.any():
        return float("nan")
    return float(y[_order(np.asarray(scores, float))][:k].sum() / y.sum())


def ndcg_at(gains: np.ndarray, scores: np.ndarray, k: int) -> float:
    g = np.asarray(gains, float)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    got = (2 ** g[_order(np.asarray(scores, float))][:k] - 1) @ disc[: min(k, len(g))]
    ideal = (2 ** np.sort(g)[::-1][:k] - 1) @ disc[: min(k, len(g))]
    return float(got / ideal) if ideal > 0 else float("nan")


def ranking_report(
    labels: np.ndarray, scores: np.ndarray, *, budget_fraction: float = 0.05
) -> dict:
    """AP, P@10/50/100, recall at a budget of ``budget_fraction`` of the population, NDCG@100."""
    n = len(labels)
    budget = max(1, int(round(budget_fraction * n)))
    return {
        "AP": average_precision(labels, scores),
        "P@10": precision_at(labels, scores, 10),
        "P@50": precision_at(labels, scores, 50),
        "P@100": precision_at(labels, scores, 100),
        f"R@{budget_fraction:.0%}": recall_at(labels, scores, budget),
        "NDCG@100": ndcg_at(labels, scores, 100),
    }

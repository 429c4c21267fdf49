"""Ranking quality metrics over a whole labelled population.

Items the system never scored (not recalled) count as ranked last, so a method cannot look
good by recalling little. Items with equal scores (the not-recalled tail at -inf, a
campaign's members) are in no order: every metric is its expected value over all orders of
each tie (McSherry & Najork, ECIR 2008), so it depends neither on the input's row order nor
on a random draw. Written out here (a few lines of numpy) because scikit-learn's
``average_precision_score`` treats a tie as one threshold step, which is not the expected
precision a reviewer working through the tied items gets, and has no P@k.
"""

from __future__ import annotations

import numpy as np


def _ties(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tie groups in descending score order: (each item's group, group start, group size).
    NaN counts as -inf (not scored)."""
    s = np.nan_to_num(np.asarray(scores, float), nan=-np.inf)
    order = np.argsort(-s, kind="stable")
    ss = s[order]
    new_group = np.r_[True, ss[1:] != ss[:-1]] if len(ss) else np.zeros(0, bool)
    starts = np.flatnonzero(new_group)
    sizes = np.diff(np.r_[starts, len(ss)])
    group = np.empty(len(ss), np.int64)
    group[order] = np.cumsum(new_group) - 1
    return group, starts, sizes


def _per_group(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    return np.bincount(group, weights=np.asarray(values, float), minlength=n_groups)


def _expected_in_top(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Expected number of positives among the first ``k`` over the ties' orders."""
    y = np.asarray(labels) > 0
    group, starts, sizes = _ties(scores)
    pos = _per_group(y, group, len(starts))
    share = np.clip((k - starts) / np.maximum(sizes, 1), 0.0, 1.0)
    return float((pos * share).sum())


def expected_calibration_error(proba: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: over ``bins`` equal-width probability bins, the gap between
    each bin's mean probability and its share of positives, weighted by the bin's share of
    rows (Naeini et al. 2015). NaN for no rows.

    >>> expected_calibration_error(np.array([0.1, 0.1, 0.9, 0.9]), np.array([0, 0, 1, 0]))
    0.25
    """
    p, y = np.asarray(proba, float), np.asarray(labels, float)
    if len(p) == 0:
        return float("nan")
    b = np.clip((p * bins).astype(int), 0, bins - 1)
    gaps = [abs(p[b == i].mean() - y[b == i].mean()) * (b == i).sum() for i in np.unique(b)]
    return float(sum(gaps) / len(p))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Expected AP over the orders of tied items."""
    y = np.asarray(labels) > 0
    if not y.any():
        return float("nan")
    group, starts, sizes = _ties(scores)
    pos = _per_group(y, group, len(starts))
    before = np.cumsum(pos) - pos  # positives ranked above each group
    total = 0.0
    for g in np.flatnonzero(pos):
        t, r, n0 = sizes[g], pos[g], starts[g]
        j = np.arange(1, t + 1)
        # A positive at the group's j-th place has the others' expected share above it.
        hits = before[g] + 1 + (j - 1) * ((r - 1) / (t - 1) if t > 1 else 0.0)
        total += r / t * (hits / (n0 + j)).sum()
    return float(total / y.sum())


def precision_at(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    n = min(k, len(labels))
    return _expected_in_top(labels, scores, k) / n if n else float("nan")


def recall_at(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    y = np.asarray(labels) > 0
    if not y.any():
        return float("nan")
    return _expected_in_top(labels, scores, k) / y.sum()


def ndcg_at(gains: np.ndarray, scores: np.ndarray, k: int) -> float:
    g = np.asarray(gains, float)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    group, starts, sizes = _ties(scores)
    mean_gain = _per_group(2**g - 1, group, len(starts)) / np.maximum(sizes, 1)
    places = np.arange(min(k, len(g)))  # each of the first k places holds its group's mean
    at = np.searchsorted(starts, places, side="right") - 1
    got = (mean_gain[at] * disc[: len(places)]).sum()
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

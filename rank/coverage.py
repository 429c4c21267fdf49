"""Whether a sweep's candidates resemble what a policy's reviewers have judged.

A policy's model learned from its reviews; on items unlike every one of them its probabilities
extrapolate. An outsider's sweep with two policies from different domains (spam history made
only of mails, insult history only of comments) queued 178 of 184 real insults under spam at
P about 0.9, and the report said nothing. The measure here: an item's similarity to the nearest
review of the policy (``hist_<signal>_pos_max_sim`` / ``neg_max_sim``, the closer of the two),
against the same quantity for the reviewed items themselves (each without itself, as training
computes it). At training, the ranker keeps the 5th percentile of the reviews' values per
policy and signal; a sweep reports the share of each policy's candidates below it, and warns
where that share is far above the 5% the reviews themselves show; each queue row says whether
its item is below it (``unlike_reviews``).

Measured with MiniLM (``benchmarks/coverage.py``, ``benchmarks/results/coverage.md``): an
inventory of 700 SpamAssassin mails and 700 Insults comments, spam reviewed on mails only and
insult on comments only: spam's candidates 26.8% below (comments 50.6%, mails 3.1%), insult's
26.3% (mails 47.4%, comments 5.1%); each policy swept over its own domain only: 3.1% and 5.1%.
``WARN_SHARE`` sits between them. The ranker estimates a policy's base rate on its covered
rows (``RiskRanker.calibrate``) and the queue prefers a policy that covers the item
(``rank.queue.build_queue``'s ``unlike``).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

QUANTILE = 0.05  # of the reviews' own nearest-review similarities
MIN_REVIEWS = 50  # fewer reviews (with a value) give no stable quantile: no coverage kept
WARN_SHARE = 0.20  # in-domain sweeps measured 0.03-0.05; two-domain ones 0.26-0.27
COPY = 0.9999  # a nearest review this similar is the same content under another id
_PAIR = re.compile(r"^hist_(.+)_pos_max_sim$")


def signals_with_history(table: pa.Table) -> list[str]:
    """Signals whose closest-review evidence (both kinds) ``table`` carries."""
    names = set(table.column_names)
    found = [m.group(1) for c in table.column_names if (m := _PAIR.match(c))]
    return [s for s in found if f"hist_{s}_neg_max_sim" in names]


def nearest_review(table: pa.Table, signal: str) -> np.ndarray:
    """Each row's similarity to its closest review (either kind); NaN where it has none."""

    def col(suffix: str) -> np.ndarray:
        values = table.column(f"hist_{signal}_{suffix}").to_numpy(zero_copy_only=False)
        return np.asarray(values, np.float64)

    with np.errstate(invalid="ignore"):
        return np.fmax(col("pos_max_sim"), col("neg_max_sim"))


def fit_coverage(table: pa.Table, policies: np.ndarray) -> dict[str, dict[str, float]]:
    """Per policy and signal: the ``QUANTILE`` of the reviewed rows' nearest-review
    similarity (``table``: the ranker's training rows: the reviews the seeds recalled, each
    without its own review). A review whose nearest other review is an identical copy (the
    same content under another id: ``COPY``) says nothing about how far apart the reviews
    are, and is left out: in a history of campaign copies the quantile was 1.0, and every
    lightly edited copy of a reviewed ad was "unlike" them (a reviewer's finding)."""
    out: dict[str, dict[str, float]] = {}
    for signal in signals_with_history(table):
        near = nearest_review(table, signal)
        for policy in sorted(set(policies.tolist())):
            values = near[(policies == policy) & np.isfinite(near) & (near < COPY)]
            if len(values) >= MIN_REVIEWS:
                out.setdefault(str(policy), {})[signal] = float(np.quantile(values, QUANTILE))
    return out


def coverage_report(cands: pa.Table, coverage: dict[str, dict[str, float]]) -> dict[str, dict]:
    """Per policy with coverage, per signal: its threshold, how many candidates have a value,
    and the share of them below the threshold."""
    if not coverage or not cands.num_rows or "policy" not in cands.column_names:
        return {}
    policies = np.asarray(cands.column("policy").to_pylist(), dtype=object)
    present = set(signals_with_history(cands))
    out: dict[str, dict] = {}
    for policy, per_signal in sorted(coverage.items()):
        rows = policies == policy
        for signal, threshold in sorted(per_signal.items()):
            if signal not in present or not rows.any():
                continue
            near = nearest_review(cands, signal)[rows]
            near = near[np.isfinite(near)]
            if not len(near):
                continue
            out.setdefault(policy, {})[signal] = {
                "threshold": round(threshold, 4),
                "candidates": int(len(near)),
                "share_below": round(float((near < threshold).mean()), 4),
            }
    return out


def unlike_reviews(queue: pa.Table, coverage: dict[str, dict[str, float]]) -> pa.Array:
    """Per queue row: whether the item is below its policy's threshold under every signal
    it has a closest-review value for (null: the policy has no coverage, or no such value)."""
    n = queue.num_rows
    out = np.full(n, None, dtype=object)
    if not n or not coverage or "policy" not in queue.column_names:
        return pa.array(out.tolist(), pa.bool_())
    policies = np.asarray(queue.column("policy").to_pylist(), dtype=object)
    present = set(signals_with_history(queue))
    below = np.ones(n, bool)
    seen = np.zeros(n, bool)
    for signal in sorted(present):
        threshold = np.array(
            [coverage.get(p, {}).get(signal, np.nan) for p in policies], np.float64
        )
        near = nearest_review(queue, signal)
        has = np.isfinite(threshold) & np.isfinite(near)
        seen |= has
        below &= ~has | (near < threshold)
    out[seen] = below[seen]
    return pa.array(out.tolist(), pa.bool_())


def coverage_warnings(report: dict[str, dict]) -> list[str]:
    return [
        f"policy {policy!r}: {c['share_below']:.0%} of its {c['candidates']:,} candidates are "
        f"farther from every item its reviewers judged than {1 - QUANTILE:.0%} of those reviews "
        f"are from their nearest other review ({signal} similarity below {c['threshold']:.3f}; "
        f"the reviews themselves: {QUANTILE:.0%}): its probabilities there extrapolate from "
        "unlike data. Check them before acting on them; reviews of such items (or a policy of "
        "their own) teach the model"
        for policy, per_signal in sorted(report.items())
        for signal, c in sorted(per_signal.items())
        if c["share_below"] > WARN_SHARE
    ]

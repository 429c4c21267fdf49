"""The escalation queue: what reviewers work through, riskiest first.

Queue columns
-------------
``rank``              1 = review first.
``item_id``
``policy``            the policy the item most likely violates.
``risk_score``        raw ranker score (ordering).
``risk_probability``  P(violating); ``calibration`` says how far to trust it.
``calibration``       ``policy_history`` (calibrated on this policy's held-out reviews),
                      ``transferred`` (no usable history of its own: another calibrator, with
                      the base rate re-estimated on this sweep's candidates of the policy), or
                      ``none`` (an order, not a probability).
``action_threshold``  the probability from which the policy's suggested action is automatic:
                      chosen on held-out history for precision >= the target at 95% confidence;
                      null when the history cannot support the target (or the policy is cold).
``action``            the closest seed's action when ``risk_probability >= action_threshold``,
                      else ``escalate`` (human review). Cold and transferred policies always
                      escalate; so do seeds whose action is ``human_review``/``escalate``.
``severity``          of the closest seed (1-4).
``reasons``           the evidence that pushed the score up, in words.
``matched_seed_ids``  seeds the item matched, closest first.
``other_policies``    further policies it matched with probability >= 0.5.
``model``             ``full`` or ``cold`` (policy without review history).
``reviewed``          ``""`` (not reviewed under this policy), ``"changed"`` (reviewed, content
                      edited since) or ``"unchanged"`` (reviewed, same content: left out of the
                      queue unless ``include_reviewed``); see ``rank/reviewed.py``.
``previous_verdict``  the earlier review's verdict 0-3 (null when not reviewed).

Ordered by ``risk_probability`` then ``risk_score``; ``rank`` is that order and every metric
(``rank.evaluation``) reads it, never the probability alone.
metadata              the item's own columns, passed through (``text`` truncated to 300 chars).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskrank.rank.ranker import ScoredCandidates

QUEUE_FRONT = (
    "rank",
    "item_id",
    "policy",
    "risk_score",
    "risk_probability",
    "action",
    "severity",
    "reasons",
    "matched_seed_ids",
    "other_policies",
    "model",
    "calibration",
    "action_threshold",
    "reviewed",
    "previous_verdict",
)
ESCALATE = "escalate"
NOT_AUTOMATIC = frozenset({ESCALATE, "human_review", ""})
QUEUE_SCHEMA = pa.schema(
    [
        pa.field("rank", pa.int64(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("policy", pa.string(), nullable=False),
        pa.field("risk_score", pa.float64()),
        pa.field("risk_probability", pa.float64()),
        pa.field("action", pa.string()),
        pa.field("severity", pa.int8()),
        pa.field("reasons", pa.string()),
        pa.field("matched_seed_ids", pa.list_(pa.string())),
        pa.field("other_policies", pa.list_(pa.string())),
        pa.field("model", pa.string()),
        pa.field("calibration", pa.string()),
        pa.field("action_threshold", pa.float64()),
        pa.field("reviewed", pa.string()),
        pa.field("previous_verdict", pa.int8()),
    ],
    metadata={"doc": "escalation queue; evidence and item metadata columns follow these"},
)


def suggested_actions(
    seed_action: np.ndarray, proba: np.ndarray, threshold: np.ndarray
) -> np.ndarray:
    """The seed's action where the probability reaches a (finite) threshold, else escalate."""
    seed_action = np.asarray(seed_action, dtype=object)
    automatic = np.array([a is not None and a not in NOT_AUTOMATIC for a in seed_action])
    with np.errstate(invalid="ignore"):
        reached = np.isfinite(threshold) & (proba >= threshold)
    return np.where(automatic & reached, seed_action, ESCALATE)


def build_queue(
    candidates: pa.Table,
    scored: ScoredCandidates,
    *,
    budget: int | None = None,
    include_reviewed: bool = False,
) -> pa.Table:
    """One row per item (its riskiest policy), sorted by probability then score.

    ``scored``: ``RiskRanker.score(candidates)`` (row by row, calibrated). ``budget``: keep
    only the first ``budget`` rows (None: every recalled item).
    ``include_reviewed``: keep candidate rows marked ``reviewed == "unchanged"`` (default:
    an item already judged under a policy is not escalated again for it).
    """
    n = candidates.num_rows
    if len(scored) != n:
        raise ValueError(f"scored: {len(scored)} rows for {n} candidates")
    if n == 0:  # the full schema, so reports and readers of an empty queue need no special case
        return QUEUE_SCHEMA.empty_table()
    scores, proba, reasons, variant = scored.scores, scored.proba, scored.reasons, scored.variant
    ids = np.asarray(candidates.column("item_id").to_pylist(), dtype=object)
    pols = np.asarray(candidates.column("policy").to_pylist(), dtype=object)
    # Probabilities are comparable across policies; raw lambdarank scores are not.
    order = np.lexsort((-scores, -proba))
    first: dict[str, int] = {}
    others: dict[str, list[str]] = {}
    skip = np.zeros(n, dtype=bool)
    if not include_reviewed and "reviewed" in candidates.column_names:
        skip = np.asarray(candidates.column("reviewed").to_pylist(), dtype=object) == "unchanged"
    for r in order:
        if skip[r]:
            continue
        if ids[r] not in first:
            first[ids[r]] = r
            others[ids[r]] = []
        elif proba[r] >= 0.5:
            others[ids[r]].append(pols[r])
    rows = np.array(list(first.values()), dtype=np.int64)
    if budget is not None:
        rows = rows[:budget]
    table = candidates.take(pa.array(rows))
    seed_action = np.asarray(table.column("action").to_pylist(), dtype=object)
    p = proba[rows]
    threshold = scored.action_threshold[rows]
    action = suggested_actions(seed_action, p, threshold)
    cols = {
        "rank": pa.array(np.arange(1, len(rows) + 1), pa.int64()),
        "risk_score": pa.array(scores[rows], pa.float64()),
        "risk_probability": pa.array(p, pa.float64()),
        "action": pa.array(action.tolist(), pa.string()),
        "reasons": pa.array([reasons[r] for r in rows], pa.string()),
        "other_policies": pa.array([others[ids[r]] for r in rows], pa.list_(pa.string())),
        "model": pa.array(variant[rows].tolist(), pa.string()),
        "calibration": pa.array(scored.calibration[rows].tolist(), pa.string()),
        "action_threshold": pa.array(threshold, pa.float64(), mask=~np.isfinite(threshold)),
    }
    for name, col in cols.items():
        if name in table.column_names:
            table = table.drop([name])
        table = table.append_column(name, col)
    if "text" in table.column_names:
        table = table.set_column(
            table.column_names.index("text"), "text", pc.utf8_slice_codeunits(table["text"], 0, 300)
        )
    front = [c for c in QUEUE_FRONT if c in table.column_names]
    return table.select(front + [c for c in table.column_names if c not in front])

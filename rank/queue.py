"""The escalation queue: what reviewers work through, riskiest first.

Its columns are ``QUEUE_SCHEMA`` (the README's queue table is generated from it), then the
candidates' evidence, then the item's own metadata (``text`` truncated to 300 chars).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskrank.index.tables import check_columns, doc_field
from riskrank.recall.candidates import CANDIDATE_KEY_SCHEMA

ACT_ON_SEED_ACTION = 0.8
QUEUE_SCHEMA = pa.schema(
    [
        doc_field("rank", pa.int64(), "1 = review first", required=True),
        doc_field("item_id", pa.string(), "the item", required=True),
        doc_field("policy", pa.string(), "the policy it most likely violates", required=True),
        doc_field("risk_score", pa.float64(), "raw ranker score (ordering within a policy)"),
        doc_field("risk_probability", pa.float64(), "P(violating), calibrated on held-out history"),
        doc_field(
            "action",
            pa.string(),
            f"the closest seed's action when the probability is >= {ACT_ON_SEED_ACTION}, "
            "else `human_review`",
        ),
        doc_field("severity", pa.int8(), "of the closest seed (1-4)"),
        doc_field("reasons", pa.string(), "the evidence that pushed the score up, in words"),
        doc_field("matched_seed_ids", pa.list_(pa.string()), "seeds it matched, closest first"),
        doc_field(
            "other_policies",
            pa.list_(pa.string()),
            "further policies it matched with probability >= 0.5",
        ),
        doc_field("model", pa.string(), "`full`, or `cold` for a policy without review history"),
    ],
    metadata={"doc": "escalation queue; evidence and item metadata columns follow these"},
)


def build_queue(
    candidates: pa.Table,
    scores: np.ndarray,
    proba: np.ndarray,
    reasons: list[str],
    variant: np.ndarray,
    *,
    budget: int | None = None,
) -> pa.Table:
    """One row per item (its riskiest policy), sorted by probability then score."""
    check_columns(candidates, CANDIDATE_KEY_SCHEMA, what="candidates")
    n = candidates.num_rows
    if n == 0:
        return QUEUE_SCHEMA.empty_table()
    ids = np.asarray(candidates.column("item_id").to_pylist(), dtype=object)
    pols = np.asarray(candidates.column("policy").to_pylist(), dtype=object)
    # Probabilities are comparable across policies; raw lambdarank scores are not.
    order = np.lexsort((-scores, -proba))
    first: dict[str, int] = {}
    others: dict[str, list[str]] = {}
    for r in order:
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
    action = np.where(p >= ACT_ON_SEED_ACTION, seed_action, "human_review")
    cols = {
        "rank": pa.array(np.arange(1, len(rows) + 1), pa.int64()),
        "risk_score": pa.array(scores[rows], pa.float64()),
        "risk_probability": pa.array(p, pa.float64()),
        "action": pa.array(action.tolist(), pa.string()),
        "reasons": pa.array([reasons[r] for r in rows], pa.string()),
        "other_policies": pa.array([others[ids[r]] for r in rows], pa.list_(pa.string())),
        "model": pa.array(variant[rows].tolist(), pa.string()),
    }
    for name, col in cols.items():
        if name in table.column_names:
            table = table.drop([name])
        table = table.append_column(name, col)
    if "text" in table.column_names:
        table = table.set_column(
            table.column_names.index("text"), "text", pc.utf8_slice_codeunits(table["text"], 0, 300)
        )
    # The written-down contract first, in its order and types; evidence and metadata follow.
    front = [f for f in QUEUE_SCHEMA if f.name in table.column_names]
    for field in front:
        i = table.column_names.index(field.name)
        table = table.set_column(i, field, table.column(i).cast(field.type))
    names = [f.name for f in front]
    return table.select(names + [c for c in table.column_names if c not in names])

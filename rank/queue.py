"""The escalation queue: what reviewers work through, riskiest first.

Its columns are ``QUEUE_SCHEMA`` (the README's queue table is generated from it), then the
candidates' evidence, then the item's own metadata (``text`` cut to ``QUEUE_TEXT_CHARS``).
Ordered by ``risk_probability`` then ``risk_score``; ``rank`` is that order and every metric
(``rank.evaluation``) reads it, never the probability alone.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskrank.index.content_digest import seen_text
from riskrank.index.tables import check_columns, doc_field
from riskrank.rank.ranker import ScoredCandidates
from riskrank.recall.candidates import CANDIDATE_KEY_SCHEMA

ESCALATE = "escalate"
NOT_AUTOMATIC = frozenset({ESCALATE, "human_review", ""})
QUEUE_SCHEMA = pa.schema(
    [
        doc_field("rank", pa.int64(), "1 = review first (equal scores: by item id)", required=True),
        doc_field("item_id", pa.string(), "the item", required=True),
        doc_field("policy", pa.string(), "the policy it most likely violates", required=True),
        doc_field("risk_score", pa.float64(), "raw ranker score (ordering)"),
        doc_field(
            "risk_probability", pa.float64(), "P(violating); `calibration` says how far to trust it"
        ),
        doc_field(
            "action",
            pa.string(),
            "the closest seed's action when `risk_probability >= action_threshold`, else "
            "`escalate` (human review); cold, transferred and young (`policy_reviews`) "
            "policies always escalate, and so do items `unlike_reviews`, items a near-copy "
            "of which reviewers found benign (`cleared_copy`), and seeds whose action is "
            "`human_review`/`escalate`",
        ),
        doc_field("severity", pa.int8(), "of the closest seed (1-4)"),
        doc_field(
            "reasons",
            pa.string(),
            "the evidence that pushed the score up, in words; `(low)` marks evidence that "
            "raised it by being low (far from the closest benign review, say), `(negative, yet "
            "higher than usual)` a negative log-odds or z-score that raised it",
        ),
        doc_field("matched_seed_ids", pa.list_(pa.string()), "seeds it matched, closest first"),
        doc_field(
            "other_policies",
            pa.list_(pa.string()),
            "further policies it matched with probability >= 0.5",
        ),
        doc_field(
            "model",
            pa.string(),
            "`full`; `transfer` for a policy with few reviews of its own (relative seed evidence "
            "and its history); `cold` for a policy without review history",
        ),
        doc_field(
            "calibration",
            pa.string(),
            "`policy_history` (calibrated on this policy's held-out reviews, with the base rate "
            "re-estimated on this sweep's candidates of the policy where they hold 50 of each "
            "verdict, else their level kept: `report.json` `decisions`), `policy_reviews` (a young "
            "policy: the calibrator of all policies' held-out reviews, its level moved to this "
            "policy's own, or as it is where its reviews hold one verdict only), "
            "`transferred` (no usable history of its own: another calibrator, with the base "
            "rate re-estimated on this sweep's candidates of the policy), or `none` (an order, "
            "not a probability)",
        ),
        doc_field(
            "action_threshold",
            pa.float64(),
            "the probability from which the policy's suggested action is automatic: chosen on "
            "held-out history for precision >= the target at 95% confidence; null when the "
            "history cannot support the target (or the policy is cold)",
        ),
        doc_field(
            "reviewed",
            pa.string(),
            "`unchanged` / `changed` when the model's history holds a verdict on this item for "
            "this policy (content compared by digest), else empty; unchanged ones are left out "
            "unless `include_reviewed`",
        ),
        doc_field(
            "previous_verdict", pa.int8(), "that earlier verdict (0-3), null when not reviewed"
        ),
        doc_field(
            "reviewed_elsewhere",
            pa.list_(pa.string()),
            "`policy:verdict` of reviews of this same content under other policies (it is "
            "queued all the same: a review counts for its own policy)",
        ),
        doc_field(
            "unlike_reviews",
            pa.bool_(),
            "true when the item is farther from every item reviewed for this policy than 95% "
            "of those reviews are from each other (under each signal it has): its probability "
            "extrapolates (rank/coverage.py); null for a policy without that measure",
        ),
        doc_field(
            "cleared_copy",
            pa.float32(),
            "similarity of the closest near-copy of the item that its policy's reviewers found "
            "benign (at or above the signal's strong match level; null: none): such an item "
            "is never actioned automatically",
        ),
        doc_field(
            "text_sha256",
            pa.string(),
            "sha256 of the item's whole text as swept (`text` holds its first 300 characters), "
            "read as a reviewer sees it (UTF-8 of the text with line breaks as \\n, Unicode "
            "NFC; the bytes' sha256 for most texts): `review import` stores a verdict only on "
            "the text the reviewer was shown (a CRLF re-export of it is); null where the item "
            "had no text cell (a picture only), and a text found later is set aside; an empty "
            "or blank text is digested as it is",
        ),
    ],
    metadata={"doc": "escalation queue; evidence and item metadata columns follow these"},
)
QUEUE_FRONT = tuple(QUEUE_SCHEMA.names)


def near_copy_levels(signals) -> dict[str, float]:
    """Each signal's strong match threshold: the similarity from which an item is a
    near-copy of another."""
    return {s.name: float(s.match_thresholds[1]) for s in signals}


def cleared_copy(row: dict, strong: dict[str, float]) -> tuple[str, float] | None:
    """The signal and similarity of a near-copy of the row's item that reviewers of its
    policy found benign (``hist_<signal>_neg_max_sim`` at or above the signal's strong match
    level, ``strong``), the closest such; None where there is none."""
    best = None
    for name, level in strong.items():
        sim = row.get(f"hist_{name}_neg_max_sim")
        if sim is not None and sim == sim and sim >= level and (best is None or sim > best[1]):
            best = (name, float(sim))
    return best


def cleared_copies(table: pa.Table, strong: dict[str, float]) -> np.ndarray:
    """``cleared_copy``'s similarity per row of ``table`` (NaN: none)."""
    out = np.full(table.num_rows, np.nan)
    for name, level in strong.items():
        col = f"hist_{name}_neg_max_sim"
        if col in table.column_names:
            sims = np.nan_to_num(table[col].to_numpy(zero_copy_only=False).astype(float), nan=-1)
            take = (sims >= level) & ~(out >= sims)
            out[take] = sims[take]
    return out


def suggested_actions(
    seed_action: np.ndarray, proba: np.ndarray, threshold: np.ndarray, unlike=None, cleared=None
) -> np.ndarray:
    """The seed's action where the probability reaches a (finite) threshold, else escalate.

    ``unlike`` (per row, ``True``/``False``/``None``: ``unlike_reviews``): a row its
    policy's model extrapolates to escalates; the threshold's held-out precision says nothing
    of it (an outsider's mixed inventory: 215 comments unlike every spam review were
    suggested for automatic removal). ``cleared`` (per row, ``cleared_copies``; NaN: none): a
    row a near-copy of which reviewers found benign escalates too: the removal would overrule a
    reviewer's decision on the same content (an outsider's audit: a demo removal whose
    closest review, a near-copy at 0.707, had been found benign)."""
    seed_action = np.asarray(seed_action, dtype=object)
    # dtype given: with no rows (every candidate already reviewed) numpy would infer float.
    automatic = np.array([a is not None and a not in NOT_AUTOMATIC for a in seed_action], bool)
    if unlike is not None:
        automatic &= np.array([not (u is True or u == 1) for u in unlike], dtype=bool)
    if cleared is not None:
        automatic &= np.isnan(np.asarray(cleared, float))
    with np.errstate(invalid="ignore"):
        reached = np.isfinite(threshold) & (proba >= threshold)
    return np.where(automatic & reached, seed_action, ESCALATE)


QUEUE_TEXT_CHARS = 300  # the queue holds the start of each item's text, not all of it


def text_digests(text) -> pa.Array:
    """sha256 of each whole text as a reader sees it (``seen_text``: line breaks as ``\\n``,
    Unicode NFC; null where there is none): what the queue records of a text it shows only the
    start of. As seen, because ``review import`` asks whether the text found is the one the
    reviewer was shown, and a later CRLF re-export of the same ad was quarantined as "edited
    since the sweep?" (a reviewer's finding). Equal to the bytes' sha256 for a text without
    ``\\r`` already in NFC; ``text_digest_forms`` gives both."""
    values = text.to_pylist() if hasattr(text, "to_pylist") else list(text)
    return pa.array([_sha256(seen_text(t)) if isinstance(t, str) else None for t in values],
                    pa.string())  # fmt: skip


def text_digest_forms(text: str) -> set[str]:
    """The digests a queue may hold for a text: of its bytes (queues before the digest read
    it as seen) and as seen (``text_digests``). ``seen_text`` is idempotent, so a digest in
    this set means the text reads as the one the queue digested, whichever form it holds."""
    return {_sha256(text), _sha256(seen_text(text))}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def shown_text(text: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """What the queue shows of texts (review import checks verdicts' content against it)."""
    return pc.utf8_slice_codeunits(text, 0, QUEUE_TEXT_CHARS)


def _prefer_covered(first, others, order, skip, ids, pols, proba, unlike) -> None:
    """``build_queue``'s ``unlike`` rule, in place on the chosen row of each item."""
    outside = {i for i, r in first.items() if unlike[r] is True or unlike[r] == 1}
    if not outside:
        return
    for r in order:
        item = ids[r]
        if item not in outside or skip[r] or r == first[item]:
            continue
        if proba[r] >= 0.5 and unlike[r] is not None and not unlike[r]:
            was = first[item]
            first[item] = r
            others[item] = [p for p in others[item] if p != pols[r]]
            if proba[was] >= 0.5:
                others[item].insert(0, pols[was])
            outside.discard(item)


def build_queue(
    candidates: pa.Table,
    scored: ScoredCandidates,
    *,
    budget: int | None = None,
    include_reviewed: bool = False,
    unlike: np.ndarray | None = None,
    strong: dict[str, float] | None = None,
) -> pa.Table:
    """One row per item (its riskiest policy), sorted by probability, score, then item id.

    ``scored``: ``RiskRanker.score(candidates)`` (row by row, calibrated). ``budget``: keep
    only the first ``budget`` rows (None: every recalled item).
    ``include_reviewed``: keep candidate rows marked ``reviewed == "unchanged"`` (default:
    an item already judged under a policy is not escalated again for it).
    ``unlike``: per candidate row, whether the item is unlike every review of that policy
    (rank/coverage.py; None: not known). An item whose riskiest policy's model extrapolates
    there, and which another policy's model, whose reviews do cover it, also finds violating
    (P >= 0.5), is queued under that other policy: two models agree it violates, and the one
    that has seen such items says how much. ``strong``: each signal's near-copy level
    (its strong match threshold): an item a near-copy of which its policy's reviewers found
    benign is escalated, never actioned automatically (``suggested_actions``).
    """
    check_columns(candidates, CANDIDATE_KEY_SCHEMA, what="candidates")
    n = candidates.num_rows
    if len(scored) != n:
        raise ValueError(f"scored: {len(scored)} rows for {n} candidates")
    if n == 0:  # the full schema, so reports and readers of an empty queue need no special case
        return QUEUE_SCHEMA.empty_table()
    scores, proba, reasons, variant = scored.scores, scored.proba, scored.reasons, scored.variant
    ids = np.asarray(candidates.column("item_id").to_pylist(), dtype=object)
    pols = np.asarray(candidates.column("policy").to_pylist(), dtype=object)
    # Probabilities are comparable across policies; raw lambdarank scores are not. Ties (near-
    # copies score alike) go by item id and policy, not by the export's row order: the same
    # inventory gives the same queue, ranks and campaign ids however it was ordered or split.
    tie_id = np.unique(ids.astype(str), return_inverse=True)[1]
    tie_pol = np.unique(pols.astype(str), return_inverse=True)[1]
    order = np.lexsort((tie_pol, tie_id, -scores, -proba))
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
    if unlike is not None:
        _prefer_covered(first, others, order, skip, ids, pols, proba, unlike)
    position = np.empty(n, np.int64)
    position[order] = np.arange(n)
    rows = np.array(sorted(first.values(), key=lambda r: position[r]), dtype=np.int64)
    if budget is not None:
        rows = rows[:budget]
    table = candidates.take(pa.array(rows))
    seed_action = np.asarray(table.column("action").to_pylist(), dtype=object)
    p = proba[rows]
    threshold = scored.action_threshold[rows]
    cleared = cleared_copies(table, strong or {})
    action = suggested_actions(
        seed_action, p, threshold, None if unlike is None else np.asarray(unlike)[rows], cleared
    )
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
        "cleared_copy": pa.array(cleared, pa.float32(), mask=np.isnan(cleared)),
    }
    for name, col in cols.items():
        if name in table.column_names:
            table = table.drop([name])
        table = table.append_column(name, col)
    if "text" in table.column_names:
        if "text_sha256" in table.column_names:
            table = table.drop(["text_sha256"])
        table = table.append_column("text_sha256", text_digests(table["text"]))
        i = table.column_names.index("text")
        table = table.set_column(i, "text", shown_text(table["text"]))
    else:  # pictures only: the contract's columns all the same (an empty queue had them)
        table = table.append_column("text_sha256", pa.nulls(table.num_rows, pa.string()))
    # The written-down contract first, in its order and types; evidence and metadata follow.
    front = [f for f in QUEUE_SCHEMA if f.name in table.column_names]
    for field in front:
        i = table.column_names.index(field.name)
        table = table.set_column(i, field, table.column(i).cast(field.type))
    names = [f.name for f in front]
    return table.select(names + [c for c in table.column_names if c not in names])

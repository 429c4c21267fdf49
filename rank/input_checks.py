"""What ``train`` and ``sweep`` check about their inputs before the expensive part starts.

Embedding thousands of items takes minutes; an input that cannot train or whose metadata
would collide with the queue's own columns should fail (or be fixed, loudly) first.
"""

from __future__ import annotations

import numbers
import warnings
from collections import Counter

import pyarrow as pa

from riskrank.index.run_log import get_logger
from riskrank.index.schema import CONTENT_COLUMNS, ITEM_ID, quarantine_table
from riskrank.index.tables import SchemaError, renamed_runs
from riskrank.rank.campaigns import CAMPAIGN_COLUMNS, MEMBER_DIGESTS, MEMBER_VERDICTS
from riskrank.rank.queue import QUEUE_FRONT
from riskrank.rank.reasons import EXPLANATION_SCHEMA
from riskrank.recall.candidates import KEY_COLUMNS, evidence_feature_columns
from riskrank.recall.history import POSITIVE_VERDICT

log = get_logger("riskrank")
METADATA_PREFIX = "meta_"
# Columns the pipeline itself writes into candidates and the queue (besides evidence): the
# queue's, the campaigns' and the reasons'; the slot columns are rank/exploration.py's (which
# imports this module). tests/rank/test_input_checks.py checks a sweep writes no other.
SLOT_COLUMNS = ("slot", "slot_reason")
_RESERVED = {
    *QUEUE_FRONT, *KEY_COLUMNS, "verdict", "sweep_id", *CAMPAIGN_COLUMNS, "campaign_members",
    MEMBER_DIGESTS, MEMBER_VERDICTS, *EXPLANATION_SCHEMA.names, *SLOT_COLUMNS,
}  # fmt: skip


class ThinHistoryWarning(UserWarning):
    """A policy's review history has too few examples of a class to learn from reliably."""


def check_budget(budget: int | None, name: str = "budget") -> int | None:
    """``budget`` is the number of items to escalate: None (all) or a positive integer, a
    NumPy one too (``q.campaign_size.sum()`` was refused: an outsider), returned as an int."""
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral) or budget <= 0:
        raise ValueError(
            f"{name}={budget!r}: expected a positive number of items (or none given: every item)"
        )
    return int(budget)


def check_explore(explore: float) -> None:
    """``explore`` is the share of the budget spent on exploration: a number in [0, 1)."""
    ok = isinstance(explore, numbers.Real) and not isinstance(explore, bool)  # numpy too
    if not ok or not 0 <= explore < 1:  # (NaN fails the comparison)
        raise ValueError(f"explore={explore!r} is invalid; expected a share in [0, 1)")


def check_history_trainable(
    hist: pa.Table, *, min_per_class: int = 2, warn: bool = True, after: str = ""
) -> None:
    """Refuse history the ranker cannot learn from (no violating or no benign row) before
    anything is embedded; warn about policies with fewer than ``min_per_class`` of a class.
    ``after``: what already removed rows, for the message."""
    verdicts = hist.column("verdict").to_pylist()
    policies = hist.column("policy").to_pylist()
    pos = Counter(p for p, v in zip(policies, verdicts) if v >= POSITIVE_VERDICT)
    neg = Counter(p for p, v in zip(policies, verdicts) if v < POSITIVE_VERDICT)
    if not pos or not neg:
        raise SchemaError(
            f"history: {sum(pos.values())} violating (verdict>=2) and {sum(neg.values())} benign "
            f"usable rows{after}; training needs both (see the history quarantine)"
        )
    for policy in sorted(set(policies)) if warn else ():
        if pos[policy] < min_per_class or neg[policy] < min_per_class:
            warnings.warn(
                f"history: policy {policy!r} has {pos[policy]} violating and {neg[policy]} "
                f"benign reviews; its probabilities will rest on almost nothing",
                ThinHistoryWarning,
                stacklevel=3,
            )


def input_rows(clean: pa.Table, quarantined: pa.Table) -> list[int]:
    """The input row number of each of ``clean``'s rows, where ``quarantined`` holds every
    row split off the input so far, each with its input row number: the quarantine's
    ``row`` is the input file's (a later stage numbered the rows left, and pointed a
    reviewer at another review: an outsider's report)."""
    gone = set(quarantined.column("row").to_pylist())
    rows = [r for r in range(clean.num_rows + len(gone)) if r not in gone]
    if len(rows) != clean.num_rows:
        raise AssertionError("quarantined rows without their input row number")
    return rows


def history_rows_without_seeds(
    hist: pa.Table, seeds, rows: list[int] | None = None
) -> tuple[pa.Table, pa.Table]:
    """Split off the reviews under a policy the seeds do not name (a typo, "Spam" for
    "spam"): recall finds candidates per seed policy, so they would train nothing while the
    model listed the policy as having history. Quarantined with the reason, as ``review
    import`` quarantines verdicts under such a policy. ``rows``: the input row number of
    each of ``hist``'s rows (``input_rows``), else they are reported as -1."""
    have = set(seeds.policies)
    policies = hist.column("policy").to_pylist()
    keep = [p in have for p in policies]
    if all(keep):
        return hist, quarantine_table([])
    named = ", ".join(repr(p) for p in sorted(have))
    rows = [-1] * hist.num_rows if rows is None else rows
    bad = [
        {
            ITEM_ID: i,
            "row": r,
            "stage": "history",
            "reason": f"policy {p!r} has no seeds (the seeds' policies: {named})",
        }
        for i, p, k, r in zip(hist.column(ITEM_ID).to_pylist(), policies, keep, rows)
        if not k
    ]
    return hist.filter(pa.array(keep)), quarantine_table(bad)


def history_rows_not_indexed(
    hist: pa.Table, index_quarantine: pa.Table, rows: list[int] | None = None
) -> pa.Table:
    """Quarantine rows for the reviews whose item could not be indexed (no usable content):
    they take no part in training, so they count as quarantined. ``rows``: as for
    ``history_rows_without_seeds``."""
    rows = list(range(hist.num_rows)) if rows is None else rows
    reasons = dict(
        zip(
            index_quarantine.column(ITEM_ID).to_pylist(),
            index_quarantine.column("reason").to_pylist(),
        )
    )
    rows = [
        {ITEM_ID: item_id, "row": r, "stage": "history-index", "reason": reasons[item_id]}
        for r, item_id in zip(rows, hist.column(ITEM_ID).to_pylist())
        if item_id in reasons
    ]
    return quarantine_table(rows)


def _reserved(name: str) -> bool:
    return (
        name in _RESERVED
        or name.startswith(("hist_", "__rr_"))
        or name.endswith("_best_seed_id")  # recall's, per signal
        or bool(evidence_feature_columns(pa.table({name: pa.array([], pa.float32())})))
    )


def protect_metadata(table: pa.Table, *, what: str = "inventory") -> pa.Table:
    """Rename metadata columns whose names the pipeline writes itself (``rank``, ``policy``,
    ``severity``, ``model``, evidence such as ``text_best_sim``...) to ``meta_<name>``, so
    they reach the queue instead of being overwritten (or, for evidence names, mistaken for
    evidence by the ranker). Each rename is logged."""
    names = list(table.column_names)
    taken = set(names)
    renamed = {}
    for i, name in enumerate(names):
        if name in CONTENT_COLUMNS or name == ITEM_ID or not _reserved(name):
            continue
        new = METADATA_PREFIX + name
        while new in taken:
            new = METADATA_PREFIX + new
        taken.add(new)
        names[i] = renamed[name] = new
    if renamed:
        log.warning(
            "%s: metadata columns renamed so the queue keeps them: %s",
            what,
            ", ".join(f"{a} -> {b}" for a, b in renamed.items()),
        )
        meta = renamed_runs(table, renamed).schema.metadata  # which file each row came from
        table = table.rename_columns(names).replace_schema_metadata(meta)
    return table

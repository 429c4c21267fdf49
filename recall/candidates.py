"""The candidate table: one row per (item, policy) with the evidence as columns.

Key columns: ``item_id``, ``policy``, ``severity`` (of the best-matching seed), ``action``
(suggested by that seed), ``matched_seed_ids`` (list, closest first), ``n_signals_matched``.

Per signal ``<s>`` (``text``, ``image``, ``pdq``, ...) one column group, NaN where the item has
no such content: the evidence recall computes for every signal (below), then the evidence the
signal itself declares (``Signal.evidence_columns``: e.g. ``centroid_sim`` for embeddings,
``best_distance`` for PDQ). Reviewed history adds ``hist_<s>_*``. Everything here is read from
these declarations and the signal registry: the README's tables, the ranker's features, their
monotone directions and the words of its reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import pyarrow as pa

from riskrank.index.signals.base import EvidenceColumn, Signal
from riskrank.index.signals.registry import registered_signals, signal_class
from riskrank.index.tables import doc_field

# All float32 so that NaN can mean "this item has no such content" (LightGBM's missing value),
# counts included. ``direction`` is how the evidence should move risk (+1 up, -1 down, 0 either
# way): the ranker constrains its trees to it, so what it learns on one policy's history holds
# on another's (cold start), and no reason ever reads "less similar to the seed, so riskier".
MATCH_EVIDENCE = (
    EvidenceColumn("best_sim", "similarity to the closest seed", direction=1),
    EvidenceColumn("top3_mean", "mean similarity to the 3 closest seeds", direction=1),
    EvidenceColumn("n_seeds_hi", "seeds matched above the strong threshold", direction=1),
    EvidenceColumn("n_seeds_lo", "seeds matched above the weak threshold", direction=1),
    EvidenceColumn(
        "best_rank",
        "rank of the item in its closest seed's neighbour list (copies share a rank)",
        direction=-1,
    ),
    EvidenceColumn(
        "best_sim_z",
        "closest-seed similarity in std-devs above the inventory's typical similarity to that seed",
        direction=1,
    ),
)
NEIGHBOURHOOD_EVIDENCE = (
    EvidenceColumn("density", "near-identical inventory neighbours (campaigns come in bursts)"),
    EvidenceColumn("neighbour_sim", "mean similarity to its 10 nearest inventory neighbours"),
)
BEST_SEED = EvidenceColumn("best_seed_id", "id of the closest seed", pa.string())
HISTORY_EVIDENCE = (
    EvidenceColumn(
        "pos_max_sim",
        "similarity to the closest item reviewers confirmed violating",
        direction=1,
        missing="NaN: none reviewed so",
    ),
    EvidenceColumn(
        "neg_max_sim",
        "similarity to the closest item reviewers found benign",
        direction=-1,
        missing="NaN: none reviewed so",
    ),
    EvidenceColumn(
        "knn_score", "share of confirmed violations among the closest reviewed items", direction=1
    ),
    EvidenceColumn("knn_verdict", "mean verdict (0-3) of the closest reviewed items", direction=1),
    EvidenceColumn(
        "probe_score", "log-odds of a linear classifier trained on the reviewed items", direction=1
    ),
)
# Benign seeds (the allowlist, recall/allowlist.py): per signal, NaN when the policy has none,
# so a model trained without them and candidates recalled without them stay compatible.
BENIGN_EVIDENCE = (
    EvidenceColumn(
        "benign_sim", "similarity to the policy's closest benign seed (allowlist)", direction=-1
    ),
    EvidenceColumn(
        "benign_margin",
        "closest violating seed's similarity minus closest benign seed's (negative: more benign)",
        direction=1,
    ),
)
# The closest reviewed item itself, for reasons a reviewer can check ("looks like X, which
# reviewers rejected"). Not ranking features: the ranker reads only HISTORY_EVIDENCE.
HISTORY_NEAREST = (
    EvidenceColumn("nearest_id", "id of the closest reviewed item", pa.string()),
    EvidenceColumn("nearest_sim", "similarity to the closest reviewed item"),
    EvidenceColumn("nearest_verdict", "verdict (0-3) reviewers gave the closest reviewed item"),
    EvidenceColumn(
        "n_near_violating",
        "reviewed items confirmed violating above the strong match threshold (near-copies)",
    ),
)
COMMON_EVIDENCE = MATCH_EVIDENCE + NEIGHBOURHOOD_EVIDENCE + BENIGN_EVIDENCE


def signal_evidence_columns(signal: Signal | type[Signal]) -> tuple[EvidenceColumn, ...]:
    """A signal's numeric evidence group, in column order (``best_seed_id`` follows it)."""
    return MATCH_EVIDENCE + tuple(signal.evidence_columns) + NEIGHBOURHOOD_EVIDENCE


def _suffix_specs(
    signals: tuple[type[Signal], ...] | None = None,
) -> dict[str, EvidenceColumn]:
    """Every evidence suffix recall or a registered signal declares (``signals``: the
    registered classes, default now), longest first (so ``neighbour_sim`` is not read as
    ``..._sim``); the first declaration of a suffix wins."""
    specs: dict[str, EvidenceColumn] = {}
    signals = tuple(registered_signals().values()) if signals is None else signals
    for col in COMMON_EVIDENCE + tuple(c for cls in signals for c in cls.evidence_columns):
        specs.setdefault(col.suffix, col)
    return dict(sorted(specs.items(), key=lambda kv: -len(kv[0])))


def _spec(name: str) -> tuple[str, EvidenceColumn] | None:
    """``(signal, declaration)`` of an evidence column (None for keys and metadata).
    Remembered per name and set of registered signals: a sweep's reasons asked ~50,000
    times, and each answer sorted every declaration again."""
    return _spec_among(name, tuple(registered_signals().values()))


@lru_cache(maxsize=4096)
def _spec_among(name: str, signals: tuple[type[Signal], ...]) -> tuple[str, EvidenceColumn] | None:
    if name.startswith("hist_"):
        for col in HISTORY_EVIDENCE:
            if name.endswith("_" + col.suffix):
                return name[5 : -len(col.suffix) - 1], col
        return None
    for suffix, col in _suffix_specs(signals).items():
        if name.endswith("_" + suffix):
            return name[: -len(suffix) - 1], col
    return None


def monotone_direction(name: str) -> int:
    """+1 / -1 / 0 for an evidence column (0 for metadata and undirected evidence)."""
    found = _spec(name)
    return found[1].direction if found else 0


CANDIDATE_KEY_SCHEMA = pa.schema(
    [
        doc_field("item_id", pa.string(), "the recalled item", required=True),
        doc_field("policy", pa.string(), "the policy whose seeds recalled it", required=True),
        doc_field("severity", pa.int8(), "severity of the closest seed (1-4)"),
        doc_field("action", pa.string(), "action of the closest seed"),
        doc_field("matched_seed_ids", pa.list_(pa.string()), "seeds it matched, closest first"),
        doc_field("n_signals_matched", pa.int8(), "signals in which some seed matched it"),
    ],
    metadata={
        "doc": "one row per (item, policy): these columns, one evidence group per signal, "
        "hist_* evidence, then the item's metadata"
    },
)
KEY_COLUMNS = tuple(CANDIDATE_KEY_SCHEMA.names)


def candidate_schema(signals: Sequence[Signal | str], history: bool) -> pa.Schema:
    """Full candidate schema for the given signals (instances, or registered names); item
    metadata columns follow it."""
    fields = list(CANDIDATE_KEY_SCHEMA)
    for signal in signals:
        signal = signal_class(signal) if isinstance(signal, str) else signal
        name = signal.name
        fields += [
            pa.field(seed_evidence_name(name, c.suffix), c.dtype)
            for c in signal_evidence_columns(signal)
        ]
        fields.append(pa.field(seed_evidence_name(name, BEST_SEED.suffix), BEST_SEED.dtype))
        fields += [pa.field(seed_evidence_name(name, c.suffix), c.dtype) for c in BENIGN_EVIDENCE]
        if history:
            fields += [
                pa.field(history_evidence_name(name, c.suffix), c.dtype)
                for c in HISTORY_EVIDENCE + HISTORY_NEAREST
            ]
    return pa.schema(fields)


def with_every_signal(
    table: pa.Table, signals: Sequence[Signal], *, lexical: bool = False
) -> pa.Table:
    """``table`` with null evidence columns for each of ``signals`` that gave it none: a day
    whose inventory has no item of one kind (no images at all) is searched by the other
    signals only, and a ranker trained with every signal reads the missing one as "no
    evidence" (LightGBM's missing value), as it does for one item without an image.
    ``lexical``: the model has the lexical probe, whose score a day without text lacks too."""
    has_hist = any(c.startswith("hist_") for c in table.column_names)
    probe = history_evidence_name("lexical", "probe_score")
    if lexical and probe not in table.column_names:
        table = table.append_column(probe, pa.nulls(table.num_rows, pa.float64()))
    for signal in signals:
        if seed_evidence_name(signal.name, BEST_SEED.suffix) in table.column_names:
            continue
        for field in candidate_schema([signal], has_hist):
            if field.name not in table.column_names:
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table


def seed_evidence_name(signal: str, suffix: str) -> str:
    return f"{signal}_{suffix}"


def history_evidence_name(signal: str, suffix: str) -> str:
    return f"hist_{signal}_{suffix}"


def describe_feature(name: str) -> str:
    """Words for an evidence column (for reasons and docs)."""
    found = _spec(name)
    return f"{found[1].meaning} ({found[0]})" if found else name


def evidence_feature_columns(table: pa.Table) -> list[str]:
    """The numeric evidence columns of a candidate table, in table order.

    Recall's own evidence (``<s>_best_sim`` ...) and ``hist_*`` count under any signal name; a
    signal-specific suffix (``_p``, ``_quality``) only under the name of a signal the table has
    evidence of (``<s>_best_seed_id``) or of a registered signal, so metadata is not taken."""
    tail = "_" + BEST_SEED.suffix
    signals = {n[: -len(tail)] for n in table.column_names if n.endswith(tail)}
    signals |= {cls.name for cls in registered_signals().values()}
    out = []
    for name in table.column_names:
        found = _spec(name)
        if found is None:
            continue
        signal, col = found
        if name.startswith("hist_") or col in COMMON_EVIDENCE or signal in signals:
            out.append(name)
    return out


def is_history_feature(name: str) -> bool:
    return name.startswith("hist_")


# Seed evidence whose scale is set by this inventory or by the policy's own seeds: a z-score
# against the inventory's background, a rank in a seed's neighbour list, the log-odds of a probe
# self-trained on this inventory, a margin between the policy's own violating and benign seeds.
# Raw similarities are not: how close a policy's seeds lie to their items (benign ones included)
# depends on the seeds. A cut on raw similarity learned from one policy's history put a new
# policy's benign items level with its violations, above a warm policy's violations in a mixed
# queue (tests/rank/test_calibration.py); only these transfer to a policy without history.
POLICY_RELATIVE = frozenset({"best_sim_z", "best_rank", "pseudo_probe", "benign_margin"})


def is_policy_relative(name: str) -> bool:
    """True for seed evidence that transfers to a policy without history (``POLICY_RELATIVE``)."""
    found = _spec(name)
    return found is not None and not is_history_feature(name) and found[1].suffix in POLICY_RELATIVE

"""The candidate table: one row per (item, policy) with the evidence as columns.

Key columns: ``item_id``, ``policy``, ``severity`` (of the best-matching seed), ``action``
(suggested by that seed), ``matched_seed_ids`` (list, closest first), ``n_signals_matched``.

Per signal ``<s>`` (``text``, ``image``, ``pdq``, ...) one column group, NaN where the item has
no such content:

"""

from __future__ import annotations

import pyarrow as pa

# name suffix -> (dtype, what it means). All float32 so that NaN can mean "this item has no
# such content" (LightGBM's missing value), counts included. Written once; the README table and
# the ranker's human-readable reasons are generated from it.
SEED_EVIDENCE: dict[str, tuple[pa.DataType, str]] = {
    "best_sim": (pa.float32(), "similarity to the closest seed"),
    "top3_mean": (pa.float32(), "mean similarity to the 3 closest seeds"),
    "n_seeds_hi": (pa.float32(), "seeds matched above the strong threshold"),
    "n_seeds_lo": (pa.float32(), "seeds matched above the weak threshold"),
    "best_rank": (pa.float32(), "rank of the item in its closest seed's neighbour list"),
    "best_sim_z": (
        pa.float32(),
        "closest-seed similarity in std-devs above the inventory's typical similarity to that seed",
    ),
    "centroid_sim": (pa.float32(), "similarity to the centre of the policy's seeds"),
    "expansion_sim": (
        pa.float32(),
        "similarity to the centre of the items most like the seeds (query expansion)",
    ),
    "pseudo_probe": (
        pa.float32(),
        "log-odds of a classifier self-trained on the seeds and the items most like them",
    ),
    "density": (pa.float32(), "near-identical inventory neighbours (campaigns come in bursts)"),
    "neighbour_sim": (pa.float32(), "mean similarity to its 10 nearest inventory neighbours"),
}
SEED_EVIDENCE_STR = {"best_seed_id": "id of the closest seed"}
# Evidence only some signals produce (hash signals, signals that grade their own input).
SIGNAL_EXTRA_EVIDENCE: dict[str, tuple[pa.DataType, str]] = {
    "best_distance": (pa.float32(), "Hamming distance (bits) to the closest seed hash"),
    "quality": (pa.float32(), "quality of the item's own hash (0-100; low = flat image)"),
}

# Benign seeds (the allowlist, recall/allowlist.py): per signal, NaN when the policy has none,
# so a model trained without them and candidates recalled without them stay compatible.
BENIGN_EVIDENCE: dict[str, tuple[pa.DataType, str]] = {
    "benign_sim": (pa.float32(), "similarity to the policy's closest benign seed (allowlist)"),
    "benign_margin": (
        pa.float32(),
        "closest violating seed's similarity minus closest benign seed's (negative: more benign)",
    ),
}

HISTORY_EVIDENCE: dict[str, tuple[pa.DataType, str]] = {
    "pos_max_sim": (pa.float32(), "similarity to the closest item reviewers confirmed violating"),
    "neg_max_sim": (pa.float32(), "similarity to the closest item reviewers found benign"),
    "knn_score": (pa.float32(), "share of confirmed violations among the closest reviewed items"),
    "knn_verdict": (pa.float32(), "mean verdict (0-3) of the closest reviewed items"),
    "probe_score": (pa.float32(), "log-odds of a linear classifier trained on the reviewed items"),
}

# The closest reviewed item itself, for reasons a reviewer can check ("looks like X, which
# reviewers rejected"). Not ranking features: the ranker reads only the columns above.
HISTORY_NEAREST: dict[str, tuple[pa.DataType, str]] = {
    "nearest_id": (pa.string(), "id of the closest reviewed item"),
    "nearest_sim": (pa.float32(), "similarity to the closest reviewed item"),
    "nearest_verdict": (pa.float32(), "verdict (0-3) reviewers gave the closest reviewed item"),
    "n_near_violating": (
        pa.float32(),
        "reviewed items confirmed violating above the strong match threshold (near-copies)",
    ),
}

# How each piece of evidence should move risk (+1 up, -1 down, 0 either way). The ranker
# constrains its trees to these directions: what it learns on one policy's history then holds
# on another's (cold start), and no reason ever reads "less similar to the seed, so riskier".
MONOTONE = {
    "best_sim": 1,
    "top3_mean": 1,
    "n_seeds_hi": 1,
    "n_seeds_lo": 1,
    "best_rank": -1,
    "best_sim_z": 1,
    "centroid_sim": 1,
    "expansion_sim": 1,
    "pseudo_probe": 1,
    "best_distance": -1,
    "benign_sim": -1,
    "benign_margin": 1,
    "pos_max_sim": 1,
    "neg_max_sim": -1,
    "knn_score": 1,
    "knn_verdict": 1,
    "probe_score": 1,
}


def monotone_direction(name: str) -> int:
    """+1 / -1 / 0 for an evidence column (0 for metadata and undirected evidence)."""
    for suffix, direction in MONOTONE.items():
        if name.endswith("_" + suffix):
            return direction
    return 0


KEY_COLUMNS = ("item_id", "policy", "severity", "action", "matched_seed_ids", "n_signals_matched")
CANDIDATE_KEY_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("policy", pa.string(), nullable=False),
        pa.field("severity", pa.int8()),
        pa.field("action", pa.string()),
        pa.field("matched_seed_ids", pa.list_(pa.string())),
        pa.field("n_signals_matched", pa.int8()),
    ]
)


def candidate_schema(signals: list[str], history: bool) -> pa.Schema:
    """Full candidate schema for the given signals (item metadata columns follow it)."""
    fields = list(CANDIDATE_KEY_SCHEMA)
    for s in signals:
        fields += [pa.field(seed_evidence_name(s, k), t) for k, (t, _) in SEED_EVIDENCE.items()]
        fields.append(pa.field(f"{s}_best_seed_id", pa.string()))
        fields += [pa.field(seed_evidence_name(s, k), t) for k, (t, _) in BENIGN_EVIDENCE.items()]
        if history:
            fields += [
                pa.field(history_evidence_name(s, k), t)
                for k, (t, _) in {**HISTORY_EVIDENCE, **HISTORY_NEAREST}.items()
            ]
    return pa.schema(fields)


def seed_evidence_name(signal: str, suffix: str) -> str:
    return f"{signal}_{suffix}"


def history_evidence_name(signal: str, suffix: str) -> str:
    return f"hist_{signal}_{suffix}"


def describe_feature(name: str) -> str:
    """Words for an evidence column (for reasons and docs)."""
    if name.startswith("hist_"):
        signal, _, suffix = name[5:].partition("_")
        for suf, (_, words) in HISTORY_EVIDENCE.items():
            if name.endswith("_" + suf):
                return f"{words} ({name[5 : -len(suf) - 1]})"
    for suf, (_, words) in {**SEED_EVIDENCE, **SIGNAL_EXTRA_EVIDENCE, **BENIGN_EVIDENCE}.items():
        if name.endswith("_" + suf):
            return f"{words} ({name[: -len(suf) - 1]})"
    return name


def evidence_feature_columns(table: pa.Table) -> list[str]:
    """The numeric evidence columns of a candidate table, in table order."""
    out = []
    for name in table.column_names:
        if name.startswith("hist_") and any(name.endswith("_" + s) for s in HISTORY_EVIDENCE):
            out.append(name)
        elif any(
            name.endswith("_" + s)
            for s in (*SEED_EVIDENCE, *SIGNAL_EXTRA_EVIDENCE, *BENIGN_EVIDENCE)
        ):
            out.append(name)
    return out


def is_history_feature(name: str) -> bool:
    return name.startswith("hist_")


def schema_markdown() -> str:
    """The candidate-table evidence columns as a markdown table (README)."""
    lines = ["| column | type | meaning |", "| --- | --- | --- |"]
    for suf, (typ, words) in SEED_EVIDENCE.items():
        lines.append(f"| `<signal>_{suf}` | {typ} | {words} |")
    lines.append("| `<signal>_best_seed_id` | string | id of the closest seed |")
    for suf, (typ, words) in BENIGN_EVIDENCE.items():
        lines.append(f"| `<signal>_{suf}` | {typ} | {words} |")
    for suf, (typ, words) in {**HISTORY_EVIDENCE, **HISTORY_NEAREST}.items():
        lines.append(f"| `hist_<signal>_{suf}` | {typ} | {words} |")
    return "\n".join(lines)

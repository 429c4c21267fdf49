"""Review history: items a human already judged, and their use as labelled exemplars.

Its columns are ``HISTORY_SCHEMA`` (``validate_history`` checks a table against it; the README's
history table is generated from it). Verdicts are graded labels for learning to rank; ranking
groups are sweep x policy.

Reviewed items double as exemplars: a new item close to many confirmed violations and far from
confirmed benign items is evidence of risk even if no seed resembles it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from riskrank.index.cpu_math import logistic_fit, rows_dot
from riskrank.index.schema import (
    IMAGE_BYTES,
    IMAGE_PATH,
    ITEM_ID,
    TEXT,
    empty_bytes_as_null,
    has_control,
    is_blank,
    quarantine_table,
)
from riskrank.index.signals.base import IndexKind, Signal
from riskrank.index.tables import (
    SchemaError,
    TableLike,
    as_table,
    check_columns,
    doc_field,
    write_parquet,
)
from riskrank.index.vectors.faiss_index import order_ties_by_position
from riskrank.recall.candidates import HISTORY_EVIDENCE, HISTORY_NEAREST
from riskrank.recall.neighbours import found_products

VERDICT_MAX = 3
# The grades in words, as the HTML report shows them; a verdict may be given either way.
VERDICT_WORDS = ("benign", "borderline", "violating", "severe")
GRADES_IN_WORDS = ", ".join(f"{w} = {g}" for g, w in enumerate(VERDICT_WORDS))


def zero_one(grades: list[int]) -> bool:
    """Whether ``grades`` are all 0 or 1, some of them 1: a 0/1 scale, on which 1 means
    something else than the 0-3 scale's borderline (verdict import, quality labels)."""
    return set(grades) <= {0, 1} and 1 in grades


def verdict_grade(value) -> int | None:
    """A grade 0-3 from an int, an integral float, a numeric string or its word (any case:
    ``VERDICT_WORDS``), else None. Moderation tools export words: "violating" was refused
    everywhere without saying how to map it (an outsider's report)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in VERDICT_WORDS:
            return VERDICT_WORDS.index(text.lower())
        # Digits as written ("2", "2.0"): float() also took "0_2", a fullwidth "２", "1e-400"
        # and "2.9999999999999999" (an outsider's report).
        if not re.fullmatch(r"\+?[0-9]+(\.0*)?", text):
            return None
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    if number != number or not number.is_integer() or not 0 <= number <= VERDICT_MAX:
        return None
    return int(number)


def _grades_from_text(table: pa.Table) -> tuple[pa.Table, dict[int, str]]:
    """A history whose ``verdict`` column is text (words or digits) with it as grades, and
    the rows whose text is no grade, with why."""
    if "verdict" not in table.column_names:
        return table, {}
    kind = table.schema.field("verdict").type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return table, {}
    raw = table["verdict"].to_pylist()
    grades = [verdict_grade(v) for v in raw]
    bad = {
        i: f"verdict {v!r} is not a grade 0-{VERDICT_MAX} ({GRADES_IN_WORDS})"
        for i, (v, g) in enumerate(zip(raw, grades))
        if g is None and v is not None and str(v).strip()
    }
    column = pa.array(grades, pa.int8())
    return table.set_column(table.column_names.index("verdict"), "verdict", column), bad


POSITIVE_VERDICT = 2  # "violating": what positives, probes and probabilities are about
# The order of a candidate's history columns (``ReviewedExemplars.evidence``), with or
# without reviews of its policy.
EVIDENCE_ORDER = (
    "nearest_id",
    "nearest_sim",
    "nearest_verdict",
    "n_near_violating",
    "probe_score",
    "pos_max_sim",
    "neg_max_sim",
    "knn_score",
    "knn_verdict",
)
PROBE_C = 1.0
EXCERPT_CHARS = 300  # of reviewed text kept with the exemplars, for reasons and reports
HISTORY_SCHEMA = pa.schema(
    [
        doc_field(ITEM_ID, pa.string(), "the reviewed item", required=True, is_id=True),
        doc_field("policy", pa.string(), "the policy it was reviewed under", required=True),
        doc_field(
            "verdict",
            pa.int8(),
            "0 benign, 1 borderline, 2 violating, 3 severe (graded labels)",
            required=True,
        ),
        doc_field(
            "sweep_id", pa.string(), "review batch (default `history`); groups are sweep x policy"
        ),
        doc_field(TEXT, pa.string(), "content, as for inventory"),
        doc_field(IMAGE_BYTES, pa.binary(), "content, as for inventory"),
        doc_field(IMAGE_PATH, pa.string(), "content, as for inventory"),
    ],
    metadata={"doc": "one human review of an item under a policy; verdict 0-3"},
)


# The sweep_id of a history row that names none (the labelled history a team starts from).
UNNAMED_SWEEP = "history"


def validate_history(data: TableLike, *, what: str = "history") -> tuple[pa.Table, pa.Table]:
    """Split review history into (clean rows, quarantined rows with reasons)."""
    table = as_table(data, what=what)
    table, words_bad = _grades_from_text(table)
    check_columns(table, HISTORY_SCHEMA, what=what)
    table = empty_bytes_as_null(table)
    if table.num_rows == 0:
        raise SchemaError(f"{what}: 0 rows; training needs reviewed items")
    if "sweep_id" not in table.column_names:
        table = table.append_column(
            "sweep_id", pa.array([UNNAMED_SWEEP] * table.num_rows, pa.string())
        )
    else:  # optional per row too: a blank one (histories concatenated) takes the default
        sid = pc.cast(table["sweep_id"], pa.string())
        sid = pc.if_else(
            pc.equal(pc.utf8_trim_whitespace(sid), ""), pa.scalar(None, pa.string()), sid
        )
        sid = pc.fill_null(sid, UNNAMED_SWEEP)
        table = table.set_column(table.column_names.index("sweep_id"), "sweep_id", sid)
    table = table.set_column(
        table.column_names.index(ITEM_ID),
        ITEM_ID,
        pc.cast(table[ITEM_ID], pa.string()),
    )
    bad: dict[int, str] = {}
    seen: dict[tuple, int] = {}
    ids = table.column(ITEM_ID).to_pylist()
    pols = table.column("policy").to_pylist()
    verdicts = table.column("verdict").to_pylist()
    for i, v in enumerate(verdicts):
        key = (ids[i], pols[i])
        if is_blank(ids[i]) or is_blank(pols[i]):
            bad[i] = "item_id or policy is null, empty or blank"
        elif has_control(ids[i]) or has_control(pols[i], c1=False):  # as inventory ids
            field, value = ("item_id", ids[i]) if has_control(ids[i]) else ("policy", pols[i])
            bad[i] = f"{field} {value!r} holds a control character"
        elif i in words_bad:
            bad[i] = words_bad[i]
        elif v is None or v != v:
            bad[i] = "verdict is null/NaN"
        elif not float(v).is_integer() or not 0 <= v <= VERDICT_MAX:
            bad[i] = f"verdict {v!r} is not an integer grade 0-{VERDICT_MAX}"
        elif key in seen:
            bad[i] = f"duplicate review of ({ids[i]}, {pols[i]}) (first at row {seen[key]})"
        else:
            seen[key] = i
    # Reviews of one item under one policy that disagree: nobody can tell which is right, and
    # keeping the first would let the file's row order choose the label. All are quarantined.
    rows_of: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(ids, pols)):
        if i not in bad or bad[i].startswith("duplicate review"):
            rows_of.setdefault(key, []).append(i)
    for (item, policy), rows in rows_of.items():
        given = sorted({int(verdicts[i]) for i in rows})
        if len(given) > 1:
            for i in rows:
                bad[i] = (
                    f"conflicting verdicts {given} for ({item}, {policy}) at rows {rows}; "
                    "keep the one that is right"
                )
    table = table.set_column(
        table.column_names.index("verdict"),
        "verdict",
        pa.array(
            [0 if i in bad else int(v) for i, v in enumerate(table["verdict"].to_pylist())],
            pa.int8(),
        ),
    )
    keep = pa.array([i not in bad for i in range(table.num_rows)], pa.bool_())
    rows = [
        {ITEM_ID: ids[i], "row": i, "stage": "history", "reason": r} for i, r in sorted(bad.items())
    ]
    return table.filter(keep), quarantine_table(rows)


class ReviewedExemplars:
    """Embedded, labelled history for one signal: ``evidence()`` turns it into columns.

    Saved as a FAISS flat index + Parquet + JSON (no pickle).
    """

    def __init__(
        self,
        signal_name: str,
        vectors: np.ndarray,
        table: pa.Table,
        k: int = 15,
        probes: dict[str, tuple[list[float], float]] | None = None,
        binary_bits: int | None = None,
        closest_of_each_kind: bool = True,
    ):
        self.signal_name = signal_name
        # ``*_max_sim`` over all of a policy's reviews of each kind (since 2026-12-05); False
        # for exemplars saved before, whose ranker learned them among the k nearest, -1 where
        # none of the k was of that kind: it is fed what it was trained on until retrained.
        self.closest_of_each_kind = closest_of_each_kind
        # A binary-hash signal (PDQ): ``vectors`` are its hashes as +-1/sqrt(bits) floats
        # (``hash_signs``), so inner product is 1 - 2 * hamming / bits; items' packed hashes
        # are converted the same way in ``evidence`` and similarities reported as
        # 1 - hamming / bits, the signal's own scale.
        self.binary_bits = binary_bits
        self.vectors = np.ascontiguousarray(vectors, np.float32)
        self.table = table  # item_id, policy, verdict per row of vectors
        self.k = k
        self._by_policy: dict[str, np.ndarray] = {}
        pols = np.asarray(table.column("policy").to_pylist(), dtype=object)
        # Sorted: a set's order is the process's string hashing, and the saved probes took
        # it, so two identical imports wrote exemplars.json apart and their models' checksums
        # (their identity, which keys the sweep caches) differed (an outsider's week).
        for p in sorted(set(pols)):
            self._by_policy[p] = np.flatnonzero(pols == p)
        self._verdict = np.asarray(table.column("verdict").to_numpy(), np.float32)
        self._ids = np.asarray(table.column(ITEM_ID).to_pylist(), dtype=object)
        # Per policy: a linear probe on the embeddings (coef, intercept), and out-of-fold scores
        # of the reviewed items themselves (only needed while training; not saved).
        self.probes: dict[str, tuple[np.ndarray, float]] = {
            p: (np.asarray(c, np.float32), float(b)) for p, (c, b) in (probes or {}).items()
        }
        self._oof: dict[str, dict[str, float]] = {}
        if probes is None:
            for p in self._by_policy:
                self._fit_probe(p)

    def _fit_probe(self, policy: str, folds: int = 5) -> None:
        from sklearn.model_selection import StratifiedKFold

        rows = self._by_policy[policy]
        X, y = self.vectors[rows], self._verdict[rows] >= POSITIVE_VERDICT
        if y.sum() < folds or (~y).sum() < folds:
            return  # too few reviews of one kind for a probe; kNN evidence still works
        # The same coefficients on any machine's thread count (cpu_math ``logistic_fit``).
        coef, intercept = logistic_fit(X, y, C=PROBE_C, max_iter=2000)
        self.probes[policy] = (coef.astype(np.float32), intercept)
        oof = np.zeros(len(rows))
        for tr, te in StratifiedKFold(folds, shuffle=True, random_state=0).split(X, y):
            c, b = logistic_fit(X[tr], y[tr], C=PROBE_C, max_iter=2000)
            oof[te] = rows_dot(X[te], c) + b
        self._oof[policy] = dict(zip(self._ids[rows], oof))

    @classmethod
    def build(
        cls,
        history: pa.Table,
        signal: Signal,
        *,
        vectors: np.ndarray | None = None,
        show_progress: bool = False,
        k: int = 15,
    ) -> ReviewedExemplars:
        """Embed reviewed items with ``signal`` (or take precomputed ``vectors``)."""
        if vectors is None:
            batch = signal.embed_items(history, show_progress=show_progress)
            ok = batch.ok
            vectors = batch.vectors[ok]
            history = history.filter(pa.array(ok))
        # sweep_id and a text excerpt let a queue row say "looks like X, which reviewers
        # rejected in sweep S" without the history table at hand.
        bits = signal.dim if signal.index_kind is IndexKind.BINARY_HASHES else None
        if bits:
            vectors = hash_signs(vectors, bits)
        # verdict_source and queue_swept_at (imported reviews: rank/review.py) let it name the
        # campaign a reviewer decided and the day its queue was swept ("review-v3" named the
        # model version only, and read as today's decision: an outsider's week).
        kept = (ITEM_ID, "policy", "verdict", "sweep_id", "verdict_source", "queue_swept_at")
        keep = [c for c in kept if c in history.column_names]
        table = history.select(keep)
        if "text" in history.column_names:
            excerpt = pc.utf8_slice_codeunits(history["text"], 0, EXCERPT_CHARS)
            table = table.append_column("text", excerpt)
        return cls(signal.name, vectors, table, k=k, binary_bits=bits)

    @property
    def policies(self) -> list[str]:
        return sorted(self._by_policy)

    def evidence(
        self,
        policy: str,
        item_ids: np.ndarray,
        item_vectors: np.ndarray,
        *,
        exclude_self: bool,
        near_copy_sim: float | None = None,
    ) -> dict[str, np.ndarray]:
        """History evidence for items (rows of ``item_vectors``) under ``policy``.

        ``exclude_self`` drops an item's own review (leave-one-out), which is what training
        rows need so the ranker never learns from an item seeing its own label.
        ``near_copy_sim``: similarity above which a reviewed item counts as a near-copy
        (``hist_<signal>_n_near_violating``; NaN without it).
        """
        n = len(item_ids)
        nan = np.full(n, np.nan, np.float32)
        rows = self._by_policy.get(policy)
        pre = f"hist_{self.signal_name}_"
        if rows is None or len(rows) == 0 or n == 0:
            out = {pre + c.suffix: nan.copy() for c in HISTORY_EVIDENCE + HISTORY_NEAREST}
            out[pre + "nearest_id"] = np.full(n, None, dtype=object)
            # In the order a policy with reviews gives them: recall's columns (and a model's
            # features, taken in table order) then do not depend on which policy comes first
            # (rank/policy_memo.py joins policies recalled on different days).
            return {name: out[name] for name in (pre + s for s in EVIDENCE_ORDER)}
        if self.binary_bits:
            item_vectors = hash_signs(item_vectors, self.binary_bits)
        ex = self.vectors[rows]
        verdict = self._verdict[rows]
        ex_ids = self._ids[rows]
        index = faiss.IndexFlatIP(ex.shape[1])
        index.add(ex)
        k = min(self.k + (1 if exclude_self else 0), len(rows))
        sims, pos = index.search(np.ascontiguousarray(item_vectors, np.float32), k)
        if self.binary_bits:
            sims = (sims + 1) / 2  # 1 - hamming / bits
        else:
            sims = exact_similarities(item_vectors, ex, pos)
        if exclude_self:
            self_hit = ex_ids[pos] == np.asarray(item_ids, dtype=object)[:, None]
            sims = np.where(self_hit, -np.inf, sims)
        pos_mask = verdict[pos] >= POSITIVE_VERDICT
        valid = np.isfinite(sims)
        # The closest confirmed violation and the closest benign review over all of the
        # policy's reviews, not only among the k nearest (where all k can be of one kind).
        queries = np.ascontiguousarray(item_vectors, np.float32)
        violating = verdict >= POSITIVE_VERDICT
        if self.closest_of_each_kind:
            pos_max = self._closest(ex[violating], ex_ids[violating], queries, item_ids,
                                    exclude_self)  # fmt: skip
            neg_max = self._closest(ex[~violating], ex_ids[~violating], queries, item_ids,
                                    exclude_self)  # fmt: skip
        else:
            pos_max = np.where(pos_mask & valid, sims, -1).max(1)
            neg_max = np.where(~pos_mask & valid, sims, -1).max(1)
        # Softmax weights over the neighbours: the closest reviews count most.
        w = np.where(
            valid, np.exp((sims - np.nanmax(np.where(valid, sims, -9), 1, keepdims=True)) / 0.05), 0
        )
        wsum = w.sum(1) + 1e-12
        probe = nan.copy()
        if policy in self.probes:
            coef, intercept = self.probes[policy]
            probe = (rows_dot(item_vectors, coef) + intercept).astype(np.float32)
            if exclude_self and policy in self._oof:
                # A reviewed item is scored by the fold model that never saw its label.
                oof = self._oof[policy]
                for i, item_id in enumerate(item_ids):
                    if item_id in oof:
                        probe[i] = oof[item_id]
        return {
            **_nearest(pre, sims, pos, verdict, ex_ids, pos_mask, near_copy_sim),
            pre + "probe_score": probe,
            pre + "pos_max_sim": pos_max.astype(np.float32),
            pre + "neg_max_sim": neg_max.astype(np.float32),
            pre + "knn_score": ((w * pos_mask).sum(1) / wsum).astype(np.float32),
            pre + "knn_verdict": ((w * verdict[pos]).sum(1) / wsum).astype(np.float32),
        }

    def _closest(
        self,
        ex: np.ndarray,
        ex_ids: np.ndarray,
        queries: np.ndarray,
        item_ids,
        exclude_self: bool,
    ) -> np.ndarray:
        """Per query, the similarity of its closest row of ``ex`` (NaN where there is none;
        with ``exclude_self``, an item's own review does not count)."""
        n = len(queries)
        if len(ex) == 0 or n == 0:
            return np.full(n, np.nan, np.float32)
        index = faiss.IndexFlatIP(ex.shape[1])
        index.add(np.ascontiguousarray(ex, np.float32))
        sims, pos = index.search(queries, min(2 if exclude_self else 1, len(ex)))
        if self.binary_bits:
            sims = (sims + 1) / 2  # 1 - hamming / bits
        else:
            sims = exact_similarities(queries, ex, pos)
        if exclude_self:
            own = ex_ids[pos] == np.asarray(item_ids, dtype=object)[:, None]
            sims = np.where(own, -np.inf, sims)
        best = sims.max(1)
        return np.where(np.isfinite(best), best, np.nan).astype(np.float32)

    def reviewed(self, item_ids: list[str | None]) -> list[dict | None]:
        """The stored review of each id (id, policy, verdict, sweep_id, text excerpt if kept)."""
        row_of = {item_id: r for r, item_id in enumerate(self._ids)}
        rows = self.table.to_pylist()
        return [rows[row_of[i]] if i in row_of else None for i in item_ids]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        index = faiss.IndexFlatIP(self.vectors.shape[1])
        index.add(self.vectors)
        faiss.write_index(index, str(path / "exemplars.faiss"))
        write_parquet(self.table, path / "exemplars.parquet")
        probes = {p: (c.tolist(), b) for p, (c, b) in sorted(self.probes.items())}
        meta = {
            "signal": self.signal_name,
            "k": self.k,
            "probes": probes,
            "binary_bits": self.binary_bits,
            "closest_of_each_kind": self.closest_of_each_kind,
        }
        (path / "exemplars.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, path: str | Path) -> ReviewedExemplars:
        path = Path(path)
        meta = json.loads((path / "exemplars.json").read_text())
        index = faiss.read_index(str(path / "exemplars.faiss"))
        vectors = index.reconstruct_n(0, index.ntotal)
        table = pq.read_table(path / "exemplars.parquet")
        return cls(
            meta["signal"],
            vectors,
            table,
            k=meta["k"],
            probes=meta["probes"],
            binary_bits=meta.get("binary_bits"),
            closest_of_each_kind=meta.get("closest_of_each_kind", False),
        )


def hash_signs(hashes: np.ndarray, bits: int) -> np.ndarray:
    """Packed binary hashes as unit float vectors of +-1/sqrt(bits): the inner product of two
    is 1 - 2 * hamming / bits (the raw bytes as floats would compare nothing meaningful).

    >>> a = np.zeros((1, 32), np.uint8); b = a.copy(); b[0, 0] = 0b1111
    >>> float((hash_signs(a, 256) @ hash_signs(b, 256).T)[0, 0])  # 4 bits differ
    0.96875
    """
    hashes = np.ascontiguousarray(hashes, np.uint8)
    signs = np.unpackbits(hashes, axis=1)[:, :bits].astype(np.float32) * 2 - 1
    return signs / np.float32(np.sqrt(bits))


def _nearest(
    pre: str,
    sims: np.ndarray,
    pos: np.ndarray,
    verdict: np.ndarray,
    ex_ids: np.ndarray,
    violating: np.ndarray,
    near_copy_sim: float | None,
) -> dict[str, np.ndarray]:
    """The closest reviewed item of each row (its id, similarity, verdict) and the number of
    confirmed violations among the neighbours closer than ``near_copy_sim``."""
    valid = np.isfinite(sims)
    # Of equally close reviews (one text reviewed under two ids), the first stored: FAISS
    # lists ties in an order that depends on how many queries it searched at once, and a
    # Ray shard's closest reviewed item differed from a local sweep's (an analyst's report).
    # (``order_ties_by_position``, as recall orders a seed's list.)
    if sims.shape[1]:
        best_sim, best = (a[:, 0] for a in order_ties_by_position(sims, np.where(valid, pos, -1)))
    else:
        best_sim, best = np.full(len(sims), np.nan), np.full(len(sims), -1)
    found = best >= 0
    ids = np.where(found, ex_ids[best], None).astype(object)
    near = np.full(len(sims), np.nan, np.float32)
    if near_copy_sim is not None:
        near = (valid & violating & (sims >= near_copy_sim)).sum(1).astype(np.float32)
    return {
        pre + "nearest_id": ids,
        pre + "nearest_sim": np.where(found, best_sim, np.nan).astype(np.float32),
        pre + "nearest_verdict": np.where(found, verdict[best], np.nan).astype(np.float32),
        pre + "n_near_violating": near,
    }


def exact_similarities(queries: np.ndarray, ex: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The float64 inner product of each query with each of its found rows of ``ex`` (``pos``,
    -1: none, -inf), pair by pair (``found_products``). FAISS's float32 scores depend on how
    many threads its BLAS runs: a local sweep on 2 threads and a Ray worker on 1 wrote history
    evidence (closest reviews, kNN scores) differing by up to 1e-6 (an outsider's run)."""
    ex = np.asarray(ex, np.float32)
    return found_products(lambda a, b: np.asarray(queries[a:b], np.float32), ex.__getitem__, pos)

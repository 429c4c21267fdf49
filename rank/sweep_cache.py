"""What a sweep over a standing index can reuse from the last one: text-only computations.

A daily sweep over a standing index re-embeds only what changed (index/standing.py), but two
other steps still read every candidate's full text, and on a cheap day they were most of
its time: the lexical probe's n-gram vectorizer in recall (``hist_lexical_probe_score``,
recall/lexical.py) and the phrase attribution of the reasons step (rank/reasons.py). Both
are pure functions of their inputs, so they are kept by a digest of exactly those inputs,
next to the standing index (``cache/``), and reused by the next sweep:

- ``lexical.parquet``: the probe's score by (policy, text), for one model;
- ``reasons.parquet``: lexical spans by (model, policy, text) and the spans an item shares
  with a seed by (item text, seed text);
- ``links.parquet``: the campaign links (rank/campaigns.py) between the contents of the last
  queue, by content key (a key names the content and the encoder that embedded it); a link is a
  function of the two vectors alone, so the next sweep searches only contents new to it.

Neighbourhoods (the density evidence) are kept by recall/neighbours.py in the same
directory. Everything else (embeddings aside) depends on the day's inventory and seeds (ranks,
z-scores and the sweep's pseudo-label probe are inventory-relative) and is recomputed. A
sweep with these files therefore gives the queue and reasons a sweep without them gives,
bit for bit; copies of one text in one queue are attributed once even without them.

Each file is rewritten after a sweep with the entries that sweep used, so it never outgrows
one sweep, and keyed to the model's identity (its sealed checksums). A file that cannot be
read is ignored with a warning: a cache can slow a sweep down, never break it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from riskrank.index.content_digest import key_digest
from riskrank.index.run_log import get_logger
from riskrank.index.tables import read_cache_table, write_cache_table
from riskrank.rank import phrases
from riskrank.rank.phrases import Span
from riskrank.recall.lexical import FEATURE as LEXICAL_FEATURE
from riskrank.recall.lexical import READ_CHARS, LexicalProbe, score_key

log = get_logger(__name__)

DIR = "cache"
FILE = f"{DIR}/reasons.parquet"
LEXICAL_FILE = f"{DIR}/lexical.parquet"
LINKS_FILE = f"{DIR}/links.parquet"
LINKS_SCHEMA = pa.schema(
    [
        pa.field("signal", pa.string()),
        pa.field("key", pa.string()),
        pa.field("partner", pa.string()),  # null: a content of the queue (its links follow)
    ]
)
LEXICAL_SCHEMA = pa.schema([pa.field("key", pa.string()), pa.field("score", pa.float32())])
SCHEMA = pa.schema(
    [
        pa.field("key", pa.string()),
        pa.field(
            "spans",
            pa.list_(
                pa.struct(
                    [
                        pa.field("start", pa.int64()),
                        pa.field("end", pa.int64()),
                        pa.field("phrase", pa.string()),
                        pa.field("source", pa.string()),
                        pa.field("weight", pa.float64()),
                    ]
                )
            ),
        ),
    ],
    metadata={"doc": "phrase spans by a digest of their inputs (rank/reasons_cache.py)"},
)


# How much of a text the probe and the reasons read (recall/lexical.py), and the version of
# the span computation (rank/phrases.py): part of every key, so scores and spans a sweep
# cached before the limit existed (of the whole text) are not reused for a text longer than
# it (a reviewer's finding: a cached 0.23 against -1.50 computed), nor spans an older
# attribution gave.
READ_RULE = f"read_chars={READ_CHARS}"


def spans_rule() -> str:
    """``READ_RULE`` and the span computation's version, as they are now: part of every
    span's key (the probe's scores, which do not depend on it, keep theirs)."""
    return f"{READ_RULE};spans={phrases.SPANS_VERSION}"


def model_identity(info: dict) -> str | None:
    """A digest of a saved model's files and of ``READ_RULE`` (None for a model never saved:
    nothing is stored then, since lexical spans could not be told apart from another
    model's)."""
    checksums = info.get("checksums")
    if not isinstance(checksums, dict) or not checksums:
        return None
    return hashlib.sha256(json.dumps([checksums, READ_RULE], sort_keys=True).encode()).hexdigest()


class SpanCache:
    """Spans by input digest: this sweep's (always), the last sweep's (with a ``path``)."""

    def __init__(self, path: str | Path | None = None, model_id: str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.model_id = model_id
        self.stored = self._read() if self.path is not None and model_id else {}
        self.used: dict[str, list[Span]] = {}
        self.computed = 0  # attributions computed in this sweep (the rest came from the cache)
        self._carry = False  # ``keep_stored``

    def lexical_key(self, policy: str, text: str) -> str:
        return key_digest("lexical", spans_rule(), self.model_id, policy, text)

    @staticmethod
    def shared_key(text: str, seed_text: str) -> str:
        return key_digest("shared", spans_rule(), text, seed_text)

    def missing(self, keys: list[str]) -> list[str]:
        """Distinct ``keys`` neither computed in this sweep nor stored."""
        out = []
        for key in dict.fromkeys(keys):
            if key in self.used:
                continue
            if key in self.stored:
                self.used[key] = self.stored[key]
            else:
                out.append(key)
        return out

    def put(self, key: str, spans: list[Span]) -> None:
        self.used[key] = spans
        self.computed += 1

    def get(self, key: str, compute: Callable[[], list[Span]] | None = None) -> list[Span]:
        """The spans of ``key``, computed by ``compute`` when neither this sweep nor the file
        has them. (``missing``'s answer for one key, without its list and dict: a sweep asks
        for ~35,000.)"""
        spans = self.used.get(key)
        if spans is None:
            spans = self.stored.get(key)
            if spans is None:
                self.put(key, compute())
                return self.used[key]
            self.used[key] = spans
        return spans

    def counts(self) -> dict[str, int]:
        """Texts attributed in this sweep and attributions taken from the last one's file."""
        return {"attributed": self.computed, "reused": len(self.used) - self.computed}

    def keep_stored(self) -> None:
        """Keep the last sweep's entries too (``save``): this sweep took some queue rows'
        reasons whole from the last one (rank/reasons_memo.py), so their entries were not
        used, and a later day that explains those rows again needs them. The file then holds
        the entries of the sweeps since the last one that reused no reasons."""
        self._carry = True

    def save(self) -> None:
        """Keep exactly the entries this sweep used (``keep_stored``: and the stored ones)."""
        if self.path is None or not self.model_id:
            return
        kept = {**self.stored, **self.used} if self._carry else self.used
        keys = list(kept)
        table = pa.table({"key": keys, "spans": _span_lists([kept[k] for k in keys])})
        write_cache_table(table.cast(SCHEMA), self.path, "reasons cache", log)

    def _read(self) -> dict[str, list[Span]]:
        table = read_cache_table(self.path, SCHEMA, "reasons cache (attributing every text)", log)
        if table is None:
            return {}
        # Column by column, not row dicts: a day's cache holds ~60,000 spans.
        lists = table.column("spans").combine_chunks()
        fields = [lists.flatten().field(f.name).to_pylist() for f in SPAN_TYPE]
        spans = [Span(*values) for values in zip(*fields)]
        cuts = lists.offsets.to_pylist()
        keys = table.column("key").to_pylist()
        return {k: spans[a:b] for k, a, b in zip(keys, cuts[:-1], cuts[1:])}


SPAN_TYPE = SCHEMA.field("spans").type.value_type


def _span_lists(lists: list[list[Span]]) -> pa.ListArray:
    """``lists`` of spans as one Arrow list-of-struct array (built column by column)."""
    flat = [s for spans in lists for s in spans]
    columns = list(zip(*flat)) if flat else [[] for _ in SPAN_TYPE]
    struct = pa.StructArray.from_arrays(
        [pa.array(col, f.type) for col, f in zip(columns, SPAN_TYPE)], fields=list(SPAN_TYPE)
    )
    offsets = np.cumsum([0] + [len(spans) for spans in lists], dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), struct)


class LinkCache:
    """Campaign links between contents, per signal: the last queue's (read) and this one's.

    ``rules``: what a link means (thresholds and metrics, rank/campaigns.py); a file written
    under other rules is not used.
    """

    def __init__(self, path: str | Path | None, rules: dict) -> None:
        self.path = Path(path) if path is not None else None
        self.rules = json.dumps(rules, sort_keys=True)
        self._known: dict[str, set[str]] = {}
        self._edges: dict[str, list[tuple[str, str]]] = {}
        self._now: dict[str, tuple[list[str], list[tuple[str, str]]]] = {}
        if self.path is not None:
            self._read()

    def known(self, signal: str) -> set[str]:
        """Contents whose links to each other the last sweep found (all of them)."""
        return self._known.get(signal, set())

    def edges(self, signal: str, index_of: dict[str, int]):
        """The stored links between contents in ``index_of`` (content key -> index), as two
        index arrays."""
        pairs = [
            (index_of[a], index_of[b])
            for a, b in self._edges.get(signal, [])
            if a in index_of and b in index_of
        ]
        arr = np.array(pairs, np.int64).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]

    def put(self, signal: str, contents: list[str], a, b) -> None:
        """This queue's ``contents`` of ``signal`` and their links (index pairs into it)."""
        pairs = {tuple(sorted((contents[i], contents[j]))) for i, j in zip(a, b)}
        self._now[signal] = (list(contents), sorted(pairs))

    def skip(self, signal: str) -> None:
        """Keep no links of ``signal`` for the next sweep (too many to store: it searches all)."""
        self._now.pop(signal, None)
        log.info("campaign links cache: %s has too many links to keep; not stored", signal)

    def save(self) -> None:
        if self.path is None:
            return
        cols: dict[str, list] = {"signal": [], "key": [], "partner": []}
        for signal, (contents, pairs) in self._now.items():
            rows = [(k, None) for k in contents] + list(pairs)
            cols["signal"] += [signal] * len(rows)
            cols["key"] += [r[0] for r in rows]
            cols["partner"] += [r[1] for r in rows]
        table = pa.table(cols, schema=LINKS_SCHEMA.with_metadata({"rules": self.rules}))
        write_cache_table(table, self.path, "campaign links cache", log)

    def _read(self) -> None:
        # Links made under other thresholds are not read.
        table = read_cache_table(
            self.path, LINKS_SCHEMA, "campaign links cache", log, stamp=("rules", self.rules)
        )
        if table is None:
            return
        cols = [table.column(c).to_pylist() for c in ("signal", "key", "partner")]
        for signal, key, partner in zip(*cols):
            if partner is None:
                self._known.setdefault(signal, set()).add(key)
            else:
                self._edges.setdefault(signal, []).append((key, partner))


class LexicalMemo:
    """The lexical probe's scores of the last sweep's texts (``LexicalProbe.memo``)."""

    def __init__(self, path: str | Path, model_id: str | None) -> None:
        self.path, self.model_id = Path(path), model_id

    def load(self) -> dict[str, float]:
        if not self.model_id:
            return {}
        # Another model's probe scores are not read.
        table = read_cache_table(
            self.path, LEXICAL_SCHEMA, "lexical cache", log, stamp=("model", self.model_id)
        )
        if table is None:
            return {}
        return dict(zip(table.column("key").to_pylist(), table.column("score").to_pylist()))

    def save(self, candidates: pa.Table, probe: LexicalProbe | None) -> None:
        """Keep the scores ``candidates`` carry (``hist_lexical_probe_score``) by text."""
        needed = {"policy", "text", LEXICAL_FEATURE}
        if probe is None or not self.model_id or not needed <= set(candidates.column_names):
            return
        scores = candidates.column(LEXICAL_FEATURE).to_numpy(zero_copy_only=False)
        memo: dict[str, float] = {}
        rows = zip(candidates.column("policy").to_pylist(), candidates.column("text").to_pylist())
        for (policy, text), score in zip(rows, scores):
            if text and text.strip() and policy in probe.coefs and score == score:
                memo[score_key(policy, text)] = score
        table = pa.table(
            {"key": list(memo), "score": pa.array(list(memo.values()), pa.float32())},
            schema=LEXICAL_SCHEMA.with_metadata({"model": self.model_id}),
        )
        write_cache_table(table, self.path, "lexical cache", log)


__all__ = [
    "FILE",
    "LEXICAL_FILE",
    "LINKS_FILE",
    "LexicalMemo",
    "LinkCache",
    "SpanCache",
    "model_identity",
]

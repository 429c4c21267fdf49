"""Seed vectors kept from one sweep over a standing index to the next (issue 12).

Every sweep embeds its seeds before anything else (``refuse_unusable_seeds``, to refuse an
unusable seed before the inventory is embedded). A daily sweep keeps its policies' seeds, and
the day a new policy arrives (day 2 of benchmarks/incremental.py) only its seeds are new, yet
every seed was embedded again: five SpamAssassin mails, ~10x slower to embed than a comment.

A text signal's vector of a seed is a function of the seed's text, of the encoder and of the
code: each text is padded to its own length (index/signals/text.py ``encode_padded``), so its
vector does not depend on the texts embedded beside it, and whether a text is refused ("no
text", ``UNKNOWN_ONLY``) depends on it alone too. So each seed's vector, ``ok`` and reason are
kept by a digest of (the signal's ``describe()``, which holds the encoder's model, version,
library, backend, precision, token cap and the ``fingerprint`` of its probe vector; riskrank's
code and its libraries' versions, ``code_digest``; the text), next to the standing index
(``cache/seeds.parquet``), and a sweep embeds only the seeds it does not find there. Another
encoder, another riskrank or an edited seed text makes another key, so the vector is embedded
again.

Only the built-in text signal with a fingerprinted encoder takes part: an image seed's content
can be a path whose file changes under the same name, and a plug-in signal's vectors may
depend on more than its text. The file is rewritten (only) when a sweep used other entries than
it holds, with exactly those; a file that cannot be read is ignored with a warning
(rank/sweep_cache.py's rule: a cache can slow a sweep down, never break it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from riskrank.index.content_digest import key_digest
from riskrank.index.run_log import get_logger
from riskrank.index.schema import TEXT
from riskrank.index.signals.base import SignalBatch
from riskrank.index.signals.text import OPENVINO, TextEmbeddingSignal, TextEncoder
from riskrank.index.tables import read_cache_stamp, read_cache_table, write_cache_table
from riskrank.rank.policy_memo import code_digest

log = get_logger(__name__)

FILE = "cache/seeds.parquet"
FORMAT = 1
SCHEMA = pa.schema(
    [
        pa.field("key", pa.string()),
        pa.field("vector", pa.list_(pa.float32())),
        pa.field("ok", pa.bool_()),
        pa.field("reason", pa.string()),
    ]
)


def cacheable(signal) -> bool:
    """The built-in text signal over riskrank's own encoder (whose ``describe`` fingerprints
    its vectors), with a backend that pads each text to its own length (not onnx-int8, which
    pads a batch of texts to its longest)."""
    if type(signal) is not TextEmbeddingSignal or type(signal.encoder) is not TextEncoder:
        return False
    return signal.encoder.backend == "torch" or signal.encoder.backend in OPENVINO


class SeedVectorMemo:
    """Seed vectors by digest: the last sweep's (read from ``path``) and this one's (``save``).
    ``path`` None: nothing is read or kept (every seed is embedded)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.stored: dict[str, tuple[np.ndarray, bool, str | None]] = {}
        self.used: dict[str, tuple[np.ndarray, bool, str | None]] = {}
        self.embedded = 0  # seeds embedded by this sweep (the rest came from the file)
        if self.path is not None:
            self._read()

    def embed(self, signal, table: pa.Table) -> SignalBatch:
        """``signal.embed_queries(table)``, embedding only the rows not kept."""
        if self.path is None or not cacheable(signal):
            return signal.embed_queries(table)
        ident = json.dumps(signal.describe(), sort_keys=True, default=repr)
        common = ("seed-vector", f"format={FORMAT}", code_digest(), ident)
        n = table.num_rows
        texts = table.column(TEXT).to_pylist() if TEXT in table.column_names else [None] * n
        keys = [key_digest(*common, t) for t in texts]
        todo = [i for i, k in enumerate(keys) if k not in self.used and k not in self.stored]
        if todo:
            # Distinct texts once (a repeated seed text is embedded once).
            first = list({keys[i]: i for i in reversed(todo)}.values())
            batch = signal.embed_queries(table.take(pa.array(first, pa.int64())))
            self.embedded += len(first)
            for j, i in enumerate(first):
                vec = np.asarray(batch.vectors[j], np.float32)
                reason = batch.reasons[j] if batch.reasons else None
                self.used[keys[i]] = (vec, bool(batch.ok[j]), reason)
        for k in keys:
            if k not in self.used:
                self.used[k] = self.stored[k]
        entries = [self.used[k] for k in keys]
        vectors = np.zeros((n, signal.dim), np.float32)
        for i, (vec, _, _) in enumerate(entries):
            vectors[i] = vec
        ok = np.array([e[1] for e in entries], bool)
        return SignalBatch(vectors, ok, [e[2] for e in entries])

    def save(self) -> None:
        """Keep exactly the entries this sweep used; not rewritten when the file holds them
        (a day with no new seed)."""
        if self.path is None or not self.used:
            return
        if self.used.keys() == self.stored.keys():
            return
        keys = list(self.used)
        vecs = [self.used[k][0] for k in keys]
        dims = {len(v) for v in vecs}
        width = dims.pop() if len(dims) == 1 else None
        flat = np.concatenate(vecs).astype(np.float32) if vecs else np.zeros(0, np.float32)
        offsets = np.cumsum([0] + [len(v) for v in vecs], dtype=np.int32)
        vector = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.float32()))
        table = pa.table(
            {
                "key": pa.array(keys, pa.string()),
                "vector": vector,
                "ok": pa.array([self.used[k][1] for k in keys], pa.bool_()),
                "reason": pa.array([self.used[k][2] for k in keys], pa.string()),
            },
            schema=SCHEMA.with_metadata({"memo": json.dumps({"format": FORMAT, "dim": width})}),
        )
        write_cache_table(table, self.path, "seed vectors cache", log)

    def _read(self) -> None:
        if not self.path.exists():
            return
        try:
            stamp, _ = read_cache_stamp(self.path, "memo", FORMAT)
        except (OSError, ValueError, pa.ArrowException) as exc:
            log.warning("ignoring the seed vectors cache %s (%s)", self.path, exc)
            return
        if stamp is None:
            return
        table = read_cache_table(self.path, SCHEMA, "seed vectors cache", log)
        if table is None:
            return
        vectors = table.column("vector").to_pylist()
        oks = table.column("ok").to_pylist()
        reasons = table.column("reason").to_pylist()
        for key, vec, ok, reason in zip(table.column("key").to_pylist(), vectors, oks, reasons):
            if vec is None or ok is None:
                continue
            self.stored[key] = (np.asarray(vec, np.float32), bool(ok), reason)


__all__ = ["FILE", "SeedVectorMemo", "cacheable"]

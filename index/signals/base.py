"""The signal contract: everything one way of matching content must provide.

Modelled on python-threatexchange's ``SignalType``: a signal is one small class that says how to
compute itself from content, how two of its values compare, which index serves it, how it is
written in (and rebuilt from) an index manifest, which evidence columns it adds to the candidate
table (and what they mean), and which command-line options configure it. Recall, ranking and the
CLI only ask these questions; none of them names a signal. A new signal is one module with a
``Signal`` subclass plus one ``register_signal`` line (``index/signals/registry.py``).
"""

from __future__ import annotations

import copy
import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from riskrank.index.schema import CONTENT_COLUMNS


class IndexKind(enum.Enum):
    """What a signal's vectors are, and so which index serves them."""

    FLOAT_VECTORS = "float_vectors"  # unit float32 vectors, inner product (FAISS float index)
    BINARY_HASHES = "binary_hashes"  # packed uint8 bit strings, Hamming (FAISS binary index)


METRIC_OF_KIND = {IndexKind.FLOAT_VECTORS: "cosine", IndexKind.BINARY_HASHES: "hamming"}


@dataclass(frozen=True)
class EvidenceColumn:
    """One evidence column a signal adds to the candidate table, as ``<signal name>_<suffix>``.

    ``direction``: how the value should move risk (+1 up, -1 down, 0 either way); the ranker
    constrains its trees to it, so a learned rule transfers between policies (cold start).
    ``missing``: what a missing value (NaN) means, for the data contract's table; reasons
    quote ``meaning`` alone (a reviewer read "(NaN: none reviewed so)" beside a number).
    """

    suffix: str
    meaning: str
    dtype: pa.DataType = field(default_factory=pa.float32)
    direction: int = 0
    missing: str = ""

    @property
    def documented(self) -> str:
        """``meaning`` with what NaN means, as the data contract's table shows it."""
        return f"{self.meaning} ({self.missing})" if self.missing else self.meaning


@dataclass(frozen=True)
class CliOption:
    """A command-line option of a signal: ``flag`` (``--pdq-match-threshold``) sets the
    constructor keyword ``keyword`` when given. Two signals may share a flag (the image base
    directory) if they declare it identically."""

    flag: str
    keyword: str
    help: str
    type: type = str

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass
class SignalBatch:
    """Vectors for the rows of a table. ``ok[i]`` is False where the row lacks this modality
    (normal: an item without an image) or its content could not be decoded (``reasons[i]``).
    ``evidence``: per-row values the signal records at index time (e.g. a hash's quality),
    stored beside the index and handed back to ``candidate_evidence`` as ``item_evidence``."""

    vectors: np.ndarray
    ok: np.ndarray
    reasons: list[str | None] = field(default_factory=list)
    evidence: dict[str, np.ndarray] = field(default_factory=dict)

    def take(self, rows: np.ndarray) -> SignalBatch:
        """The batch of ``rows`` (positions into this one), in their order: one policy's seeds
        of a seed table's (rank/ray_engine.py, rank/policy_memo.py)."""
        return SignalBatch(
            self.vectors[rows],
            np.asarray(self.ok)[rows],
            [self.reasons[i] for i in rows] if self.reasons else [],
            {k: np.asarray(v)[rows] for k, v in self.evidence.items()},
        )


@dataclass
class Comparison:
    """How close two values of a signal are: ``similarity`` (higher = closer, the scale recall
    uses), ``distance`` in the signal's own unit (bits for a hash), and whether that counts as a
    weak / strong match under the signal's thresholds."""

    similarity: float
    distance: float
    match: bool
    strong_match: bool


@dataclass
class CandidateMatch:
    """What ``candidate_evidence`` gets for one policy: the policy's query (seed) vectors, the
    candidates' vectors, their dense similarity (``queries x items``) and the per-item evidence
    recorded at index time for those candidates (``SignalBatch.evidence``, by its key)."""

    queries: np.ndarray
    items: np.ndarray
    similarity: np.ndarray
    item_evidence: dict[str, np.ndarray] = field(default_factory=dict)


class Signal(ABC):
    """One way of matching content. Subclasses declare the class attributes and implement the
    abstract methods; ``register_signal`` checks the declarations.

    ``type_name``: the registry key, written as ``type`` in manifests (``describe()``).
    ``name``: the instance's name, prefix of its evidence columns (``text_best_sim``) and its
    token in the CLI's ``--signals``. ``index_kind``: float vectors or binary hashes.
    ``match_thresholds``: (weak, strong) similarity for "this seed matched".
    ``presence_threshold``: the similarity some item of a seeds' kind reaches to one of them;
    a cold policy none of whose candidates reaches it is taken as absent from the inventory
    (``rank.ranker.seed_matched``). The weak threshold unless a signal measured its own.
    ``evidence_columns``: the signal-specific columns ``candidate_evidence`` returns.
    ``cli_options``: the flags that configure it from the command line.
    ``summary``: one line for ``--help``.
    """

    type_name: ClassVar[str] = ""
    name: str = ""
    summary: ClassVar[str] = ""
    index_kind: ClassVar[IndexKind] = IndexKind.FLOAT_VECTORS
    # Sentence embeddings of paraphrases sit around 0.6-0.8 cosine; hash signals override.
    match_thresholds: tuple[float, float] = (0.5, 0.7)
    presence_threshold: float | None = None  # None: the weak match threshold
    evidence_columns: ClassVar[tuple[EvidenceColumn, ...]] = ()
    cli_options: ClassVar[tuple[CliOption, ...]] = ()
    # Attributes that say where or how to read content but leave the vectors unchanged (e.g.
    # the directory relative image paths live in). Manifests do not record them; whoever
    # rebuilds a signal from its manifest entry elsewhere (a Ray worker) sets them again.
    runtime_options: ClassVar[tuple[str, ...]] = ()
    # The inventory columns the signal reads: a standing index (index/standing.py) re-embeds
    # an item for this signal only when one of these changed. A plug-in that does not say
    # reads them all (an edit to any content re-embeds it: never stale, sometimes wasted).
    content_columns: ClassVar[tuple[str, ...]] = CONTENT_COLUMNS
    # ``describe()`` keys that change how vectors are compared, not the vectors (PDQ's match
    # threshold): a content key leaves them out, so changing one re-embeds nothing.
    recall_settings: ClassVar[tuple[str, ...]] = ()

    def content_spec(self, described: dict) -> dict:
        """What of ``described`` (a ``describe()``) an item's vector depends on: a content key
        digests it (index/standing.py). Default: all but the ``recall_settings``."""
        return {k: v for k, v in described.items() if k not in self.recall_settings}

    @property
    def metric(self) -> str:
        """``"cosine"`` (unit vectors, inner product) or ``"hamming"`` (packed bits)."""
        return METRIC_OF_KIND[self.index_kind]

    # -- computing -------------------------------------------------------------------------
    @abstractmethod
    def embed_items(self, table: pa.Table, *, show_progress: bool = False) -> SignalBatch:
        """Vectors for inventory rows."""

    def embed_queries(self, table: pa.Table, *, show_progress: bool = False) -> SignalBatch:
        """Vectors for seed rows; by default seeds are embedded like items."""
        return self.embed_items(table, show_progress=show_progress)

    @property
    @abstractmethod
    def dim(self) -> int:
        """Vector width (bits for a binary hash)."""

    # -- the manifest ----------------------------------------------------------------------
    @abstractmethod
    def describe(self) -> dict:
        """Everything the manifest must record to rebuild this signal and refuse a mismatched
        query later; must hold ``"type": type_name``."""

    @classmethod
    @abstractmethod
    def from_manifest(cls, entry: dict) -> Signal:
        """The query-side signal a manifest entry (``describe()`` output) describes."""

    def unreadable(self, table: pa.Table) -> np.ndarray:
        """Rows whose content is there but that this signal refuses to embed (``embed_items``
        says why): a standing index does not reuse a vector an earlier version stored for
        such a content, so an index made before the rule agrees with one made after it.
        Default: none."""
        return np.zeros(table.num_rows, bool)

    def recorded_instead(self, recorded: dict) -> Signal | None:
        """A signal to use instead of this one on an index or model whose manifest entry is
        ``recorded``, where this signal's settings were only defaults (the text signal's
        ``auto`` backend); None: this one, checked by ``compatible_with`` as it is."""
        return None

    def compatible_with(self, recorded: dict) -> str | None:
        """Return why ``recorded`` (a manifest entry) does not match this signal, or None."""
        mine = self.describe()
        keys = ["type", "model", "model_version", "pretrained", "dim", "max_seq_length"]
        if "fingerprint" in recorded or "fingerprint" in mine:
            # The fingerprint is the encoder's output on a fixed probe: it names the weights
            # themselves, so other weights behind the same name are refused too. One side
            # without it cannot be shown to match.
            keys.append("fingerprint")
            if "fingerprint" not in recorded or "fingerprint" not in mine:
                return "fingerprint: only one side records the encoder's weights fingerprint"
        for key in keys:
            if key in recorded and key in mine and recorded[key] != mine[key]:
                return f"{key}: index has {recorded[key]!r}, query encoder has {mine[key]!r}"
        return None

    # -- comparing -------------------------------------------------------------------------
    def similarity(self, queries: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Dense ``(n_queries, n_items)`` similarity, higher = closer: the inner product, each
        pair summed in float64 (index/cpu_math.py ``queries_dot``), so a value depends on its
        two vectors alone, not on BLAS's threads or the items' order."""
        from riskrank.index.cpu_math import queries_dot

        return queries_dot(queries, items)

    def distance(self, similarity: np.ndarray) -> np.ndarray:
        """A similarity in the signal's own distance unit (``1 - cosine`` by default)."""
        return 1.0 - np.asarray(similarity, np.float32)

    def presence_level(self) -> float:
        """``presence_threshold``, or the weak match threshold where none is set."""
        own = self.presence_threshold
        return float(self.match_thresholds[0] if own is None else own)

    def compare(self, a: np.ndarray, b: np.ndarray) -> Comparison:
        """Compare two single vectors (the ``compare_hash`` of python-threatexchange)."""
        sim = float(self.similarity(np.asarray(a)[None], np.asarray(b)[None])[0, 0])
        weak, strong = self.match_thresholds
        return Comparison(sim, float(self.distance(np.float32(sim))), sim >= weak, sim >= strong)

    # -- the index -------------------------------------------------------------------------
    def build_index(
        self,
        vectors: np.ndarray,
        *,
        key: str | None = None,
        max_memory: int | str = "4G",
        use_gpu: bool | None = None,
    ):
        """The index that serves this signal, chosen by ``index_kind``."""
        if self.index_kind is IndexKind.BINARY_HASHES:
            from riskrank.index.vectors.hamming import BinaryHashIndex

            if key is not None and not key.startswith("B"):
                key = None  # a float-index key forced for the whole store is not meant for hashes
            return BinaryHashIndex.build(vectors, key=key, max_memory=max_memory, use_gpu=use_gpu)
        from riskrank.index.vectors.faiss_index import VectorIndex

        return VectorIndex.build(vectors, key=key, max_memory=max_memory, use_gpu=use_gpu)

    def load_index(self, path, entry: dict, *, use_gpu: bool | None = None):
        if self.index_kind is IndexKind.BINARY_HASHES:
            from riskrank.index.vectors.hamming import BinaryHashIndex

            return BinaryHashIndex.load(path, entry["index_key"], entry["nprobe"], use_gpu=use_gpu)
        from riskrank.index.vectors.faiss_index import VectorIndex

        return VectorIndex.load(path, entry["index_key"], entry["nprobe"], use_gpu=use_gpu)

    # -- evidence --------------------------------------------------------------------------
    @abstractmethod
    def candidate_evidence(self, match: CandidateMatch) -> dict[str, np.ndarray]:
        """The signal-specific evidence for candidates: ``{suffix: values}`` with exactly the
        suffixes of ``evidence_columns``, one value per row of ``match.items``."""

    # -- the command line ------------------------------------------------------------------
    @classmethod
    def from_cli(cls, options: dict[str, Any]) -> Signal:
        """Build from parsed CLI values (``{dest: value}``); options not given keep defaults."""
        kwargs = {
            o.keyword: options[o.dest] for o in cls.cli_options if options.get(o.dest) is not None
        }
        return cls(**kwargs)

    # -- runtime options -------------------------------------------------------------------
    def get_runtime_options(self) -> dict:
        return {k: getattr(self, k) for k in self.runtime_options}

    def set_runtime_options(self, **options) -> Signal:
        for k, v in options.items():
            if k not in self.runtime_options:
                raise TypeError(f"{type(self).__name__}: unknown runtime option {k!r}")
            setattr(self, k, v)
        return self

    def with_runtime_options(self, **options) -> Signal:
        """A copy with ``options`` set, sharing everything else (a loaded encoder): one
        call's settings (a sweep's image folder) without touching this signal, which other
        calls may be using. A signal whose options live in a shared part copies that too."""
        return copy.copy(self).set_runtime_options(**options)

"""Vector and hash indexes: budget -> FAISS key, float (``faiss_index``), binary Hamming
(``hamming``) and sharded (``sharded``) indexes, all with one search surface."""

from riskrank.index.vectors.faiss_index import (
    FaissIndex,
    SearchResult,
    VectorIndex,
    choose_index_key,
    parse_bytes,
)
from riskrank.index.vectors.hamming import BinaryHashIndex, HammingSearchResult

__all__ = [
    "BinaryHashIndex",
    "FaissIndex",
    "HammingSearchResult",
    "SearchResult",
    "VectorIndex",
    "choose_index_key",
    "parse_bytes",
]

"""A policy's candidates and scores, kept from one sweep over a standing index to the next.

A policy's recall and ranking are a function of the index version it searches (the
inventory's items, contents and vectors), of its own seeds (their rows and vectors), of the
model, of ``k`` and of the code (riskrank's, its numeric libraries' versions, a plug-in
signal's source: ``code_digest``, ``signals_digest``); no other policy enters them: recall
runs policy by policy (recall/recaller.py), and the booster, the calibration and the base
rate are chosen per policy (``RiskRanker.variants``, ``RiskRanker.calibrate``). So a sweep
over a standing index that finds the version it swept last time, the same model and a
policy's same seeds takes that policy's candidate rows and scores from the last sweep
instead of recalling and scoring them again. That is the day a new policy or new seeds
arrive and the inventory did not move (retroactive matching, issue 12): only the new policy
is recalled and scored, as only its seeds are embedded. The queue, its campaigns,
exploration slots and reasons are made over all policies' rows together as always (an
item's row is chosen across policies).

The file (``cache/policies.parquet``, next to the other caches of rank/sweep_cache.py) holds
the last sweep's candidate table with its scores, and per policy the digest (``policy_keys``)
its rows were made under and how many rows it has; it is rewritten by every sweep over the
index, so it never holds more than one sweep. A policy is reused only where its digest
matches and the last sweep's columns are the ones today's recall gives (names, order and
types: a model with other signals, or evidence added by a newer riskrank, is recalled
afresh). A file that cannot be read, lacks a column or holds other row counts than its stamp
says (rewritten by another tool: an outsider's finding) is ignored with a warning
(rank/sweep_cache.py's rule: a cache can slow a sweep down, never break it).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskrank.index.content_digest import key_digest
from riskrank.index.manifest import manifest_digest
from riskrank.index.run_log import get_logger
from riskrank.index.signals.base import SignalBatch
from riskrank.index.tables import read_cache_stamp, read_cache_table, write_cache_table
from riskrank.rank.ranker import ScoredCandidates
from riskrank.recall.seeds import SeedSet

log = get_logger(__name__)

FILE = "cache/policies.parquet"
# What the file's extra columns mean; a file of another format is not read.
FORMAT = 2  # 2: rows per policy in the stamp
_SCORES = {  # ScoredCandidates field -> column (the candidate columns come first)
    "scores": pa.field("__memo_score", pa.float64()),
    "proba": pa.field("__memo_proba", pa.float64()),
    "reasons": pa.field("__memo_reasons", pa.string()),
    "variant": pa.field("__memo_variant", pa.string()),
    "calibration": pa.field("__memo_calibration", pa.string()),
    "action_threshold": pa.field("__memo_threshold", pa.float64()),
    "contributions": pa.field("__memo_contributions", pa.list_(pa.float64())),
}


# Libraries whose numbers enter a policy's rows (a new release can move a score's last bits).
LIBRARIES = ("faiss-cpu", "faiss-gpu", "lightgbm", "numpy", "pyarrow", "scikit-learn", "scipy")


@functools.cache
def code_digest() -> str:
    """A digest of riskrank's own source files and of the versions of ``LIBRARIES``: rows a
    sweep made under other code (another release, a developer's edit, an upgraded LightGBM)
    are not reused."""
    from importlib.metadata import PackageNotFoundError, version

    # Each package's own folder (a source checkout maps them to four; a wheel nests them).
    files = {p.resolve() for d in _package_dirs() for p in Path(d).rglob("*.py")}
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for name in LIBRARIES:
        try:
            h.update(f"{name}=={version(name)}\0".encode())
        except PackageNotFoundError:
            h.update(f"{name} absent\0".encode())
    return h.hexdigest()


def signals_digest(signals) -> str:
    """The source files of the model's signal classes that live outside riskrank (a plug-in
    registered with ``register_signal``: its evidence code may change under the same
    ``describe()``); riskrank's own are in ``code_digest``."""
    own = {Path(d).resolve() for d in _package_dirs()}
    h = hashlib.sha256()
    for signal in signals:
        path = inspect.getsourcefile(type(signal))
        if path is None:
            h.update(f"{type(signal).__qualname__}: no source\0".encode())
            continue
        path = Path(path).resolve()
        if not any(path.is_relative_to(d) for d in own):
            h.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _package_dirs() -> list[str]:
    import riskrank
    import riskrank.index
    import riskrank.rank
    import riskrank.recall

    return [
        d
        for pkg in (riskrank, riskrank.index, riskrank.rank, riskrank.recall)
        for d in pkg.__path__
    ]


def policy_keys(
    index_manifest: dict,
    model_id: str | None,
    seeds: SeedSet,
    seed_vectors: dict[str, SignalBatch],
    k: int | None,
    signals=(),
) -> dict[str, str] | None:
    """Per policy of ``seeds``, the digest of everything its rows depend on: the index
    version (its manifest), the model (``model_identity``), the policy's seed rows and their
    vectors per signal, ``k`` and the code (riskrank's, the libraries', and the model's
    ``signals``' where they are plug-ins). None for a model never saved (its identity is
    unknown, so nothing is kept)."""
    if not model_id:
        return None
    common = [
        f"format={FORMAT}",
        code_digest(),
        signals_digest(signals),
        manifest_digest(index_manifest),
        model_id,
        json.dumps(k),
    ]
    policy_of = np.asarray(seeds.table.column("policy").to_pylist(), dtype=object)
    keys = {}
    for policy in seeds.policies:
        rows = np.flatnonzero(policy_of == policy)
        table = seeds.table.take(pa.array(rows))
        cells = [
            f"{name}={_cell(v)}"
            for name in sorted(table.column_names)
            for v in table.column(name).to_pylist()
        ]
        vecs = [
            f"{name}:{hashlib.sha256(np.ascontiguousarray(b.vectors[rows]).tobytes()).hexdigest()}"
            f":{np.asarray(b.ok)[rows].tobytes().hex()}"
            for name, b in sorted(seed_vectors.items())
        ]
        keys[policy] = key_digest(*common, policy, *cells, *vecs)
    return keys


def _cell(value: object) -> str:
    if isinstance(value, bytes):
        return "b:" + hashlib.sha256(value).hexdigest()
    return json.dumps(value, sort_keys=True, default=repr)


@dataclass
class Reused:
    """The last sweep's rows of some policies: their candidates and scores, in row order."""

    policies: list[str]
    candidates: pa.Table
    scored: ScoredCandidates


class PolicyMemo:
    """The last sweep's rows by policy (read from ``path``) and this sweep's (``save``).

    ``keys``: today's digest per policy (``policy_keys``; None: nothing is reused or kept).
    """

    def __init__(self, path: str | Path, keys: dict[str, str] | None) -> None:
        self.path, self.keys = Path(path), keys
        self._table: pa.Table | None = None
        self._stored: dict = {}
        if keys:
            self._read()

    def reusable(self) -> Reused | None:
        """The rows of today's policies whose digest matches the last sweep's (None: none).
        Every policy reused is fine only if the last sweep had exactly today's policies:
        with some recalled afresh, their columns are checked against these (``combine``)."""
        if self._table is None:
            return None
        hits = [p for p, key in self.keys.items() if self._stored["keys"].get(p) == key]
        if not hits or (len(hits) == len(self.keys) and self._stored["policies"] != hits):
            return None
        rows = self._table.filter(pc.is_in(self._table["policy"], pa.array(hits, pa.string())))
        names = [f.name for f in _SCORES.values()]
        cands = rows.drop(names)
        col = {field: rows.column(f.name) for field, f in _SCORES.items()}
        contrib = col["contributions"]
        scored = ScoredCandidates(
            scores=col["scores"].to_numpy(zero_copy_only=False),
            proba=col["proba"].to_numpy(zero_copy_only=False),
            reasons=col["reasons"].to_pylist(),
            variant=np.asarray(col["variant"].to_pylist(), dtype=object),
            calibration=np.asarray(col["calibration"].to_pylist(), dtype=object),
            action_threshold=col["action_threshold"].to_numpy(zero_copy_only=False),
            base_rates={p: r for p, r in self._stored["base_rates"].items() if p in hits},
            contributions=(
                None
                if contrib.null_count
                else pc.list_flatten(contrib).to_numpy().reshape(rows.num_rows, -1)
                if rows.num_rows
                else None
            ),
        )
        return Reused(hits, cands, scored)

    def save(self, cands: pa.Table, scored: ScoredCandidates, policies: list[str]) -> None:
        """Keep this sweep's rows (``cands``, scored by ``scored``) of ``policies``."""
        if not self.keys:
            return
        n = cands.num_rows
        contrib = scored.contributions
        if contrib is not None and n:
            width = contrib.shape[1]
            offsets = pa.array(np.arange(0, n * width + 1, width, dtype=np.int32))
            contrib_col = pa.ListArray.from_arrays(offsets, pa.array(contrib.ravel(), pa.float64()))
        else:
            contrib_col = pa.nulls(n, _SCORES["contributions"].type)
        values = {
            "scores": pa.array(scored.scores, pa.float64()),
            "proba": pa.array(scored.proba, pa.float64()),
            "reasons": pa.array(list(scored.reasons), pa.string()),
            "variant": pa.array(list(scored.variant), pa.string()),
            "calibration": pa.array(list(scored.calibration), pa.string()),
            "action_threshold": pa.array(scored.action_threshold, pa.float64()),
            "contributions": contrib_col,
        }
        table = cands
        for field, f in _SCORES.items():
            table = table.append_column(f, values[field])
        pols = cands.column("policy").to_pylist() if n else []
        stamp = {
            "format": FORMAT,
            "keys": {p: self.keys[p] for p in policies if p in self.keys},
            # Rows per policy: a file that lost some (rewritten by another tool) is not read.
            "rows": {p: pols.count(p) for p in policies},
            "policies": list(policies),
            "base_rates": {p: float(r) for p, r in scored.base_rates.items()},
        }
        table = table.replace_schema_metadata({"memo": json.dumps(stamp)})
        write_cache_table(table, self.path, "policies cache", log)

    def _read(self) -> None:
        if not self.path.exists():
            return
        try:
            stamp, schema = read_cache_stamp(self.path, "memo", FORMAT)
            if stamp is None:
                return
            shapes = {"keys": dict, "rows": dict, "base_rates": dict, "policies": list}
            if not all(isinstance(stamp.get(k), t) for k, t in shapes.items()):
                raise ValueError("its stamp is not one this riskrank writes")
            if not any(stamp["keys"].get(p) == key for p, key in self.keys.items()):
                return  # nothing to reuse: the table is not read at all
        except (OSError, ValueError, KeyError, AttributeError, pa.ArrowException) as exc:
            log.warning("ignoring the policies cache %s (%s)", self.path, exc)
            return
        wanted = (*_SCORES.values(), pa.field("policy", pa.string()))
        have = {f.name: f.type for f in schema}
        missing = [f.name for f in wanted if have.get(f.name) != f.type]
        table = None if missing else read_cache_table(self.path, schema, "policies cache", log)
        if table is not None:
            counts = pc.value_counts(table["policy"]).to_pylist() if table.num_rows else []
            rows = {c["values"]: c["counts"] for c in counts}
            expected = stamp.get("rows")
            if not isinstance(expected, dict) or any(
                rows.get(p, 0) != n for p, n in expected.items()
            ):
                missing, table = ["the rows its stamp counts"], None
        if missing:
            log.warning(
                "ignoring the policies cache %s (it lacks %s)", self.path, ", ".join(missing)
            )
        if table is None:
            return
        self._table, self._stored = table.replace_schema_metadata(None), stamp


def without_policies(seeds: SeedSet, policies: list[str]) -> SeedSet | None:
    """``seeds`` less the rows of ``policies`` (None: nothing is left)."""
    keep = pc.invert(pc.is_in(seeds.table["policy"], pa.array(policies, pa.string())))
    table = seeds.table.filter(keep)
    return SeedSet(table) if table.num_rows else None


def policy_rows(
    seed_vectors: dict[str, SignalBatch], seeds: SeedSet, part: SeedSet
) -> dict[str, SignalBatch]:
    """``seed_vectors`` (rows aligned with ``seeds``) of the rows of ``part``'s policies, in
    order (``part``: ``seeds`` filtered, as ``without_policies`` makes it)."""
    policy_of = np.asarray(seeds.table.column("policy").to_pylist(), dtype=object)
    rows = np.flatnonzero(np.isin(policy_of, np.asarray(part.policies, dtype=object)))
    return {n: b.take(rows) for n, b in seed_vectors.items()}


def combine(
    seeds: SeedSet, reused: Reused, fresh: pa.Table, fresh_scored: ScoredCandidates
) -> tuple[pa.Table, ScoredCandidates] | None:
    """The reused policies' rows and the ones recalled today (``fresh``, of the other
    policies), in the order one recall of all ``seeds`` gives (policy by policy, in
    ``seeds.policies`` order); None where their columns differ (then all is recalled)."""
    if fresh.num_rows and fresh.schema.remove_metadata() != reused.candidates.schema:
        log.info("policies cache: today's candidate columns differ from the kept ones")
        return None
    parts = [(reused.candidates, reused.scored), (fresh, fresh_scored)]
    tables, order = [], []
    for policy in seeds.policies:
        for t, (table, _) in enumerate(parts):
            if table.num_rows == 0:
                continue
            rows = np.flatnonzero(np.asarray(table.column("policy").to_pylist()) == policy)
            if len(rows):
                tables.append(table.take(pa.array(rows)))
                order.append((t, rows))
    if not tables:
        return fresh, fresh_scored
    cands = pa.concat_tables([t.cast(reused.candidates.schema) for t in tables])

    def pick(field: str):
        out = [np.asarray(getattr(parts[t][1], field), dtype=object)[rows] for t, rows in order]
        return np.concatenate(out)

    contrib = [parts[t][1].contributions for t, _ in order]
    scored = ScoredCandidates(
        scores=pick("scores").astype(float),
        proba=pick("proba").astype(float),
        reasons=list(pick("reasons")),
        variant=pick("variant"),
        calibration=pick("calibration"),
        action_threshold=pick("action_threshold").astype(float),
        base_rates={**reused.scored.base_rates, **fresh_scored.base_rates},
        contributions=(
            None
            if any(c is None for c in contrib)
            else np.concatenate([c[rows] for c, (_, rows) in zip(contrib, order)])
        ),
    )
    return cands, scored


__all__ = [
    "FILE",
    "PolicyMemo",
    "Reused",
    "code_digest",
    "combine",
    "policy_keys",
    "policy_rows",
    "without_policies",
]

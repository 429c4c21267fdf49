"""The whole path: train on review history, sweep inventory into an escalation queue.

>>> model = train(history, seeds, "runs/model")                        # doctest: +SKIP
>>> result = sweep(inventory, seeds, model, out_dir="runs/sweep", budget=200)  # doctest: +SKIP
>>> result.queue.to_pandas().head()                                      # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa

from riskrank.index.build import build_index
from riskrank.index.manifest import MANIFEST
from riskrank.index.schema import ITEM_ID
from riskrank.index.signals.base import Signal
from riskrank.index.signals.text import TextEmbeddingSignal
from riskrank.index.store import InventoryIndex
from riskrank.index.tables import SchemaError, TableLike, as_table, write_parquet
from riskrank.rank.exploration import EXPLORE_SHARE, arrange_queue, reviewed_pairs
from riskrank.rank.model import RiskModel
from riskrank.rank.queue import build_queue
from riskrank.rank.ranker import RiskRanker
from riskrank.rank.review import record_lineage
from riskrank.recall.history import ReviewedExemplars, validate_history
from riskrank.recall.lexical import LexicalProbe
from riskrank.recall.recaller import recall
from riskrank.recall.seeds import SeedSet


def _digest(ids: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\x1f".join(ids).encode()).hexdigest()[:16]


def open_or_build_index(
    inventory: TableLike,
    path: Path,
    signals: list[Signal],
    *,
    max_memory="4G",
    key=None,
    chunk_size: int = 2048,
    show_progress=True,
) -> InventoryIndex:
    """Reuse ``path`` if it indexes exactly this inventory; otherwise (re)build, resuming chunks."""
    table = as_table(inventory, what="inventory")
    digest = (
        _digest([str(x) for x in table.column(ITEM_ID).to_pylist()])
        if ITEM_ID in table.column_names
        else ""
    )
    stamp = path / "inventory.digest"
    if (path / MANIFEST).exists() and stamp.exists() and stamp.read_text() == digest:
        return InventoryIndex.load(path, signals={s.name: s for s in signals})
    index = build_index(
        table,
        path,
        signals=signals,
        max_memory=max_memory,
        key=key,
        chunk_size=chunk_size,
        show_progress=show_progress,
        overwrite=True,
    )
    stamp.write_text(digest)
    return index


def train(
    history: TableLike,
    seeds: SeedSet | TableLike,
    model_dir: str | Path,
    *,
    signals: list[Signal] | None = None,
    k: int = 1000,
    ranker: RiskRanker | None = None,
    lexical_probe: bool = True,
    show_progress: bool = True,
) -> RiskModel:
    """Fit a RiskModel on reviewed history.

    The reviewed items are indexed, the seeds recall among them (each item's own review left
    out of its history evidence), and the ranker learns which evidence marks a violation.
    ``lexical_probe`` adds an n-gram classifier of the reviewed text as one more piece of
    evidence (recall/lexical.py).
    """
    model_dir = Path(model_dir)
    seeds = seeds if isinstance(seeds, SeedSet) else SeedSet.from_table(seeds)
    hist, quarantined = validate_history(history)
    signals = signals or [TextEmbeddingSignal()]
    # One index row per reviewed item, however many policies reviewed it.
    ids = hist.column(ITEM_ID).to_pylist()
    first = {}
    for i, item_id in enumerate(ids):
        first.setdefault(item_id, i)
    content_cols = [c for c in hist.column_names if c not in ("policy", "verdict", "sweep_id")]
    items = hist.take(pa.array(list(first.values()))).select(content_cols)
    hindex = open_or_build_index(
        items, model_dir / "history_index", signals, show_progress=show_progress
    )
    exemplars = {}
    for name, si in hindex.signals.items():
        pos_of = {item_id: p for p, item_id in enumerate(si.ids)}
        rows = [r for r, item_id in enumerate(ids) if item_id in pos_of]
        vecs = np.asarray(si.vectors[[pos_of[ids[r]] for r in rows]])
        exemplars[name] = ReviewedExemplars.build(
            hist.take(pa.array(rows, pa.int64())), si.signal, vectors=vecs
        )
    lexical = None
    if lexical_probe and "text" in hist.column_names:
        lexical = LexicalProbe.fit(
            hist.column("text").to_pylist(),
            hist.column("policy").to_pylist(),
            hist.column("verdict").to_pylist(),
            ids,
        )
    t0 = time.time()
    cands = recall(
        hindex,
        seeds,
        k=k,
        exemplars=exemplars,
        lexical=lexical,
        exclude_self=True,
        show_progress=show_progress,
    )
    ranker = ranker or RiskRanker()
    ranker.fit(cands, history=hist)
    info = {
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "history_rows": hist.num_rows,
        "history_quarantined": quarantined.num_rows,
        "training_candidates": cands.num_rows,
        "policies_with_history": sorted(set(hist.column("policy").to_pylist())),
        "k": k,
        "seconds": round(time.time() - t0, 2),
    }
    write_parquet(quarantined, model_dir / "history_quarantine.parquet")
    model = RiskModel(
        ranker, [hindex.signals[s.name].signal for s in signals], exemplars, info, lexical
    )
    model.save(model_dir)
    model.info.update(record_lineage(model_dir, hist, seeds))  # version 1: no parent
    return model


@dataclass
class SweepResult:
    """What a sweep produced; the same tables are on disk under ``out_dir``."""

    queue: pa.Table
    candidates: pa.Table
    quarantine: pa.Table
    report: dict
    out_dir: Path | None = None


def score_candidates(
    model: RiskModel, cands: pa.Table
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Raw scores, calibrated probabilities, reasons and model variant for each candidate row."""
    if cands.num_rows == 0:
        return np.zeros(0), np.zeros(0), [], np.zeros(0, dtype=object)
    scores, variant = model.ranker._raw(cands)
    proba = model.ranker.predict_proba(cands)
    return scores, proba, model.ranker.reasons(cands), variant


def sweep(
    inventory: TableLike,
    seeds: SeedSet | TableLike,
    model: RiskModel | str | Path,
    *,
    out_dir: str | Path | None = None,
    budget: int | None = None,
    k: int = 1000,
    max_memory: int | str = "4G",
    index_key: str | None = None,
    image_base_dir: str | Path | None = None,
    chunk_size: int = 2048,
    show_progress: bool = True,
    campaigns: bool = False,
    explore: float = EXPLORE_SHARE,
) -> SweepResult:
    """Index ``inventory``, recall with ``seeds``, rank, and return the escalation queue.

    ``campaigns``: the budget counts campaigns (near-copies, rank/campaigns.py), one row each
    with its members listed. ``explore``: the share of the budget spent on exploration
    (rank/exploration.py; 0 = off).

    ``image_base_dir``: where relative ``image_path`` values live (image signals only; a
    model does not remember it).

    With ``out_dir`` everything is written there (``index/``, ``candidates.parquet``,
    ``queue.parquet``, ``quarantine.parquet``, ``report.json``); running the same sweep again
    after a crash resumes the embedding where it stopped.
    """
    t0 = time.time()
    model = model if isinstance(model, RiskModel) else RiskModel.load(model)
    set_image_base_dir(model, image_base_dir)
    seeds = seeds if isinstance(seeds, SeedSet) else SeedSet.from_table(seeds)
    out = Path(out_dir) if out_dir else Path(_tmpdir())
    index = open_or_build_index(
        inventory,
        out / "index",
        model.signals,
        max_memory=max_memory,
        key=index_key,
        chunk_size=chunk_size,
        show_progress=show_progress,
    )
    t_index = time.time() - t0
    cands = recall(
        index,
        seeds,
        k=k,
        exemplars=model.exemplars,
        lexical=model.lexical,
        show_progress=show_progress,
    )
    t_recall = time.time() - t0 - t_index
    scores, proba, reasons, variant = score_candidates(model, cands)
    seconds = {"index": t_index, "recall": t_recall, "rank": time.time() - t0 - t_index - t_recall}
    return finish_sweep(
        cands,
        (scores, proba, reasons, variant),
        index.quarantine,
        index.manifest,
        seeds,
        seconds,
        out_dir=out if out_dir else None,
        budget=budget,
        arrange=partial(
            arrange_queue,
            index=index,
            campaigns=campaigns,
            explore=explore,
            reviewed=reviewed_pairs(model.exemplars),
        ),
    )


def set_image_base_dir(model: RiskModel, base_dir: str | Path | None) -> None:
    """Point the model's image-reading signals at ``base_dir`` (None: leave them as they are)."""
    if base_dir is None:
        return
    for signal in model.signals:
        if "base_dir" in signal.runtime_options:
            signal.set_runtime_options(base_dir=base_dir)


def finish_sweep(
    cands: pa.Table,
    scored: tuple[np.ndarray, np.ndarray, list[str], np.ndarray],
    quarantine: pa.Table,
    manifest: dict,
    seeds: SeedSet,
    seconds: dict[str, float],
    *,
    out_dir: Path | None,
    budget: int | None,
    extra: dict | None = None,
    arrange: Callable[..., pa.Table] | None = None,
) -> SweepResult:
    """The end every sweep engine shares: queue, report (``extra`` keys added), the item
    accounting check, and the files in ``out_dir``.

    ``scored``: what ``score_candidates`` returns; ``manifest``: the index's. ``arrange``
    (queue, budget=) -> queue: campaigns and exploration slots (rank/exploration.py), which
    then applies the budget instead of ``build_queue``.
    """
    scores, proba, reasons, variant = scored
    queue = build_queue(cands, scores, proba, reasons, variant, budget=None if arrange else budget)
    queue = arrange(queue, budget=budget) if arrange else queue
    n_indexed = int(manifest["items"]["indexed"])
    recalled = len(set(cands.column(ITEM_ID).to_pylist())) if cands.num_rows else 0
    report = {
        "items_in": manifest["items"]["input"],
        "items_indexed": n_indexed,
        "items_quarantined": quarantine.num_rows,
        "items_recalled": recalled,
        "items_not_recalled": n_indexed - recalled,
        "candidates": cands.num_rows,
        "queued": queue.num_rows,
        "policies": seeds.policies,
        "cold_start_policies": sorted(
            {p for p, v in zip(cands.column("policy").to_pylist(), variant) if v == "cold"}
        )
        if cands.num_rows
        else [],
        "seconds": {
            **{stage: round(s, 2) for stage, s in seconds.items()},
            "total": round(sum(seconds.values()), 2),
        },
        "index": {
            n: {
                "key": e["index_key"],
                "count": e["count"],
                **({"shards": len(e["shards"])} if "shards" in e else {}),
            }
            for n, e in manifest["signals"].items()
        },
        **(extra or {}),
    }
    if report["items_in"] != report["items_indexed"] + report["items_quarantined"]:
        raise RuntimeError(f"item accounting broken: {report}")  # never silently lose items
    if out_dir:
        write_parquet(cands, out_dir / "candidates.parquet")
        write_parquet(queue, out_dir / "queue.parquet")
        write_parquet(quarantine, out_dir / "quarantine.parquet")
        (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return SweepResult(queue, cands, quarantine, report, out_dir)


def _tmpdir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="riskrank-sweep-")


def check_policies(seeds: SeedSet, model: RiskModel) -> list[str]:
    """Policies in ``seeds`` the model has no review history for (they run cold-start)."""
    known = set(model.info.get("policies_with_history", []))
    return [p for p in seeds.policies if p not in known]


__all__ = [
    "RiskModel",
    "SchemaError",
    "SweepResult",
    "check_policies",
    "finish_sweep",
    "sweep",
    "train",
]

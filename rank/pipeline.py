"""The whole path: train on review history, sweep inventory into an escalation queue.

One pipeline for every engine: ``sweep(..., engine="local" | "ray")`` picks the strategy
(``rank.engine``) for the steps that parallelise; everything else is here, once.

>>> model = train(history, seeds, "runs/model")                        # doctest: +SKIP
>>> result = sweep(inventory, seeds, model, out_dir="runs/sweep", budget=200)  # doctest: +SKIP
>>> result.queue.to_pandas().head()                                      # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskrank.index import collector, run_log
from riskrank.index.chunks import DEFAULT_CHUNK_SIZE
from riskrank.index.content_digest import IMAGE_CELLS
from riskrank.index.engine import Engine
from riskrank.index.manifest import write_text_atomic
from riskrank.index.output_lock import holds_output_lock
from riskrank.index.paths import NOT_FOUND
from riskrank.index.run_log import get_logger
from riskrank.index.schema import (
    CONTENT_COLUMNS,
    ITEM_ID,
    SIGNAL_FAILURES,
    TEXT,
    SourceFiles,
    is_blank,
    name_files,
    quarantine_kinds,
    quarantine_table,
)
from riskrank.index.signals.base import Signal, SignalBatch
from riskrank.index.signals.images import UNRECOGNISED
from riskrank.index.signals.text import TextEmbeddingSignal
from riskrank.index.standing import (
    DELTA,
    SHOWN_UNKNOWN,
    VERSIONS,
    StandingIndex,
    check_outside_inventory,
    pinned,
    recorded_image_dir,
)
from riskrank.index.store import IndexMismatchError, InventoryIndex
from riskrank.index.tables import SchemaError, TableLike, as_table, write_parquet
from riskrank.index.vectors.faiss_index import parse_bytes
from riskrank.rank import sweep_output
from riskrank.rank.calibration import MIN_EM_PER_CLASS
from riskrank.rank.coverage import coverage_report, coverage_warnings, unlike_reviews
from riskrank.rank.engine import resolve_sweep_engine
from riskrank.rank.exploration import EXPLORE_SHARE, arrange_queue
from riskrank.rank.input_checks import (
    check_budget,
    check_explore,
    check_history_trainable,
    history_rows_not_indexed,
    history_rows_without_seeds,
    input_rows,
    protect_metadata,
)
from riskrank.rank.model import (
    RiskModel,
    check_model_dir,
    check_not_in_model,
    with_image_base_dir,
)
from riskrank.rank.policy_memo import FILE as POLICIES_FILE
from riskrank.rank.policy_memo import (
    PolicyMemo,
    combine,
    policy_keys,
    policy_rows,
    without_policies,
)
from riskrank.rank.queue import build_queue, near_copy_levels
from riskrank.rank.ranker import RiskRanker, ScoredCandidates, presence_levels, seed_matched
from riskrank.rank.reasons import explain_queue
from riskrank.rank.reasons_memo import FILE as EXPLAINED_FILE
from riskrank.rank.reasons_memo import ExplanationMemo
from riskrank.rank.review import (
    keep_pictures,
    lineage_info,
    lineage_tables,
    seeds_unlike_models,
    with_provenance,
)
from riskrank.rank.reviewed import digest_format, mark_reviewed, reviewed_counts, reviewed_table
from riskrank.rank.seed_memo import FILE as SEEDS_FILE
from riskrank.rank.seed_memo import SeedVectorMemo
from riskrank.rank.sweep_cache import FILE as REASONS_FILE
from riskrank.rank.sweep_cache import (
    LEXICAL_FILE,
    LINKS_FILE,
    LexicalMemo,
    SpanCache,
    model_identity,
)
from riskrank.recall.candidates import with_every_signal
from riskrank.recall.history import POSITIVE_VERDICT, ReviewedExemplars, validate_history
from riskrank.recall.lexical import LexicalProbe
from riskrank.recall.neighbours import FILE as NEIGHBOURS_FILE
from riskrank.recall.neighbours import NeighbourMemo
from riskrank.recall.recaller import DEFAULT_K, NEIGHBOUR_RULES, check_k, recall
from riskrank.recall.seeds import SeedSet, check_seed_vectors

log = get_logger("riskrank")


def update_standing_index(
    inventory: TableLike,
    path: Path,
    signals: list[Signal],
    *,
    engine: str | Engine = "local",
    deletions=None,
    own: bool = True,
    **build_kw,
) -> tuple[InventoryIndex, dict]:
    """Bring the standing index at ``path`` (index/standing.py) to ``inventory``: only new and
    changed content is embedded (on ``engine``), what is gone or in ``deletions`` leaves it.
    Returns the current version and what the update did (``{}`` when the index already held
    exactly this inventory: nothing is written then).

    ``own``: ``path`` is riskrank's own cache (a sweep's ``out_dir/index``, a model's
    ``history_index``), so an index of an older layout there is replaced; a directory the user
    named (``own=False``) that holds something else is refused."""
    standing = StandingIndex(path)
    if own and path.is_dir() and not StandingIndex.is_standing(path):
        for child in path.iterdir():  # an index of the layout before standing indexes (ours)
            if child.name not in (DELTA, VERSIONS):  # (these: a first update to resume)
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    index, stats = standing.update(
        inventory, signals, deletions=deletions, engine=engine, **build_kw
    )
    return index, stats.as_dict() if stats is not None else {}


@holds_output_lock("model_dir", what="model directory")
def train(
    history: TableLike,
    seeds: SeedSet | TableLike,
    model_dir: str | Path,
    *,
    signals: list[Signal] | None = None,
    k: int | None = DEFAULT_K,
    ranker: RiskRanker | None = None,
    lexical_probe: bool = True,
    engine: str | Engine = "local",
    index_donor: str | Path | None = None,
    show_progress: bool = True,
) -> RiskModel:
    """Fit a RiskModel on reviewed history.

    The reviewed items are indexed, the seeds recall among them (each item's own review left
    out of its history evidence), and the ranker learns which evidence marks a violation.
    ``lexical_probe`` adds an n-gram classifier of the reviewed text as one more piece of
    evidence (recall/lexical.py). ``k``: as in ``sweep`` (the ranker learns from the reviewed
    items recall finds; None: all of them). ``ranker``: e.g.
    ``RiskRanker(precision_target=0.99, policy_precision_targets={"scam": 0.9})`` sets the
    precision that an automatic action must hold (default 0.95). ``engine``: where the
    reviewed items are embedded (``"local"``, ``"ray"`` or a configured engine); the history
    index is a standing index (index/standing.py), so a retrain after ``review import``
    embeds only the newly reviewed items, and none whose vector ``index_donor`` (a sweep's
    standing index, as ``review import`` passes it) holds for the same content and encoder.
    """
    model_dir = Path(model_dir)
    check_model_dir(model_dir)  # a user's own directory is refused before it is written to
    check_k(k)
    seeds = seeds if isinstance(seeds, SeedSet) else SeedSet.from_table(seeds)
    model, lineage, quarantined = fit_model(
        history, seeds, model_dir, signals=signals, k=k, ranker=ranker,
        lexical_probe=lexical_probe, engine=engine, index_donor=index_donor,
        show_progress=show_progress,
    )  # fmt: skip
    model.info.update(lineage_info(lineage))  # version 1, no parent
    say_history_set_aside(quarantined, model_dir)
    lineage = keep_pictures(lineage, model.signals)  # the next import starts from this history
    tables = lineage_tables(lineage, seeds, model.signals)
    model.save(model_dir, tables={"history_quarantine": quarantined, **tables})
    return model


def say_history_set_aside(quarantined: pa.Table, model_dir: Path) -> None:
    """A warning counting the history rows training set aside, by reason. Only
    ``history_quarantine.parquet`` and a count in model.json said it: 11 of 498 rows (blank
    verdicts, conflicting re-reviews) went unsaid to a library caller (an outsider's report)."""
    if not quarantined.num_rows:
        return
    reasons: dict[str, int] = {}
    for why in quarantined.column("reason").to_pylist():
        key = str(why).split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    listed = "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    log.warning(
        "history: %d rows set aside, not trained on (%s); each with its reason in %s",
        quarantined.num_rows, listed, model_dir / "history_quarantine.parquet",
    )  # fmt: skip


def fit_model(
    history: TableLike,
    seeds: SeedSet,
    model_dir: Path,
    *,
    signals: list[Signal] | None,
    k: int | None,
    ranker: RiskRanker | None = None,
    lexical_probe: bool = True,
    engine: str | Engine = "local",
    index_donor: str | Path | None = None,
    show_progress: bool = True,
    unusable_seeds: str = "refuse",
) -> tuple[RiskModel, pa.Table, pa.Table]:
    """``train`` up to the save: the model (its history index already under ``model_dir``),
    the clean history rows (those under a policy without seeds too: the lineage) and the
    quarantined ones (those too, for this training). ``review import`` saves it once, with
    its lineage, so a killed import never leaves a model stamped as a first version.
    ``unusable_seeds``: ``recall``'s (a retrain of a model's own seeds warns)."""
    hist, quarantined = validate_history(history)
    rows = input_rows(hist, quarantined)  # each clean row's number in the input
    # What the next import starts from: reviews under a policy the seeds do not name today
    # train nothing now, and train again once its seeds come back (they were dropped from
    # every later version: a reviewer's report). An import's retrain keeps them so too.
    lineage = hist
    hist, unseeded = history_rows_without_seeds(hist, seeds, rows)
    quarantined = pa.concat_tables([quarantined, unseeded])
    rows = input_rows(hist, quarantined)
    after = (
        f" ({unseeded.num_rows} under policies the seeds do not name)" if unseeded.num_rows else ""
    )
    check_history_trainable(hist, after=after)  # before minutes of embedding, not after
    signals = signals or [TextEmbeddingSignal()]
    # A retrain into the same folder keeps the encoders its history index was built with where
    # only defaults chose them (the text backend 'auto' after an upgrade).
    signals = StandingIndex(model_dir / "history_index").keep_recorded(signals)
    # Refused before the history is embedded; the vectors serve recall below (embedded once).
    seed_vectors = refuse_unusable_seeds(seeds, signals) if unusable_seeds != "warn" else {}
    ids = hist.column(ITEM_ID).to_pylist()
    hindex, _ = update_standing_index(
        history_items(hist),
        model_dir / "history_index",
        signals,
        engine=engine,
        donor=index_donor,
        show_progress=show_progress,
    )
    # As a sweep warns: a history whose picture files were not found trains an image model
    # that saw no picture (`riskrank train` without --image-base-dir said nothing of it: an
    # outsider's report).
    # (Any number: a history of five pictures, none found, said nothing either.)
    for warning in missing_files_warnings(hindex.signal_failures, hindex.manifest, at_least=1):
        log.warning("history: %s", warning)
    # Reviews of items that could not be indexed take no part in training: count them.
    dropped = history_rows_not_indexed(hist, hindex.quarantine, rows)
    quarantined = pa.concat_tables([quarantined, dropped])
    if dropped.num_rows:
        gone = set(dropped.column(ITEM_ID).to_pylist())
        usable = pa.array([i not in gone for i in ids], pa.bool_())
        after = " once items without usable content are set aside"
        check_history_trainable(hist.filter(usable), warn=False, after=after)
    exemplars = history_exemplars(hindex, hist)
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
        unusable_seeds=unusable_seeds,
        seed_vectors={n: b for n, b in seed_vectors.items() if n in hindex.signals},
        include=reviewed_by_policy(hist),  # a policy's reviews, however many others have
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
    model_signals = [hindex.signals[s.name].signal for s in signals]
    # What each reviewer saw, as a digest: a sweep re-escalates an item only if it changed.
    reviewed = reviewed_table(hist, model_signals)
    model = RiskModel(ranker, model_signals, exemplars, info, lexical, reviewed)
    return model, lineage, quarantined


def reviewed_by_policy(hist: pa.Table) -> dict[str, list[str]]:
    """Per policy, the items reviewed under it, in history order."""
    out: dict[str, list[str]] = {}
    for item_id, policy in zip(hist.column(ITEM_ID).to_pylist(), hist.column("policy").to_pylist()):
        out.setdefault(policy, []).append(item_id)
    return out


def history_items(hist: pa.Table) -> pa.Table:
    """One row per reviewed item (however many policies reviewed it): its content and
    metadata, the review columns left out."""
    ids = hist.column(ITEM_ID).to_pylist()
    first: dict[str, int] = {}
    for i, item_id in enumerate(ids):
        first.setdefault(item_id, i)
    content_cols = [c for c in hist.column_names if c not in ("policy", "verdict", "sweep_id")]
    items = hist.take(pa.array(list(first.values()), pa.int64())).select(content_cols)
    return protect_metadata(items, what="history")


def history_exemplars(hindex: InventoryIndex, hist: pa.Table) -> dict[str, ReviewedExemplars]:
    """Per signal, the reviewed items' vectors with their reviews (the history evidence)."""
    ids = hist.column(ITEM_ID).to_pylist()
    exemplars = {}
    for name, si in hindex.signals.items():
        pos_of = {item_id: p for p, item_id in enumerate(si.ids)}
        rows = [r for r, item_id in enumerate(ids) if item_id in pos_of]
        vecs = np.asarray(si.vectors[[pos_of[ids[r]] for r in rows]])
        exemplars[name] = ReviewedExemplars.build(
            hist.take(pa.array(rows, pa.int64())), si.signal, vectors=vecs
        )
    return exemplars


@dataclass
class SweepResult:
    """What a sweep produced; the same tables are on disk under ``out_dir``.
    ``signal_failures``: per (item, signal), why a signal lacks an item it had content for (a
    picture that would not decode: the item is swept by its text), as
    ``signal_failures.parquet``. It lists quarantined items too (no signal could use them:
    ``quarantine`` says so); ``report["signal_failures"]`` counts only the items swept."""

    queue: pa.Table
    candidates: pa.Table
    quarantine: pa.Table
    report: dict
    out_dir: Path | None = None
    signal_failures: pa.Table | None = None
    # The ids of the items this sweep took in (indexed or quarantined; not those a deletion
    # list took out): what a quality report against labels is scored over.
    swept_ids: pa.ChunkedArray | None = None


@run_log.tagged  # its log lines say which run they came from (index/run_log.py)
@holds_output_lock("out_dir", what="sweep output directory")
@collector.frozen()  # libraries and models are not walked by the sweep's collections
def sweep(
    inventory: TableLike | None,
    seeds: SeedSet | TableLike,
    model: RiskModel | str | Path,
    *,
    engine: str | Engine = "local",
    out_dir: str | Path | None = None,
    index_dir: str | Path | None = None,
    deletions=None,
    budget: int | None = None,
    budget_per_policy: int | None = None,
    k: int | None = DEFAULT_K,
    max_memory: int | str = "4G",
    index_key: str | None = None,
    image_base_dir: str | Path | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    include_reviewed: bool = False,
    show_progress: bool = True,
    campaigns: bool = False,
    explore: float = EXPLORE_SHARE,
    reports: bool | Mapping = False,
) -> SweepResult:
    """Index ``inventory``, recall with ``seeds``, rank, and return the escalation queue.

    ``engine``: ``"local"`` (this process), ``"ray"``, or a configured
    ``rank.ray_engine.RaySweepEngine`` / ``index.ray_engine.engine.RayEngine`` (shards, actors,
    cluster address, ...). Every engine gives the same queue and writes the same files.

    ``k``: neighbours recalled per seed and signal (default ``DEFAULT_K`` = 5,000, also the
    CLI's). Only recalled items can be queued: an inventory larger than ``k`` is covered in
    part, and ``report["coverage"]`` says how much. ``k=None`` recalls every indexed item, so
    the queue covers the whole inventory. ``budget``: keep only the queue's first ``budget``
    rows (None: all of them); it cuts the queue, not recall. ``budget_per_policy``: instead,
    up to this many rows for each policy (one budget gave its slots to whichever policy's
    probabilities ran highest, e.g. a new policy's transferred ones).

    ``campaigns``: the budget counts campaigns (near-copies, rank/campaigns.py), one row each
    with its members listed. ``explore``: the share of the budget spent on exploration
    (rank/exploration.py; 0 = off).

    ``image_base_dir``: where relative ``image_path`` values live (image signals only; a
    model does not remember it).

    ``include_reviewed``: keep items the model's history already judged under a policy and
    whose content is unchanged since (default: left out of the queue, counted in
    ``report["reviewed"]``; the ``reviewed`` / ``previous_verdict`` columns say which).

    ``index_dir``: the standing index (index/standing.py) this sweep updates: a team's daily
    sweeps name the same one, so each embeds only the items that are new or changed since the
    last and drops those gone (``report["index_update"]`` says what it did). Default:
    ``out_dir/index``. ``deletions``: item ids to take out of the index even if the inventory
    still lists them. ``inventory=None`` sweeps the standing index as it is, embedding only the
    seeds: new seeds or a new policy matched retroactively against everything indexed.

    With ``out_dir`` everything is written there (``index/`` unless ``index_dir``,
    ``candidates.parquet``, ``queue.parquet``, ``quarantine.parquet``, ``report.json``;
    ``reports=True`` adds ``report.md``, ``report.png`` and ``report.html``, as
    ``rr.write_reports`` would, or pass its options: ``reports={"labels": truth}``); running
    the same sweep again after a crash, under either engine, resumes the embedding where it
    stopped. The previous run's ``_SUCCESS`` there is removed once the inputs are read, its
    outputs just before the new ones are written, and ``_SUCCESS`` (with the run's id, also
    ``report["run_id"]``) is written once they all are: wait for it
    (``rr.sweep_complete(out_dir)``) before reading them.
    """
    t0 = time.time()
    budget = check_budget(budget)
    budget_per_policy = check_budget(budget_per_policy, "budget_per_policy")
    if budget is not None and budget_per_policy is not None:
        raise ValueError("sweep: give budget or budget_per_policy, not both")
    check_explore(explore)  # before anything is embedded or a standing index moves
    check_k(k)
    parse_bytes(max_memory)  # a typo is refused now, not after the embedding
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise FileExistsError(
            f"{out_dir} exists and is not a directory; choose an output directory"
        )
    if reports and out_dir is None:
        raise ValueError("sweep: reports= writes files into out_dir; give out_dir")
    if out_dir is not None:
        check_sweep_out(Path(out_dir), inventory)
    if index_dir is not None:
        check_not_in_model(index_dir, "index_dir")
        check_outside_inventory(index_dir, inventory, "the index")
    engine = resolve_sweep_engine(engine)
    model = model if isinstance(model, RiskModel) else RiskModel.load(model)
    collector.freeze_more()  # the model and its encoders, loaded just now
    seeds = seeds if isinstance(seeds, SeedSet) else SeedSet.from_table(seeds)
    # Ray's actors get the folder from the model's signals: a copy's, the caller's untouched.
    model = with_image_base_dir(model, image_base_dir)
    # A standing index keeps its seeds' vectors (rank/seed_memo.py): only new seeds are embedded.
    seed_dir = Path(index_dir) if index_dir else Path(out_dir) / "index" if out_dir else None
    seed_memo = SeedVectorMemo(seed_dir / SEEDS_FILE if seed_dir is not None else None)
    seed_vectors = refuse_unusable_seeds(seeds, model.signals, seed_memo)
    writer = _reports_writer(seeds, image_base_dir, reports) if reports else None
    with _work_dir(out_dir) as out:
        files, unread = None, []
        if inventory is not None:
            # Metadata named like the pipeline's own columns is renamed, not overwritten.
            inventory = protect_metadata(as_table(inventory, what="inventory", files=True))
            files = SourceFiles.of(inventory)
            unread = unread_content_warnings(inventory, model.signals)
            unread += placeholder_text_warnings(inventory)
        index_path = Path(index_dir) if index_dir else out / "index"
        check_sweep_index(inventory, index_path, deletions, model.signals, index_key)
        if out_dir:  # inputs read and checked: the previous run's marker is not this run's
            sweep_output.begin(out, ())
        with engine.cluster(show_progress), engine.session(show_progress), ExitStack() as read:
            index, update = sweep_index(
                inventory,
                index_path,
                model.signals,
                own=index_dir is None,
                engine=engine,
                deletions=deletions,
                max_memory=max_memory,
                key=index_key,
                chunk_size=chunk_size,
                show_progress=show_progress,
            )
            # The version read is pinned at once: updates meanwhile keep it (this process
            # holds its files open; Ray's tasks open them again by path, index/standing.py).
            read.enter_context(pinned(index.path))
            t_index = time.time() - t0
            # Nothing to update (the same inventory again, a sweep run again after a kill, or
            # no inventory): the report says which update made the version it searched.
            earlier = made_by(index, index_path) if not update else {}
            if earlier:
                earlier["no_inventory"] = inventory is None
            keep = bool(out_dir or index_dir)  # (else a temporary index: gone after this)
            if keep:
                seed_memo.save()
            seed_vectors = {n: b for n, b in seed_vectors.items() if n in index.signals}
            keys = policy_keys(
                index.manifest, model_identity(model.info), seeds, seed_vectors, k, model.signals
            )
            cands, scored, t_recall, memo_report = recall_and_score(
                engine, index, index_path, model, seeds, k=k, progress=show_progress,
                seed_vectors=seed_vectors, keep=keep, keys=keys,
            )  # fmt: skip
            extra = {
                "engine": engine.name,
                **engine.report(),
                "index_update": update,
                **memo_report,
                **({"index_up_to_date": earlier} if earlier else {}),
                # None: a temporary index, gone when the sweep returns.
                "index_version_dir": str(index.path.resolve()) if out_dir or index_dir else None,
                # Which model made the queue: `review import` checks its verdicts go to its line.
                "model": {
                    **{k: model.info.get(k) for k in ("version", "history_digest", "created_at")},
                    # where it lives: the HTML report shows its reviewed items' pictures
                    **({"dir": str(model.path)} if model.path is not None else {}),
                },
            }
        # Not a feature: whether a reviewer already judged this content (rank/reviewed.py).
        # Today's content of a reviewed candidate is the row the index kept for it (of an ad
        # in two hive day folders, the newest export), not the inventory's first row of its
        # id: an older export's text was judged, and edited ads went unqueued (an outsider's
        # repro). A version written before it kept picture digests, or a model whose digests
        # read the picture's bytes cell (trained before content_digests 2, which the index's
        # rows lack): the inventory's rows.
        legacy = model.reviewed is not None and digest_format(model.reviewed) == IMAGE_CELLS
        if inventory is None or (index.keeps_picture_digests() and not legacy):
            today, pictures = index.items, index.picture_shas()  # picture bytes are not kept
        else:
            today, pictures = inventory, None
        # A sweep without an inventory reads them where the update that made the version
        # did, unless told another folder.
        readers = model if image_base_dir is not None else where_indexed(model, index, inventory)
        said: list[str] = list(unread)  # (the report's warnings too)
        cands = mark_reviewed(cands, model.reviewed, today, readers.signals, pictures, said)
        scored = calibrated_to_decide(model, cands, scored, seeds)
        seconds = {
            "index": t_index,
            "recall": t_recall,
            "rank": time.time() - t0 - t_index - t_recall,
        }
        manifest = index.manifest
        if inventory is None:  # the index as it stands: this sweep had no deletion list
            manifest = {**manifest, "items": {**manifest["items"], "deleted": 0}}
        # Files named from today's input (an index found up to date kept the day's it was
        # made from); a retroactive sweep keeps the version's (older ones: no file columns).
        quarantine = (
            name_files(index.quarantine, files)
            if files is not None
            else quarantine_table(index.quarantine.to_pylist())
        )
        return finish_sweep(
            cands,
            scored,
            quarantine,
            manifest,
            seeds,
            seconds,
            out_dir=out if out_dir else None,
            budget=budget,
            extra=extra,
            signal_failures=index.signal_failures,
            swept_ids=pa.chunked_array(
                [*index.items.column(ITEM_ID).chunks, *quarantine.column(ITEM_ID).chunks],
                pa.string(),
            ),
            include_reviewed=include_reviewed,
            model=model,
            arrange=partial(
                arrange_queue,
                index=index,
                campaigns=campaigns,
                explore=explore,
                links_cache=index_path / LINKS_FILE,
                budget_per_policy=budget_per_policy,
            ),
            reasons_cache=index_path / REASONS_FILE,
            kept_reasons=ExplanationMemo(index_path / EXPLAINED_FILE, keys if keep else None),
            reports=writer,
            k=k,
            warnings=said
            + (unreached_warnings(cands, index, seeds, model.signals) if k is None else []),
        )


def unread_content_warnings(inventory: pa.Table, signals) -> list[str]:
    """A warning for each content column (text, pictures) that holds values in ``inventory``
    and that none of the model's signals reads. A text-only model swept an inventory of ads
    with pictures on their text, and nothing said the pictures were not looked at (outsider
    CB)."""
    read = {c for s in signals for c in s.content_columns}
    out = []
    for name in CONTENT_COLUMNS:
        if name in read or name not in inventory.column_names:
            continue
        col = _decoded(inventory.column(name))
        if _bytes_like(col.type):  # (an empty string or picture holds nothing)
            n = pc.sum(pc.fill_null(pc.greater(pc.binary_length(col), 0), False)).as_py() or 0
        else:
            n = len(col) - col.null_count
        if n:
            uses = ", ".join(s.name for s in signals)
            out.append(
                f"inventory column {name!r} holds a value in {n} row{'s' if n != 1 else ''}, "
                "and none of the model's "
                f"signals ({uses}) reads it: this sweep did not look at it (train a model with "
                "a signal that does, e.g. `riskrank train --signals text,image,pdq` for pictures)"
            )
    return out


def _decoded(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A dictionary (categorical) column as its values; others as they are."""
    return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col


def _bytes_like(t: pa.DataType) -> bool:
    return any(
        f(t) for f in (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
                       pa.types.is_large_binary)
    )  # fmt: skip


# What pandas, numpy and SQL clients write for a missing value when a column is turned into
# text (``astype(str)``): content to the index, so such rows are swept as the text "nan".
PLACEHOLDERS = ("nan", "none", "null", "<na>", "nat")
PLACEHOLDER_CHARS = 32  # (bytes: the placeholders with the whitespace around them)


def placeholder_text_warnings(inventory: pa.Table) -> list[str]:
    """A warning when texts are a missing value written out as text ('nan', 'None', '<NA>'):
    20 of 60 such texts were indexed and queued as content, nothing said (outsider CD). Swept
    as they are (a comment may say "none"); the warning counts them."""
    if TEXT not in inventory.column_names:
        return []
    text = _decoded(inventory.column(TEXT))
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        return []
    # Short texts only are lowered and trimmed: a copy of the whole column was 2.5x its size
    # in memory (reviewer CE: 238 MB for a 95 MB column).
    short = pc.filter(text, pc.less_equal(pc.binary_length(text), PLACEHOLDER_CHARS))
    key = pc.utf8_lower(pc.utf8_trim_whitespace(short))
    hit = pc.fill_null(pc.is_in(key, value_set=pa.array(PLACEHOLDERS, key.type)), False)
    n = pc.sum(hit).as_py() or 0
    if not n:
        return []
    seen = sorted(set(pc.unique(pc.filter(short, hit)).to_pylist()))[:5]
    return [
        f"inventory: {n} rows have the text {', '.join(map(repr, seen))}: a missing value "
        "written out as text (pandas' astype(str), say)? They are swept as that text; give "
        "such rows a null text (quarantined, 'no content') or their real text"
    ]


def calibrated_to_decide(
    model: RiskModel, cands: pa.Table, scored: ScoredCandidates, seeds: SeedSet
) -> ScoredCandidates:
    """``scored`` calibrated again with the verdicts a sweep already knows: its reviewed,
    unchanged items' (``mark_reviewed``; ``RiskRanker.calibrate``'s ``known``), which EM
    counts as they were decided, and each policy's base rate that of the items still to
    decide. Only where some candidate is such an item (never one of a cold policy)."""
    if not cands.num_rows or "reviewed" not in cands.column_names:
        return scored
    unchanged = pc.fill_null(pc.equal(cands["reviewed"], "unchanged"), False)
    if not pc.any(unchanged).as_py():
        return scored
    violating = pc.greater_equal(cands["previous_verdict"], POSITIVE_VERDICT)
    verdict = pc.if_else(unchanged, pc.cast(violating, pa.float64()), None)
    known = verdict.to_numpy(zero_copy_only=False).astype(float)  # nulls -> NaN
    ranker = model.ranker
    matched = seed_matched(cands, seeds.described_policies(), presence_levels(model.signals))
    policies = cands.column("policy").to_pylist()
    covered = ranker.covered(cands)
    return ranker.calibrate_scored(scored, policies, covered=covered, matched=matched, known=known)


def made_by(index: InventoryIndex, index_path: Path) -> dict:
    """What the update that made ``index``'s version did, from that version's own manifest:
    ``standing.json`` read again after the load could name a newer version, committed in
    between (an outsider's finding: the report said version 2 of a sweep that searched 1)."""
    made = (index.manifest.get("standing") or {}).get("update")
    if made is None:  # a version written before manifests kept it
        return StandingIndex(index_path).last_update()
    made = dict(made)
    if isinstance(unknown := made.get("deletions_unknown"), list):  # a version written before
        made["deletions_unknown"] = len(unknown)  # as_dict's shape: a count and some ids
        made["deletions_unknown_ids"] = unknown[:SHOWN_UNKNOWN]
    return {**made, "updated_at": index.manifest.get("created_at")}


def refuse_unusable_seeds(
    seeds: SeedSet, signals, memo: SeedVectorMemo | None = None
) -> dict[str, SignalBatch]:
    """``check_seed_vectors`` before the inventory (or history) is embedded: a seed no signal
    can use was refused only after the embedding and a new index version (a reviewer's
    finding). Returns the seeds' vectors, for recall (which names the half-usable ones).
    ``memo``: the seed vectors a standing index kept (rank/seed_memo.py), the others embedded."""
    if memo is None:
        batches = {s.name: s.embed_queries(seeds.table) for s in signals}
    else:
        batches = {s.name: memo.embed(s, seeds.table) for s in signals}
    check_seed_vectors(seeds, batches, signals)
    return batches


def unreached_warnings(cands: pa.Table, index, seeds: SeedSet, signals) -> list[str]:
    """``k=None`` recalls what a seed can reach: an item held only by signals that no seed
    has content for (an image-only ad under text and PDQ, with text seeds) is recalled for
    no policy. The report said so only by its counts (an outsider's report)."""
    recalled = set(cands.column(ITEM_ID).to_pylist()) if cands.num_rows else set()
    missed = int(index.num_items) - len(recalled)
    if missed <= 0:
        return []
    table = seeds.table
    unseeded = [
        s.name
        for s in signals
        if s.name in index.signals
        and not any(
            not is_blank(v)
            for c in s.content_columns
            if c in table.column_names
            for v in table.column(c).to_pylist()
        )
    ]
    why = (
        f"no seed has content for {', '.join(unseeded)}, the signal(s) that hold them: add "
        "seeds with that content to reach them"
        if unseeded
        else "no seed's signals reach them"
    )
    return [
        f"k=None: {missed:,} of {int(index.num_items):,} indexed items were recalled for no "
        f"policy and are not in the queue: {why}"
    ]


def where_indexed(model: RiskModel, index: InventoryIndex, inventory) -> RiskModel:
    """For a sweep of a standing index as it stands (no ``inventory``) given no image folder:
    ``model`` with its image signals reading the folder the update that made the version read
    its ``image_path`` files from (its manifest's ``image_base_dirs``), so that a reviewed
    item's picture is compared with the one the version holds. Without it every reviewed
    picture ad of an index fed by paths was "changed since" and queued again, silently (an
    outsider's retroactive sweep: 181 such rows where a sweep from scratch had 8)."""
    folder = recorded_image_dir(index.manifest)
    return model if inventory is not None or folder is None else with_image_base_dir(model, folder)


def _reports_writer(seeds: SeedSet, image_base_dir, options) -> Callable[[SweepResult], object]:
    """``rr.write_reports`` of the result with ``options`` (True: none), before its marker."""
    from riskrank.rank.evaluation.report import check_labels, write_reports_into

    options = dict(options) if isinstance(options, Mapping) else {}
    if unknown := sorted(set(options) - {"labels", "quality"}):
        raise TypeError(f"sweep: reports= takes labels and quality, not {unknown}")
    if options.get("labels") is not None:  # checked now, not after the embedding
        options["labels"] = check_labels(as_table(options["labels"], what="labels"))
    return partial(write_reports_into, seeds=seeds.table, image_base_dir=image_base_dir, **options)


def queued_items(queue: pa.Table) -> set[str]:
    """The items a queue shows: in campaign mode each campaign's members (its row is the
    representative's), else its rows' items. Campaign mode's report counted only the
    representatives as queued (an outsider's repro: 4 of 15 reviewed items queued for
    another policy)."""
    if "campaign_members" in queue.column_names:
        return {m for ms in queue["campaign_members"].to_pylist() for m in ms or []}
    return set(queue[ITEM_ID].to_pylist())


def recall_and_score(
    engine, index, index_path: Path, model: RiskModel, seeds: SeedSet, *, k, progress,
    seed_vectors: dict[str, SignalBatch], reuse: bool = True, keep: bool = True,
    keys: dict[str, str] | None = None,
) -> tuple[pa.Table, ScoredCandidates, float, dict]:  # fmt: skip
    """``engine.recall`` and ``engine.score`` with what the last sweep over this index left at
    hand (rank/policy_memo.py: the rows of policies whose index version, seeds and model are
    unchanged; rank/sweep_cache.py: the lexical probe's scores of its texts;
    recall/neighbours.py: its items' neighbourhoods); this sweep's are kept for the next one.
    Returns the candidates, their scores, recall's seconds and what the report says of the
    reused policies. ``reuse=False``: no policy's rows are taken from the last sweep;
    ``keep=False``: none are written for the next (an index that is gone after the sweep).
    ``keys``: the policies' keys (``policy_keys``), if the caller has them."""
    t0 = time.time()
    if keys is None:
        keys = policy_keys(
            index.manifest, model_identity(model.info), seeds, seed_vectors, k, model.signals
        )
    policies = PolicyMemo(index_path / POLICIES_FILE, keys if keep else None)
    reused = policies.reusable() if reuse else None
    todo = seeds if reused is None else without_policies(seeds, reused.policies)
    memo = LexicalMemo(index_path / LEXICAL_FILE, model_identity(model.info))
    neighbours = NeighbourMemo(index_path / NEIGHBOURS_FILE, NEIGHBOUR_RULES)
    if model.lexical is not None:
        model.lexical.memo = memo.load()
    try:
        cands = pa.table({ITEM_ID: pa.array([], pa.string()), "policy": pa.array([], pa.string())})
        if todo is not None:
            cands = engine.recall(
                index, model, todo, k=k, show_progress=progress, neighbours=neighbours,
                seed_vectors=policy_rows(seed_vectors, seeds, todo) if reused else seed_vectors,
            )  # fmt: skip
            # A day without images (or without text): the missing signal's evidence is null.
            cands = with_every_signal(cands, model.signals, lexical=model.lexical is not None)
    finally:
        if model.lexical is not None:
            model.lexical.memo = {}
    t_recall = time.time() - t0
    # A policy in words is not judged absent by how close its items are (seed_matched).
    levels = presence_levels(model.signals)
    if todo is not None and cands.num_rows:
        matched = seed_matched(cands, todo.described_policies(), levels)
        scored = engine.score(model.ranker, cands, matched=matched)
    else:
        scored = ScoredCandidates.uncalibrated(np.zeros(0), [], np.zeros(0, dtype=object))
    combined = combine(seeds, reused, cands, scored) if reused is not None else None
    if reused is not None and combined is None:  # other columns: every policy afresh
        return recall_and_score(
            engine, index, index_path, model, seeds, k=k, progress=progress,
            seed_vectors=seed_vectors, reuse=False, keep=keep, keys=keys,
        )  # fmt: skip
    if combined is not None:
        cands, scored = combined
        neighbours.keep(index, reused.candidates)
        # (none of the kept policies' seeds found anything: the columns an empty recall has)
        cands = with_every_signal(cands, model.signals, lexical=model.lexical is not None)
    memo.save(cands, model.lexical)
    neighbours.save()
    policies.save(cands, scored, seeds.policies)
    report = {"policies_reused": reused.policies} if reused is not None else {}
    return cands, scored, t_recall, report


def check_sweep_out(out_dir: Path, inventory) -> None:
    """Refuse an output directory that is (or lies inside) the inventory's directory or a
    model's: the queue, reports and index went in among the inventory's Parquet files, and
    the next sweep of that inventory read them as inventory (an outsider's report)."""
    check_not_in_model(out_dir, "out_dir", "a sweep's queue, reports and index are not a model's")
    check_outside_inventory(out_dir, inventory, "out_dir")
    if foreign := sweep_output.foreign_outputs(out_dir):
        raise FileExistsError(
            f"out_dir {out_dir} holds {', '.join(foreign)}, which a sweep would replace and "
            "which no sweep wrote: move them, or name a new or empty directory (a sweep "
            "replaces only its own outputs)"
        )


def check_sweep_index(inventory, path: Path, deletions, signals=(), key=None) -> None:
    """What ``sweep_index`` refuses, checked before a sweep touches its outputs (the
    previous run's marker among them: a refusal after it had gone left that run looking
    unfinished, a reviewer found)."""
    if inventory is not None:
        return
    if deletions is not None:
        raise ValueError(
            "a deletion list needs today's inventory: a sweep without one searches the standing "
            "index as it stands (pass the inventory with the deletions, or run `riskrank index "
            "update --inventory ... --delete ...` first)"
        )
    if key is not None:  # (it was ignored silently: a reviewer's finding)
        raise ValueError(
            f"an index key ({key}) needs today's inventory: a sweep without one searches the "
            "standing index as it stands (pass the inventory, or run `riskrank index update "
            "--inventory ... --index-key ...` first)"
        )
    if not StandingIndex.is_standing(path):
        raise FileNotFoundError(
            f"{path} holds no standing index: a sweep without an inventory searches one that "
            "an earlier sweep (or `riskrank index update`) made; pass the inventory"
        )
    held = StandingIndex(path).signal_names()
    missing = [s.name for s in signals if s.name not in held]
    if missing:
        # Its evidence columns would all be NaN, and the model rank without them, silently
        # (an outsider's report: a trigram model over a text index queued 30).
        raise IndexMismatchError(
            f"the model reads signal(s) {missing} that the standing index at {path} does not "
            f"hold (it holds {sorted(held)}): sweep with today's inventory, which embeds them "
            "into the index, or with a model trained on the index's signals"
        )


def sweep_index(inventory, path: Path, signals, *, own: bool, **update_kw):
    """The index a sweep searches: the standing index at ``path`` brought up to ``inventory``
    (``update_standing_index``), or as it stands when ``inventory`` is None."""
    if inventory is not None:
        return update_standing_index(inventory, path, signals, own=own, **update_kw)
    check_sweep_index(
        inventory, path, update_kw.get("deletions"), signals or (), update_kw.get("key")
    )
    standing = StandingIndex(path)
    index = standing.load(signals)
    refused = standing.still_unreadable(index, signals or ())
    if refused:
        shown = ", ".join(map(repr, refused[:5])) + (" ..." if len(refused) > 5 else "")
        raise IndexMismatchError(
            f"the standing index at {path} was last updated before riskrank set aside texts "
            f"its encoder reads as unknown tokens only (emoji-only posts, scripts outside its "
            f"vocabulary: they all got one vector), and still holds vectors of "
            f"{len(refused)} such item(s) ({shown}). A sweep without an inventory would "
            "search them. Sweep once with today's inventory (or `riskrank index update`): "
            "that drops them and embeds nothing else unchanged"
        )
    return index, {}


def _kept_without(failures: pa.Table | None, quarantine: pa.Table) -> dict[str, int]:
    """Per signal, the indexed items it holds no vector for although they had content for it
    (a corrupt image beside a good text): items the sweep kept, by another signal."""
    if failures is None or not failures.num_rows:
        return {}
    # Items no signal could embed (rows quarantined at validation can share an indexed item's
    # id, a copy of a repeated id whose first row is indexed: not gone).
    stage = quarantine.column("stage").to_pylist()
    gone = {i for i, st in zip(quarantine.column(ITEM_ID).to_pylist(), stage) if st == "encode"}
    counts = Counter(
        n for i, n in zip(failures[ITEM_ID].to_pylist(), failures["signal"].to_pylist())
        if i not in gone
    )  # fmt: skip
    return dict(sorted(counts.items()))


def finish_sweep(
    cands: pa.Table,
    scored: ScoredCandidates,
    quarantine: pa.Table,
    manifest: dict,
    seeds: SeedSet,
    seconds: dict[str, float],
    *,
    out_dir: Path | None,
    budget: int | None,
    extra: dict | None = None,
    include_reviewed: bool = False,
    model: RiskModel | None = None,
    arrange: Callable[..., pa.Table] | None = None,
    reasons_cache: Path | None = None,
    kept_reasons: ExplanationMemo | None = None,
    signal_failures: pa.Table | None = None,
    reports: Callable[[SweepResult], object] | None = None,
    warnings: Sequence[str] = (),
    levels: Mapping[str, float] | None = None,
    swept_ids: pa.ChunkedArray | None = None,
    k: int | None = None,
) -> SweepResult:
    """The end every sweep engine shares: queue, report (``extra`` keys added, ``warnings``
    among its warnings), the item accounting check, and the files in ``out_dir``.
    ``levels``: the presence levels the scores were calibrated with (``presence_levels``;
    default: the ``model``'s signals'), for the report to say which policies were absent.
    ``k``: the seeds' recall depth (a rank past it is "not in the seed's list").

    ``scored``: the ranker's scores of ``cands``; ``manifest``: the index's;
    ``include_reviewed``: as in ``sweep`` (``cands`` marked by ``rank.reviewed``). ``model``:
    adds the reviewer-facing reasons (rank/reasons.py) to the queue. ``arrange`` (queue,
    budget=) -> queue: campaigns and exploration slots (rank/exploration.py), which then
    applies the budget instead of ``build_queue``. ``reasons_cache``: a file of the last
    sweep's phrase attributions, reused for unchanged texts (rank/sweep_cache.py).
    ``kept_reasons``: the last sweep's reasons of policies whose key and queue rows are
    unchanged, taken whole (rank/reasons_memo.py); this sweep's are kept there.
    ``signal_failures``: the index's (why a signal lacks an item it had content for); the
    report counts, per signal, the indexed items it lacks, and ``out_dir`` gets the table.
    ``reports``: writes the human reports of the result into ``out_dir`` before the run is
    marked complete (rank/sweep_output.py: the previous run's outputs are removed first and
    ``_SUCCESS`` is written last).
    """
    t0 = time.time()
    coverage = getattr(model.ranker, "coverage_", {}) if model is not None else {}
    queue = build_queue(
        cands, scored, budget=None if arrange else budget, include_reviewed=include_reviewed,
        unlike=np.asarray(unlike_reviews(cands, coverage).to_pylist(), dtype=object),
        strong=near_copy_levels(model.signals) if model is not None else None,
    )  # fmt: skip
    queue = arrange(queue, budget=budget) if arrange else queue
    if model is not None:  # does its policy's history cover the item?
        flags = unlike_reviews(queue, coverage)
        if "unlike_reviews" in queue.column_names:  # (an empty queue has every column)
            queue = queue.drop(["unlike_reviews"])
        queue = queue.append_column("unlike_reviews", flags)
    t_arrange = time.time() - t0
    if model is not None:
        spans = SpanCache(reasons_cache, model_identity(model.info))
        contrib = queued_rows(queue, cands, scored.contributions)
        queue = explain_queue(
            queue, cands, model, seeds, cache=spans, contributions=contrib, k=k, kept=kept_reasons
        )
        extra = {**(extra or {}), "reasons": spans.counts()}
        if kept_reasons is not None and kept_reasons.reused:
            extra["reasons_reused"] = kept_reasons.reused
    # The queue's own stages, so that the report's total is the sweep's wall time.
    seconds = {**seconds, "queue": t_arrange, "reasons": time.time() - t0 - t_arrange}
    n_indexed = int(manifest["items"]["indexed"])
    # Rows of today's inventory that a deletion list took out (standing index only): counted,
    # so that rows in = indexed + quarantined + deleted, and none is unaccounted for.
    n_deleted = int(manifest["items"].get("deleted", 0))
    recalled = len(set(cands.column(ITEM_ID).to_pylist())) if cands.num_rows else 0
    if levels is None and model is not None:
        levels = presence_levels(model.signals)
    absent = absent_policy_warnings(cands, scored, seeds.described_policies(), levels)
    trained = getattr(model.ranker, "policy_reviews_", None) if model is not None else None
    with_history = model.info.get("policies_with_history") or () if model is not None else ()
    kept = model.ranker.keeps_level if model is not None else None
    decisions = decision_report(cands, scored, absent, trained, with_history, kept)
    decisions["warnings"] += list(absent.values()) + list(warnings)
    if model is not None:  # seeds naming `Spam` where the reviews say `spam`
        reviewed = model.info.get("policies_with_history") or []
        decisions["warnings"] += policy_name_slips(decisions["cold_start_policies"], reviewed)
        decisions["warnings"] += policies_left_out(seeds.policies, reviewed)
        decisions["warnings"] += seeds_unlike_models(seeds, model.path)
        decisions["warnings"] += benign_seeds_unlearnt(seeds, model.ranker.features_used())
    if model is not None:  # how like its reviews each policy's candidates are
        # Over the candidates the queue can show: reviewed, unchanged items are their own
        # nearest review (similarity 1) and would dilute the share (a reviewer's finding).
        shown = cands
        if not include_reviewed and "reviewed" in cands.column_names and cands.num_rows:
            unchanged = pc.equal(cands["reviewed"], "unchanged")
            shown = cands.filter(pc.invert(pc.fill_null(unchanged, False)))
        covered = coverage_report(shown, coverage)
        for policy, per_signal in covered.items():
            if policy in decisions["decisions"]:
                decisions["decisions"][policy]["history_coverage"] = per_signal
        decisions["warnings"] += coverage_warnings(covered)
    report = {
        "items_in": int(manifest["items"]["input"]) + n_deleted,
        "items_indexed": n_indexed,
        "items_quarantined": quarantine.num_rows,
        # By kind of reason: the reports showed one total, which hid 74 texts set aside as
        # unreadable among 200 duplicate rows (an outsider's 300k run).
        "quarantine_reasons": quarantine_kinds(quarantine),
        "items_deleted": n_deleted,
        "items_recalled": recalled,
        "items_not_recalled": n_indexed - recalled,
        "candidates": cands.num_rows,
        "queued": queue.num_rows,
        # Campaign mode queues campaigns: how many items they hold, and how the budget was
        # split, were only in the queue itself (an outsider's report).
        **(
            {"queued_items": len(queued_items(queue))}
            if "campaign_members" in queue.column_names
            else {}
        ),
        **(
            {"slots": {s: n for s, n in sorted(Counter(queue["slot"].to_pylist()).items()) if s}}
            if "slot" in queue.column_names
            else {}
        ),
        # share of the indexed inventory that was scored and so could be queued (budget aside)
        "coverage": round(recalled / n_indexed, 4) if n_indexed else 0.0,
        "policies": seeds.policies,
        "reviewed": reviewed_counts(cands, include_reviewed, queued_items(queue)),
        **decisions,
        "seconds": {
            **{stage: round(s, 2) for stage, s in seconds.items()},
            "total": round(sum(seconds.values()), 2),
        },
        "index": {
            n: {
                "key": e["index_key"],
                "count": e["count"],
                **({"shards": len(e["shards"])} if "shards" in e else {}),
                **({"encoder": enc} if (enc := encoder_record(e)) else {}),
            }
            for n, e in manifest["signals"].items()
        },
        "signal_failures": _kept_without(signal_failures, quarantine),
        **(extra or {}),
    }
    report["warnings"] = report.get("warnings", []) + missing_files_warnings(
        signal_failures, manifest
    )
    accounted = report["items_indexed"] + report["items_quarantined"] + n_deleted
    if report["items_in"] != accounted:
        raise RuntimeError(f"item accounting broken: {report}")  # never silently lose items
    for warning in report["warnings"]:
        log.warning(warning)
    # Names this run's files (rank/sweep_output.py); the id its log lines carry, if tagged.
    report["run_id"] = run_log.current_run() or uuid.uuid4().hex
    # The queue says which model and run made it, in the table itself: `review import` checks
    # a queue handed over in memory, or copied away from its report.json, as one on disk.
    swept_at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    # Also in the report: a queue re-saved by a tool that drops Arrow's metadata still has
    # its sweep's time beside it (`review import` orders a late file's verdicts by it).
    report["swept_at"] = swept_at
    queue = with_provenance(
        queue, report.get("model"), report["run_id"], swept_at, report.get("index_version_dir")
    )
    # Absolute: write_reports later, from another working directory, finds the same files.
    result = SweepResult(
        queue, cands, quarantine, report, out_dir.resolve() if out_dir else None,
        signal_failures, swept_ids,
    )  # fmt: skip
    if out_dir:
        sweep_output.begin(out_dir)
        write_parquet(cands, out_dir / "candidates.parquet")
        write_parquet(queue, out_dir / "queue.parquet")
        write_parquet(quarantine, out_dir / "quarantine.parquet")
        written = ["candidates.parquet", "queue.parquet", "quarantine.parquet", "report.json"]
        if signal_failures is not None:
            write_parquet(signal_failures, out_dir / SIGNAL_FAILURES)
            written.append(SIGNAL_FAILURES)
        if swept_ids is not None:
            # The ids it took in, which `riskrank eval` scores labels over: the index version
            # its report names is pruned two updates later, and eval then scored every label
            # given, unsaid (an outsider's audit of the README).
            write_parquet(pa.table({ITEM_ID: swept_ids}), out_dir / sweep_output.SWEPT_IDS)
            written.append(sweep_output.SWEPT_IDS)
        write_text_atomic(json.dumps(report, indent=2), out_dir / "report.json")
        if reports is not None:
            reports(result)
            written += list(sweep_output.REPORTS)
        sweep_output.complete(out_dir, report["run_id"], written)
    return result


ENCODER_KEYS = ("model", "model_version", "backend", "precision", "quantization")


def encoder_record(entry: dict) -> dict:
    """What encoder made an index signal's vectors, from its manifest entry: the model and,
    for a text signal, the backend and precision that ran (``report.json``'s ``index``; the
    reports show it). Empty for a signal without a model (perceptual hashes)."""
    if not isinstance(entry, dict) or not entry.get("model"):
        return {}
    return {k: entry[k] for k in ENCODER_KEYS if entry.get(k) not in (None, "", "none")}


def missing_files_warnings(
    signal_failures: pa.Table | None, manifest: dict, at_least: int = 10
) -> list[str]:
    """A warning per image signal for which most named image files were not found: a sweep
    run from another directory, or without the image base directory its paths are relative
    to, finishes with its pictures matching nothing (and reviewed image ads queued again as
    changed), which one line of counts did not make plain. The same where most pictures
    that came could not be decoded (pictures written as hex text into ``image_bytes``: an
    outsider's report)."""
    if signal_failures is None or not signal_failures.num_rows:
        return []
    out = []
    reasons = zip(signal_failures["signal"].to_pylist(), signal_failures["reason"].to_pylist())
    missing: dict[tuple[str, bool], list[str]] = {}
    for signal, reason in reasons:
        for lost, start in ((True, NOT_FOUND), (False, UNRECOGNISED)):
            if str(reason).startswith(start):
                missing.setdefault((signal, lost), []).append(str(reason))
    for (signal, lost), found in missing.items():
        held = int(manifest["signals"].get(signal, {}).get("count", 0))
        if len(found) < at_least or len(found) <= held:
            continue
        if lost:
            out.append(
                f"{signal}: the image files of {len(found):,} items were not found and "
                f"{held:,} were read: is the image base directory right (--image-base-dir; "
                f"relative image paths are read from it)? e.g. {found[0]}"
            )
        else:
            out.append(
                f"{signal}: the pictures of {len(found):,} items could not be decoded and "
                f"{held:,} were: is the image column right? e.g. {found[0]}"
            )
    return out


def queued_rows(queue: pa.Table, cands: pa.Table, values: np.ndarray | None):
    """``values`` (one row per candidate) of the queue's rows, found by (item, policy); None
    where there are none, or a queue row is not one candidate's (the caller computes them)."""
    if values is None or queue.num_rows == 0 or "policy" not in queue.column_names:
        return None
    keys = zip(cands.column(ITEM_ID).to_pylist(), cands.column("policy").to_pylist())
    row_of = {key: r for r, key in enumerate(keys)}
    if len(row_of) != cands.num_rows:
        return None
    wanted = zip(queue.column(ITEM_ID).to_pylist(), queue.column("policy").to_pylist())
    rows = [row_of.get(key) for key in wanted]
    return None if None in rows else values[rows]


def absent_policy_warnings(
    cands: pa.Table, scored: ScoredCandidates, described: list[str], levels=None
) -> dict[str, str]:
    """By policy, a warning for each cold policy none of whose candidates is close to any of
    its seeds (``described``: policies with a description seed, never taken as absent;
    ``levels``: ``presence_levels``): calibrated as absent from the inventory
    (``RiskRanker.calibrate``)."""
    matched = seed_matched(cands, described, levels) if cands.num_rows else None
    if matched is None:
        return {}
    pols = np.asarray(cands.column("policy").to_pylist(), dtype=object)
    cold = sorted(set(pols[np.asarray(scored.variant, dtype=object) == "cold"]))
    rates = scored.base_rates
    out = {}
    for p in cold:
        rows = pols == p
        if rows.any() and not matched[rows].any():
            out[p] = (
                f"policy {p!r}: none of its {int(rows.sum()):,} candidates is close to any of its "
                f"seeds ({_levels_text(levels)}), so it is taken as absent from this "
                f"inventory: base rate {rates.get(p, float('nan')):.4g} (one violation among "
                "its candidates), its items rank below what other policies find; its order is "
                "still the seeds' nearest first"
            )
    return out


def _levels_text(levels) -> str:
    """``presence_levels`` in words, for a warning."""
    if not levels:
        return "each signal's weak match threshold"
    return ", ".join(f"{name} similarity {level:.2f}" for name, level in sorted(levels.items()))


def benign_seeds_unlearnt(seeds: SeedSet, features: Collection[str]) -> list[str]:
    """A warning where the seeds hold benign ones (the allowlist) but no booster of the model
    splits on their evidence (``features``: ``RiskRanker.features_used``), as when it was
    trained without benign seeds: the columns are computed and move no score. An outsider
    added an allowlist at sweep time and no score moved (0 of 516 rows), with nothing said."""
    benign = seeds.benign
    if not benign.any() or any("_benign_" in f for f in features):
        return []
    policies = sorted({p for p, b in zip(seeds.table["policy"].to_pylist(), benign) if b})
    return [
        f"benign seeds (kind='benign') for {', '.join(map(repr, policies))} are ignored: no "
        "booster of the model uses their evidence (it was trained without benign seeds, or its "
        "history never made them matter); retrain with this seed file (riskrank train --seeds "
        "...) for them to count"
    ]


def policy_name_slips(cold: list[str], reviewed: list[str]) -> list[str]:
    """A warning for each cold-start policy named like a policy with reviews but for case or
    spaces (seeds saying `Spam` where the model learnt `spam`): it runs on seed evidence alone
    and escalates everything, and the usual cold-start warning did not say why."""
    out = []
    for p in cold:
        like = [q for q in reviewed if q != p and q.strip().casefold() == p.strip().casefold()]
        if like:
            out.append(
                f"seed policy {p!r} has no reviews, but the model has reviews under {like[0]!r}: "
                f"if that is the policy meant, name it {like[0]!r} in the seeds"
            )
    return out


def policies_left_out(swept: Collection[str], reviewed: Collection[str]) -> list[str]:
    """A warning naming the policies the model holds reviews of that these seeds leave out:
    a sweep sweeps only its seeds' policies, and a daily job given yesterday's seed file
    dropped a reviewed policy from its queue unsaid (an outsider's week). A retroactive
    sweep of one new policy's seeds says so too, rightly."""
    folded = {p.strip().casefold() for p in swept}  # (a slip of case is said above)
    left = sorted(p for p in reviewed if p.strip().casefold() not in folded)
    if not left:
        return []
    return [
        f"the model holds reviews of {len(left)} policy(ies) these seeds leave out, not swept "
        f"today: {', '.join(map(repr, left))} (a sweep sweeps its seeds' policies only; pass "
        "a seed file that names them to sweep them)"
    ]


def decision_report(
    cands: pa.Table,
    scored: ScoredCandidates,
    absent: Collection[str] = (),
    trained_rows: Mapping[str, int] | None = None,
    with_history: Collection[str] = (),
    keeps_level: Callable[[str, str], bool] | None = None,
) -> dict:
    """Per policy: how its probabilities were calibrated, its action threshold, cold or not,
    and a warning for each policy that runs cold or can take no automatic action
    (``absent``: cold policies whose base rate was set as absent, not re-estimated), or has
    reviews (``with_history``: the model's ``policies_with_history``) but no calibration of
    its own (``trained_rows``: the ranker's training rows per policy, ``policy_reviews_``).
    ``keeps_level`` (``RiskRanker.keeps_level``): whether a policy's own calibrator kept its
    held-out level (``base_rate`` says ``held_out_level``; else ``re_estimated`` by EM, or
    ``absent``; no ``base_rate`` for a young policy, ``policy_reviews``, or ``none``)."""
    pols = cands.column("policy").to_pylist() if cands.num_rows else []
    per: dict[str, dict] = {}
    for i, policy in enumerate(pols):
        if policy not in per:
            t = scored.action_threshold[i]
            per[policy] = {
                "model": str(scored.variant[i]),
                "calibration": str(scored.calibration[i]),
                "action_threshold": float(t) if np.isfinite(t) else None,
            }
            if policy in scored.base_rates:
                per[policy]["estimated_base_rate"] = round(scored.base_rates[policy], 4)
                level = keeps_level is not None and keeps_level(per[policy]["model"], policy)
                if policy in absent:
                    per[policy]["base_rate"] = "absent"
                elif per[policy]["calibration"] in ("policy_history", "transferred"):
                    per[policy]["base_rate"] = "held_out_level" if level else "re_estimated"
    cold = sorted(p for p, d in per.items() if d["model"] == "cold")
    warnings = [
        f"policy {p!r} has no review history: it runs cold start (seed evidence only), "
        f"probabilities are {per[p]['calibration']} (base rate "
        f"{'set as absent' if p in absent else 're-estimated on this sweep'}: "
        f"{per[p].get('estimated_base_rate', 'n/a')}) and every item is escalated, never "
        "actioned automatically"
        for p in cold
    ]
    young = sorted(p for p, d in per.items() if d["calibration"] == "policy_reviews")
    warnings += [
        f"policy {p!r} is young (fewer reviews of its own than the ranker's "
        "min_policy_reviews, default 2,000, and than the other policies'): its "
        "probabilities are the other policies' calibration, its level moved to its own "
        "held-out reviews where its reviews hold both verdicts (mean probability here "
        f"{per[p].get('estimated_base_rate', 'n/a')}; with few reviews it stays near theirs), "
        "and every item is escalated: a young policy's reviews are taken to be the tops of its "
        "queues (as a review loop's are), whose precision is not the sweep's"
        for p in young
    ]
    # Reviews of its own, too few to calibrate it: the switch to the pooled calibration went
    # unsaid for days in an outsider's week (where another policy's growing history had
    # crowded its reviews out of training: ``recall(include=...)`` since).
    # (Only a policy with reviews: one without any may run a model with no cold booster.)
    pooled = sorted(
        p
        for p, d in per.items()
        if d["model"] != "cold" and d["calibration"] == "transferred" and p in with_history
    )
    rows = {p: (trained_rows or {}).get(p) for p in pooled}
    warnings += [
        f"policy {p!r} has reviews, but too few of them trained the model ("
        + ("training rows not recorded" if rows[p] is None else f"{rows[p]:,} training rows")
        + ") to calibrate it on its own (the share of them held out, the ranker's "
        "calibration_fraction, needs enough of both verdicts): its probabilities are the other "
        "policies' calibration (transferred; base rate re-estimated on this sweep: "
        f"{per[p].get('estimated_base_rate', 'n/a')}); more reviews of it, or training with a "
        "larger k (each seed reads its k nearest of them), train more"
        for p in pooled
    ]
    kept = sorted(p for p, d in per.items() if d.get("base_rate") == "held_out_level")
    warnings += [
        f"policy {p!r}: its held-out reviews hold fewer than {MIN_EM_PER_CLASS} of a verdict, "
        "too few to re-estimate its base rate on this sweep: its probabilities keep their "
        f"held-out level (mean probability here {per[p].get('estimated_base_rate', 'n/a')}), "
        "and every item is escalated, never actioned automatically (whether a held-out cut "
        "keeps its precision depends on the sweep's base rate); more reviews of it calibrate it"
        for p in kept
    ]
    warnings += [
        f"policy {p!r}: its held-out review history"
        + (
            f", re-weighted to this sweep's estimated base rate ({d['estimated_base_rate']}),"
            if "estimated_base_rate" in d
            else ""
        )
        + " cannot show the precision target for an automatic action; every item is escalated"
        for p, d in sorted(per.items())
        if d["model"] != "cold"
        and d["action_threshold"] is None
        and p not in young
        and p not in kept
    ]
    return {"cold_start_policies": cold, "decisions": per, "warnings": warnings}


@contextmanager
def _work_dir(out_dir: str | Path | None) -> Iterator[Path]:
    """``out_dir``; without one, a temporary directory for the sweep's index that is removed
    when the sweep returns (its tables are in memory: a library sweep left a whole index
    behind in /tmp on every call)."""
    if out_dir:
        yield Path(out_dir)
        return
    with tempfile.TemporaryDirectory(prefix="riskrank-sweep-") as tmp:
        yield Path(tmp)


__all__ = [
    "RiskModel",
    "SchemaError",
    "DEFAULT_K",
    "SweepResult",
    "finish_sweep",
    "sweep",
    "train",
]

"""Verdicts back in: reviewers' decisions on a queue become history, and the model retrains.

Verdict file columns (Parquet or CSV)
-------------------------------------
``item_id``      the reviewed item, or
``campaign_id``  a whole campaign (from the queue): the verdict applies to every member the
                 queue lists (``campaign_members`` in campaign mode, rows with that
                 ``campaign_id`` otherwise), and ``verdict_source`` says so. A member's own item
                 verdict, where there is one, wins over its campaign's.
``verdict``      integer 0-3 (0 benign, 1 borderline, 2 violating, 3 severe).
``policy``       optional: default the policy the queue showed the item under.

Every row is either imported or quarantined with its reason (``verdicts_quarantine.parquet``
in the new model directory): unknown item or campaign ids, a missing or out-of-range or
non-integer verdict, a policy the model has no seeds for, duplicate or conflicting verdicts
(all rows of a conflict are quarantined: nobody can tell which one is right), an item the
history already has a verdict for, an item whose content cannot be found. ``strict=True``
raises ``SchemaError`` naming the rows instead, and nothing is imported.

Models are versioned: ``model.json`` records ``version``, ``parent_version``,
``history_digest`` (sha256 of the sorted item/policy/verdict rows) and ``created_at``; the
directory keeps ``history.parquet`` and ``seeds.parquet``, which the next import starts from.

>>> result = import_verdicts("verdicts.csv", "runs/day1/queue.parquet", "models/v1",
...                          out_dir="models/v2")                       # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from riskrank.index.schema import ITEM_ID, quarantine_table
from riskrank.index.standing import StandingIndex
from riskrank.index.store import current_version
from riskrank.index.tables import SchemaError, TableLike, as_table, write_parquet
from riskrank.recall.history import VERDICT_MAX
from riskrank.recall.seeds import SeedSet

HISTORY_FILE = "history.parquet"
SEEDS_FILE = "seeds.parquet"
QUARANTINE_FILE = "verdicts_quarantine.parquet"
CONTENT = ("text", "image_bytes", "image_path")


def history_digest(history: pa.Table) -> str:
    """sha256 of the history's (item_id, policy, verdict) rows, in sorted order."""
    rows = sorted(
        zip(
            map(str, history[ITEM_ID].to_pylist()),
            map(str, history["policy"].to_pylist()),
            map(str, history["verdict"].to_pylist()),
        )
    )
    return hashlib.sha256("\n".join("\x1f".join(r) for r in rows).encode()).hexdigest()


def lineage_info(history: pa.Table, parent: dict | None = None) -> dict:
    """The version stamp a model's ``model.json`` carries (``parent``: the parent model's
    info; None = a first model)."""
    return {
        "version": int(parent.get("version", 1)) + 1 if parent else 1,
        "parent_version": int(parent.get("version", 1)) if parent else None,
        "parent_history_digest": parent.get("history_digest") if parent else None,
        "history_digest": history_digest(history),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def lineage_tables(history: pa.Table, seeds: SeedSet) -> dict[str, pa.Table]:
    """The history and seeds a model was trained on, saved (and checksummed) with it: the
    next import starts from them."""
    return {
        HISTORY_FILE.removesuffix(".parquet"): history,
        SEEDS_FILE.removesuffix(".parquet"): seeds.table,
    }


def read_verdicts(data: TableLike) -> pa.Table:
    """A verdict table from Parquet, CSV (every column read as text) or a DataFrame/Table."""
    if isinstance(data, (str, Path)) and str(data).lower().endswith(".csv"):
        import pyarrow.csv as pcsv

        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(f"verdicts: no such file: {path}")
        try:
            names = pcsv.read_csv(path).column_names
            return pcsv.read_csv(
                path,
                convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in names}),
            )
        except pa.ArrowInvalid as exc:
            raise SchemaError(f"verdicts: {path} is not a readable CSV file: {exc}") from exc
    return as_table(data, what="verdicts")


def parse_verdict(value) -> int | None:
    """An integer grade 0-3 from an int, an integral float or a numeric string, else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except ValueError:
        return None
    if number != number or not number.is_integer() or not 0 <= number <= VERDICT_MAX:
        return None
    return int(number)


class QueueIndex:
    """Which items and campaigns a queue showed, under which policy."""

    def __init__(self, queue: pa.Table) -> None:
        if ITEM_ID not in queue.column_names or "policy" not in queue.column_names:
            raise SchemaError(f"queue: needs item_id and policy columns, has {queue.column_names}")
        ids, pols = queue[ITEM_ID].to_pylist(), queue["policy"].to_pylist()
        self.policy = dict(zip(ids, pols))
        self.members: dict[str, list[str]] = {}
        if "campaign_members" in queue.column_names:  # campaign mode: one row per campaign
            for cid, ms, pol in zip(
                queue["campaign_id"].to_pylist(), queue["campaign_members"].to_pylist(), pols
            ):
                self.members[cid] = list(ms)
                for m in ms:
                    self.policy.setdefault(m, pol)
        elif "campaign_id" in queue.column_names:
            for cid, item_id in zip(queue["campaign_id"].to_pylist(), ids):
                self.members.setdefault(cid, []).append(item_id)


@dataclass
class VerdictCheck:
    """Verdict rows split into accepted (item_id, policy, verdict, verdict_source, row) and
    quarantined (item_id, row, stage, reason) tables."""

    accepted: pa.Table
    quarantine: pa.Table


def _row_problem(ref: str | None, kind: str, verdict, policy, q: QueueIndex, policies) -> str:
    if not ref:
        return "neither item_id nor campaign_id is given"
    if kind == "item" and ref not in q.policy:
        return f"unknown item_id {ref!r}: not in the queue"
    if kind == "campaign" and ref not in q.members:
        return f"unknown campaign_id {ref!r}: not in the queue"
    if parse_verdict(verdict) is None:
        return f"verdict {verdict!r} is not an integer grade 0-{VERDICT_MAX}"
    if policy is not None and policy not in policies:
        return f"policy {policy!r} is not one of the model's seed policies {sorted(policies)}"
    return ""


def _dedupe(rows: list[dict], bad: dict[int, str]) -> list[dict]:
    """Keep the first of identical verdicts; quarantine every row of a conflict."""
    by_key: dict[tuple, list[dict]] = {}
    for r in rows:
        by_key.setdefault((r["kind"], r["ref"], r["policy"]), []).append(r)
    keep = []
    for (kind, ref, pol), group in by_key.items():
        verdicts = {r["verdict"] for r in group}
        if len(verdicts) > 1:
            listed = ", ".join(f"row {r['row']} = {r['verdict']}" for r in group)
            for r in group:
                bad[r["row"]] = f"conflicting verdicts for {kind} {ref!r} ({pol}): {listed}"
            continue
        keep.append(group[0])
        for r in group[1:]:
            bad[r["row"]] = f"duplicate verdict for {kind} {ref!r} (same as row {group[0]['row']})"
    return keep


def check_verdicts(verdicts: pa.Table, q: QueueIndex, policies: set[str]) -> VerdictCheck:
    """Validate verdict rows against the queue they answer; expand campaign verdicts."""
    cols = verdicts.column_names
    if "verdict" not in cols or not ({ITEM_ID, "campaign_id"} & set(cols)):
        raise SchemaError(
            f"verdicts: need a 'verdict' column and an 'item_id' or 'campaign_id' column "
            f"(columns present: {cols})"
        )

    def col(name):
        return verdicts[name].to_pylist() if name in cols else [None] * verdicts.num_rows

    bad: dict[int, str] = {}
    rows = []
    for i, (item, camp, v, pol) in enumerate(
        zip(col(ITEM_ID), col("campaign_id"), col("verdict"), col("policy"))
    ):
        kind, ref = ("item", item) if item else ("campaign", camp)
        problem = _row_problem(ref, kind, v, pol, q, policies)
        if problem:
            bad[i] = problem
            continue
        if pol is None:
            pol = q.policy[ref] if kind == "item" else q.policy[q.members[ref][0]]
        rows.append(
            {"row": i, "kind": kind, "ref": ref, "policy": pol, "verdict": parse_verdict(v)}
        )
    rows = _dedupe(rows, bad)
    out: dict[tuple, dict] = {}
    for r in sorted(rows, key=lambda r: r["kind"] != "item"):  # item verdicts first: they win
        members = [r["ref"]] if r["kind"] == "item" else q.members[r["ref"]]
        source = "item" if r["kind"] == "item" else f"campaign:{r['ref']}"
        for m in members:
            out.setdefault((m, r["policy"]), {**r, ITEM_ID: m, "verdict_source": source})
    accepted = pa.table(
        {
            ITEM_ID: pa.array([k[0] for k in out], pa.string()),
            "policy": pa.array([k[1] for k in out], pa.string()),
            "verdict": pa.array([r["verdict"] for r in out.values()], pa.int8()),
            "verdict_source": pa.array([r["verdict_source"] for r in out.values()], pa.string()),
            "row": pa.array([r["row"] for r in out.values()], pa.int64()),
        }
    )
    refs = [i or c for i, c in zip(col(ITEM_ID), col("campaign_id"))]
    quarantine = [
        {ITEM_ID: refs[i], "row": i, "stage": "verdicts", "reason": why}
        for i, why in sorted(bad.items())
    ]
    return VerdictCheck(accepted, quarantine_table(quarantine))


@dataclass
class ImportResult:
    """What an import did: rows imported (one per item, campaign verdicts expanded), rows
    quarantined, the new history, and the retrained model (None with ``retrain=False``)."""

    imported: pa.Table
    quarantine: pa.Table
    history: pa.Table
    model: object | None
    version: int


def seed_history_index(model_dir: Path, out_dir: Path) -> None:
    """Start the next version's history index from its parent's (a standing index,
    index/standing.py): the retrain then embeds only the newly reviewed items, not the whole
    history again."""
    parent, child = model_dir / "history_index", out_dir / "history_index"
    if child.exists() or not StandingIndex.is_standing(parent) or model_dir == out_dir:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".history_index.copy"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(parent, tmp, ignore=shutil.ignore_patterns("_delta"))
    tmp.rename(child)


def _sweep_items_path(queue_path: Path | None) -> Path | None:
    """The items table of the index version the sweep beside ``queue_path`` searched (its
    report names it; a standing index keeps the two newest versions), else the current
    version of the index in the sweep's directory."""
    if queue_path is None:
        return None
    candidates = []
    report = queue_path.parent / "report.json"
    if report.exists():
        named = json.loads(report.read_text()).get("index_version_dir")
        candidates += [Path(named)] if named else []
    candidates.append(current_version(queue_path.parent / "index"))
    return next((c / "items.parquet" for c in candidates if (c / "items.parquet").exists()), None)


def _content(item_ids: list[str], inventory: TableLike | None, queue_path: Path | None):
    """item_id -> content row, from ``inventory`` or else the sweep's index next to the queue
    (the queue's own ``text`` is cut to 300 characters, so it is never used)."""
    items = _sweep_items_path(queue_path) if inventory is None else None
    if inventory is not None:
        table = as_table(inventory, what="inventory")
    elif items is not None:
        table = pq.read_table(items)
    else:
        return {}
    want = pa.array(sorted(set(item_ids)), pa.string())
    table = table.filter(pc.is_in(pc.cast(table[ITEM_ID], pa.string()), value_set=want))
    cols = [c for c in CONTENT if c in table.column_names]
    return {
        str(r[ITEM_ID]): {c: r[c] for c in cols} for r in table.select([ITEM_ID, *cols]).to_pylist()
    }


def _new_rows(
    check: VerdictCheck, history: pa.Table, content: dict, sweep_id: str
) -> tuple[pa.Table, pa.Table, list[dict]]:
    """History rows for accepted verdicts, the accepted rows they came from, and the rows
    that cannot be used (for the quarantine)."""
    seen = dict(
        zip(
            zip(history[ITEM_ID].to_pylist(), history["policy"].to_pylist()),
            history["verdict"].to_pylist(),
        )
    )
    rows, kept, bad = [], [], []
    for r in check.accepted.to_pylist():
        key = (r[ITEM_ID], r["policy"])
        why = ""
        if key in seen:
            why = f"already in the history with verdict {seen[key]} ({r['verdict_source']})"
        elif r[ITEM_ID] not in content:
            why = "no content found for the item: pass the inventory (--inventory)"
        if why:
            bad.append({ITEM_ID: r[ITEM_ID], "row": r["row"], "stage": "verdicts", "reason": why})
            continue
        kept.append(r)
        rows.append(
            {
                ITEM_ID: r[ITEM_ID],
                "policy": r["policy"],
                "verdict": r["verdict"],
                "sweep_id": sweep_id,
                "verdict_source": r["verdict_source"],
                **content[r[ITEM_ID]],
            }
        )
    return pa.Table.from_pylist(rows), pa.Table.from_pylist(kept, check.accepted.schema), bad


def import_verdicts(
    verdicts: TableLike,
    queue: TableLike,
    model_dir: str | Path,
    *,
    out_dir: str | Path,
    inventory: TableLike | None = None,
    strict: bool = False,
    retrain: bool = True,
    show_progress: bool = False,
) -> ImportResult:
    """Import reviewers' verdicts on ``queue``, append them to the history of the model in
    ``model_dir`` and train the next model version into ``out_dir``.

    ``inventory``: where the reviewed items' content is (default: the sweep's index beside a
    queue given as a path). ``strict``: raise ``SchemaError`` on any bad row instead of
    quarantining it.
    """
    from riskrank.rank.model import RiskModel

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.exists() and out_dir.resolve() == model_dir.resolve():
        raise ValueError(f"out_dir {out_dir}: must differ from model_dir (models are versioned)")
    old = RiskModel.load(model_dir)  # verifies every file's checksum, history.parquet too
    parent = old.info
    if not (model_dir / HISTORY_FILE).exists():
        raise FileNotFoundError(
            f"{model_dir}: no {HISTORY_FILE} (a model trained before versioning); retrain it "
            "with `riskrank train` first"
        )
    history = pq.read_table(model_dir / HISTORY_FILE)
    seeds = SeedSet.from_table(model_dir / SEEDS_FILE)
    queue_path = Path(queue) if isinstance(queue, (str, Path)) else None
    check = check_verdicts(
        read_verdicts(verdicts), QueueIndex(as_table(queue, what="queue")), set(seeds.policies)
    )
    version = int(parent.get("version", 1)) + 1
    content = _content(check.accepted[ITEM_ID].to_pylist(), inventory, queue_path)
    new, imported, more_bad = _new_rows(check, history, content, f"review-v{version}")
    quarantine = pa.concat_tables([check.quarantine, quarantine_table(more_bad)])
    if strict and quarantine.num_rows:
        listed = "; ".join(
            f"row {r['row']} ({r[ITEM_ID]}): {r['reason']}" for r in quarantine.to_pylist()[:20]
        )
        raise SchemaError(f"verdicts: {quarantine.num_rows} bad rows, nothing imported: {listed}")
    merged = (
        pa.concat_tables([history, new], promote_options="permissive") if new.num_rows else history
    )
    if not retrain:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_parquet(quarantine, out_dir / QUARANTINE_FILE)
        write_parquet(merged, out_dir / HISTORY_FILE)
        return ImportResult(imported, quarantine, merged, None, version)
    from riskrank.rank.pipeline import train

    seed_history_index(Path(model_dir), out_dir)
    # The reviewed items' vectors, where the sweep's standing index holds them, are not
    # embedded again for the history index (matched by content and encoder).
    sweep_items = _sweep_items_path(queue_path)
    model = train(
        merged, seeds, out_dir, signals=old.signals, k=parent.get("k"),
        index_donor=sweep_items.parent if sweep_items is not None else None,
        show_progress=show_progress,
    )  # fmt: skip
    # Re-saved with its parent's lineage and the verdict quarantine, sealed with the rest.
    model.info.update(lineage_info(merged, parent=parent))
    tables = {"history_quarantine": pq.read_table(out_dir / "history_quarantine.parquet")}
    tables.update(lineage_tables(merged, seeds))
    tables[QUARANTINE_FILE.removesuffix(".parquet")] = quarantine
    model.save(out_dir, tables=tables)
    return ImportResult(imported, quarantine, merged, model, version)

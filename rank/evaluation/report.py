"""Sweep reports: a JSON + markdown summary and the plots a reviewer lead looks at."""

from __future__ import annotations

import json
import os
from html import escape
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskrank.index.manifest import read_json_object, write_text_atomic
from riskrank.index.tables import SchemaError
from riskrank.rank.evaluation.metrics import ranking_report
from riskrank.rank.sweep_output import SWEPT_IDS


def score_population(queue_or_candidates: pa.Table, item_ids: list[str], column: str) -> np.ndarray:
    """Scores for every item in ``item_ids`` (items the sweep did not score get -inf)."""
    best: dict[str, float] = {}
    ids = queue_or_candidates.column("item_id").to_pylist()
    vals = queue_or_candidates.column(column).to_pylist()
    for i, v in zip(ids, vals):
        if v is not None and v == v:
            best[i] = max(best.get(i, -np.inf), float(v))
    return np.array([best.get(i, -np.inf) for i in item_ids])


def queue_order_scores(queue: pa.Table, item_ids: list) -> np.ndarray:
    """The queue's own order as scores for ``item_ids``: ``-rank``; items not queued -inf.

    Every metric reads this, never ``risk_probability`` alone: ties in probability are broken
    by the raw score in the queue, and an evaluation must judge the order reviewers get.
    A campaign-mode queue's members (``campaign_members``) share their campaign's rank: one
    decision covers them, in no order among themselves (the metrics take the expected value
    over tied items). Ids are compared as strings (the queue stores them so; labels may hold
    integers).
    """
    if "rank" not in queue.column_names:
        raise SchemaError(
            f"queue: no 'rank' column (columns: {queue.column_names}); is this a riskrank queue?"
        )
    best: dict[str, float] = {}
    ids, ranks = queue.column("item_id").to_pylist(), queue.column("rank").to_pylist()
    members = (
        queue.column("campaign_members").to_pylist()
        if "campaign_members" in queue.column_names
        else [None] * len(ids)
    )
    for i, r, ms in zip(ids, ranks, members):
        if r is None:
            continue
        for j in [i, *(ms or [])]:  # a campaign's members are decided with it, at its rank
            best[str(j)] = max(best.get(str(j), -np.inf), -float(r))
    return np.array([best.get(str(i), -np.inf) for i in item_ids])


def check_labels(labels: pa.Table) -> pa.Table:
    """``labels`` with ``item_id`` and its truth as ``label``, 1 violating / 0 not (int8; a
    ``verdict`` column is read and replaced), else a SchemaError naming the row.

    ``verdict``: a grade on the 0-3 scale (or its word: ``verdict_grade``); violating is 2-3,
    as everywhere else (1 is borderline: 150 items marked borderline were scored as
    violations, AP 0.704 -> 0.741; an outsider's report). A ``verdict`` column of only 0 and
    1 is refused, as the review import refuses it: say which is meant. ``label``: 0/1 (or
    true/false, or a grade's word). A missing or out-of-range value is refused before a
    sweep's work (a word failed after the whole sweep, a NaN made NDCG NaN, a -1 was read
    as benign)."""
    from riskrank.recall.history import (
        GRADES_IN_WORDS,
        POSITIVE_VERDICT,
        VERDICT_WORDS,
        verdict_grade,
        zero_one,
    )

    col = "verdict" if "verdict" in labels.column_names else "label"
    if "item_id" not in labels.column_names or col not in labels.column_names:
        raise SchemaError(
            f"labels: need 'item_id' and 'verdict' (or 'label'), got {labels.column_names}"
        )
    truth, numbers = [], []  # (numbers: the grades written as numbers, not words)
    for row, value in enumerate(labels.column(col).to_pylist()):
        if col == "label" and isinstance(value, str) and value.strip().lower() in ("true", "false"):
            value = value.strip().lower() == "true"
        if col == "label" and isinstance(value, bool):
            value = int(value)
        grade = verdict_grade(value)
        words = isinstance(value, str) and value.strip().lower() in VERDICT_WORDS
        if col == "label" and not words and grade not in (0, 1, None):
            grade = None  # a number: 0 or 1 only
        if grade is None:
            expected = (
                f"a grade 0-3 ({GRADES_IN_WORDS})"
                if col == "verdict"
                else "0 or 1 (1 = violating), true/false, or a grade's word"
            )
            raise SchemaError(f"labels: row {row} has {col} {value!r}; expected {expected}")
        truth.append(int(grade >= POSITIVE_VERDICT if col == "verdict" or words else grade))
        if not words:
            numbers.append(grade)
    if col == "verdict" and zero_one(numbers):
        raise SchemaError(
            "labels: every verdict written as a number is 0 or 1; on the 0-3 scale 1 is "
            "borderline (not violating) and violating is 2 or 3. Give 0/1 truth as a 'label' "
            "column (1 = violating), or grades 0-3 as 'verdict'"
        )
    if col == "verdict" and "label" in labels.column_names:
        # Both given: the verdict is read, and a label saying otherwise is not passed over in
        # silence (verdict 3 and label 0 on 50 rows counted 50 positives; outsider CD).
        # Rows whose label is empty (null, NaN) say nothing, and a label column that does not
        # read as truth is not the one read (a null label refused valid verdicts: CE).
        given = [
            r for r, v in enumerate(labels.column("label").to_pylist()) if v is not None and v == v
        ]
        try:
            sub = labels.take(pa.array(given, pa.int64())).drop_columns(["verdict"])
            said = check_labels(sub).column("label").to_pylist() if given else []
        except SchemaError:
            said = []
        differ = [r for r, b in zip(given, said) if truth[r] != b]
        if differ:
            r = differ[0]
            raise SchemaError(
                f"labels: 'verdict' and 'label' disagree on {len(differ):,} "
                f"row{'s' if len(differ) > 1 else ''} (first: row "
                f"{r}, verdict {labels.column('verdict')[r].as_py()!r}, label "
                f"{labels.column('label')[r].as_py()!r}): keep the one column that is the truth"
            )
    # As ``label`` (1 = violating): read again, the table is the same.
    labels = labels.drop_columns([c for c in ("verdict", "label") if c in labels.column_names])
    return labels.append_column("label", pa.array(truth, pa.int8()))


def evaluate(queue: pa.Table, labels: pa.Table, *, budget_fraction: float = 0.05) -> dict:
    """Quality of a queue's order against ground truth ``labels`` (item_id, verdict or label).

    Ranked by the queue's ``rank``; labelled items the queue does not hold rank last, tied
    (every metric is its expected value over the orders of tied items, so the labels' row
    order does not matter), and ``coverage`` is the share of labelled items it holds (a
    campaign's members included). A queue holding none of them: the metrics are None.
    """
    labels, repeated = one_label_per_item(check_labels(labels))
    ids = labels.column("item_id").to_pylist()
    y = np.asarray(labels.column("label").to_pylist(), dtype=float)
    s = queue_order_scores(queue, ids)
    ranked = ranking_report(y, s, budget_fraction=budget_fraction)
    if not np.isfinite(s).any():
        # A queue holding none of the labelled items has no order to judge: its "AP" was the
        # expected value of a random order of them (0.891 for an empty queue of 60 labelled
        # items, 53 violating; an outsider's report).
        ranked = dict.fromkeys(ranked)
    # Python numbers, as report.json has them: a dict of numpy and Python scalars mixed
    # ('R@5%': np.float64(0.106)) read oddly in an analyst's notebook (outsider CB).
    ranked = {k: v.item() if isinstance(v, np.generic) else v for k, v in ranked.items()}
    return {
        "items": len(ids),
        "positives": int((y > 0).sum()),
        "coverage": float(np.isfinite(s).mean()) if len(s) else 0.0,
        **ranked,
        **({REPEATED: repeated} if repeated else {}),
    }


def one_label_per_item(labels: pa.Table) -> tuple[pa.Table, int]:
    """``labels`` with one row per ``item_id`` (violating if any of its rows says so), and
    how many rows that folded away. A label file listing an item twice counted it twice in
    ``items``, ``positives`` and AP (two reviewers' exports concatenated, say)."""
    col = "verdict" if "verdict" in labels.column_names else "label"
    ids = labels.column("item_id")
    distinct = pc.count_distinct(ids, mode="all").as_py()
    if distinct == labels.num_rows:
        return labels, 0
    folded = labels.select(["item_id", col]).group_by("item_id", use_threads=False)
    folded = folded.aggregate([(col, "max")]).rename_columns(["item_id", col])
    return folded, labels.num_rows - folded.num_rows


OUTSIDE = "labelled items not in this sweep (left out)"
DECIDED = "labelled items reviewed before, unchanged, not queued (left out)"


def already_decided(candidates: pa.Table | None, queue: pa.Table) -> set[str]:
    """Items a sweep left out of its queue because reviewers had decided them (every
    candidate row ``reviewed == "unchanged"``) and that are not queued. Scored, they ranked
    last as misses: an outsider's day 2 read 94 positives and AP 0.256, where 68 of them
    had been confirmed the day before and the queue held 20 of the other 26 (AP 0.310)."""
    if candidates is None or "reviewed" not in candidates.column_names:
        return set()
    from riskrank.rank.reviewed import UNCHANGED

    status = candidates.column("reviewed").to_pylist()
    ids = [str(i) for i in candidates.column("item_id").to_pylist()]
    unchanged = {i for i, st in zip(ids, status) if st == UNCHANGED}
    unchanged -= {i for i, st in zip(ids, status) if st != UNCHANGED}
    return unchanged - {str(i) for i in queue.column("item_id").to_pylist()}


UNNAMED = "label rows without an item_id (left out)"
REPEATED = "label rows repeating an item (folded: violating if any says so)"


def swept_ids_beside(queue_path: str | Path) -> pa.ChunkedArray | None:
    """The ids a sweep took in, for a queue file in its sweep folder: ``SWEPT_IDS`` there,
    else (a sweep written before it) the index version its ``report.json`` names
    (``items.parquet`` and ``quarantine.parquet``). None where neither is found (a standing
    index prunes old versions)."""
    import pyarrow.parquet as pq

    beside = Path(queue_path).parent / SWEPT_IDS
    try:
        return pq.read_table(beside, columns=["item_id"]).column("item_id").cast(pa.string())
    except (OSError, ValueError, KeyError, pa.ArrowException):
        pass
    try:
        report = json.loads((Path(queue_path).parent / "report.json").read_text())
        version = Path(report["index_version_dir"])
        parts = [
            pq.read_table(version / name, columns=["item_id"]).column("item_id")
            for name in ("items.parquet", "quarantine.parquet")
        ]
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
        return None
    return pa.chunked_array([c for part in parts for c in part.chunks], pa.string())


def sweep_quality(
    result, labels: pa.Table, *, budget_fraction: float = 0.05
) -> tuple[dict, pa.Table]:
    """``evaluate`` of a sweep's queue over the labelled items the sweep took in, and those
    labels. A label table of a whole data set scored a 150-item sweep at coverage 0.02 and
    AP 0.27 against 1.00 and 0.84 over its own items, with nothing saying why (an outsider's
    report): labels of items the sweep never saw are left out, and counted (``OUTSIDE``)."""
    labels = check_labels(labels)
    # Ids as the queue's (text): 3.0 from a pandas column with a gap is item "3".
    i = labels.schema.get_field_index("item_id")
    labels = labels.set_column(i, "item_id", pc.cast(labels.column(i), pa.string()))
    unnamed = labels.column(i).null_count
    labels = labels.filter(pc.is_valid(labels.column(i)))
    swept = getattr(result, "swept_ids", None)
    outside = 0
    if swept is not None:
        swept = pa.chunked_array(swept).combine_chunks()
        keep = pc.is_in(labels.column("item_id"), value_set=swept)
        outside = labels.num_rows - (pc.sum(keep).as_py() or 0)
        labels = labels.filter(keep)
    decided = already_decided(getattr(result, "candidates", None), result.queue)
    if decided:
        keep = pc.invert(pc.is_in(labels.column("item_id"), value_set=pa.array(sorted(decided))))
        decided = labels.num_rows - (pc.sum(keep).as_py() or 0)
        labels = labels.filter(keep)
    labels, repeated = one_label_per_item(labels)
    quality = evaluate(result.queue, labels, budget_fraction=budget_fraction)
    if repeated:
        quality[REPEATED] = repeated
    if outside:
        quality[OUTSIDE] = outside
    if decided:
        quality[DECIDED] = decided
    if unnamed:
        quality[UNNAMED] = unnamed
    return quality, labels


def plot_sweep(queue: pa.Table, out: Path, labels: pa.Table | None = None) -> list[Path]:
    """Risk-probability histogram (split by true label when known) and a precision-recall curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    p = np.asarray(queue.column("risk_probability").to_pylist(), float)
    fig, axes = plt.subplots(
        1, 2 if labels is not None else 1, figsize=(11 if labels is not None else 6, 4)
    )
    axes = np.atleast_1d(axes)
    ax = axes[0]
    if labels is not None:
        col = "verdict" if "verdict" in labels.column_names else "label"
        ids = [str(i) for i in labels.column("item_id").to_pylist()]  # queue ids are strings
        truth = dict(zip(ids, labels.column(col).to_pylist()))
        y = np.array([truth.get(i, 0) or 0 for i in queue.column("item_id").to_pylist()]) > 0
        ax.hist(
            [p[y], p[~y]],
            bins=30,
            stacked=True,
            label=["violating", "benign"],
            color=["#c0392b", "#7f8c8d"],
        )
        ax.legend()
        ids = labels.column("item_id").to_pylist()
        yy = np.asarray(labels.column(col).to_pylist(), float) > 0
        s = queue_order_scores(queue, ids)
        order = np.argsort(-s, kind="stable")
        hits = yy[order]
        prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        rec = np.cumsum(hits) / max(1, hits.sum())
        axes[1].plot(rec, prec, color="#2c3e50")
        axes[1].set_xlabel("recall")
        axes[1].set_ylabel("precision")
        axes[1].set_ylim(0, 1.02)
        axes[1].set_title("precision-recall over the whole inventory")
    else:
        ax.hist(p, bins=30, color="#c0392b")
    ax.set_xlabel("risk probability")
    ax.set_ylabel("items")
    ax.set_title("escalation queue by calibrated risk")
    fig.tight_layout()
    path = out / "report.png"
    tmp = path.with_name(f"report.png.{os.getpid()}.tmp")  # atomic, as the other outputs
    fig.savefig(tmp, dpi=110, format="png")
    tmp.replace(path)
    plt.close(fig)
    paths.append(path)
    return paths


# The sweep's item accounting, in the order both reports (markdown and HTML) show it.
COUNT_KEYS = (
    "items_in",
    "items_indexed",
    "items_quarantined",
    "items_deleted",
    "items_recalled",
    "items_not_recalled",
    "candidates",
    "queued",
)


def queue_count_rows(report: dict) -> list[tuple[str, str]]:
    """What the queue holds: in campaign mode, campaigns and the items in them; the budget's
    split into exploit and explore slots."""
    if "queued_items" in report:
        rows = [
            ("queued (campaigns)", f"{report['queued']:,}"),
            ("items in the queued campaigns", f"{report['queued_items']:,}"),
        ]
    else:
        rows = [("queued", f"{report['queued']:,}")] if "queued" in report else []
    if slots := report.get("slots"):
        rows.append(("slots", ", ".join(f"{s} {n:,}" for s, n in slots.items())))
    return rows


def quarantine_reasons(report: dict) -> list[tuple[str, int]]:
    """``report["quarantine_reasons"]`` as (kind, rows), most first (none in a report written
    before it existed)."""
    kinds = report.get("quarantine_reasons")
    return list(kinds.items()) if isinstance(kinds, dict) else []


def count_rows(report: dict) -> list[tuple[str, str]]:
    """The sweep's counts as (label, value) rows, the same in report.md and report.html."""
    rows = []
    for key in COUNT_KEYS:
        if key in report and key != "queued":  # reports written before a key existed render
            rows.append((key.replace("_", " "), f"{report[key]:,}"))
        if key == "items_quarantined":  # each kind of reason under the total
            rows += [(f"  quarantined: {k}", f"{n:,}") for k, n in quarantine_reasons(report)]
    rows += queue_count_rows(report)
    if "coverage" in report:
        rows.append(("coverage (recalled / indexed)", f"{report['coverage']:.1%}"))
    for signal, n in report.get("signal_failures", {}).items():
        rows.append((f"indexed without {signal}: content it could not use", f"{n:,}"))
    rows += encoder_rows(report)
    if rev := report.get("reviewed"):
        rows.append(
            (
                "reviewed before: unchanged / changed (candidate rows)",
                f"{rev['unchanged']:,} / {rev['changed']:,}",
            )
        )
        kept = " (kept: include_reviewed)" if rev["include_reviewed"] else ""
        if "unchanged_items" in rev:  # (reports written before it lack it)
            rows.append(
                (
                    "reviewed and unchanged for a policy, left out for it (items)",
                    f"{rev['unchanged_items']:,}{kept}",
                )
            )
        rows.append(
            (
                "reviewed and unchanged for every policy that recalled them, left out (items)",
                f"{rev['excluded_from_queue']:,}{kept}",
            )
        )
        if "confirmed_violating_live" in rev:
            rows.append(
                (
                    "confirmed violating, unchanged and still in the inventory (items)",
                    f"{rev['confirmed_violating_live']:,}",
                )
            )
        if rev.get("queued_for_other_policies"):
            rows.append(
                (
                    "reviewed and unchanged for a policy, queued for another (items)",
                    f"{rev['queued_for_other_policies']:,}",
                )
            )
    return rows


def encoder_rows(report: dict) -> list[tuple[str, str]]:
    """Which encoder made each signal's vectors (``<signal> encoder``: model, backend,
    precision), as the index manifest records it: the vectors, and so the queue, depend on
    it. Reports written before the record existed show none."""
    rows = []
    for signal, entry in (report.get("index") or {}).items():
        enc = entry.get("encoder") if isinstance(entry, dict) else None
        if enc:
            how = " ".join(str(enc[k]) for k in ("backend", "precision") if enc.get(k))
            details = [str(enc[k]) for k in ("model_version",) if enc.get(k)] + [how] * bool(how)
            value = str(enc["model"]) + (f" ({'; '.join(details)})" if details else "")
            rows.append((f"{signal} encoder", value))
    return rows


def index_update_rows(report: dict) -> list[tuple[str, str]]:
    """What the sweep's standing-index update did, as (label, value) rows for the reports
    (none when the sweep updated nothing: no standing index, or the same inventory again)."""
    return update_rows(report.get("index_update") or {})


def index_section(report: dict) -> tuple[str, str | None, list[tuple[str, str]]] | None:
    """The reports' standing-index section: (title, a sentence or None, rows). A sweep that
    found the index up to date (the same inventory again, a run again after a kill, new seeds
    only) says so and shows the update that made the version it searched."""
    if rows := index_update_rows(report):
        version = report["index_update"].get("version")
        return f"Standing index update (version {version})", None, rows
    earlier = report.get("index_up_to_date")
    if not earlier:
        return None
    why = (
        "no inventory was given, so it searched the index as it stands (only the seeds were "
        "embedded)"
        if earlier.get("no_inventory")
        else "the index already held this inventory (the same inventory again, or a sweep run "
        "again after a killed one had updated the index)"
    )
    note = (
        f"This sweep embedded no inventory item: {why}. The update that made this version, "
        f"at {earlier.get('updated_at')}:"
    )
    title = f"Standing index (version {earlier.get('version')}): up to date"
    return title, note, update_rows(earlier)


def index_summary(report: dict) -> str | None:
    """One line of what the sweep did to its standing index (the CLI's summary)."""
    u = report.get("index_update") or {}
    if u:
        counts = ", ".join(f"{k} {u.get(k, 0):,}" for k in ("added", "changed", "removed"))
        return f"version {u.get('version')}: {counts}; embedded {u.get('embedded', 0):,}"
    if earlier := report.get("index_up_to_date"):
        return f"version {earlier.get('version')}, up to date: no inventory item embedded"
    return None


def update_rows(u: dict, *, full: bool = False) -> list[tuple[str, str]]:
    """A standing-index update's stats (``UpdateStats.as_dict()``) as (label, value) rows:
    the reports' section, and with ``full`` what ``riskrank index update`` prints (also the
    accounting a sweep's report shows in its own counts: items in = invalid + deleted + added
    + changed + unchanged; the quarantine also holds added or changed rows whose content
    could not be embedded)."""
    if not u:
        return []
    counts = [("added", "added"), ("changed", "changed (some signal's content)")]
    counts += [("unchanged", "unchanged"), ("removed", "removed (gone or deleted)")]
    if full:
        head = [("items_in", "items in"), ("invalid", "invalid"), ("deleted", "deleted")]
        counts = [*head, *counts, ("indexed", "indexed"), ("quarantined", "quarantined")]
    counts.append(("embedded", "items embedded (one per content)"))
    rows = [(label, f"{u[key]:,}") for key, label in counts if key in u]
    by_signal = u.get("embedded_by_signal") or {}
    if len(by_signal) > 1:  # each signal embeds only its own new content
        rows += [(f"  contents for {n}", f"{k:,}") for n, k in by_signal.items()]
    if u.get("chunks_resumed"):
        done = f"{u['chunks_resumed']} of {u['chunks']} chunks"
        rows.append(("  resumed from a killed run", done))
    if "reused_vectors" in u:
        rows.append(("vectors reused", f"{u['reused_vectors']:,}"))
    rows += [(f"index ({n})", f"{d['key']} {d['index']}") for n, d in u.get("signals", {}).items()]
    if unknown := u.get("deletions_unknown"):  # a count (a list in reports written before)
        n = unknown if isinstance(unknown, int) else len(unknown)
        rows.append(("deletions never indexed", f"{n:,}"))
    if full:
        rows.append(("seconds", f"{sum(u.get('seconds', {}).values()):.1f}"))
    return rows


def md_cell(value) -> str:
    """``value`` as the text of one Markdown table cell: a "|" would end the cell, a line
    break the row, and a renderer passes raw HTML through (an id ``evil<img onerror=...>``
    went into report.md as markup: an outsider's report; report.html escaped it)."""
    text = "" if value is None else str(value)
    # A backslash first (it would escape the bar after it); brackets and backticks so that
    # an id is no link, remote image or code span.
    for char in ("\\", "|", "[", "]", "`"):
        text = text.replace(char, "\\" + char)
    return " ".join(escape(text, quote=False).splitlines())


def write_report(
    out: Path, report: dict, queue: pa.Table, quality: dict | None = None, top: int = 10
) -> Path:
    """``report.md`` next to the queue: counts, timings, quality (if known) and the top items."""
    lines = ["# riskrank sweep report", ""]
    lines += ["| | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in count_rows(report)]
    lines.append(f"| policies | {md_cell(', '.join(report['policies']))} |")
    if report.get("cold_start_policies"):
        cold = md_cell(", ".join(report["cold_start_policies"]))
        lines.append(f"| cold-start policies | {cold} |")
    secs = report["seconds"]
    lines.append(
        f"| seconds (index / recall / rank / total) | {secs['index']} / {secs['recall']} / "
        f"{secs['rank']} / {secs['total']} |"
    )
    if section := index_section(report):
        title, note, rows = section
        lines += ["", f"## {title}", ""] + ([note, ""] if note else [])
        lines += ["| | |", "| --- | --- |"] + [f"| {k} | {md_cell(v)} |" for k, v in rows]
    if report.get("warnings"):  # (they quote policies, ids and paths: text, not markup)
        lines += ["", "## Warnings", ""] + [f"- **{md_cell(w)}**" for w in report["warnings"]]
    if report.get("decisions"):
        lines += [
            "",
            "## Decisions per policy",
            "",
            "| policy | model | calibration | automatic action from P >= "
            "| candidates unlike its reviews (reviews: 5%) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for p, d in sorted(report["decisions"].items()):
            t = d["action_threshold"]
            unlike = ", ".join(
                f"{c['share_below']:.1%} ({signal})"
                for signal, c in sorted(d.get("history_coverage", {}).items())
            )
            lines.append(
                f"| {md_cell(p)} | {d['model']} | {d['calibration']} | "
                f"{'never (escalate)' if t is None else f'{t:.3f}'} | {unlike or '-'} |"
            )
    if quality:
        lines += ["", "## Quality against the labels", "", "| metric | value |", "| --- | --- |"]
        lines += [
            f"| {k} | {v:.3f} |"
            if isinstance(v, float)
            else f"| {k} | {'n/a (the queue holds no labelled item)' if v is None else v} |"
            for k, v in quality.items()
        ]
    lines += [
        "",
        f"## Top {top} of the queue",
        "",
        "| rank | item | policy | P(risk) | action | why |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    cols = queue.slice(0, top).to_pylist()
    for row in cols:
        # The sentence a reviewer reads (as report.html shows it), not ``reasons``' feature
        # values ("log-odds of a linear classifier ... = 1.64"); a queue without it (a table
        # from before explanations) keeps the values. An explore pick says so first.
        why = md_cell(row.get("explanation") or row.get("reasons") or "")
        slot_reason = md_cell(row.get("slot_reason") or "")
        if row.get("slot") == "explore" and slot_reason:  # not the risk order: said first
            why = f"**{slot_reason}**; {why}"
        lines.append(
            f"| {row['rank']} | {md_cell(row['item_id'])} | {md_cell(row['policy'])} | "
            f"{row['risk_probability']:.3f} | {md_cell(row['action'])} | {why} |"
        )
    lines += ["", "![risk distribution](report.png)", ""]
    path = out / "report.md"
    write_text_atomic("\n".join(lines), path)
    write_text_atomic(json.dumps({**report, "quality": quality}, indent=2), out / "report.json")
    return path


def write_sweep_reports(
    result,
    seeds,
    *,
    out_dir: str | Path | None = None,
    labels=None,
    quality: dict | None = None,
    image_base_dir: str | Path | None = None,
) -> dict[str, Path]:
    """What ``riskrank sweep`` writes beside the queue, for a sweep run from Python:
    ``report.md``, ``report.png`` and the self-contained ``report.html`` (the highlighted
    phrases, the matched seed, the closest reviewed item; no network). ``result``: what
    ``sweep`` returned; ``seeds``: the seeds it ran (the HTML shows the matched one);
    ``out_dir``: default the sweep's own. ``labels`` (item_id + verdict or label): adds the
    quality against them (``quality``: already computed) and the precision-recall curve.

    Into the sweep's own directory, the run's ``_SUCCESS`` is taken off while they are
    written and put back after; a directory holding another run's outputs is refused
    (rank/sweep_output.py). Elsewhere no marker is made.

    >>> result = rr.sweep("ads.parquet", "seeds.parquet", model, out_dir="runs/a")  # doctest: +SKIP
    >>> rr.write_reports(result, "seeds.parquet")["html"]                         # doctest: +SKIP
    """
    from riskrank.index.output_lock import output_lock
    from riskrank.index.tables import as_table
    from riskrank.rank import sweep_output

    out = Path(out_dir) if out_dir is not None else result.out_dir
    if out is None:
        raise ValueError("write_reports: the sweep had no out_dir; pass out_dir=")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Checked first: a bad labels table must not cost the run its marker and reports.
    labels = as_table(labels, what="labels") if labels is not None else None
    if labels is not None and quality is None:
        quality, labels = sweep_quality(result, labels)
    # Beside a finished run's files only that run's own result may rewrite its reports, with
    # its marker off meanwhile (no reader takes a half-written report for the run's), and
    # under the directory's lock (no sweep or other writer in between). A directory holding
    # another run's marker or report.json is refused; elsewhere no marker is made.
    with output_lock(out, what="sweep output directory"):
        found = sweep_output.marker(out)
        run = result.report.get("run_id")
        theirs = found.get("run_id") if found is not None else _report_run(out)
        if theirs is not None and theirs != run:
            raise ValueError(
                f"write_reports: {out} holds the outputs of another sweep run ({theirs}); "
                "this result's reports there would mix two runs: pass another out_dir="
            )
        if found is not None:
            sweep_output.begin(out, sweep_output.REPORTS)
        written = write_reports_into(
            result, seeds, out_dir=out, labels=labels, quality=quality,
            image_base_dir=image_base_dir,
        )  # fmt: skip
        if found is not None:
            files = [*found.get("files", []), "report.json", *sweep_output.REPORTS]
            sweep_output.complete(out, run, files)
    return written


def _report_run(out: Path) -> str | None:
    """The run id in ``out/report.json``, if there is one."""
    return (read_json_object(out / "report.json") or {}).get("run_id")


def write_reports_into(
    result,
    seeds,
    *,
    out_dir: str | Path | None = None,
    labels=None,
    quality: dict | None = None,
    image_base_dir: str | Path | None = None,
) -> dict[str, Path]:
    """``write_sweep_reports`` without the completion marker (a sweep that writes its reports
    itself marks the run complete after them: rank/sweep_output.py)."""
    from riskrank.index.tables import as_table
    from riskrank.rank.evaluation.html_report import write_html_report
    from riskrank.rank.review import HISTORY_FILE

    out = Path(out_dir) if out_dir is not None else Path(result.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = as_table(labels, what="labels") if labels is not None else None
    if labels is not None and quality is None:
        quality, labels = sweep_quality(result, labels)
    plot = plot_sweep(result.queue, out, labels)[0]
    if quality is not None:  # as report.json has it (result.report lacked it: an outsider)
        result.report["quality"] = quality
    markdown = write_report(out, result.report, result.queue, quality)
    cands = result.candidates
    texts = {}
    if cands.num_rows and "text" in cands.column_names:
        texts = dict(zip(cands.column("item_id").to_pylist(), cands.column("text").to_pylist()))
    extra = {"quality": quality, "labels": labels} if labels is not None else {}
    model_dir = (result.report.get("model") or {}).get("dir")
    html = write_html_report(
        out, result.report, result.queue, texts=texts, seeds=as_table(seeds, what="seeds"),
        plot=plot, image_base_dir=image_base_dir,
        stale=pictures_changed_since_indexed(result.report, result.queue, image_base_dir),
        history=Path(model_dir) / HISTORY_FILE if model_dir else None, **extra,
    )  # fmt: skip
    return {"markdown": markdown, "plot": plot, "html": html}


def pictures_changed_since_indexed(
    report: dict, queue: pa.Table, image_base_dir, top: int | None = None
) -> set[str]:
    """Ids among the queue's first ``top`` rows (the HTML report's) whose picture file is not
    the one the index version the sweep searched holds, for a sweep without an inventory:
    its scores and words are the indexed picture's, while the report reads the file as it is
    now (a seed copy written over an ad's file was shown beside "No seed is close": an
    outsider's report). Empty where the sweep had an inventory (the index is today's), or
    what was indexed cannot be read back (an index of another layout)."""
    import pyarrow.parquet as pq

    from riskrank.index.paths import resolve_image_path
    from riskrank.index.schema import IMAGE_PATH, SIGNAL_FAILURES
    from riskrank.index.signals.images import reads_only_pictures
    from riskrank.index.signals.registry import signal_from_manifest
    from riskrank.index.standing import signal_content_keys
    from riskrank.index.store import KEYS
    from riskrank.rank.evaluation.html_report import TOP_DEFAULT

    searched = (report.get("index_up_to_date") or {}).get("no_inventory")
    vdir = report.get("index_version_dir")
    if not searched or not vdir or IMAGE_PATH not in queue.column_names or not queue.num_rows:
        return set()
    rows = queue.slice(0, TOP_DEFAULT if top is None else top).select(["item_id", IMAGE_PATH])
    # Only files there now: one not found (a sweep without --image-base-dir, a text policy's
    # retroactive sweep) has no thumbnail anyway, and is no sign of a change (every picture
    # row read "its file has changed": an outsider's report).
    here = [
        path is not None and resolve_image_path(path, image_base_dir)[0] is not None
        for path in rows[IMAGE_PATH].to_pylist()
    ]
    rows = rows.filter(pa.array(here, pa.bool_()))
    vdir = Path(vdir)
    try:
        entries = json.loads((vdir / "manifest.json").read_text())["signals"]
        path = vdir / SIGNAL_FAILURES
        failures = pq.read_table(path) if path.exists() else None
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return set()
    stale: set[str] = set()
    for name, entry in entries.items():
        try:
            signal = signal_from_manifest(entry)
        except (OSError, ValueError):  # (a plug-in not registered, a checkpoint not here)
            continue
        if not reads_only_pictures(signal) or not rows.num_rows:
            continue
        if "base_dir" in signal.runtime_options:
            signal = signal.with_runtime_options(base_dir=image_base_dir)
        try:
            ids = pq.read_table(vdir / name / "ids.parquet")["item_id"].to_pylist()
            keys = pq.read_table(vdir / name / KEYS, columns=["content_key"])["content_key"]
        except (OSError, KeyError, pa.ArrowException):
            continue
        indexed = dict(zip(ids, keys.to_pylist()))
        if failures is not None:
            for i, n, k in zip(*(failures[c].to_pylist() for c in ("item_id", "signal", "key"))):
                if n == name and k is not None:
                    indexed.setdefault(i, k)
        now = signal_content_keys(rows, signal)
        stale |= {
            i for i, k in zip(rows["item_id"].to_pylist(), now) if i in indexed and indexed[i] != k
        }
    return stale

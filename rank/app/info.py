"""What a riskrank directory is and the state it is in: ``riskrank info PATH`` / ``rr.info``.

A team that sweeps every day keeps these kinds of directory: a standing index (its versions
and the update that made the current one), models (their version, parent and history), the
history a ``review import --no-retrain`` leaves for its retrain, and sweep outputs (whether
today's run finished). Each says what it is in its own JSON files (``standing.json`` and the
version's ``manifest.json``; ``model.json``; ``pending.json``; ``_SUCCESS`` and
``report.json``); this reads those alone, so it answers at once: it loads no FAISS index, no
encoder and no model, and checks no checksum (``InventoryIndex.load`` and ``RiskModel.load``
do, when they are used). It takes no lock: beside a running update it reports the version
readers see then.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from riskrank.index.manifest import MANIFEST, read_json_object
from riskrank.index.standing import DELTA, STATE, VERSIONS
from riskrank.index.tables import SchemaError
from riskrank.index.vectors.recall_check import RECALL_K
from riskrank.rank import sweep_output
from riskrank.rank.model_store import MODEL_JSON
from riskrank.rank.review import HISTORY_FILE, PENDING_FILE
from riskrank.recall.history import POSITIVE_VERDICT

KINDS = ("standing index", "index", "model", "pending import", "sweep output")
SIGNAL_KEYS = ("type", "model", "model_version", "backend", "precision", "quantization",
               "dim", "max_seq_length", "metric", "index_key", "count", "index_bytes",
               "ivf")  # fmt: skip
REPORT_COUNTS = ("items_in", "items_indexed", "items_quarantined", "candidates", "queued",
                 "queued_items")  # fmt: skip


def info(path: str | Path) -> dict:
    """What ``path`` holds, as a dict with ``kind`` (one of ``KINDS``) and that kind's state.

    Raises ``FileNotFoundError`` for a missing path and ``SchemaError`` for a directory that
    is none of these (or whose JSON cannot be read)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if not path.is_dir():
        raise SchemaError(f"{path}: a file, not a directory (info reads riskrank's directories)")
    # Each kind by its own file AND riskrank's keys in it: manifest.json, model.json,
    # report.json and _SUCCESS (Hadoop's and Spark's marker) are common names, and other
    # tools' folders were called riskrank indexes, models and finished sweeps (an outsider).
    if (path / STATE).is_file():
        return _standing(path)
    if _ours(path / MANIFEST, "signals", "items"):
        return _index(path, path, kind="index")
    if _ours(path / MODEL_JSON, "signals"):
        return _model(path)
    if _ours(path / PENDING_FILE, "parent_dir", "files"):
        return _pending(path)
    if _ours(path / sweep_output.MARKER, "run_id", "files") or _ours(
        path / "report.json", "items_in"
    ):
        return _sweep_output(path)
    if (path / DELTA).is_dir():
        raise SchemaError(
            f"{path}: a standing index whose first update has not finished (only {DELTA}/): "
            "running the update (or the sweep) again finishes it"
        )
    if (path / "index" / DELTA).is_dir() and not (path / "index" / STATE).is_file():
        raise SchemaError(
            f"{path}: a sweep whose first run has not finished (its index/ holds only "
            f"{DELTA}/): running the sweep again finishes it"
        )
    if (path / "history_index").is_dir():
        raise SchemaError(
            f"{path}: an unfinished model directory (history_index/ without {MODEL_JSON}: a "
            "train or review import that was stopped): running it again finishes it"
        )
    found = [n for n in (STATE, MANIFEST, MODEL_JSON, PENDING_FILE, sweep_output.MARKER,
                         "report.json") if (path / n).exists()]  # fmt: skip
    raise SchemaError(
        f"{path}: not a riskrank directory ("
        + (
            f"its {', '.join(found)} {'is' if len(found) == 1 else 'are'} not riskrank's"
            if found
            else f"none of {STATE}, {MANIFEST}, {MODEL_JSON}, {PENDING_FILE}, "
            f"{sweep_output.MARKER} or report.json in it"
        )
        + ")"
    )


def _ours(path: Path, *keys: str) -> bool:
    """Whether ``path`` is a JSON object with every one of riskrank's ``keys`` (an empty or
    unreadable file, or another tool's JSON, is not ours)."""
    about = read_json_object(path) if path.is_file() else None
    return about is not None and all(k in about for k in keys)


def _read_json(path: Path) -> dict:
    """``path``'s JSON; a file gone meanwhile raises ``FileNotFoundError`` as it is."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path}: unreadable ({exc})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path}: unreadable ({exc})") from exc


def _disk_bytes(path: Path) -> int:
    """What ``path`` holds on disk; files an update removes while this walks are skipped."""
    total = 0
    for f in path.rglob("*"):
        try:
            if f.is_file():
                total += f.stat().st_size
        except OSError:
            continue
    return total


def _standing(path: Path, tries: int = 3) -> dict:
    """The version ``standing.json`` names, with the state read once: an update running
    beside this commits a newer version and drops the oldest, so a version gone while it is
    read is read again from the state as it then is."""
    for attempt in range(tries):
        state = _read_json(path / STATE)
        try:
            current = int(state["current"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"{path / STATE}: unreadable standing-index state ({exc})") from exc
        try:
            out = _index(path, path / VERSIONS / f"v{current:06d}", kind="standing index")
            break
        except FileNotFoundError:
            if attempt == tries - 1:
                raise
    versions = sorted(int(d.name[1:]) for d in (path / VERSIONS).glob("v*") if d.name[1:].isdigit())
    out.update(
        version=current,
        versions_kept=[v for v in versions if v <= current],
        # Written by an update that has not committed: one running now, or one killed
        # (running it again finishes it); no reader opens them.
        versions_unfinished=[v for v in versions if v > current],
        updating=(path / DELTA).is_dir(),
        updated_at=state.get("updated_at"),
        last_update=state.get("update", {}),
    )
    return out


def _index(path: Path, vdir: Path, *, kind: str) -> dict:
    manifest = _read_json(vdir / MANIFEST)
    signals = {
        name: {k: entry[k] for k in SIGNAL_KEYS if k in entry}
        for name, entry in manifest.get("signals", {}).items()
    }
    return {
        "kind": kind,
        "path": str(path.resolve()),
        "created_at": manifest.get("created_at"),
        "riskrank_version": manifest.get("riskrank_version"),
        "items": _items(manifest.get("items", {})),
        "signals": signals,
        "disk_bytes": _disk_bytes(path),
    }


def _reviews(history: Path) -> dict[str, dict[str, int]]:
    """Reviews and violating verdicts per policy in a history table."""
    reviews: dict[str, dict[str, int]] = {}
    if history.is_file():
        table = pq.read_table(history, columns=["policy", "verdict"])
        for policy, verdict in zip(table["policy"].to_pylist(), table["verdict"].to_pylist()):
            counts = reviews.setdefault(policy, {"reviews": 0, "violating": 0})
            counts["reviews"] += 1
            counts["violating"] += int(verdict is not None and verdict >= POSITIVE_VERDICT)
    return dict(sorted(reviews.items()))


def _model(path: Path) -> dict:
    meta = _read_json(path / MODEL_JSON)
    return {
        "kind": "model",
        "path": str(path.resolve()),
        "version": meta.get("version"),  # None: made before models were versioned
        "parent_version": meta.get("parent_version"),
        "created_at": meta.get("created_at") or meta.get("trained_at"),
        "history_rows": meta.get("history_rows"),
        "history_digest": meta.get("history_digest"),
        "reviews": _reviews(path / HISTORY_FILE),
        "policies_with_history": meta.get("policies_with_history", []),
        "signals": [
            {k: s[k] for k in ("type", "model", "model_version", "backend", "precision") if k in s}
            for s in meta.get("signals", [])
        ],
        "lexical_probe": bool(meta.get("lexical")),
        "disk_bytes": _disk_bytes(path),
    }


def _pending(path: Path) -> dict:
    """A ``review import --no-retrain`` output: a history waiting for its retrain."""
    pending = _read_json(path / PENDING_FILE)
    return {
        "kind": "pending import",
        "path": str(path.resolve()),
        "parent_dir": pending.get("parent_dir"),
        "parent_version": pending.get("parent_version"),
        "imported": pending.get("imported"),
        "created_at": pending.get("created_at"),
        "reviews": _reviews(path / HISTORY_FILE),
    }


def _sweep_output(path: Path) -> dict:
    report = _read_json(path / "report.json") if (path / "report.json").is_file() else {}
    marker = sweep_output.marker(path) or {}
    return {
        "kind": "sweep output",
        "path": str(path.resolve()),
        "complete": sweep_output.is_complete(path),
        "run_id": marker.get("run_id"),
        "finished_at": marker.get("finished_at"),
        "files": marker.get("files", []),
        # Without the marker report.json may be a finished run's from before markers, or the
        # last run's while a new one runs (or after it died): its run is named apart.
        "report_run_id": report.get("run_id"),
        **{k: report[k] for k in REPORT_COUNTS if k in report},
        **({"slots": report["slots"]} if "slots" in report else {}),
        "decisions": report.get("decisions", {}),
        "warnings": report.get("warnings", []),
    }


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def format_info(about: dict) -> str:
    """``info``'s answer as a person reads it (the CLI's output; ``--json`` gives the dict)."""
    kind = about["kind"]
    if kind in ("standing index", "index"):
        return "\n".join(_index_lines(about))
    if kind in ("model", "pending import"):
        return "\n".join(_model_lines(about))
    return "\n".join(_sweep_lines(about))


def _items(counts: dict) -> dict:
    """A manifest's item counts with ``read``: its ``input`` is what the index took in, after
    the deletion list (so read = input + deleted: an update that deleted 2 of 300 said "of
    298 read", an outsider's report)."""
    return {**counts, "read": int(counts.get("input", 0)) + int(counts.get("deleted", 0))}


def _index_lines(about: dict) -> list[str]:
    head = f"{about['kind']} {about['path']}"
    if about["kind"] == "standing index":
        kept = ", ".join(f"v{v}" for v in about["versions_kept"])
        head += f": version {about['version']} (kept: {kept}), updated {about['updated_at']}"
    lines = [head]
    unfinished = about.get("versions_unfinished") or []
    if unfinished or about.get("updating"):
        lines.append(
            "an update has not committed ("
            + (", ".join(f"v{v}" for v in unfinished) or "embedding")
            + "): one running now, or one killed (running it again finishes it); readers "
            "see the version above"
        )
    items = about["items"]
    deleted = f", {items['deleted']:,} deleted (deletion list)" if items.get("deleted") else ""
    lines.append(
        f"items: {items.get('indexed', 0):,} indexed, {items.get('quarantined', 0):,} "
        f"quarantined{deleted}, of {items.get('read', 0):,} read"
    )
    for name, s in about["signals"].items():
        encoder = " ".join(
            str(s[k]) for k in ("model", "model_version", "backend", "precision") if s.get(k)
        )
        lines.append(
            f"signal {name}: {s.get('type')} {encoder}, dim {s.get('dim')}, "
            f"{s.get('index_key')} over {s.get('count', 0):,} items" + _ivf_note(s.get("ivf"))
        )
    last = about.get("last_update") or {}
    if last:
        # Vectors taken from another index (a sweep's, by an import) too: without them the
        # line did not add up to the items indexed (an outsider's audit of the README).
        donated = last.get("donated_vectors", 0)
        lines.append(
            f"last update: {last.get('added', 0):,} added, {last.get('changed', 0):,} changed, "
            f"{last.get('removed', 0):,} removed, {last.get('unchanged', 0):,} unchanged; "
            f"{last.get('embedded', 0):,} embedded, {last.get('reused_vectors', 0):,} vectors "
            "reused" + (f", {donated:,} donated" if donated else "")
        )
    lines.append(f"on disk: {_mib(about['disk_bytes'])}")
    return lines


def _ivf_note(ivf: dict | None) -> str:
    """A standing IVF index's quantizer: when it was trained, what was added since, and its
    sampled recall then and now (index/standing.py, the retrain rules)."""
    if not ivf:
        return ""
    note = (
        f" (quantizer trained at v{ivf.get('trained_version')} on "
        f"{ivf.get('trained_items', 0):,} items, {ivf.get('added_since_training', 0):,} added since"
    )
    if ivf.get("recall_at_training") is not None:
        note += f"; sampled recall@{RECALL_K} {ivf['recall_at_training']} after training"
        if ivf.get("recall") is not None:
            note += f", {ivf['recall']} now"
    return note + ")"


def _model_lines(about: dict) -> list[str]:
    parent = about["parent_version"]
    if about["kind"] == "pending import" and about["imported"] == 0:
        # Nothing to train: `review retrain` refuses it (info said it would train it: an
        # outsider's audit of the README).
        lines = [
            f"pending import {about['path']}: no verdict was imported into the history of "
            f"version {parent} ({about['parent_dir']}), nothing to train (why: "
            "verdicts_quarantine.parquet there)"
        ]
    elif about["kind"] == "pending import":
        lines = [
            f"pending import {about['path']}: {about['imported'] or 0:,} verdicts imported into "
            f"the history of version {parent} ({about['parent_dir']}), not trained yet "
            "(`riskrank review retrain` trains it)"
        ]
    elif about["version"] is None:
        lines = [f"model {about['path']}: unversioned (made before models were versioned), "
                 f"made {about['created_at']}"]  # fmt: skip
    else:
        lines = [
            f"model {about['path']}: version {about['version']}"
            + (f" (parent {parent})" if parent else " (first)")
            + f", made {about['created_at']}"
        ]
    for policy, n in about["reviews"].items():
        lines.append(f"policy {policy}: {n['reviews']:,} reviews, {n['violating']:,} violating")
    for s in about.get("signals", []):
        lines.append("signal: " + " ".join(str(v) for v in s.values()))
    if "disk_bytes" in about:
        lines.append(f"on disk: {_mib(about['disk_bytes'])}")
    return lines


def _sweep_lines(about: dict) -> list[str]:
    if about["complete"]:
        lines = [
            f"sweep output {about['path']}: complete",
            f"run {about['run_id']}, finished {about['finished_at']}",
        ]
    else:
        lines = [
            f"sweep output {about['path']}: not marked complete (no _SUCCESS of its run): a "
            "run in progress, one that died, or one written before riskrank wrote markers"
        ]
        if about.get("report_run_id") or any(k in about for k in REPORT_COUNTS):
            lines.append(
                f"the counts below are report.json's (run {about.get('report_run_id')}), "
                "which may not be the other files' run or today's"
            )
    # Campaign mode: the queue's rows are campaigns.
    label = {"queued": "queued campaigns", "queued_items": "items in them"}
    label = label if "queued_items" in about else {}
    counts = [
        f"{label.get(k, k.replace('_', ' '))} {about[k]:,}" for k in REPORT_COUNTS if k in about
    ]
    if about.get("slots"):
        counts.append("slots " + ", ".join(f"{s} {n:,}" for s, n in about["slots"].items()))
    if counts:
        lines.append(", ".join(counts))
    for policy, d in sorted(about.get("decisions", {}).items()):
        t = d.get("action_threshold")
        acts = "never acts automatically" if t is None else f"automatic action from P >= {t:.3f}"
        lines.append(
            f"policy {policy}: model {d.get('model')}, calibration {d.get('calibration')}, {acts}"
        )
    lines += [f"warning: {w}" for w in about["warnings"]]
    return lines

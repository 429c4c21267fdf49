"""What a riskrank directory is and the state it is in: ``riskrank info PATH`` / ``rr.info``.

A team that sweeps every day keeps three kinds of directory: a standing index (its versions
and the update that made the current one), models (their version, parent and history) and
sweep outputs (whether today's run finished). Each says what it is in its own JSON files
(``standing.json`` and the version's ``manifest.json``; ``model.json``; ``_SUCCESS`` and
``report.json``); this reads those alone, so it answers at once: it loads no FAISS index, no
encoder and no model, and checks no checksum (``InventoryIndex.load`` and ``RiskModel.load``
do, when they are used).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from riskrank.index.manifest import MANIFEST
from riskrank.index.standing import STATE, VERSIONS
from riskrank.index.store import current_version
from riskrank.index.tables import SchemaError
from riskrank.rank import sweep_output
from riskrank.rank.model_store import MODEL_JSON
from riskrank.rank.review import HISTORY_FILE
from riskrank.recall.history import POSITIVE_VERDICT

KINDS = ("standing index", "index", "model", "sweep output")


def info(path: str | Path) -> dict:
    """What ``path`` holds, as a dict with ``kind`` (one of ``KINDS``) and that kind's state.

    Raises ``FileNotFoundError`` for a missing path and ``SchemaError`` for a directory that
    is none of these (or whose JSON cannot be read)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if (path / STATE).is_file():
        return _index(path, standing=True)
    if (path / MANIFEST).is_file():
        return _index(path, standing=False)
    if (path / MODEL_JSON).is_file():
        return _model(path)
    if (path / sweep_output.MARKER).is_file() or (path / "report.json").is_file():
        return _sweep_output(path)
    raise SchemaError(
        f"{path}: not a riskrank directory (none of {STATE}, {MANIFEST}, {MODEL_JSON}, "
        f"{sweep_output.MARKER} or report.json in it)"
    )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{path}: unreadable ({exc})") from exc


def _disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _index(path: Path, *, standing: bool) -> dict:
    vdir = current_version(path)
    manifest = _read_json(vdir / MANIFEST)
    signals = {}
    for name, entry in manifest.get("signals", {}).items():
        keep = ("type", "model", "model_version", "backend", "precision", "quantization",
                "dim", "max_seq_length", "metric", "index_key", "count", "index_bytes")  # fmt: skip
        signals[name] = {k: entry[k] for k in keep if k in entry}
    out = {
        "kind": "standing index" if standing else "index",
        "path": str(path.resolve()),
        "created_at": manifest.get("created_at"),
        "riskrank_version": manifest.get("riskrank_version"),
        "items": manifest.get("items", {}),
        "signals": signals,
        "disk_bytes": _disk_bytes(path),
    }
    if standing:
        state = _read_json(path / STATE)
        kept = sorted(int(d.name[1:]) for d in (path / VERSIONS).glob("v*") if d.name[1:].isdigit())
        out.update(
            version=int(state["current"]),
            versions_kept=kept,
            updated_at=state.get("updated_at"),
            last_update=state.get("update", {}),
        )
    return out


def _model(path: Path) -> dict:
    meta = _read_json(path / MODEL_JSON)
    reviews: dict[str, dict[str, int]] = {}
    history = path / HISTORY_FILE
    if history.is_file():
        table = pq.read_table(history, columns=["policy", "verdict"])
        for policy, verdict in zip(table["policy"].to_pylist(), table["verdict"].to_pylist()):
            counts = reviews.setdefault(policy, {"reviews": 0, "violating": 0})
            counts["reviews"] += 1
            counts["violating"] += int(verdict is not None and verdict >= POSITIVE_VERDICT)
    return {
        "kind": "model",
        "path": str(path.resolve()),
        "version": meta.get("version"),
        "parent_version": meta.get("parent_version"),
        "created_at": meta.get("created_at") or meta.get("trained_at"),
        "history_rows": meta.get("history_rows"),
        "history_digest": meta.get("history_digest"),
        "reviews": dict(sorted(reviews.items())),
        "policies_with_history": meta.get("policies_with_history", []),
        "signals": [
            {k: s[k] for k in ("type", "model", "model_version", "backend") if k in s}
            for s in meta.get("signals", [])
        ],
        "lexical_probe": bool(meta.get("lexical")),
        "disk_bytes": _disk_bytes(path),
    }


def _sweep_output(path: Path) -> dict:
    report = _read_json(path / "report.json") if (path / "report.json").is_file() else {}
    marker = sweep_output.marker(path)
    complete = sweep_output.is_complete(path)
    keep = ("items_in", "items_indexed", "items_quarantined", "candidates", "queued")
    return {
        "kind": "sweep output",
        "path": str(path.resolve()),
        "complete": complete,
        "run_id": (marker or {}).get("run_id") or report.get("run_id"),
        "finished_at": (marker or {}).get("finished_at"),
        "files": (marker or {}).get("files", []),
        **{k: report[k] for k in keep if k in report},
        "warnings": report.get("warnings", []),
    }


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def format_info(about: dict) -> str:
    """``info``'s answer as a person reads it (the CLI's output; ``--json`` gives the dict)."""
    kind, lines = about["kind"], []
    if kind in ("standing index", "index"):
        head = f"{kind} {about['path']}"
        if kind == "standing index":
            kept = ", ".join(f"v{v}" for v in about["versions_kept"])
            head += f": version {about['version']} (kept: {kept}), updated {about['updated_at']}"
        lines.append(head)
        items = about["items"]
        lines.append(
            f"items: {items.get('indexed', 0):,} indexed, {items.get('quarantined', 0):,} "
            f"quarantined, of {items.get('input', 0):,} read"
        )
        for name, s in about["signals"].items():
            encoder = " ".join(
                str(s[k]) for k in ("model", "model_version", "backend", "precision") if s.get(k)
            )
            lines.append(
                f"signal {name}: {s.get('type')} {encoder}, dim {s.get('dim')}, "
                f"{s.get('index_key')} over {s.get('count', 0):,} items"
            )
        last = about.get("last_update") or {}
        if last:
            lines.append(
                f"last update: {last.get('added', 0):,} added, {last.get('changed', 0):,} "
                f"changed, {last.get('removed', 0):,} removed, {last.get('unchanged', 0):,} "
                f"unchanged; {last.get('embedded', 0):,} embedded, "
                f"{last.get('reused_vectors', 0):,} vectors reused"
            )
        lines.append(f"on disk: {_mib(about['disk_bytes'])}")
    elif kind == "model":
        parent = about["parent_version"]
        lines.append(
            f"model {about['path']}: version {about['version']}"
            + (f" (parent {parent})" if parent else " (first)")
            + f", made {about['created_at']}"
        )
        for policy, n in about["reviews"].items():
            lines.append(f"policy {policy}: {n['reviews']:,} reviews, {n['violating']:,} violating")
        for s in about["signals"]:
            lines.append("signal: " + " ".join(str(v) for v in s.values()))
        lines.append(f"on disk: {_mib(about['disk_bytes'])}")
    else:
        state = "complete" if about["complete"] else "NOT complete (no _SUCCESS of its run)"
        lines.append(f"sweep output {about['path']}: {state}")
        if about.get("finished_at"):
            lines.append(f"run {about['run_id']}, finished {about['finished_at']}")
        shown = ("items_in", "items_indexed", "items_quarantined", "queued")
        counts = [f"{k.replace('_', ' ')} {about[k]:,}" for k in shown if k in about]
        if counts:
            lines.append(", ".join(counts))
        for warning in about["warnings"]:
            lines.append(f"warning: {warning}")
    return "\n".join(lines)

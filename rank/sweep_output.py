"""Which files of a sweep's output directory belong to one finished run.

A sweep writes its files one after another (the queue, the candidates, ``report.json``, then
the reports a person reads). A run killed in between, or a consumer reading while it writes,
saw today's ``queue.parquet`` beside yesterday's ``report.md``, or a queue without its
reports, and could not tell that the run had died (an outsider's kill trial). So:

- a run removes the previous run's marker as soon as it has read its inputs (a sensor started
  for today's run never takes yesterday's marker for today's, nor does one after today's run
  died);
- just before writing, it removes the previous run's outputs, so none is left to pass as
  this run's;
- it writes the marker ``_SUCCESS`` last: the name Hadoop and Spark jobs leave, which
  schedulers' file sensors (Airflow, Luigi) already wait for. It lists the files the run wrote
  and the run's id (also in ``report.json``'s ``run_id``).

``rr.write_reports`` beside a run's own files, under the directory's lock, takes the marker
off while it rewrites the reports and puts it back; it puts back only a marker that was there,
of the same run, and refuses a directory holding another run's marker or ``report.json``
(rank/evaluation/report.py). Should it fail while writing, the marker stays off: the files
are then not one finished run's.

The standing index under ``out_dir/index`` is not an output of this kind: it has its own
versions and commit (index/standing.py) and is never removed here.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from riskrank.index.manifest import read_json_object, write_text_atomic
from riskrank.index.schema import SIGNAL_FAILURES

MARKER = "_SUCCESS"
# The ids a sweep took in (indexed or quarantined): what `riskrank eval` scores labels over,
# after the index version its report names is pruned (rank/evaluation/report.py).
SWEPT_IDS = "swept_ids.parquet"
TABLES = ("queue.parquet", "candidates.parquet", "quarantine.parquet", SIGNAL_FAILURES, SWEPT_IDS)
REPORTS = ("report.md", "report.html", "report.png")
OUTPUTS = (*TABLES, "report.json", *REPORTS)


# The columns a table of each name holds when a sweep wrote it (its first run killed before
# report.json: the tables alone tell it is riskrank's).
TABLE_COLUMNS = {
    "queue.parquet": {"item_id", "policy"},
    "candidates.parquet": {"item_id", "policy"},
    "quarantine.parquet": {"item_id", "reason", "stage"},
    SIGNAL_FAILURES: {"item_id", "signal", "reason"},
    SWEPT_IDS: {"item_id"},
}
# A report's first bytes when riskrank wrote it (the plot: matplotlib's PNG text chunk).
REPORT_HEADS = {
    "report.md": b"# riskrank sweep report",
    "report.html": b"<title>riskrank",
    "report.png": b"Software\x00Matplotlib",
}


def foreign_outputs(out_dir: Path) -> list[str]:
    """The files in ``out_dir`` a sweep would replace (``OUTPUTS``) that are not a sweep's:
    a user's own ``report.md`` or another tool's ``queue.parquet`` were deleted by the next
    sweep into that folder, which ``train`` and ``review import`` refuse to do (an outsider's
    report). A folder a sweep finished or began (riskrank's marker or ``report.json``) is
    a sweep's; without them, each file must tell by its contents: a table by its columns, a
    report by its first bytes (a plot by matplotlib's mark: ``rr.write_reports`` killed after
    the plot leaves it alone)."""
    if not out_dir.is_dir():
        return []
    present = [n for n in OUTPUTS if (out_dir / n).exists()]
    if not present or is_complete(out_dir) or _report_json(out_dir / "report.json"):
        return []
    return [name for name in present if not _ours(out_dir / name)]


def _report_json(path: Path) -> bool:
    about = read_json_object(path)
    return about is not None and ("run_id" in about or "items_in" in about)


def _ours(path: Path) -> bool:
    name = path.name
    if name in TABLE_COLUMNS:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            names = set(pq.read_schema(path).names)
        except (OSError, pa.ArrowException):
            return False
        return TABLE_COLUMNS[name] <= names
    if name in REPORT_HEADS:
        try:
            with open(path, "rb") as f:
                head = f.read(4096)
        except OSError:
            return False
        return REPORT_HEADS[name] in head
    return False


def begin(out_dir: Path, files: tuple[str, ...] = OUTPUTS) -> None:
    """Before a run writes ``files``: the marker goes first (a reader then never sees one
    beside missing files), then the previous run's ``files``, so none is left to pass as
    this run's. ``files=()``: the marker only (a run has started)."""
    (out_dir / MARKER).unlink(missing_ok=True)
    for name in files:
        (out_dir / name).unlink(missing_ok=True)


def complete(out_dir: Path, run_id: str | None, files: list[str]) -> Path:
    """The marker, written atomically once every output is: the run's id, the ``files`` it
    wrote (a sweep without reports lists no ``report.md``) and when it finished."""
    body = {
        "run_id": run_id,
        "files": [name for name in OUTPUTS if name in files and (out_dir / name).is_file()],
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return write_text_atomic(json.dumps(body, indent=2) + "\n", out_dir / MARKER)


def marker(out_dir: str | Path) -> dict | None:
    """The marker's contents; None where there is none (or it is unreadable)."""
    try:
        return json.loads((Path(out_dir) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_complete(out_dir: str | Path) -> bool:
    """Whether ``out_dir`` holds a finished sweep's outputs (its marker is there, and is
    riskrank's: Hadoop and Spark write an empty ``_SUCCESS``)."""
    about = marker(out_dir)
    return isinstance(about, dict) and "run_id" in about

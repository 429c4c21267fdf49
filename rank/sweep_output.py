"""Which files of a sweep's output directory belong to one finished run.

A sweep writes its files one after another (the queue, the candidates, ``report.json``, then
the reports a person reads). A run killed in between, or a consumer reading while it writes,
saw today's ``queue.parquet`` beside yesterday's ``report.md``, or a queue without its
reports, and could not tell that the run had died (an outsider's kill trial). So a run first
removes the marker and then the previous run's outputs, writes its own, and writes the marker
``_SUCCESS`` last: the name Hadoop and Spark jobs leave, which schedulers' file sensors
(Airflow, Luigi) already wait for. Its presence means that every file it lists is complete
and from one run; a consumer waits for it (or for the command's exit code).

The standing index under ``out_dir/index`` is not an output of this kind: it has its own
versions and commit (index/standing.py) and is never removed here.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from riskrank.index.schema import SIGNAL_FAILURES

MARKER = "_SUCCESS"
TABLES = ("queue.parquet", "candidates.parquet", "quarantine.parquet", SIGNAL_FAILURES)
REPORTS = ("report.md", "report.html", "report.png")
OUTPUTS = (*TABLES, "report.json", *REPORTS)


def begin(out_dir: Path, files: tuple[str, ...] = OUTPUTS) -> None:
    """Before a run writes ``files``: the marker goes first (a reader then never sees one
    beside missing files), then the previous run's ``files``, so none is left to pass as
    this run's."""
    (out_dir / MARKER).unlink(missing_ok=True)
    for name in files:
        (out_dir / name).unlink(missing_ok=True)


def complete(out_dir: Path) -> Path:
    """The marker, written atomically once every output is: which outputs the run left
    (a sweep without reports lists no ``report.md``) and when it finished."""
    body = {
        "files": [name for name in OUTPUTS if (out_dir / name).is_file()],
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = out_dir / MARKER
    tmp = path.with_name(f"{MARKER}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    tmp.replace(path)
    return path


def is_complete(out_dir: str | Path) -> bool:
    """Whether ``out_dir`` holds a finished sweep's outputs (its marker is there)."""
    return (Path(out_dir) / MARKER).is_file()

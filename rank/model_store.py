"""Saving a model directory as a whole: written aside, sealed with checksums, swapped in.

A retrain killed while saving used to leave a mixed directory (the new ranker next to the
old exemplars) that loaded without complaint. Here every file is written into a sibling
staging directory; ``model.json`` lists each file's sha256 and ``model.json.sha256`` seals
``model.json`` itself; only then does a rename put the directory in place. A kill at any
point leaves either the old model or the new one at ``path`` (or, between the two renames,
none: a clear error), never a mixture, and stale staging directories are cleaned by the
next save.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from riskrank.index.checksums import ChecksumError, checksum_files, files_under, verify_checksums
from riskrank.index.manifest import sha256_file, write_text_atomic
from riskrank.index.output_lock import pid_alive

MODEL_JSON = "model.json"
SEAL = MODEL_JSON + ".sha256"
_STAGING, _OLD = "saving", "old"


def _sibling(path: Path, kind: str) -> Path:
    return path.parent / f".{path.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def clean_stale(path: Path) -> list[Path]:
    """Remove staging/old siblings of ``path`` left by saves whose process is gone."""
    removed = []
    for kind in (_STAGING, _OLD):
        for p in path.parent.glob(f".{path.name}.{kind}-*"):
            try:
                pid = int(p.name.rsplit("-", 2)[1])
            except (IndexError, ValueError):
                continue
            if not pid_alive(pid) or pid == os.getpid():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def check_target(path: str | Path, keep: Sequence[str] = ()) -> None:
    """Never swap away a directory that is not a model (a user's ``--out .``): refuse a
    directory holding anything but a model and the ``keep`` entries."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a directory; choose a model directory")
    if (path / MODEL_JSON).exists():
        return
    foreign = sorted(p.name for p in path.iterdir() if p.name not in keep)
    if foreign:
        raise FileExistsError(
            f"{path} is not a riskrank model directory (it holds {foreign[:5]}); "
            f"save the model to a new or empty directory"
        )


@contextlib.contextmanager
def staged_directory(path: str | Path, *, keep: Sequence[str] = ()) -> Iterator[Path]:
    """Yield an empty staging directory beside ``path``; when the block ends without error
    (``seal`` must have been called inside), swap it in place of ``path``. Entries
    of the old directory named in ``keep`` (caches such as ``history_index``) are carried over
    unless the new one has its own."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_target(path, [*keep, MODEL_JSON, SEAL])
    clean_stale(path)
    stage = _sibling(path, _STAGING)
    stage.mkdir()
    try:
        yield stage
        if not (stage / SEAL).exists():
            raise RuntimeError(f"{stage}: staged directory was not sealed")
        for name in keep:
            if (path / name).exists() and not (stage / name).exists():
                os.replace(path / name, stage / name)
        old = _sibling(path, _OLD)
        if path.exists():
            os.replace(path, old)
        os.replace(stage, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def seal(stage: Path, meta: dict, *, unchecked: Sequence[str] = ()) -> None:
    """Write ``model.json`` (``meta`` + the sha256 of every file in ``stage`` except the
    top-level ``unchecked`` entries) and the seal over it."""
    files = files_under(stage, skip=[*unchecked, MODEL_JSON, SEAL])
    full = {**meta, "checksums": checksum_files(stage, files)}
    write_text_atomic(json.dumps(full, indent=2), stage / MODEL_JSON)
    write_text_atomic(sha256_file(stage / MODEL_JSON) + "\n", stage / SEAL)


def read_sealed(path: str | Path) -> dict:
    """``model.json`` of the model at ``path`` after checking its seal and every file's
    checksum; errors name the directory or the file."""
    path = Path(path)
    if not (path / MODEL_JSON).exists():
        leftovers = sorted(p.name for p in path.parent.glob(f".{path.name}.*-*"))
        hint = f"; an interrupted save left {leftovers}" if leftovers else ""
        todo = "run `riskrank train`"
        if (path / "pending.json").exists():  # rank/review.py PENDING_FILE (no import cycle)
            hint, todo = (
                ", but a `review import --no-retrain` history",
                (f"train it first: `riskrank review retrain {path} --out DIR`"),
            )
        raise FileNotFoundError(f"{path}: not a riskrank model (no {MODEL_JSON}){hint}; {todo}")
    if not (path / SEAL).exists():
        raise ChecksumError(
            f"{path}: model has no {SEAL} (saved by an older riskrank, or half-written); retrain it"
        )
    recorded = (path / SEAL).read_text().strip()
    if sha256_file(path / MODEL_JSON) != recorded:
        raise ChecksumError(
            f"{path / MODEL_JSON}: checksum mismatch with {path / SEAL} (one of them changed "
            f"or is corrupt); restore them or retrain"
        )
    try:
        meta = json.loads((path / MODEL_JSON).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChecksumError(f"{path / MODEL_JSON}: unreadable ({exc})") from exc
    if not isinstance(meta.get("checksums"), dict):
        raise ChecksumError(f"{path / MODEL_JSON}: no checksums recorded; retrain the model")
    verify_checksums(path, meta["checksums"], what="model")
    return meta

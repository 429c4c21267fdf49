"""sha256 checksums of the files of a saved directory, and their verification on load.

A flipped byte in a booster, a FAISS file or a Parquet table either crashes deep inside a
library (LightGBM can abort the process) or, worse, loads and gives other answers. Every
saved artefact is listed with its sha256, and a load checks them all before reading any,
naming the file that changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from riskrank.index.manifest import sha256_file
from riskrank.index.tables import SchemaError


class ChecksumError(SchemaError):
    """A saved file is missing, or its bytes differ from the checksum recorded at save time."""


def checksum_files(root: str | Path, files: Iterable[str]) -> dict[str, str]:
    """``{relative path: sha256}`` for ``files`` under ``root``."""
    root = Path(root)
    return {f: sha256_file(root / f) for f in sorted(files)}


def files_under(root: str | Path, *, skip: Iterable[str] = ()) -> list[str]:
    """Every regular file under ``root`` as a relative POSIX path, leaving out the top-level
    entries named in ``skip``."""
    root = Path(root)
    skipped = set(skip)
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] not in skipped
    )


def verify_checksums(root: str | Path, checksums: dict[str, str], *, what: str) -> None:
    """Raise ``ChecksumError`` naming the first file of ``checksums`` that is missing or
    changed (``what``: e.g. "model" or "index", for the message)."""
    root = Path(root)
    for name, digest in sorted(checksums.items()):
        path = root / name
        if not path.is_file():
            raise ChecksumError(f"{path}: missing from the {what} (saved with it, now gone)")
        if sha256_file(path) != digest:
            raise ChecksumError(
                f"{path}: checksum mismatch, the file changed or is corrupt since the {what} "
                f"was saved; restore it or save the {what} again"
            )

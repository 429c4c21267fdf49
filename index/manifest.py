"""How an index directory is described and trusted: the manifest, checksums, digests.

Every engine writes its manifest through ``write_manifest`` (atomically, last: a directory
without one is never mistaken for a finished index) and names files by the same digests.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def sha256_file(path: str | Path, length: int | None = None) -> str:
    """Hex sha256 of a file's bytes (first ``length`` hex digits if given), read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length] if length else h.hexdigest()


def ids_digest(ids: Iterable[object]) -> str:
    """A short digest of a sequence of ids (order matters)."""
    return hashlib.sha256("\x1f".join(str(i) for i in ids).encode()).hexdigest()[:16]


def package_version(name: str = "riskrank", missing: str = "dev") -> str:
    """The installed version of distribution ``name`` (``missing`` when not installed)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return missing


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_json_object(path: str | Path) -> dict | None:
    """``path``'s JSON object; None where the file is missing or unreadable, is not JSON (an
    empty file, another tool's text) or holds something other than an object. For telling
    riskrank's own files from others'; a file that must be read fails loudly elsewhere."""
    try:
        about = json.loads(Path(path).read_text())
    except (OSError, ValueError):  # (UnicodeDecodeError and JSONDecodeError are ValueErrors)
        return None
    return about if isinstance(about, dict) else None


def write_text_atomic(text: str, path: str | Path) -> Path:
    """Write ``text`` through a per-process temp file and a rename (never half a file)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_json_atomic(data: dict, path: str | Path) -> Path:
    """Write ``data`` as JSON through a per-process temp file and a rename."""
    return write_text_atomic(json.dumps(data, indent=2), path)


SELF_DIGEST = "manifest_sha256"


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's content (canonical JSON, without its own digest): a flipped
    byte in ``nprobe``, a count or an index key is noticed like one in a data file."""
    body = {k: v for k, v in manifest.items() if k != SELF_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_manifest(path: str | Path, manifest: dict) -> Path:
    """The index's manifest, with the format version, riskrank version, time and its own
    digest added."""
    full = {
        "format_version": FORMAT_VERSION,
        "riskrank_version": package_version(),
        "created_at": utc_now(),
        **manifest,
    }
    full[SELF_DIGEST] = manifest_digest(full)
    return write_json_atomic(full, Path(path) / MANIFEST)

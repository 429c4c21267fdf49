"""Where an ``image_path`` may point, and how much of it may be read.

Inventories come from outside: a path value is untrusted input. ``../../etc/passwd``, an
absolute path, a ``file://`` URI or a symlink planted in the image folder must not make a sweep
read (and embed, and write evidence about) files outside the directory the operator named, and
a 1 GiB file must not be read whole into memory to find out it is not an image. Every reader
of image paths (decoding, the content digest) resolves through ``resolve_image_path``.

>>> resolve_image_path("../secret.png", "/srv/images")[1]
"image_path escapes the base directory '/srv/images': '../secret.png'"
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

# Above any real ad creative or product photo; far below what hurts a worker's memory.
DEFAULT_MAX_IMAGE_BYTES = 50 * 2**20
MAX_IMAGE_BYTES_ENV = "RISKRANK_MAX_IMAGE_BYTES"
REMOTE_SCHEMES = ("http", "https", "s3", "gs", "ftp")
EMPTY_IMAGE = "image is empty (0 bytes)"  # a file or bytes: one content, one reason
NOT_FOUND = "image file not found"  # the reason for a path that names no file


def max_image_bytes(explicit: int | None = None) -> int:
    """The byte cap for one image file: ``explicit``, else ``$RISKRANK_MAX_IMAGE_BYTES``, else
    50 MiB. The environment variable reaches every signal (and Ray worker) without new flags."""
    if explicit is not None:
        value = explicit
    else:
        raw = os.environ.get(MAX_IMAGE_BYTES_ENV)
        try:
            value = int(raw) if raw else DEFAULT_MAX_IMAGE_BYTES
        except ValueError as exc:
            raise ValueError(f"${MAX_IMAGE_BYTES_ENV}={raw!r} is not an integer") from exc
    if value <= 0:
        raise ValueError(f"max image bytes must be positive, got {value}")
    return value


def _within(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def not_found_in(value: str | os.PathLike, base_dirs) -> bool:
    """Whether no directory of ``base_dirs`` holds the file ``value`` names (a remote URL, a
    path outside the folder or an unreadable file is no missing file)."""
    return all(str(resolve_image_path(value, d)[1]).startswith(NOT_FOUND) for d in base_dirs)


def resolve_image_path(
    value: str | os.PathLike, base_dir: str | os.PathLike | None
) -> tuple[Path | None, str | None]:
    """The real file ``value`` names inside ``base_dir`` (the working directory when None), or
    ``(None, reason)``. Symlinks are resolved before the check, so a link inside the folder
    that points outside it is refused too; so are devices, FIFOs and directories."""
    text = str(value).strip()
    if "\x00" in text:  # (the OS refuses it: "embedded null byte" stopped a whole sweep)
        return None, f"image_path holds a NUL character: {text!r}"
    parsed = urlparse(text)
    if parsed.scheme in REMOTE_SCHEMES:
        return None, f"remote URIs are not fetched: {text!r} (download the images, then index)"
    if parsed.scheme == "file":
        candidate = Path(unquote(parsed.path))
    elif parsed.scheme and len(parsed.scheme) > 1:  # one letter is a Windows drive, not a scheme
        return None, f"unsupported image URI scheme {parsed.scheme!r}: {text!r}"
    else:
        candidate = Path(text)
    root = Path(base_dir if base_dir is not None else os.getcwd()).resolve()
    joined = candidate if candidate.is_absolute() else root / candidate
    # Lexical check first: '../x' is refused whether or not x exists (no probing outside).
    if not _within(Path(os.path.normpath(joined)), root):
        return None, f"image_path escapes the base directory '{root}': {text!r}"
    try:
        real = joined.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        return None, f"{NOT_FOUND}: {str(joined)!r}"
    except (OSError, RuntimeError) as exc:  # symlink loops, permissions
        return None, f"cannot resolve image path {text!r}: {exc}"
    if not _within(real, root):
        return None, f"image_path escapes the base directory '{root}' (via a symlink): {text!r}"
    if not real.is_file():
        return None, f"image_path is not a regular file: {text!r}"
    return real, None


def read_capped(path: Path, max_bytes: int | None = None) -> tuple[bytes | None, str | None]:
    """The bytes of ``path``, refused with a reason when larger than the cap. The size is
    checked before reading, and the read itself stops one byte past the cap (a file that grows,
    or lies about its size, is still refused without being read whole)."""
    cap = max_image_bytes(max_bytes)
    try:
        size = path.stat().st_size
        if size > cap:
            return None, f"image file too large: {size:,} bytes > cap {cap:,}: {str(path)!r}"
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except OSError as exc:
        return None, f"cannot read image file {str(path)!r}: {exc}"
    if len(data) > cap:
        return None, f"image file too large: more than cap {cap:,} bytes: {str(path)!r}"
    return data, None


def read_image_file(
    value: str | os.PathLike, base_dir: str | os.PathLike | None, max_bytes: int | None = None
) -> tuple[bytes | None, str | None]:
    """The bytes of the image file an ``image_path`` names (resolved inside ``base_dir``,
    capped), or ``(None, reason)``: what an image signal reads, and what a review history
    keeps of a reviewed picture."""
    resolved, reason = resolve_image_path(value, base_dir)
    if resolved is None:
        return None, reason
    data, reason = read_capped(resolved, max_bytes)
    if data is not None and len(data) == 0:
        # No path and no source in the reason: every empty picture, file or bytes, is one
        # content (one key), and a standing index lists the reason it remembered for that
        # key under each item that has it (an empty file was listed as empty image_bytes).
        return None, EMPTY_IMAGE
    return data, reason

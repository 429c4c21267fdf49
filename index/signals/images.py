"""Bytes or a path in, one RGB ``PIL.Image`` out, or the reason why not.

Inventory images come from scrapers, uploads and exports: truncated files, zero-byte blobs,
decompression bombs, CMYK print JPEGs, 16-bit PNGs, transparent logos, animated GIFs and phone
photos whose pixels are stored sideways. Every image signal decodes through here, so they all
see the same pixels, and a bad row becomes a reason string instead of an exception.

>>> image, reason = decode_image(None, None)
>>> (image, reason)                       # no image at all: a missing modality, not an error
(None, None)
>>> decode_image(b"", None)[1]
'image is empty (0 bytes)'
"""

from __future__ import annotations

import base64
import io
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image, ImageOps, UnidentifiedImageError

from riskrank.index.paths import EMPTY_IMAGE, read_image_file
from riskrank.index.schema import IMAGE_BYTES, IMAGE_PATH
from riskrank.index.signals.base import CliOption

# 8192 x 8192: above any camera or screenshot, below what takes seconds and gigabytes to decode.
DEFAULT_MAX_PIXELS = 8192 * 8192
# The CLI flag every image-reading signal shares (declared once so the flags agree).
IMAGE_BASE_DIR_OPTION = CliOption(
    "--image-base-dir", "base_dir", "directory that image_path values are relative to"
)
WHITE = (255, 255, 255)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


# Reasons that may not recur for the same bytes (memory pressure, an unexpected error): a
# standing index lists them but tries that content again (index/standing.py).
OUT_OF_MEMORY = "image too large: out of memory while decoding"
UNEXPECTED_DECODE = "cannot decode image: "
UNEXPECTED_PREPARE = "cannot prepare image for the model: "
# The file behind an image_path was rewritten between the update digesting it and the
# signal reading it: the vector may be of other bytes than the key names.
CHANGED_WHILE_READ = "image file changed while the update read it"
PASSING_FAILURES = (OUT_OF_MEMORY, UNEXPECTED_DECODE, UNEXPECTED_PREPARE, CHANGED_WHILE_READ)


def reads_only_pictures(signal) -> bool:
    """Whether ``signal`` (an instance or a class) reads nothing but an item's picture: an
    image signal. One that reads every column (a plug-in's default) may hold an item by its
    text alone."""
    cols = set(getattr(signal, "content_columns", ()))
    return IMAGE_BYTES in cols and cols <= {IMAGE_BYTES, IMAGE_PATH}


UNRECOGNISED = "not a recognised image format"
# What the encoded formats a decoder reads begin with (PNG, JPEG, GIF, WebP, BMP, TIFF).
_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF", b"BM", b"II*\x00", b"MM\x00*")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_")
_URL_SAFE = bytes.maketrans(b"-_", b"+/")


def _as_text(data: bytes | memoryview) -> str:
    """The end of an unrecognised picture's reason: where the bytes are hex or base64 text of
    a picture (an export that wrote its pictures as text into a binary column took every
    picture away without a word: an outsider's report), say so; otherwise "(corrupt, or not
    an image)"."""
    head = bytes(data[:160]).strip().strip(b"\"'").strip()
    if head[:5].lower() == b"data:" and b"," in head:  # a data URI: data:image/png;base64,...
        head = head.split(b",", 1)[1]
    if head[:2].lower() in (b"0x", b"\\x"):
        head = head[2:]
    head = b"".join(head.split())[:64]  # (spaced hex, base64 in lines)
    decoded, kind = b"", ""
    if len(head) >= 8 and set(head) <= _HEX:
        decoded, kind = bytes.fromhex(head[: len(head) // 2 * 2].decode()), "hex"
    elif len(head) >= 8 and set(head) <= _BASE64:
        text = head.translate(_URL_SAFE)
        try:
            decoded, kind = base64.b64decode(text[: len(text) // 4 * 4]), "base64"
        except ValueError:
            pass
    if decoded.startswith(_SIGNATURES):
        return (
            f": the bytes are {kind} text of a picture, not the picture (decode the {kind} "
            "text into the picture's bytes first)"
        )
    return " (corrupt, or not an image)"


def _open_source(
    data: bytes | None,
    path: str | os.PathLike | None,
    base_dir: str | os.PathLike | None,
    max_bytes: int | None = None,
) -> tuple[io.BytesIO | None, str | None]:
    """Pick what to open: bytes win over a path (the bytes are what the platform served).
    A path must stay inside ``base_dir`` and under the byte cap (index/paths.py)."""
    if data is not None:
        if len(data) == 0:
            return None, EMPTY_IMAGE
        return io.BytesIO(bytes(data)), None
    if path is None or str(path).strip() == "":
        return None, None
    data, reason = read_image_file(path, base_dir, max_bytes)
    return (io.BytesIO(data), None) if data is not None else (None, reason)


def _sixteen_bit_to_l(image: Image.Image) -> Image.Image:
    """PIL's own convert clips 16-bit values at 255 (an all-white image); rescale instead."""
    arr = np.asarray(image, dtype=np.float64)
    if image.mode == "I" and arr.size and arr.max() <= 255:
        scaled = arr  # 32-bit container holding 8-bit values (some TIFF writers)
    else:
        scaled = arr / 257.0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Convert any PIL mode to RGB the way a viewer would show it.

    Transparency is composited on ``background`` (white, as browsers show most pages) rather
    than dropped: a naive ``convert("RGB")`` keeps the colour under fully transparent pixels,
    which can be anything and is never what a viewer sees.
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        image = _sixteen_bit_to_l(image)
    elif image.mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        arr = arr * 255.0 if arr.size and arr.max() <= 1.0 else arr
        image = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if image.mode == "RGB":
        return image
    return image.convert("RGB")


def decode_image(
    data: bytes | None,
    path: str | os.PathLike | None = None,
    base_dir: str | os.PathLike | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
    max_bytes: int | None = None,
) -> tuple[Image.Image | None, str | None]:
    """Decode one image to RGB. Returns ``(image, None)``, ``(None, reason)`` or ``(None, None)``.

    ``data`` (encoded bytes) wins over ``path``; a relative ``path`` is resolved against
    ``base_dir`` (default: the working directory) and must not leave it, symlinks resolved;
    ``file://`` URIs inside it are read, ``http(s)://`` ones are refused (no network). Files
    over ``max_bytes`` (default 50 MiB, or ``$RISKRANK_MAX_IMAGE_BYTES``) are refused unread.
    Animated images give their first frame; EXIF orientation is applied. ``max_pixels`` refuses
    decompression bombs before their pixels are allocated. ``draft_size`` lets JPEG decode at
    1/2, 1/4 or 1/8 scale while both sides stay >= ``draft_size`` (several times faster for
    camera photos; pass the size the model needs).

    Never raises for bad content: ``(None, None)`` means the row has no image (normal),
    ``(None, reason)`` means it has one that cannot be used.
    """
    source, reason = _open_source(data, path, base_dir, max_bytes)
    if source is None:
        return None, reason
    try:
        with warnings.catch_warnings():
            # PIL only warns between its limit and twice it; a bomb is a bomb either way.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                return None, (
                    f"image too large: {width}x{height} = {width * height:,} pixels > "
                    f"max_pixels {max_pixels:,} (decompression bomb guard)"
                )
            if draft_size and image.format == "JPEG":
                image.draft(None, (draft_size, draft_size))
            image.load()  # decode now, inside the guard: truncation surfaces here, not later
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return None, f"image too large (decompression bomb guard): {exc}"
    except UnidentifiedImageError:
        return None, UNRECOGNISED + _as_text(source.getbuffer()[:160])
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return None, f"image is truncated or corrupt: {exc}"
    except MemoryError:
        return None, OUT_OF_MEMORY
    try:
        image = ImageOps.exif_transpose(image) or image
    except Exception:  # a broken EXIF block must not cost us the pixels
        pass
    try:
        return to_rgb(image), None
    except Exception as exc:  # exotic modes (LAB, ...) become a reason
        return None, f"cannot convert {image.mode} image to RGB: {exc}"


def decode_images(
    table: pa.Table,
    *,
    base_dir: str | os.PathLike | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
    workers: int | None = None,
    max_bytes: int | None = None,
    transform: Callable[[Image.Image], Any] | None = None,
) -> tuple[list[Any], list[str | None]]:
    """Decode the image of every row of ``table`` (``image_bytes`` and/or ``image_path``).

    Returns ``(images, reasons)`` aligned with the rows, with the meaning of ``decode_image``.
    A table without image columns gives all ``(None, None)``. Decoding runs on ``workers``
    threads (PIL releases the GIL while decoding); keep ``table`` to a batch, since every
    decoded image is held in memory.

    ``transform`` (e.g. a model's resize/crop/normalise) runs on each decoded image in the same
    worker thread, and its result takes the image's place; one that raises makes the row
    ``(None, reason)``. It must be thread-safe.
    """
    n = table.num_rows
    datas: Sequence[bytes | None] = (
        table.column(IMAGE_BYTES).to_pylist() if IMAGE_BYTES in table.column_names else [None] * n
    )
    paths: Sequence[str | None] = (
        table.column(IMAGE_PATH).to_pylist() if IMAGE_PATH in table.column_names else [None] * n
    )

    def one(i: int) -> tuple[Any, str | None]:
        try:
            image, reason = decode_image(
                datas[i], paths[i], base_dir, max_pixels, draft_size, max_bytes
            )
        except Exception as exc:  # a batch job quarantines, it never dies
            return None, f"{UNEXPECTED_DECODE}{type(exc).__name__}: {exc}"
        if image is None or transform is None:
            return image, reason
        try:
            return transform(image), None
        except Exception as exc:
            return None, f"{UNEXPECTED_PREPARE}{type(exc).__name__}: {exc}"

    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    if workers <= 1 or n <= 1:
        results = [one(i) for i in range(n)]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, range(n)))
    return [r[0] for r in results], [r[1] for r in results]

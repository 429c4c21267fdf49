"""Decoding: every awkward image either becomes correct RGB pixels or a reason, never a crash."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from riskrank.index.signals.images import decode_image, decode_images, to_rgb

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def close(pixel, expected, tol: int = 12) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, expected, strict=True))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` but carries almost no data: a bomb's shape."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_no_image_is_not_an_error():
    assert decode_image(None, None) == (None, None)
    assert decode_image(None, "  ") == (None, None)


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", "empty (0 bytes)"),
        (b"this is not an image at all", "not a recognised image format"),
        (encode(Image.new("RGB", (64, 64), RED), "JPEG")[:300], "truncated or corrupt"),
        (encode(Image.new("RGB", (64, 64), RED), "PNG")[:60], "truncated or corrupt"),
    ],
    ids=["zero-bytes", "garbage", "truncated-jpeg", "truncated-png"],
)
def test_bad_bytes_give_a_reason(data, expected):
    image, reason = decode_image(data, None)
    assert image is None
    assert expected in reason


@pytest.mark.parametrize(
    "encoding", ["hex", "base64", "urlsafe_base64", "data_uri", "0x_hex", "spaced_hex", "lines"]
)
def test_a_picture_written_as_text_is_named_so(encoding):
    """Pictures an export wrote as hex or base64 text into a binary column: the reason says
    what to do, not only "corrupt" (an outsider's report)."""
    import base64

    png = encode(Image.new("RGB", (64, 64), RED), "PNG")
    spaced = " ".join(png.hex()[i : i + 2] for i in range(0, 2 * len(png), 2))
    data = {
        "hex": png.hex().encode(),
        "base64": base64.b64encode(png),
        "urlsafe_base64": base64.urlsafe_b64encode(png),
        "data_uri": b"data:image/png;base64," + base64.b64encode(png),
        "0x_hex": b"0x" + png.hex().encode(),
        "spaced_hex": spaced.encode(),
        "lines": base64.encodebytes(png),
    }[encoding]
    image, reason = decode_image(data, None)
    assert image is None
    kind = "hex" if "hex" in encoding else "base64"
    assert f"the bytes are {kind} text of a picture" in reason
    # Text that is no picture's stays "corrupt, or not an image".
    assert "(corrupt, or not an image)" in decode_image(b"deadbeefcafe0123", None)[1]


def test_decompression_bomb_is_refused_before_decoding():
    # 50,000 x 50,000 = 2.5 G pixels declared in a few dozen bytes.
    image, reason = decode_image(png_header_only(50_000, 50_000), None)
    assert image is None and "too large" in reason and "bomb" in reason
    # Our own limit applies below PIL's: a plain 64x64 image over max_pixels=1000.
    small = encode(Image.new("RGB", (64, 64), RED))
    image, reason = decode_image(small, None, max_pixels=1000)
    assert image is None and "4,096 pixels > max_pixels 1,000" in reason
    assert decode_image(small, None, max_pixels=None)[0] is not None


def test_cmyk_jpeg_becomes_rgb():
    image, reason = decode_image(encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"))
    assert reason is None and image.mode == "RGB"
    assert close(image.getpixel((16, 16)), RED, tol=20)


def test_16_bit_grey_is_rescaled_not_clipped():
    arr = np.full((16, 16), 32_768, np.uint16)  # mid-grey in 16 bits
    arr[:, 8:] = 65_535
    image, reason = decode_image(encode(Image.fromarray(arr)), None)
    assert reason is None and image.mode == "RGB"
    assert close(image.getpixel((2, 2)), (128, 128, 128), tol=2)  # naive convert gives 255
    assert image.getpixel((12, 2)) == WHITE


def test_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    image, _ = decode_image(encode(rgba), None)
    assert image.getpixel((5, 5)) == WHITE  # a naive convert("RGB") would show red
    assert image.getpixel((0, 0)) == RED
    la = Image.new("LA", (8, 8), (0, 0))
    la.putpixel((0, 0), (0, 255))
    image, _ = decode_image(encode(la), None)
    assert image.getpixel((5, 5)) == WHITE and image.getpixel((0, 0)) == (0, 0, 0)


def test_palette_with_transparency():
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 255, 0] + [0, 0, 255] + [0] * 762)  # index 0 green, 1 blue
    pal.putpixel((0, 0), 1)
    image, reason = decode_image(encode(pal, transparency=0), None)
    assert reason is None
    assert image.getpixel((5, 5)) == WHITE  # transparent green is not shown
    assert image.getpixel((0, 0)) == BLUE


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_image_gives_first_frame(fmt):
    frames = [Image.new("RGB", (16, 16), c) for c in (RED, BLUE, (0, 255, 0))]
    data = encode(
        frames[0],
        fmt,
        save_all=True,
        append_images=frames[1:],
        duration=50,
        loop=0,
        **({"lossless": True} if fmt == "WEBP" else {}),
    )
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    image, reason = decode_image(data, None)
    assert reason is None and close(image.getpixel((8, 8)), RED)


def test_exif_orientation_is_applied():
    wide = Image.new("RGB", (40, 20), RED)
    wide.paste(BLUE, (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: the viewer rotates 90 degrees clockwise
    image, _ = decode_image(encode(wide, "JPEG", exif=exif.tobytes(), quality=95), None)
    assert image.size == (20, 40)
    assert close(image.getpixel((10, 5)), RED, 30) and close(image.getpixel((10, 35)), BLUE, 30)


def test_to_rgb_leaves_rgb_alone():
    rgb = Image.new("RGB", (2, 2), BLUE)
    assert to_rgb(rgb) is rgb


def test_paths_are_resolved_and_remote_uris_refused(tmp_path):
    (tmp_path / "a.png").write_bytes(encode(Image.new("RGB", (8, 8), RED)))
    (tmp_path / "empty.png").write_bytes(b"")
    assert decode_image(None, "a.png", base_dir=tmp_path)[0].getpixel((1, 1)) == RED
    assert decode_image(None, (tmp_path / "a.png").as_uri(), base_dir=tmp_path)[0] is not None
    assert "not found" in decode_image(None, "missing.png", base_dir=tmp_path)[1]
    assert "empty" in decode_image(None, "empty.png", base_dir=tmp_path)[1]
    assert "remote URIs are not fetched" in decode_image(None, "https://x.test/a.png")[1]


def test_decode_images_over_a_table_keeps_row_order(tmp_path):
    (tmp_path / "b.png").write_bytes(encode(Image.new("RGB", (8, 8), BLUE)))
    table = pa.table(
        {
            "item_id": ["bytes", "path", "none", "bad", "both"],
            "image_bytes": pa.array(
                [
                    encode(Image.new("RGB", (8, 8), RED)),
                    None,
                    None,
                    b"\x00junk",
                    encode(Image.new("RGB", (8, 8), RED)),
                ],
                pa.binary(),
            ),
            "image_path": [None, "b.png", None, None, "b.png"],
        }
    )
    images, reasons = decode_images(table, base_dir=tmp_path, workers=2)
    assert images[0].getpixel((0, 0)) == RED
    assert images[1].getpixel((0, 0)) == BLUE
    assert (images[2], reasons[2]) == (None, None)
    assert images[3] is None and "not a recognised" in reasons[3]
    assert images[4].getpixel((0, 0)) == RED  # bytes win over the path
    no_columns = decode_images(pa.table({"item_id": ["x"], "text": ["t"]}))
    assert no_columns == ([None], [None])

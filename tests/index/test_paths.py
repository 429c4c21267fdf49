"""Image paths are untrusted input: they stay inside the base directory, and big files are
refused before they are read."""

from __future__ import annotations

import io
import os

import pyarrow as pa
import pytest
from PIL import Image

from riskrank.index.paths import max_image_bytes, read_capped, resolve_image_path
from riskrank.index.signals.images import decode_image, decode_images


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def layout(tmp_path):
    base, outside = tmp_path / "images", tmp_path / "private"
    base.mkdir()
    outside.mkdir()
    (base / "ok.png").write_bytes(_png())
    (outside / "secret.png").write_bytes(_png())
    os.symlink(outside / "secret.png", base / "link.png")
    os.symlink(outside, base / "linkdir")
    (base / "inner.png").symlink_to(base / "ok.png")  # a link that stays inside is fine
    return base, outside


def test_paths_outside_the_base_dir_are_refused_with_a_reason(layout):
    base, outside = layout
    refused = [
        "../private/secret.png",
        str(outside / "secret.png"),
        (outside / "secret.png").as_uri(),
        "link.png",
        "linkdir/secret.png",
        "/etc/passwd",
        "/proc/self/environ",
        "sub/../../private/secret.png",
    ]
    for value in refused:
        image, reason = decode_image(None, value, base_dir=base)
        assert image is None and "escapes the base directory" in reason, (value, reason)
    for value in ["ok.png", str(base / "ok.png"), (base / "ok.png").as_uri(), "inner.png"]:
        image, reason = decode_image(None, value, base_dir=base)
        assert image is not None and reason is None, (value, reason)


def test_without_a_base_dir_paths_stay_in_the_working_directory(layout, monkeypatch):
    base, outside = layout
    monkeypatch.chdir(base)
    assert decode_image(None, "ok.png")[0] is not None
    assert "escapes" in decode_image(None, str(outside / "secret.png"))[1]
    assert "escapes" in decode_image(None, "/etc/passwd")[1]


def test_devices_and_directories_are_not_read(tmp_path):
    (tmp_path / "dir.png").mkdir()
    assert "not a regular file" in resolve_image_path("dir.png", tmp_path)[1]
    os.mkfifo(tmp_path / "pipe.png")  # reading a FIFO would block the sweep forever
    assert "not a regular file" in resolve_image_path("pipe.png", tmp_path)[1]


def test_files_over_the_cap_are_refused_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    with open(big, "wb") as f:  # sparse: 1 GiB on paper, nothing on disk
        f.truncate(2**30)
    opened = []
    real_open = open

    def spy(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    image, reason = decode_image(None, "big.png", base_dir=tmp_path)
    assert image is None and "too large" in reason and "1,073,741,824" in reason
    assert str(big) not in opened  # refused on its size, never opened
    monkeypatch.setattr("builtins.open", real_open)

    (tmp_path / "small.png").write_bytes(_png())
    size = (tmp_path / "small.png").stat().st_size
    assert read_capped(tmp_path / "small.png", size)[0] is not None
    assert "too large" in read_capped(tmp_path / "small.png", size - 1)[1]
    monkeypatch.setenv("RISKRANK_MAX_IMAGE_BYTES", str(size - 1))
    assert max_image_bytes() == size - 1
    assert "too large" in decode_image(None, "small.png", base_dir=tmp_path)[1]
    monkeypatch.setenv("RISKRANK_MAX_IMAGE_BYTES", "lots")
    with pytest.raises(ValueError, match="RISKRANK_MAX_IMAGE_BYTES"):
        max_image_bytes()


def test_a_table_of_hostile_paths_quarantines_each_row(layout):
    base, outside = layout
    table = pa.table(
        {
            "item_id": ["good", "up", "abs", "link"],
            "image_path": [
                "ok.png",
                "../private/secret.png",
                str(outside / "secret.png"),
                "link.png",
            ],
        }
    )
    images, reasons = decode_images(table, base_dir=base, workers=1)
    assert images[0] is not None and reasons[0] is None
    assert all(i is None and "escapes" in r for i, r in zip(images[1:], reasons[1:]))


def test_a_nul_in_one_path_is_that_rows_reason_not_the_sweeps_end(
    layout, hashing_model, seeds, inventory_items
):
    """Outsider CD: one image_path holding a NUL byte stopped a whole sweep (or train), even
    under a text-only model, with the OS's 'embedded null byte' and no row named."""
    import riskrank as rr

    base, _ = layout
    assert resolve_image_path("a\x00b.png", base) == (
        None, "image_path holds a NUL character: 'a\\x00b.png'"
    )  # fmt: skip
    table = pa.table({"item_id": ["nul", "good"], "image_path": ["a\x00b.png", "ok.png"]})
    images, reasons = decode_images(table, base_dir=base, workers=1)
    assert images[0] is None and "NUL" in reasons[0] and reasons[1] is None
    # A text-only model's sweep of an inventory with such a row: swept, the row by its text.
    inv = inventory_items.drop(["label"])
    paths = ["a\x00b.png"] + [None] * (inv.num_rows - 1)
    inv = inv.append_column("image_path", pa.array(paths, pa.string()))
    result = rr.sweep(inv, seeds, hashing_model, show_progress=False)
    assert result.report["items_indexed"] == inv.num_rows

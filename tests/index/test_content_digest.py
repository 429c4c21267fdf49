"""Row digests: the same bytes, however they are computed, as the digests an earlier riskrank
stored (a standing index's content keys, a review's text digest): a change would mark every
item changed and re-embed the whole inventory on the next daily sweep."""

import pyarrow as pa
import pytest

from riskrank.index import content_digest
from riskrank.index.content_digest import row_digests

# Per keyword set, the digests ``row_digests`` gave for ``mixed_table`` cell by cell, before
# string columns were encoded by Arrow (computed with the code of b8db320).
CASES = [
    {},
    {"skip_nulls": True},
    {"columns": ["item_id", "text", "n", "x", "cat", "big", "image_path"], "images": "cells"},
    {"columns": ["item_id", "text", "image_bytes", "image_path"], "text_as_seen": True},
    {"columns": ["item_id", "image_bytes", "n"], "images": "cells"},
    {"columns": ["item_id", "image_bytes", "n"], "images": "cells", "skip_nulls": True},
]
EXPECTED = [
    "fad9ee47d6bb8f89 3ee80fa8ff6e3d22 96ce6eaa7cb306c5 857d837e8cb4e42d 28a77520faed45ce".split(),
    "fad9ee47d6bb8f89 1aeead8567c71d51 96ce6eaa7cb306c5 857d837e8cb4e42d 4fc0c3941bf1e26d".split(),
    "3a735f48d393e617 a0564b067b5a601a 064a34986ec01495 28f79be55adbc329 693a40879839457e".split(),
    "070fd866e2af866a 3ee80fa8ff6e3d22 96ce6eaa7cb306c5 d4afa21342df7f8b 28a77520faed45ce".split(),
    "285619a8b72ce023 29616007e12a0a75 97100aeebc92ae73 33a5a7b7eeff8a25 3cf4b48b272be8e2".split(),
    "285619a8b72ce023 569f6ecae0e308a0 501bbd6a354f43ee 33a5a7b7eeff8a25 7c12923e691b896f".split(),
]


def mixed_table(folder) -> pa.Table:
    """Strings with nulls, empty, non-ASCII and invalid UTF-8 cells, a large string column, a
    dictionary column, numbers with NaN, picture bytes and paths."""
    (folder / "a.png").write_bytes(b"\x89PNG picture a")
    (folder / "b.png").write_bytes(b"\x89PNG picture b")
    bad = pa.array([b"ok", b"\xff\xfe not utf-8", None, b"", b"x"], pa.binary()).view(pa.string())
    return pa.table(
        {
            "item_id": ["ad-1", "ad-2", "ad-3", "ad-4", "ad-5"],
            "text": ["héllo\r\nworld", None, "", "e\u0301", "plain"],
            "n": [1, None, 3, -4, 5],
            "x": [0.5, float("nan"), None, float("inf"), -0.0],
            "cat": pa.array(["a", "b", None, "a", "b"]).dictionary_encode(),
            "big": pa.array(["x" * 3, None, "y", "", "z"], pa.large_string()),
            "image_bytes": [b"pic", None, None, b"pic", None],
            "image_path": [None, "a.png", "b.png", "a.png", None],
            "raw": bad,
        }
    )


@pytest.mark.parametrize("case", range(len(CASES)))
def test_row_digests_are_the_ones_stored_before(tmp_path, case, monkeypatch):
    table = mixed_table(tmp_path)
    got = row_digests(table, base_dirs=[str(tmp_path)], **CASES[case])
    assert got == EXPECTED[case]
    # Rows holding more bytes than a slice may are digested in smaller slices, alike.
    monkeypatch.setattr(content_digest, "_BATCH_BYTES", 40)
    assert row_digests(table, base_dirs=[str(tmp_path)], **CASES[case]) == EXPECTED[case]


def test_an_invalid_utf8_column_digests_as_before(tmp_path):
    table = mixed_table(tmp_path)
    assert row_digests(table, columns=["item_id", "raw"]) == RAW
    many = pa.concat_tables([table] * 2000)  # past one batch of rows (8,192)
    assert row_digests(many, columns=["item_id", "raw"]) == RAW * 2000


RAW = [
    "d652c9331a8b0fef",
    "d0999e5608e08755",
    "e6cd3bc7743e1b27",
    "8482c46e90506156",
    "aef5cb91de8926f9",
]


def test_a_large_dictionary_does_not_cut_slices_to_one_row(monkeypatch):
    """A slice's ``nbytes`` counts its whole dictionary: one past the slice limit cut every
    slice to a single row (8x slower on an 80 MiB categorical column, a reviewer measured)."""
    words = [f"category {i} " + "x" * 200 for i in range(500)]
    table = pa.table(
        {
            "item_id": [f"ad-{i}" for i in range(40)],
            "text": pa.DictionaryArray.from_arrays(pa.array(range(40), pa.int32()), words),
        }
    )
    assert table["text"].nbytes > 100_000
    monkeypatch.setattr(content_digest, "_BATCH_BYTES", 10_000)
    assert len(list(content_digest._row_slices(table))) == 1
    # A pandas Series of picture digests is read by position, past a slice too.
    pd = pytest.importorskip("pandas")
    monkeypatch.setattr(content_digest, "_BATCH", 16)
    shas = pd.Series([None] * 40, index=range(100, 140))
    assert row_digests(table, picture_shas=shas) == row_digests(table)


def test_a_picture_file_s_recorded_digest_stands_in_for_the_file(tmp_path, monkeypatch):
    """A standing version records the sha256 of each picture file it read
    (``picture_file_sha``): given instead of the file, a row digests as it did with the file,
    so a sweep without the folder still tells a reviewed picture unchanged. No digest where
    the file was not read alike in every folder, or is oversized."""
    import hashlib

    from riskrank.index.content_digest import picture_file_sha

    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    (one / "a.png").write_bytes(b"\x89PNG picture a")
    (two / "a.png").write_bytes(b"\x89PNG another picture")
    table = pa.table({"item_id": ["ad-1"], "text": ["t"], "image_path": ["a.png"]})
    sha = picture_file_sha("a.png", [one])
    assert sha == hashlib.sha256(b"\x89PNG picture a").digest()
    with_file = row_digests(table, base_dirs=[one])
    (one / "a.png").unlink()
    assert row_digests(table, base_dirs=[one]) != with_file  # the file gone: another content
    assert row_digests(table, base_dirs=[one], picture_shas=[sha]) == with_file
    assert picture_file_sha("a.png", [one]) is None  # not found
    assert picture_file_sha("a.png", [two, tmp_path]) is None  # found in one folder only
    (tmp_path / "a.png").write_bytes((two / "a.png").read_bytes())
    assert picture_file_sha("a.png", [two, tmp_path]) is not None  # the same in both
    assert picture_file_sha(None, [two]) is None and picture_file_sha(" ", [two]) is None
    monkeypatch.setenv("RISKRANK_MAX_IMAGE_BYTES", "4")
    assert picture_file_sha("a.png", [two]) is None  # oversized: named by size, never read


def test_within_an_update_each_picture_file_is_read_once(tmp_path, monkeypatch):
    """A standing update reads each picture file for every image signal's content keys and
    once more for its pictures file: ``reading_files_once`` reads an unchanged file once; a
    file changed on disk (size, mtime) is read again; outside it, every use reads."""
    import builtins
    import os

    opened = []

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(content_digest, "open", counting_open, raising=False)
    (tmp_path / "a.png").write_bytes(b"\x89PNG picture a")
    table = pa.table({"item_id": ["ad-1", "ad-2"], "image_path": ["a.png", "a.png"]})
    with content_digest.reading_files_once():
        first = row_digests(table, base_dirs=[tmp_path])
        assert row_digests(table, base_dirs=[tmp_path]) == first
        assert content_digest.picture_file_sha("a.png", [tmp_path]) is not None
        assert len(opened) == 1
        (tmp_path / "a.png").write_bytes(b"\x89PNG picture b, longer")
        os.utime(tmp_path / "a.png", ns=(1, 1))
        assert row_digests(table, base_dirs=[tmp_path]) != first
        assert len(opened) == 2
    row_digests(table, base_dirs=[tmp_path])
    assert len(opened) == 4  # (two rows, no memo)

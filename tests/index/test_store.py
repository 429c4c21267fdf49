import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from riskrank.index import IndexMismatchError, InventoryIndex, build_index
from riskrank.index.schema import validate_inventory
from riskrank.index.signals import TextEmbeddingSignal
from riskrank.index.tables import SchemaError, as_table
from riskrank.index.vectors.faiss_index import VectorIndex, choose_index_key, parse_bytes


def test_validate_quarantines_bad_rows_and_keeps_count():
    table = pa.table(
        {
            "item_id": ["a", "b", "a", None, "c", "d"],
            "text": pa.array([b"ok", b"fine", b"dup", b"x", b"\xff\xfe bad", b"   "], pa.binary()),
            "price": [1.0, float("nan"), 2.0, 3.0, 4.0, 5.0],
        }
    )
    clean, bad = validate_inventory(table)
    # 'a' twice with different texts: which is live is unknown, so neither is indexed.
    assert clean.column("item_id").to_pylist() == ["b"]
    reasons = dict(zip(bad["row"].to_pylist(), bad["reason"].to_pylist()))
    assert reasons[0] == reasons[2]
    assert reasons[2].startswith("item_id 'a' differs between row 0, row 2")
    assert "null" in reasons[3]
    assert "UTF-8" in reasons[4]
    assert "no content" in reasons[5]
    assert clean.num_rows + bad.num_rows == table.num_rows
    assert np.isnan(clean["price"].to_pylist()[0])  # NaN metadata passes through as missing


def test_invalid_utf8_in_a_parquet_string_column_is_quarantined_not_raised(
    tmp_path, hashing_signal
):
    # Arrow reads a Parquet string column without checking its UTF-8, and other writers put
    # invalid bytes there: the build's digest raised a UnicodeDecodeError, and the CLI printed
    # it naming no row (an outsider's report). Quarantined like a binary column's.
    import pyarrow.parquet as pq

    from riskrank.index.standing import StandingIndex

    offsets = pa.py_buffer(np.array([0, 2, 6, 10], np.int32).tobytes())
    raw = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"okab\xff\xfefine")])
    for text in (raw, raw.dictionary_encode(), raw.cast(pa.large_string())):
        path = tmp_path / "inv.parquet"
        pq.write_table(pa.table({"item_id": ["a", "b", "c"], "text": text}), path)
        built = build_index(path, tmp_path / "idx", signals=[hashing_signal], overwrite=True)
        updated, _ = StandingIndex(tmp_path / f"s{text.type}").update(path, [hashing_signal])
        for index in (built, updated):
            bad = index.quarantine.to_pylist()
            assert [(r["item_id"], r["row"]) for r in bad] == [("b", 1)], text.type
            assert bad[0]["reason"].startswith("text is not valid UTF-8")
            assert sorted(index.signals["text"].ids) == ["a", "c"]
    # In an id, a path or a metadata column such bytes cannot be quarantined per row: refused
    # before anything is embedded, naming column, row and file (a bare UnicodeDecodeError,
    # or a crash writing the report after the embedding: a reviewer's finding).
    for column in ("item_id", "image_path", "advertiser"):
        cols = {"item_id": ["a", "b", "c"], "text": ["one", "two", "three"], column: raw}
        path = tmp_path / f"{column}.parquet"
        pq.write_table(pa.table(cols), path)
        with pytest.raises(SchemaError, match=rf"column '{column}' holds bytes that are not "
                           rf"UTF-8 at row 1 \('{path}' row 1\)"):  # fmt: skip
            build_index(path, tmp_path / f"idx-{column}", signals=[hashing_signal])
        assert not (tmp_path / f"idx-{column}" / "manifest.json").exists()


def test_validate_table_level_errors_name_the_column():
    with pytest.raises(SchemaError, match="missing column 'item_id'"):
        validate_inventory({"id": ["a"], "text": ["x"]})
    with pytest.raises(SchemaError, match="content column"):
        validate_inventory({"item_id": ["a"], "title": ["x"]})


def test_the_written_schemas_are_what_validation_checks():
    from riskrank.recall.history import validate_history
    from riskrank.recall.seeds import SeedSet

    # An optional column of a type it cannot be read as is named, not a deep traceback.
    with pytest.raises(SchemaError, match="column 'text' has type int64, expected string"):
        validate_inventory({"item_id": ["a"], "text": [3]})
    with pytest.raises(SchemaError, match="column 'image_bytes' has type double, expected binary"):
        validate_inventory({"item_id": ["a"], "image_bytes": [1.5]})
    seeds = {"seed_id": ["s"], "policy": ["p"], "text": ["x"], "severity": ["high"]}
    with pytest.raises(SchemaError, match="column 'severity' has type string, expected integer"):
        SeedSet.from_table(seeds)
    with pytest.raises(SchemaError, match="missing column 'verdict' \\(integer\\)"):
        validate_history({"item_id": ["a"], "policy": ["p"], "text": ["x"]})


def test_as_table_accepts_pandas_polars_and_parquet(tmp_path):
    import pandas as pd
    import polars as pl
    import pyarrow.parquet as pq

    df = pd.DataFrame({"item_id": ["a"], "text": ["x"]})
    assert as_table(df).num_rows == 1
    assert as_table(pl.DataFrame({"item_id": ["a"], "text": ["x"]})).num_rows == 1
    pq.write_table(as_table(df), tmp_path / "x.parquet")
    assert as_table(tmp_path / "x.parquet").column_names == ["item_id", "text"]
    with pytest.raises(FileNotFoundError):
        as_table(tmp_path / "missing.parquet")
    with pytest.raises(TypeError, match="expected a pyarrow Table"):
        as_table(42)


def test_budget_picks_index():
    assert choose_index_key(50_000, 384, "4G") == "Flat"
    assert choose_index_key(2_000_000, 384, "8G").endswith(",Flat")
    assert choose_index_key(2_000_000, 384, "1G").endswith(",SQ8")
    assert choose_index_key(2_000_000, 384, "300M").endswith("np")  # no polysemous training
    assert ",PQ" in choose_index_key(2_000_000, 384, "300M")
    with pytest.raises(ValueError, match="cannot hold"):
        choose_index_key(10_000_000, 384, "10M")
    assert parse_bytes("1.5G") == int(1.5 * 2**30)
    with pytest.raises(ValueError):
        parse_bytes("lots")
    for none in ("0", 0, "0.0G"):  # ("cannot hold 60 vectors ... needs at least 0 MiB": CD)
        with pytest.raises(ValueError, match="is no memory"):
            parse_bytes(none)


def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_is_exact_and_roundtrips(tmp_path):
    rng = np.random.default_rng(0)
    base, q = _unit(rng, 500, 32), _unit(rng, 7, 32)
    idx = VectorIndex.build(base)
    res = idx.search(q, 5)
    brute = np.argsort(-(q @ base.T), axis=1)[:, :5]
    assert (res.positions == brute).all()
    idx.save(tmp_path / "i.faiss")
    again = VectorIndex.load(tmp_path / "i.faiss", idx.key, idx.nprobe)
    assert (again.search(q, 5).positions == res.positions).all()


def test_ivf_finds_most_true_neighbours():
    rng = np.random.default_rng(1)
    centres = _unit(rng, 50, 32)
    base = centres[rng.integers(50, size=5000)] + 0.1 * rng.normal(size=(5000, 32)).astype(
        np.float32
    )
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    idx = VectorIndex.build(base, key="IVF64,Flat", nprobe=8)
    q = base[:50]
    res = idx.search(q, 10)
    exact = np.argsort(-(q @ base.T), axis=1)[:, :10]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res.positions, exact)])
    assert overlap > 0.8


class _CountingSignal(TextEmbeddingSignal):
    """Real MiniLM, but counts calls and can die after N chunks (a killed build)."""

    def __init__(self, encoder, die_after=None):
        super().__init__(encoder)
        self.calls = 0
        self.die_after = die_after

    def embed_items(self, table, *, show_progress=False):
        if self.die_after is not None and self.calls >= self.die_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        return super().embed_items(table, show_progress=show_progress)


def test_build_load_manifest_and_resume(tmp_path, inventory_items, text_signal):
    path = tmp_path / "idx"
    dying = _CountingSignal(text_signal.encoder, die_after=2)
    with pytest.raises(KeyboardInterrupt):
        build_index(inventory_items, path, signals=[dying], chunk_size=16, show_progress=False)
    assert not (path / "manifest.json").exists()  # an interrupted build is never "finished"
    with pytest.raises(FileNotFoundError, match="interrupted"):
        InventoryIndex.load(path)
    resumed = _CountingSignal(text_signal.encoder)
    idx = build_index(inventory_items, path, signals=[resumed], chunk_size=16, show_progress=False)
    n_chunks = -(-inventory_items.num_rows // 16)
    assert resumed.calls == n_chunks - 2  # the two finished chunks were reused

    fresh = build_index(
        inventory_items,
        tmp_path / "fresh",
        signals=[text_signal],
        chunk_size=16,
        show_progress=False,
    )
    np.testing.assert_allclose(
        idx.signals["text"].vectors, fresh.signals["text"].vectors, atol=1e-5
    )

    manifest = json.loads((path / "manifest.json").read_text())
    entry = manifest["signals"]["text"]
    assert entry["model"] == "all-MiniLM-L6-v2" and entry["dim"] == 384
    assert entry["index_key"] == "Flat" and entry["count"] == inventory_items.num_rows
    assert set(entry["checksums"]) == {"index.faiss", "ids.parquet", "vectors.npy"}
    assert manifest["items"]["input"] == inventory_items.num_rows

    loaded = InventoryIndex.load(path)
    assert list(loaded.signals["text"].ids) == inventory_items["item_id"].to_pylist()
    with pytest.raises(FileExistsError):
        build_index(inventory_items, path, signals=[text_signal], show_progress=False)


def test_load_refuses_other_encoder_and_corruption(tmp_path, inventory_items, text_signal):
    path = tmp_path / "idx"
    build_index(inventory_items.slice(0, 10), path, signals=[text_signal], show_progress=False)

    class OtherModel(TextEmbeddingSignal):
        def describe(self):
            return {**super().describe(), "model": "paraphrase-multilingual-MiniLM-L12-v2"}

    with pytest.raises(IndexMismatchError, match="model"):
        InventoryIndex.load(path, signals={"text": OtherModel(text_signal.encoder)})
    with open(path / "text" / "vectors.npy", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(SchemaError, match="checksum"):
        InventoryIndex.load(path)


def test_a_build_never_deletes_files_that_are_not_an_index(tmp_path):
    """`riskrank index build ... --out DIR` cleared DIR whatever it held (a user's notes, a
    sweep's queue): anything but an index's own files is refused, untouched, overwrite or not;
    a killed build's leftovers and a finished index (with overwrite) are rebuilt."""
    from hashing_signal import HashingTextSignal

    inv = pa.table({"item_id": ["a", "b"], "text": ["one ad", "another ad"]})
    mine = tmp_path / "mine"
    (mine / "photos").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me")
    (mine / "photos" / "a.jpg").write_bytes(b"x")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match=r"not a riskrank index \(notes.txt, photos\)"):
            build_index(inv, mine, signals=[HashingTextSignal()], overwrite=overwrite)
    assert sorted(p.name for p in mine.rglob("*")) == ["a.jpg", "notes.txt", "photos"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        build_index(inv, tmp_path / "file", signals=[HashingTextSignal()])
    idx = tmp_path / "idx"
    build_index(inv, idx, signals=[HashingTextSignal()], show_progress=False)
    (idx / "manifest.json").unlink()  # a killed build: its files, no manifest
    (idx / "items.parquet.123.tmp").write_bytes(b"half")
    (idx / "pdq").mkdir()  # a signal of an earlier, killed attempt with other signals
    (idx / "pdq" / "ids.parquet").write_bytes(b"x")
    assert build_index(inv, idx, signals=[HashingTextSignal()], show_progress=False).num_items == 2
    with pytest.raises(FileExistsError, match="already holds an index"):
        build_index(inv, idx, signals=[HashingTextSignal()])
    rebuilt = build_index(
        inv, idx, signals=[HashingTextSignal()], overwrite=True, show_progress=False
    )
    assert rebuilt.num_items == 2 and not (idx / "items.parquet.123.tmp").exists()


def test_repeated_ids_are_judged_whatever_the_rows_order():
    """An id listed twice with one content keeps one row; with two contents it keeps none
    (first-row-wins let a shuffled export make the other text the item's content)."""
    table = pa.table(
        {
            "item_id": ["a", "b", "a", "c", "c", "d"],
            "text": ["same", "b", "same", "one", "two", "d"],
        }
    )
    for order in (range(6), [4, 2, 5, 0, 3, 1]):
        clean, bad = validate_inventory(table.take(pa.array(list(order))))
        assert sorted(clean["item_id"].to_pylist()) == ["a", "b", "d"]
        assert clean.filter(pc.equal(clean["item_id"], "a"))["text"][0].as_py() == "same"
        reasons = bad["reason"].to_pylist()
        assert sum("differs between row " in r for r in reasons) == 2
        same = "duplicate item_id 'a' (the same as row"
        assert sum(r.startswith(same) for r in reasons) == 1


def test_a_repeated_id_whose_other_row_has_no_content_keeps_no_row():
    # An ad blanked (or nulled) in a newer export beside its older text: which is live is
    # unknown, so neither is swept; the blank row keeps its own reason (an outsider's report:
    # the text row was indexed and queued). Rows that are blank alike are one row, refused.
    table = pa.table(
        {
            "item_id": ["x5", "x6", "x5", "x6", "x7", "x8", "x8"],
            "text": ["", None, "buy now", "cheap pills", "kept", " ", " "],
        }
    )
    for order in (range(7), [3, 2, 6, 0, 4, 1, 5]):
        order = list(order)
        clean, bad = validate_inventory(table.take(pa.array(order)))
        assert clean["item_id"].to_pylist() == ["x7"]
        reasons = {(r["item_id"], table["text"][order[r["row"]]].as_py()): r["reason"]
                   for r in bad.to_pylist()}  # fmt: skip
        assert reasons[("x5", "")].startswith("no content")
        assert reasons[("x6", None)].startswith("no content")
        assert reasons[("x5", "buy now")].startswith("item_id 'x5' differs between row")
        assert reasons[("x6", "cheap pills")].startswith("item_id 'x6' differs between row")
        assert bad.num_rows + clean.num_rows == table.num_rows


def test_repeated_ids_that_differ_only_in_metadata_keep_no_row():
    """The kept row's metadata (advertiser, market) travels into the queue: rows that differ
    there are as ambiguous as rows that differ in text. NaN equals NaN (as null does)."""
    table = pa.table(
        {
            "item_id": ["a", "a", "b", "b"],
            "text": ["x", "x", "y", "y"],
            "advertiser": ["acme", "evil-co", "z", "z"],
            "price": [1.0, 1.0, float("nan"), float("nan")],
        }
    )
    for order in ([0, 1, 2, 3], [1, 0, 3, 2]):
        clean, bad = validate_inventory(table.take(pa.array(order)))
        assert clean["item_id"].to_pylist() == ["b"]
        assert sorted(bad["reason"].to_pylist())[-1].startswith("item_id 'a' differs between row ")

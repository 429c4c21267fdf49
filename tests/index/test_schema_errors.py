"""Hostile tables get a SchemaError naming the column (and row), never a library traceback."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from riskrank.index.schema import is_blank, validate_inventory
from riskrank.index.tables import SchemaError, as_table


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"item_id": pa.array([], pa.string()), "text": pa.array([], pa.string())}, "0 rows"),
        ({"item_id": ["a", "b"], "text": [1, 2]}, "column 'text' has type int64"),
        ({"item_id": ["a", "b"], "text": [True, False]}, "column 'text' has type bool"),
        ({"item_id": ["a"], "text": ["x"], "image_path": [3]}, "column 'image_path'"),
        (pd.DataFrame([["a", "x", "y"]], columns=["item_id", "text", "text"]), r"\['text'\]"),
        (
            pa.Table.from_arrays([pa.array(["a"])] * 3, names=["item_id", "text", "text"]),
            "duplicate column names",
        ),
        (
            pd.DataFrame({"item_id": ["a", "b"], "text": ["x", "y"], "price": ["1", 2]}),
            r"column 'price': mixes value types: str \(row 0\), int \(row 1\)",
        ),
        (
            pd.DataFrame(
                {"item_id": ["a", "b"], "text": pd.Series(["x", "y\ud800"], dtype=object)}
            ),
            "column 'text': row 1: text is not valid Unicode",
        ),
        ({"item_id": ["a", "b"], "text": ["x", "bad \udcff"]}, "column 'text': row 1"),
    ],
)
def test_bad_tables_are_schema_errors_naming_the_column(data, match):
    with pytest.raises(SchemaError, match=match):
        validate_inventory(data)


def test_mixed_types_from_pandas_name_the_first_rows_of_each_type():
    df = pd.DataFrame(
        {"item_id": ["a", "b", "c"], "verdict": pd.Series([None, "2", 0], dtype=object)}
    )
    with pytest.raises(
        SchemaError, match=r"'verdict': mixes value types: str \(row 1\), int \(row 2\)"
    ):
        as_table(df, what="history")


def test_invisible_only_text_is_empty():
    assert is_blank("\u200b\u200c\u200d\ufeff \u2060\u3164\u2800\ufe0f")
    assert not is_blank("a\u200b") and not is_blank("\u00e9") and not is_blank("😀")
    table = pa.table({"item_id": ["zw", "ok"], "text": ["\u200b\u200b\u2060", "real words"]})
    clean, bad = validate_inventory(table)
    assert clean["item_id"].to_pylist() == ["ok"]
    assert "invisible" in bad["reason"][0].as_py()


def test_text_signal_does_not_embed_invisible_text(hashing_signal):
    out = hashing_signal.embed_items(pa.table({"text": ["\u200b\u200d", "words"]}))
    assert out.ok.tolist() == [False, True]


def test_a_list_of_parquet_files_is_read_in_order(tmp_path):
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"item_id": ["a"], "text": ["x"]}), tmp_path / "1.parquet")
    pq.write_table(pa.table({"item_id": ["b"], "n": [3]}), tmp_path / "2.parquet")
    table = as_table([tmp_path / "1.parquet", str(tmp_path / "2.parquet")])
    assert table["item_id"].to_pylist() == ["a", "b"]
    assert table["n"].to_pylist() == [None, 3]  # schemas merged, missing cells null
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        as_table([tmp_path / "1.parquet", tmp_path / "missing.parquet"])
    # A pattern is the files it matches, sorted, as a shell expands it (outsider CD: a
    # library caller's "exports/*.parquet" was "no such file or directory").
    assert as_table(str(tmp_path / "*.parquet")).equals(table)
    assert as_table([str(tmp_path / "1.parquet"), str(tmp_path / "2*")]).equals(table)  # (CE)
    with pytest.raises(FileNotFoundError, match="no file matches the pattern"):
        as_table(str(tmp_path / "day-*.parquet"))
    # Brackets are themselves: a missing data[1].parquet is not 1.parquet (reviewer CE)
    with pytest.raises(FileNotFoundError, match="no such file"):
        as_table(str(tmp_path / "[1].parquet"))
    pq.write_table(pa.table({"item_id": ["c"], "text": ["y"]}), tmp_path / "[3].parquet")
    assert as_table(str(tmp_path / "[3]*")).column("item_id").to_pylist() == ["c"]


def test_a_parquet_directory_keeps_every_files_columns(tmp_path):
    """pyarrow's dataset reader took the first file's schema: a column only a later file had
    (image paths, metadata) was dropped, and which ones depended on the files' order."""
    import pyarrow.parquet as pq

    d = tmp_path / "ads"
    d.mkdir()
    pq.write_table(pa.table({"item_id": [1, 2], "text": ["a", "b"]}), d / "part-0.parquet")
    later = {"item_id": ["3", "x4"], "text": ["c", None], "image_path": [None, "x4.jpg"]}
    pq.write_table(pa.table(later), d / "part-1.parquet")
    table = as_table(d)
    assert table["item_id"].to_pylist() == ["1", "2", "3", "x4"]  # ids are text
    assert table["image_path"].to_pylist() == [None, None, None, "x4.jpg"]
    pq.write_table(pa.table({"item_id": ["5"], "text": [7]}), d / "part-2.parquet")
    with pytest.raises(SchemaError, match="'text' is string in part-0.parquet.*int64 in part-2"):
        as_table(d)
    # Text and bytes written with 64-bit offsets by one writer and 32-bit by another (pandas
    # does both, by dtype) are the same columns.
    w = tmp_path / "widths"
    w.mkdir()
    pq.write_table(pa.table({"item_id": ["a"], "image_path": ["a.jpg"]}), w / "part-0.parquet")
    wide = {"item_id": pa.array(["b"], pa.large_string()), "text": ["ad"]}
    wide["image_bytes"] = pa.array([b"\x89PNG"], pa.large_binary())
    wide["image_path"] = pa.array([None], pa.large_string())
    pq.write_table(pa.table(wide), w / "part-1.parquet")
    table = as_table(w)
    assert table["image_path"].to_pylist() == ["a.jpg", None]
    assert table.schema.field("image_bytes").type == pa.binary()
    # A categorical text in one file and a plain one in another, integers beside floats,
    # milliseconds beside microseconds: one export's drift, refused whole before (an
    # outsider's report). A timezone beside none is still refused, naming the files.
    drift = tmp_path / "drift"
    drift.mkdir()
    first = {"item_id": ["a"], "text": pa.array(["one ad"]).dictionary_encode(), "n": [1],
             "at": pa.array([1], pa.timestamp("ms"))}  # fmt: skip
    pq.write_table(pa.table(first), drift / "part-0.parquet")
    second = {"item_id": ["b"], "text": ["two ad"], "n": [1.5],
              "at": pa.array([2], pa.timestamp("us"))}  # fmt: skip
    pq.write_table(pa.table(second), drift / "part-1.parquet")
    joined = as_table(drift)
    assert joined["text"].to_pylist() == ["one ad", "two ad"]
    assert joined["n"].to_pylist() == [1.0, 1.5] and joined.schema.field("at").type.unit == "us"
    # Not promoted: ids (ints and floats read 123 as 123.0) and text beside bytes (every row
    # came out as bytes): refused, naming the files (a reviewer's findings).
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    pq.write_table(pa.table({"item_id": [123], "text": ["a"], "who": ["adv13"]}),
                   mixed / "part-0.parquet")  # fmt: skip
    pq.write_table(pa.table({"item_id": [1.5], "text": ["b"], "who": [b"adv14"]}),
                   mixed / "part-1.parquet")  # fmt: skip
    agree = r"'item_id' is string in part-0.parquet, double in part-1.parquet; 'who' is string"
    with pytest.raises(SchemaError, match=agree + " in part-0.parquet, binary"):
        as_table(mixed)
    zoned = {"item_id": ["c"], "text": ["three"], "at": pa.array([3], pa.timestamp("us", "UTC"))}
    pq.write_table(pa.table(zoned), drift / "part-2.parquet")
    with pytest.raises(SchemaError, match=r"'at' is .* in part-1.parquet, timestamp\[us, tz=UTC\]"):
        as_table(drift)
    # Hive partitions (day=.../) are columns, as pyarrow's directory reader made them.
    for day in ("2024-01-01", "2024-01-02"):
        (tmp_path / "days" / f"day={day}").mkdir(parents=True)
        one = {"item_id": [day], "text": ["an ad"]}
        pq.write_table(pa.table(one), tmp_path / "days" / f"day={day}" / "part.parquet")
    assert as_table(tmp_path / "days")["day"].to_pylist() == ["2024-01-01", "2024-01-02"]
    # Typed alike whether the export holds one folder or several: with one, the column was
    # pyarrow's dictionary, with two a string (a queue's columns changed type between days).
    (tmp_path / "one" / "day=2024-01-01").mkdir(parents=True)
    one = {"item_id": ["2024-01-01"], "text": ["an ad"]}
    pq.write_table(pa.table(one), tmp_path / "one" / "day=2024-01-01" / "part.parquet")
    assert as_table(tmp_path / "one")["day"].type == as_table(tmp_path / "days")["day"].type
    for n in (1, 2):
        for month in (9, 10)[:n]:
            (tmp_path / f"months{n}" / f"month={month}").mkdir(parents=True)
            one = {"item_id": [f"m{month}"], "text": ["an ad"]}
            pq.write_table(pa.table(one), tmp_path / f"months{n}" / f"month={month}" / "p.parquet")
        assert as_table(tmp_path / f"months{n}")["month"].type == pa.int64(), n
    # A file's own column named like its folder lost its values to the folder's without a
    # word (an outsider's report): refused, naming both, with one file or several.
    for n in (1, 2):
        clash = tmp_path / f"clash{n}"
        for day in ("2024-01-01", "2024-01-02")[:n]:
            (clash / f"day={day}").mkdir(parents=True)
            own = {"item_id": [day], "text": ["an ad"], "day": ["1999-01-01"]}
            pq.write_table(pa.table(own), clash / f"day={day}" / "part.parquet")
        with pytest.raises(SchemaError, match=r"column 'day' of day=2024-01-01/part.parquet is "
                           r"also the partition folder day=2024-01-01/"):  # fmt: skip
            as_table(clash, what="inventory")
    # A folder may not make an item's id or content (outsider CD: text=hello/ over files
    # without a text column made "hello" every row's text, swept without a word).
    for key in ("text", "item_id"):
        folder = tmp_path / f"as-{key}" / f"{key}=hello"
        folder.mkdir(parents=True)
        own = {"item_id": ["x"], "image_path": ["a.jpg"], "text": ["an ad"]}
        pq.write_table(pa.table({k: v for k, v in own.items() if k != key}), folder / "p.parquet")
        with pytest.raises(SchemaError, match=rf"partition folder {key}=hello/ \(.*would give"):
            as_table(folder.parent, what="inventory")
    # ... also where pyarrow cannot merge the folder's type with the file's (outsider CD: its
    # "Unable to merge: Field group has incompatible types" came first).
    for typ, values in ((pa.large_string(), ["a"]), (pa.int64(), [7])):
        clash = tmp_path / f"typed-{typ}" / "group=zzz"
        clash.mkdir(parents=True)
        own = pa.table({"item_id": ["x"], "text": ["an ad"], "group": pa.array(values, typ)})
        pq.write_table(own, clash / "part.parquet")
        with pytest.raises(SchemaError, match=r"column 'group' of group=zzz/part.parquet is "
                           r"also the partition folder group=zzz/"):  # fmt: skip
            as_table(clash.parent, what="inventory")


def test_a_quarantined_row_names_its_file(tmp_path):
    """Row numbers of a directory count over all its files: an outsider's quarantine said
    "row 613" of a three-file export and named no file."""
    import pyarrow.parquet as pq

    d = tmp_path / "ads"
    (d / "day=2").mkdir(parents=True)
    pq.write_table(pa.table({"item_id": ["a", "b"], "text": ["x", "y"]}), d / "part-0.parquet")
    pq.write_table(pa.table({"item_id": ["c", None, "d"], "text": ["z", "w", ""]}),
                   d / "part-1.parquet")  # fmt: skip
    pq.write_table(pa.table({"item_id": ["e", "a"], "text": ["v", "other"]}),
                   d / "day=2" / "part.parquet")  # fmt: skip
    items, bad = validate_inventory(d)
    got = [(r["row"], r["file"], r["file_row"], r["reason"][:12]) for r in bad.to_pylist()]
    assert got == [  # the files in pyarrow's (sorted) order: day=2/ first
        (1, "day=2/part.parquet", 1, "item_id 'a' "),  # differs from its row in part-0
        (2, "part-0.parquet", 0, "item_id 'a' "),
        (5, "part-1.parquet", 1, "item_id is n"),
        (6, "part-1.parquet", 2, "no content: "),
    ]
    # The reason names the other rows as the quarantine names them: by file and row there.
    assert bad.to_pylist()[0]["reason"].startswith(
        "item_id 'a' differs between row 1 ('day=2/part.parquet' row 1), "
        "row 2 ('part-0.parquet' row 0) (content or metadata)"
    )
    assert b"riskrank.files" not in (items.schema.metadata or {})  # not carried into the index
    # One file, a list of files: named as given. A table made in memory: no file.
    one = tmp_path / "one.parquet"
    pq.write_table(pa.table({"item_id": ["a", ""], "text": ["x", "y"]}), one)
    assert validate_inventory(one)[1].to_pylist()[0]["file"] == str(one)
    listed = validate_inventory([d / "part-0.parquet", str(one)])[1].to_pylist()
    # (its "a" repeats part-0's row exactly: the copy is quarantined, the first kept)
    assert [(r["file"], r["file_row"]) for r in listed] == [(str(one), 0), (str(one), 1)]
    first = d / "part-0.parquet"
    assert listed[0]["reason"] == f"duplicate item_id 'a' (the same as row 0 ('{first}' row 0))"
    assert validate_inventory(pq.read_table(one))[1].to_pylist()[0]["file"] is None


def test_an_ad_exported_on_two_days_is_kept_once(tmp_path):
    """Hive folders by day: an ad live on both days is in both. The folder's value made its
    rows differ and both were quarantined: the ad was never swept, and one edited between
    two exports never again (two outsiders' reports). The newest folder's row is kept."""
    import pyarrow.parquet as pq

    d = tmp_path / "ads"
    days = {
        "day=2026-12-01": {"item_id": ["a", "b", "e", "m"], "text": ["x", "y", "v", "m"]},
        "day=2026-12-02": {"item_id": ["b", "c", "e", "m"], "text": ["y", "z", "edited", "m"]},
        "day=2026-12-03": {"item_id": ["b", "m"], "text": ["y", "m"]},
    }
    for day, cols in days.items():
        (d / day).mkdir(parents=True)
        price = {"a": 1, "b": 2, "c": 3, "e": 4, "m": 5 if day == "day=2026-12-01" else 6}
        cols["price"] = [price[i] for i in cols["item_id"]]
        pq.write_table(pa.table(cols), d / day / "part.parquet")
    items, bad = validate_inventory(d)
    kept = sorted(zip(items["item_id"].to_pylist(), items["day"].to_pylist()))
    assert kept == [
        ("a", "2026-12-01"), ("b", "2026-12-03"), ("c", "2026-12-02"), ("e", "2026-12-02"),
        ("m", "2026-12-03"),
    ]  # fmt: skip
    assert items["text"].to_pylist()[items["item_id"].to_pylist().index("e")] == "edited"
    reasons = {(r["item_id"], r["file"]): r["reason"] for r in bad.to_pylist()}
    assert reasons[("b", "day=2026-12-01/part.parquet")] == (
        "duplicate item_id 'b' (the same as row 8 ('day=2026-12-03/part.parquet' row 0) but for "
        "its partition folder, an older one: an older export of it)"
    )
    assert reasons[("e", "day=2026-12-01/part.parquet")] == (
        "item_id 'e' is also in row 6 ('day=2026-12-02/part.parquet' row 2), a newer partition "
        "folder: an older export of it, edited since"
    )
    assert reasons[("m", "day=2026-12-01/part.parquet")].startswith("item_id 'm' is also in")
    assert len(bad) == 5 and items.num_rows + len(bad) == 10
    # Newest by the folders' values as pyarrow types them: month=10 after month=9, and Hive's
    # null folder before any (a text sort kept the older row: an outsider's report).
    spark = tmp_path / "spark"
    for folder in ("month=9", "month=10", "month=__HIVE_DEFAULT_PARTITION__"):
        (spark / folder).mkdir(parents=True)
        pq.write_table(pa.table({"item_id": ["x"], "text": ["same"]}), spark / folder / "p.parquet")
    items, bad = validate_inventory(spark)
    assert items["month"].to_pylist() == [10] and len(bad) == 2
    # A copy within the newest folder is a copy, not a conflict (a reviewer's finding: the ad
    # was dropped); a blanked newest export keeps its own reason and no older text is swept.
    (d / "day=2026-12-05").mkdir()
    twice = pa.table({"item_id": ["b", "b", "c"], "text": ["y", "y", ""], "price": [2, 2, 3]})
    pq.write_table(twice, d / "day=2026-12-05" / "part.parquet")
    items, bad = validate_inventory(d)
    kept = dict(zip(items["item_id"].to_pylist(), items["day"].to_pylist()))
    assert kept["b"] == "2026-12-05" and "c" not in kept
    why = {(r["item_id"], r["file"], r["file_row"]): r["reason"] for r in bad.to_pylist()}
    assert why[("b", "day=2026-12-05/part.parquet", 1)].startswith("duplicate item_id 'b' (the")
    assert why[("c", "day=2026-12-05/part.parquet", 2)].startswith("no content")
    assert "edited since" in why[("c", "day=2026-12-02/part.parquet", 1)]
    (d / "day=2026-12-05" / "part.parquet").unlink()
    (d / "day=2026-12-05").rmdir()
    # Rows of one id in one folder that differ still keep none.
    (d / "day=2026-12-04").mkdir()
    pq.write_table(pa.table({"item_id": ["z", "z"], "text": ["one", "two"]}),
                   d / "day=2026-12-04" / "part.parquet")  # fmt: skip
    items, bad = validate_inventory(d)
    assert "z" not in items["item_id"].to_pylist()
    assert [r["reason"].startswith("item_id 'z' differs") for r in bad.to_pylist()
            if r["item_id"] == "z"] == [True, True]  # fmt: skip
    # (a reviewer's findings) A sweep renames metadata named like its own columns (`model`,
    # or a folder `sweep_id=`): the rename dropped which file each row came from, and the ad
    # was dropped again. An escaped folder name (`export%20day=`) is the column pyarrow
    # decodes (`export day`).
    from riskrank.index.tables import as_table
    from riskrank.rank.input_checks import protect_metadata

    for folder, column in (("sweep_id", "meta_sweep_id"), ("export%20day", "export day")):
        root = tmp_path / folder.replace("%", "_")
        for day in ("2026-12-01", "2026-12-02"):
            (root / f"{folder}={day}").mkdir(parents=True)
            one = {"item_id": ["a"], "text": ["x"], "model": ["m1"]}
            pq.write_table(pa.table(one), root / f"{folder}={day}" / "part.parquet")
        items, bad = validate_inventory(protect_metadata(as_table(root, files=True)))
        assert items[column].to_pylist() == ["2026-12-02"] and len(bad) == 1, folder
        assert "but for its partition folder" in bad["reason"][0].as_py()
        assert bad["file"].to_pylist() == [f"{folder}=2026-12-01/part.parquet"]


def test_a_standing_index_sees_files_moved_out_of_partition_folders(tmp_path, hashing_signal):
    """Which copy of an ad is kept depends on its partition folders, so the same cells from
    flat files are another inventory, not "unchanged" (a reviewer's finding: the no-op kept
    yesterday's decision and its reason)."""
    import pyarrow.parquet as pq

    from riskrank.index.standing import inventory_digest
    from riskrank.index.tables import as_table

    hive, flat = tmp_path / "hive", tmp_path / "flat"
    for n, day in enumerate(("2026-12-01", "2026-12-02")):
        (hive / f"day={day}").mkdir(parents=True)
        flat.mkdir(exist_ok=True)
        rows = pa.table({"item_id": ["a", f"x{n}"], "text": ["x", f"y{n}"]})
        pq.write_table(rows, hive / f"day={day}" / "part.parquet")
        pq.write_table(rows.append_column("day", pa.array([day] * 2)), flat / f"part-{n}.parquet")
    digest = [
        inventory_digest(as_table(d, files=True), [hashing_signal], None) for d in (hive, flat)
    ]
    assert digest[0] != digest[1]
    renamed = tmp_path / "renamed"
    for day in ("2026-12-01", "2026-12-02"):
        (renamed / f"day={day}").mkdir(parents=True)
        (hive / f"day={day}" / "part.parquet").rename(renamed / f"day={day}" / "ads.parquet")
    again = inventory_digest(as_table(renamed, files=True), [hashing_signal], None)
    assert again == digest[0]  # file names alone change nothing
    # A version made under other validation rules is not up to date for the same inventory
    # (a reviewer's finding: fixed rules did not reach an unchanged inventory).
    from riskrank.index import standing

    standing.VALIDATION_RULES = "rules-before"
    try:
        assert inventory_digest(as_table(renamed, files=True), [hashing_signal], None) != again
    finally:
        standing.VALIDATION_RULES = "rules-2026-12-05"


def test_the_file_record_stays_with_the_inventory_read(tmp_path, history, seeds, hashing_signal):
    """It named the wrong file for a slice or sort of the table, and was written into model
    files with the trainer's paths (reviewed)."""
    import pyarrow.parquet as pq
    from conftest import train_small

    from riskrank.index.tables import FILES_KEY

    d = tmp_path / "ads"
    d.mkdir()
    pq.write_table(pa.table({"item_id": ["a", "b"], "text": ["x", ""]}), d / "p0.parquet")
    pq.write_table(pa.table({"item_id": ["c", "d"], "text": ["z", ""]}), d / "p1.parquet")
    assert FILES_KEY not in (as_table(d).schema.metadata or {})  # only an inventory read has it
    read = as_table(d, files=True)
    assert [r["file"] for r in validate_inventory(read)[1].to_pylist()] == [
        "p0.parquet", "p1.parquet"
    ]  # fmt: skip
    # A slice of the read is not the read: its rows name no file rather than a wrong one.
    assert validate_inventory(read.slice(2))[1].to_pylist()[0]["file"] is None
    # A list naming a directory: its files under it.
    one = tmp_path / "one.parquet"
    pq.write_table(pa.table({"item_id": ["e"], "text": [""]}), one)
    got = validate_inventory([d, one])[1].to_pylist()
    assert [(r["file"], r["file_row"]) for r in got] == [
        (f"{d}/p0.parquet", 1), (f"{d}/p1.parquet", 1), (str(one), 0)
    ]  # fmt: skip
    # A model trained from Parquet files keeps no record of them.
    hist, sd = tmp_path / "history.parquet", tmp_path / "seeds.parquet"
    pq.write_table(history, hist)
    pq.write_table(seeds, sd)
    model = train_small(str(hist), str(sd), tmp_path / "model", hashing_signal)
    for path in (tmp_path / "model").rglob("*.parquet"):
        assert FILES_KEY not in (pq.read_schema(path).metadata or {}), path
    assert model is not None


def test_a_reason_is_relabelled_by_todays_files_but_never_inside_its_id():
    """An up-to-date index keeps the reasons of the day it was made; the rows they name are
    named again from today's files, and an id that reads like a row is left as it is."""
    from riskrank.index.schema import SourceFiles

    today = SourceFiles([("a.parquet", 2), ("b.parquet", 3)])
    # Any file name reads back: a folder "Q1 (final) exports/" had its reason mangled.
    for name in ("mon/x (1).parquet", "Q1 (final) exports/p.parquet", 'it\'s "odd" row 2)'):
        monday = SourceFiles([(name, 5)])
        old = (
            f"item_id 'row 4' differs between {monday.label(1)}, {monday.label(3)} "
            "(content or metadata)"
        )
        assert today.relabel(old, "row 4") == (
            "item_id 'row 4' differs between row 1 ('a.parquet' row 1), "
            "row 3 ('b.parquet' row 1) (content or metadata)"
        )
        assert SourceFiles([]).relabel(old, "row 4") == (
            "item_id 'row 4' differs between row 1, row 3 (content or metadata)"
        )
        assert monday.relabel(old, "row 4") == old
    assert today.relabel("no content: text is empty", "row 4") == "no content: text is empty"


def test_image_bytes_as_text_is_refused_and_a_polars_lazyframe_is_read():
    """Hex or base64 text in ``image_bytes`` crashed deep in hashing, and a polars LazyFrame
    raised polars' own AttributeError (an outsider's report)."""
    polars = pytest.importorskip("polars")
    from riskrank.index.schema import validate_inventory

    text = pa.table({"item_id": ["a"], "image_bytes": ["89504e470d0a1a0a"]})
    with pytest.raises(SchemaError, match=r"'image_bytes' has type string, expected binary "
                       r"\(an encoded file's bytes: decode hex or base64"):  # fmt: skip
        validate_inventory(text)
    # A whole picture as hex text is evidence cut short, not a 291,528-character message
    # (outsider CD); the first non-null row is the one shown.
    picture = "89504e47" * 40_000
    big = pa.table({"item_id": ["a", "b"], "image_bytes": [None, picture]})
    with pytest.raises(SchemaError) as refused:
        validate_inventory(big)
    said = str(refused.value)
    assert len(said) < 1_000 and "(row 1: image_bytes '89504e47" in said
    assert "(320,002 characters)" in said, said
    lazy = polars.DataFrame({"item_id": ["a", "b"], "text": ["one", "two"]}).lazy()
    assert as_table(lazy).to_pylist() == [
        {"item_id": "a", "text": "one"},
        {"item_id": "b", "text": "two"},
    ]


def test_a_csv_cell_over_the_readers_block_is_read(tmp_path):
    """A quoted text of 2.1 MB (a pasted mail dump as a reviewer's note) was refused as
    "straddling object straddles two block boundaries", a reader setting no user can change."""
    from riskrank.index.tables import read_text_csv

    long = "word " * 420_000
    (tmp_path / "v.csv").write_text(f'item_id,verdict,note\na,2,"{long}"\nb,0,short\n')
    table = read_text_csv(tmp_path / "v.csv", what="verdicts")
    assert table["note"].to_pylist() == [long, "short"]


def test_pandas_index_columns_are_not_data(tmp_path):
    """A filtered frame written to Parquet keeps its index as ``__index_level_0__``: it was
    read as an inventory's metadata and carried into the queue."""

    frame = pd.DataFrame({"item_id": ["a", "b", "c"], "text": ["x", "y", "z"]}, index=[7, 3, 9])
    frame.to_parquet(tmp_path / "inv.parquet")
    assert "__index_level_0__" in pq.read_schema(tmp_path / "inv.parquet").names
    assert as_table(tmp_path / "inv.parquet").column_names == ["item_id", "text"]


def test_named_pandas_index_levels_are_columns(tmp_path):
    """An index named ``seller`` (or a MultiIndex) was dropped without a word, where pyarrow's
    own from_pandas keeps it (an outsider's report); an unnamed one is a row number."""
    frame = pd.DataFrame({"item_id": ["a", "b"], "text": ["x", "y"]}, index=[7, 3])
    assert as_table(frame).column_names == ["item_id", "text"]
    assert as_table(frame.rename_axis("seller")).column("seller").to_pylist() == [7, 3]
    multi = frame.set_index(["item_id"], append=True).rename_axis(["seller", "item_id"])
    got = as_table(multi)
    assert sorted(got.column_names) == ["item_id", "seller", "text"]
    assert got.column("item_id").to_pylist() == ["a", "b"]
    # A level named like a column it still has: the column is the data, as before.
    both = frame.rename_axis("text")
    assert as_table(both).column("text").to_pylist() == ["x", "y"]


def test_string_view_columns_are_strings():
    """polars' newest Arrow output holds string_view columns, refused as "expected string"
    (an outsider's report): the same values, read as strings."""
    viewed = pa.table({"item_id": pa.array(["a", "b"], pa.string_view()),
                       "text": pa.array(["x", None], pa.string_view()),
                       "image_bytes": pa.array([b"\x00", None], pa.binary_view())})  # fmt: skip
    got = as_table(viewed)
    assert [str(t) for t in got.schema.types] == ["string", "string", "binary"]
    assert got.column("text").to_pylist() == ["x", None]
    items, quarantined = validate_inventory(got.drop(["image_bytes"]))
    assert items.num_rows == 1 and quarantined.num_rows == 1  # (the null text)


def test_a_content_column_without_a_value_is_of_its_type():
    """pandas reads an empty CSV column as float64 NaN: a day's export with no pictures was
    refused whole ("column 'image_path' has type double, expected string": an outsider's
    week). A content column with no value is one of its type; one with a number still is
    an error, and an all-NaN text column leaves rows without content, quarantined."""
    import numpy as np

    frame = pd.DataFrame({"item_id": ["a", "b"], "text": ["x", "y"], "image_path": [np.nan] * 2})
    got = as_table(frame)
    assert str(got.schema.field("image_path").type) == "string"
    items, quarantined = validate_inventory(got)
    assert items.num_rows == 2 and quarantined.num_rows == 0
    blank = frame.assign(image_bytes=np.nan, text=np.nan, image_path="a.png")
    assert str(as_table(blank).schema.field("image_bytes").type) == "binary"
    assert str(as_table(blank).schema.field("text").type) == "string"
    with pytest.raises(SchemaError, match="column 'image_path' has type double"):
        as_table(frame.assign(image_path=[1.5, np.nan]))  # (a value: checked as before)
        validate_inventory(frame.assign(image_path=[1.5, np.nan]))


def test_a_day_file_without_a_picture_joins_a_folder_of_files(tmp_path):
    """One file of a folder whose image_path pandas wrote as float64 NaN was refused as
    disagreeing with the others (a reviewer's finding): it is of its content type there too."""
    (tmp_path / "inv").mkdir()
    pq.write_table(pa.table({"item_id": ["1"], "text": ["a"], "image_path": ["x.png"]}),
                   tmp_path / "inv" / "a.parquet")  # fmt: skip
    pq.write_table(pa.table({"item_id": ["2"], "text": ["b"],
                             "image_path": pa.nulls(1, pa.float64())}),
                   tmp_path / "inv" / "b.parquet")  # fmt: skip
    files = [tmp_path / "inv" / "a.parquet", tmp_path / "inv" / "b.parquet"]
    for source in (tmp_path / "inv", files):
        got = as_table(source, files=True)
        assert got["image_path"].to_pylist() == ["x.png", None]


def test_a_polars_object_column_is_refused_not_written_as_pointers():
    """A polars Object column reached the queue as 8-byte pointer values (an outsider)."""
    pl = pytest.importorskip("polars")

    frame = pl.DataFrame({"item_id": ["a"], "text": ["x"]}).with_columns(
        pl.Series("extra", [object()], dtype=pl.Object)
    )
    with pytest.raises(SchemaError, match="column 'extra' holds Python objects"):
        as_table(frame)
    with pytest.raises(SchemaError, match="column 'extra'"):
        as_table(frame.lazy())
    assert as_table(frame.drop("extra")).column_names == ["item_id", "text"]


def test_a_missing_id_column_names_the_one_to_rename():
    # An outsider's inventory had `id`; the refusal said only that item_id was missing.
    from riskrank.recall.seeds import SeedSet

    with pytest.raises(SchemaError, match="rename 'id' to 'item_id'"):
        validate_inventory({"id": ["a"], "text": ["x"]})
    with pytest.raises(SchemaError, match="rename 'Seed ID' to 'seed_id'"):
        SeedSet.from_table({"Seed ID": ["a"], "policy": ["p"], "text": ["x"]})


def test_rows_with_both_picture_columns_are_named(tmp_path):
    """An export carrying image_bytes and image_path on one row: the bytes are embedded, the
    path not read, and nothing said so (an outsider's week of sweeps)."""
    import logging

    from riskrank.index.schema import validate_inventory

    said = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: said.append(record.getMessage())
    logging.getLogger("riskrank").addHandler(handler)
    try:
        items, _ = validate_inventory(
            {
                "item_id": ["a", "b", "c"],
                "image_bytes": [b"\x89PNG-a", None, b"\x89PNG-c"],
                "image_path": ["a.png", "b.png", None],
            }
        )
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    assert items.num_rows == 3
    assert [m for m in said if "both image_bytes and image_path" in m] == [
        "inventory: 1 row(s) carry both image_bytes and image_path ('a'): the bytes are the "
        "picture an image signal reads; the path is not read, though a report may show its file"
    ]


def _warnings_during(run) -> list[str]:
    import logging

    said = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: said.append(record.getMessage())
    logging.getLogger("riskrank").addHandler(handler)
    try:
        run()
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    return [m for m in said if "both image_bytes and image_path" in m]


def test_both_picture_columns_are_named_once_per_update(tmp_path):
    """A standing update validated the inventory, then its delta build validated the rows to
    embed again: the warning came twice, with other counts (an outsider's review)."""
    from hashing_signal import HashingTextSignal

    from riskrank.index.standing import StandingIndex

    inv = pa.table(
        {
            "item_id": ["a", "b", "c"],
            "text": ["one ad", "two ad", "three ad"],
            "image_bytes": [b"\x89PNG fake", None, b"\x89PNG fake2"],
            "image_path": ["shirt.png", None, "x.png"],
        }
    )
    standing = StandingIndex(tmp_path / "st")
    said = _warnings_during(
        lambda: standing.update(inv, [HashingTextSignal()], show_progress=False)
    )
    assert len(said) == 1 and said[0].startswith("inventory: 2 row(s)"), said


def test_the_ray_driver_names_both_picture_columns_once_for_all_blocks():
    """Under Ray each block's task logged its own warning, in the workers' logs only."""
    from riskrank.index.ray_engine.inventory import _project, _scan, _validate

    blocks = [
        pa.table(
            {
                "item_id": ids,
                "text": ["t", "u"],
                "image_bytes": [b"\x89PNG"] * 2,
                "image_path": ["p.png"] * 2,
            }
        )
        for ids in (["a", "b"], ["c", ""], ["d", "d"], ["e", "f"])
    ]
    blocks[2] = blocks[2].set_column(1, "text", pa.array(["t", "other"]))  # d: two texts
    blocks[3] = blocks[3].set_column(1, "text", pa.array(["  ", "v"]))  # e: blank text
    said = _warnings_during(
        lambda: _scan(_project(_validate(b, require_text=True, base_dirs=[])) for b in blocks)
    )
    # One warning, for the rows that pass: "" (a blank id), both d rows (one id, two texts)
    # and e (blank text under a text index) are quarantined. One machine says the same.
    shown = (
        "inventory: 4 row(s) carry both image_bytes and image_path ('a', 'b', 'c', ...): the "
        "bytes are the picture an image signal reads; the path is not read, though a report "
        "may show its file"
    )
    assert said == [shown]
    whole = pa.concat_tables(blocks)
    assert _warnings_during(lambda: validate_inventory(whole, require_text=True)) == [shown]
    # All-null picture bytes (a null-typed column) are no picture.
    nulls = blocks[0].set_column(2, "image_bytes", pa.nulls(2))
    assert (
        _warnings_during(
            lambda: _scan([_project(_validate(nulls, require_text=True, base_dirs=[]))])
        )
        == []
    )


def test_a_folder_without_parquet_files_says_so(tmp_path):
    """A folder holding only Spark's _SUCCESS said "missing column 'item_id' (columns
    present: [])" (an outsider's fuzz)."""
    from riskrank.index.tables import SchemaError, as_table

    (tmp_path / "_SUCCESS").write_text("")
    with pytest.raises(SchemaError, match="holds no Parquet files"):
        as_table(str(tmp_path), what="inventory")


def test_empty_image_bytes_are_no_picture_and_the_path_is_read(tmp_path):
    """An export with ``image_bytes`` = b"" beside each row's valid ``image_path`` lost every
    picture (bytes win over a path): "image is empty (0 bytes)" on each item, nothing else
    (an outsider's picture inventory). An empty cell holds no picture, as an empty text."""
    from riskrank.index.content_digest import row_digests
    from riskrank.index.schema import NO_CONTENT, validate_inventory
    from riskrank.recall.history import validate_history
    from riskrank.recall.seeds import SeedSet

    (tmp_path / "a.png").write_bytes(b"\x89PNG-a")
    raw = {
        "item_id": ["a", "b", "c"],
        "image_bytes": [b"", b"", b"\x89PNG-c"],
        "image_path": ["a.png", None, None],
    }
    items, bad = validate_inventory(raw)
    assert items.column("item_id").to_pylist() == ["a", "c"]
    assert items.column("image_bytes").to_pylist() == [None, b"\x89PNG-c"]
    assert bad.to_pylist()[0]["item_id"] == "b" and bad.to_pylist()[0]["reason"] == NO_CONTENT
    only_path, _ = validate_inventory({"item_id": ["a"], "image_path": ["a.png"]})
    assert row_digests(items.slice(0, 1), base_dirs=[tmp_path]) == row_digests(
        only_path, base_dirs=[tmp_path]
    )
    seeds = SeedSet.from_table(
        {"seed_id": ["s"], "policy": ["p"], "image_bytes": [b""], "image_path": ["a.png"]}
    )
    assert seeds.table.column("image_bytes").to_pylist() == [None]
    with pytest.raises(SchemaError, match="no content"):
        SeedSet.from_table({"seed_id": ["s"], "policy": ["p"], "image_bytes": [b""]})
    history, _ = validate_history(
        {
            "item_id": ["h"],
            "policy": ["p"],
            "verdict": [2],
            "image_bytes": [b""],
            "image_path": ["a.png"],
        }  # fmt: skip
    )
    assert history.column("image_bytes").to_pylist() == [None]


def test_a_polars_int128_column_is_a_schema_error_naming_it():
    """A polars Int128 id raised pyarrow's "unsupported format string: '_pli128'" (an
    analyst's report); every other wrong id type was a SchemaError naming the column."""
    pl = pytest.importorskip("polars")

    frame = pl.DataFrame({"item_id": [1, 2], "text": ["a b", "c d"]})
    with pytest.raises(SchemaError, match="column 'item_id' is Int128.*cast it to Int64"):
        as_table(frame.with_columns(pl.col("item_id").cast(pl.Int128)))


def test_a_sweep_folder_given_as_the_queue_names_the_queue_file_in_it(tmp_path):
    """It read the folder's index/standing.json as Parquet and said only that (an outsider's
    report)."""
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "standing.json").write_text("{}")
    pq.write_table(pa.table({"item_id": ["a"], "rank": [1]}), tmp_path / "queue.parquet")
    with pytest.raises(SchemaError, match="it is a folder that holds .*queue.parquet: give that"):
        as_table(tmp_path, what="queue")

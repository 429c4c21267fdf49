"""A sweep reuses an index (or a killed build's chunks) only when it was made from the same
content with the same encoders; the ids alone are not enough."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from riskrank.index.build import build_index
from riskrank.index.content_digest import build_digest, row_digests
from riskrank.index.store import current_version
from riskrank.rank.pipeline import sweep


def _swap_texts(items: pa.Table) -> pa.Table:
    """Same ids, same order, but every scam item now carries a benign text and vice versa."""
    texts = items["text"].to_pylist()
    labels = items["label"].to_pylist()
    scam = [t for t, y in zip(texts, labels) if y == 1]
    benign = [t for t, y in zip(texts, labels) if y == 0]
    new = [benign[i % len(benign)] if y == 1 else scam[i % len(scam)] for i, y in enumerate(labels)]
    return items.set_column(items.column_names.index("text"), "text", pa.array(new))


def _top_labels(result, items: pa.Table, n: int = 10) -> list[int]:
    truth = dict(zip(items["item_id"].to_pylist(), items["label"].to_pylist()))
    return [truth[i] for i in result.queue["item_id"].to_pylist()[:n]]


def test_same_ids_new_texts_rebuild_the_index(tmp_path, inventory_items, seeds, hashing_model):
    out = tmp_path / "sw"
    first = sweep(inventory_items, seeds, hashing_model, out_dir=out, k=200, show_progress=False)
    assert sum(_top_labels(first, inventory_items)) >= 8
    swapped = _swap_texts(inventory_items)
    again = sweep(swapped, seeds, hashing_model, out_dir=out, k=200, show_progress=False)
    # The queue must follow the new texts: the items that now read like scams come first.
    assert (
        sum(
            _top_labels(
                again,
                swapped.set_column(
                    2, "label", pa.array([1 - y for y in inventory_items["label"].to_pylist()])
                ),
            )
        )
        >= 8
    )
    stored = pq.read_table(current_version(out / "index") / "items.parquet")
    assert stored["text"].to_pylist() == swapped["text"].to_pylist()


def test_metadata_or_encoder_change_is_noticed(inventory_items, hashing_signal):
    from hashing_signal import HashingTextSignal

    base = build_digest(inventory_items, [hashing_signal])
    assert build_digest(inventory_items, [HashingTextSignal()]) == base  # deterministic
    other_meta = inventory_items.set_column(
        3, "advertiser", pa.array(["x"] * inventory_items.num_rows)
    )
    assert build_digest(other_meta, [hashing_signal]) != base
    assert build_digest(inventory_items, [HashingTextSignal(salt="v2")]) != base


def test_image_file_content_is_part_of_the_row_digest(tmp_path):
    (tmp_path / "a.png").write_bytes(b"first")
    table = pa.table({"item_id": ["a"], "image_path": ["a.png"]})
    before = row_digests(table, base_dirs=[tmp_path])
    (tmp_path / "a.png").write_bytes(b"second")
    assert row_digests(table, base_dirs=[tmp_path]) != before


def test_killed_build_chunks_are_not_reused_for_new_content(
    tmp_path, inventory_items, hashing_signal
):
    inv = inventory_items.drop(["label"])
    swapped = _swap_texts(inventory_items).drop(["label"])
    # A build of the old texts dies after writing its chunks (kept in _work/, no manifest).
    build_index(inv, tmp_path / "idx", signals=[hashing_signal], chunk_size=16, show_progress=False)
    work = tmp_path / "idx" / "_work"
    work.mkdir()
    from riskrank.index.chunks import chunk_files
    from riskrank.index.engine import LocalEngine, chunk_keys

    engine = LocalEngine()  # the chunks the local engine saves, named as build_index names them
    valid = engine.read(inv, require_text=True, base_dirs=[None])
    files = chunk_files(work, chunk_keys(valid.keys, 16), [hashing_signal.describe()], ["text"])
    engine.embed(valid, [hashing_signal], files, chunk_size=16, show_progress=False)
    assert len(list(work.glob("chunk-*.parquet"))) == 6
    rebuilt = build_index(
        swapped,
        tmp_path / "idx",
        signals=[hashing_signal],
        chunk_size=16,
        show_progress=False,
        overwrite=True,
    )
    fresh = build_index(
        swapped, tmp_path / "fresh", signals=[hashing_signal], chunk_size=16, show_progress=False
    )
    assert rebuilt.manifest["chunks"]["resumed"] == 0
    np.testing.assert_array_equal(
        np.asarray(rebuilt.signals["text"].vectors), np.asarray(fresh.signals["text"].vectors)
    )

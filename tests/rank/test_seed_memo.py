"""Seed vectors kept next to a standing index (rank/seed_memo.py): reused only for the same
text, encoder and code, bit for bit what embedding them again gives, and a sweep's output is
the same with them as without."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conftest import train_small

from riskrank.index.signals import TextEmbeddingSignal
from riskrank.rank import seed_memo
from riskrank.rank.seed_memo import FILE, SeedVectorMemo

pytest.importorskip("openvino")

TEXTS = ["Cheap pills shipped overnight", "You won a prize, claim it now", "   "]


@pytest.fixture(scope="module")
def signal():
    return TextEmbeddingSignal(backend="openvino")


def _counting(signal, monkeypatch) -> list[int]:
    """Rows ``signal.embed_queries`` is asked for, call by call."""
    asked: list[int] = []
    real = type(signal).embed_queries

    def counting(self, table, **kw):
        asked.append(table.num_rows)
        return real(self, table, **kw)

    monkeypatch.setattr(type(signal), "embed_queries", counting)
    return asked


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert a.vectors.dtype == b.vectors.dtype == np.float32
    assert list(a.ok) == list(b.ok) and list(a.reasons) == list(b.reasons)


def test_kept_seed_vectors_are_reused_for_the_same_text_encoder_and_code(
    tmp_path, signal, monkeypatch
):
    path = tmp_path / FILE
    table = pa.table({"text": TEXTS})
    want = signal.embed_queries(table)
    assert not want.ok[2]  # a blank seed: refused, with its reason, from the file too
    first = SeedVectorMemo(path)
    _same(first.embed(signal, table), want)
    first.save()
    asked = _counting(signal, monkeypatch)
    again = SeedVectorMemo(path)
    _same(again.embed(signal, table), want)
    assert asked == [] and again.embedded == 0
    # Unchanged: the file is not rewritten.
    written = path.stat().st_mtime_ns
    again.save()
    assert path.stat().st_mtime_ns == written
    # One seed edited: only it is embedded; the file then keeps exactly today's seeds.
    edited = pa.table({"text": [TEXTS[0], TEXTS[1] + "!", TEXTS[2]]})
    memo = SeedVectorMemo(path)
    got = memo.embed(signal, edited)
    assert asked == [1]
    monkeypatch.undo()
    _same(got, signal.embed_queries(edited))
    memo.save()
    assert len(SeedVectorMemo(path).stored) == 3


@pytest.mark.parametrize("change", ["encoder", "code"])
def test_another_encoder_or_code_embeds_every_seed_again(tmp_path, signal, monkeypatch, change):
    path = tmp_path / FILE
    table = pa.table({"text": TEXTS[:2]})
    memo = SeedVectorMemo(path)
    memo.embed(signal, table)
    memo.save()
    if change == "encoder":  # another probe vector: other weights, library or CPU
        described = signal.encoder.describe()
        monkeypatch.setattr(
            signal.encoder, "describe", lambda: {**described, "fingerprint": "0" * 16}
        )
    else:
        monkeypatch.setattr(seed_memo, "code_digest", lambda: "another riskrank")
    asked = _counting(signal, monkeypatch)
    SeedVectorMemo(path).embed(signal, table)
    assert asked == [2]


def test_a_damaged_file_or_no_path_embeds_every_seed(tmp_path, signal, monkeypatch):
    path = tmp_path / FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet")
    table = pa.table({"text": TEXTS[:2]})
    asked = _counting(signal, monkeypatch)
    SeedVectorMemo(path).embed(signal, table)
    SeedVectorMemo(None).embed(signal, table)
    assert asked == [2, 2]


def test_a_sweep_with_kept_seed_vectors_gives_the_queue_one_without_gives(
    tmp_path, history, seeds, inventory_items, signal, monkeypatch
):
    from test_daily_sweep import NEW_SEEDS, SWEEP, assert_same_queue

    from riskrank.rank.pipeline import sweep

    model = train_small(history, seeds, tmp_path / "model", signal)
    inv = inventory_items.drop(["label"])
    st = tmp_path / "st"
    sweep(inv, seeds, model, out_dir=tmp_path / "d0", index_dir=st, **SWEEP)
    assert len(SeedVectorMemo(st / FILE).stored) == seeds.num_rows
    new = pa.table({"seed_id": ["p1", "p2"], "policy": ["phish"] * 2, "text": NEW_SEEDS[1:]})
    both = pa.concat_tables([seeds, new], promote_options="default")
    asked = _counting(signal, monkeypatch)
    day2 = sweep(None, both, model, out_dir=tmp_path / "d2", index_dir=st, **SWEEP)
    assert asked == [2]  # only the new policy's seeds
    monkeypatch.undo()
    assert_same_queue(day2, sweep(inv, both, model, out_dir=tmp_path / "f2", **SWEEP))

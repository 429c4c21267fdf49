"""Saved models and indexes are trusted only if every file is what was saved, and a model
is replaced as a whole or not at all."""

from __future__ import annotations

import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import train_small

from riskrank.index.build import build_index
from riskrank.index.checksums import ChecksumError
from riskrank.index.store import IndexMismatchError, InventoryIndex
from riskrank.rank.app.cli import main
from riskrank.rank.model import RiskModel
from riskrank.rank.model_store import SEAL, clean_stale


def _flip(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_every_model_file_is_checked_and_named(tmp_path, history, seeds, hashing_signal):
    saved = tmp_path / "m"
    model = train_small(history, seeds, saved, hashing_signal)
    files = sorted(p for p in saved.rglob("*") if p.is_file() and "history_index" not in p.parts)
    assert len(files) >= 6 and (saved / "history_quarantine.parquet") in files
    for f in files:
        trial = tmp_path / "trial"
        shutil.copytree(saved, trial)
        _flip(trial / f.relative_to(saved))
        with pytest.raises(ChecksumError, match=f.name.replace(".", r"\.")):
            RiskModel.load(trial)
        shutil.rmtree(trial)
    assert RiskModel.load(saved).info["history_rows"] == model.info["history_rows"]


def test_a_save_killed_midway_leaves_the_old_model_whole(
    tmp_path, hashing_model, history, seeds, monkeypatch
):
    path = hashing_model.save(tmp_path / "m")
    before = {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    other = train_small(history.slice(0, 100), seeds, tmp_path / "other", hashing_model.signals[0])
    from riskrank.recall.history import ReviewedExemplars

    def dies(self, where):  # the ranker is written, then the process is killed
        raise KeyboardInterrupt

    monkeypatch.setattr(ReviewedExemplars, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        other.save(path)
    after = {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    assert after == before  # not a new ranker beside old exemplars
    assert not list(tmp_path.glob(".m.*"))
    RiskModel.load(path)


def test_half_written_and_foreign_directories_are_refused(tmp_path, hashing_model, history, seeds):
    path = hashing_model.save(tmp_path / "m")
    (path / SEAL).unlink()
    with pytest.raises(ChecksumError, match=str(path)):
        RiskModel.load(path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("do not delete")
    with pytest.raises(FileExistsError, match="not a riskrank model"):
        hashing_model.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "do not delete"
    from conftest import train_small

    with pytest.raises(FileExistsError, match="not a riskrank model"):
        train_small(history, seeds, tmp_path / "mine", hashing_model.signals[0])
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
    # A staging directory of a killed save (its process is gone) is cleaned by the next save.
    stale = tmp_path / ".m.saving-999999999-abcd1234"
    stale.mkdir()
    assert clean_stale(tmp_path / "m") == [stale] and not stale.exists()


def test_index_tables_are_checksummed(tmp_path, inventory_items, hashing_signal):
    build_index(inventory_items, tmp_path / "idx", signals=[hashing_signal], show_progress=False)
    table = pq.read_table(tmp_path / "idx" / "items.parquet")
    texts = table["text"].to_pylist()
    texts[0] = texts[0][:-1] + "!"  # a change a reader would never notice
    pq.write_table(table.set_column(1, "text", pa.array(texts)), tmp_path / "idx" / "items.parquet")
    with pytest.raises(ChecksumError, match="items.parquet"):
        InventoryIndex.load(tmp_path / "idx")
    _flip(tmp_path / "idx" / "quarantine.parquet", 10)
    with pytest.raises(ChecksumError):
        InventoryIndex.load(tmp_path / "idx")


def test_index_manifest_carries_its_own_checksum(tmp_path, inventory_items, hashing_signal):
    import json

    build_index(inventory_items, tmp_path / "idx", signals=[hashing_signal], show_progress=False)
    mpath = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest["signals"]["text"]["nprobe"] = 7  # parses fine, searches differently
    mpath.write_text(json.dumps(manifest, indent=2))
    with pytest.raises(ChecksumError, match="manifest.json"):
        InventoryIndex.load(tmp_path / "idx")


def test_other_weights_under_the_same_name_are_refused(
    tmp_path, inventory_items, seeds, history, hashing_model, capsys
):
    from hashing_signal import HashingTextSignal

    # Same type, model name, version and dim; only the weights (here: a salt) differ.
    other = HashingTextSignal(salt="other weights")
    build_index(inventory_items, tmp_path / "idx", signals=[other], show_progress=False)
    with pytest.raises(IndexMismatchError, match="fingerprint"):
        InventoryIndex.load(tmp_path / "idx", signals={"text": hashing_model.signals[0]})
    hashing_model.save(tmp_path / "m")
    pq.write_table(seeds, tmp_path / "seeds.parquet")
    argv = ["recall", "--index", str(tmp_path / "idx"), "--seeds", str(tmp_path / "seeds.parquet")]
    argv += ["--out", str(tmp_path / "c.parquet"), "--model", str(tmp_path / "m")]
    assert main(argv) == 2
    assert "fingerprint" in capsys.readouterr().err
    assert not (tmp_path / "c.parquet").exists()
    assert hashing_model.signals[0].compatible_with(hashing_model.signals[0].describe()) is None


def test_load_refuses_a_model_whose_encoder_changed(tmp_path, hashing_model, monkeypatch):
    import hashing_signal

    path = hashing_model.save(tmp_path / "m")
    real = hashing_signal.HashingTextSignal.from_manifest

    def drifted(entry):  # the weights behind the recorded name changed since training
        return hashing_signal.HashingTextSignal(salt="drift")

    monkeypatch.setattr(hashing_signal.HashingTextSignal, "from_manifest", staticmethod(drifted))
    with pytest.raises(IndexMismatchError, match="no longer encodes"):
        RiskModel.load(path)
    monkeypatch.setattr(hashing_signal.HashingTextSignal, "from_manifest", real)
    assert os.path.isdir(path)


def test_cli_recall_reads_seed_pictures_from_the_image_base_dir(tmp_path, capsys):
    # `riskrank recall` had no --image-base-dir: seed pictures were looked up in the working
    # directory and the candidates carried no picture evidence (an outsider's report).
    import io

    import numpy as np
    from PIL import Image

    from riskrank.index.signals.pdq import PdqSignal

    folder = tmp_path / "creatives"
    folder.mkdir()
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG")
        (folder / f"p{i}.jpg").write_bytes(buf.getvalue())
    items = pa.table({"item_id": ["a", "b", "c"], "image_path": ["p0.jpg", "p1.jpg", "p2.jpg"]})
    build_index(items, tmp_path / "idx", signals=[PdqSignal(base_dir=folder)], show_progress=False)
    seeds = pa.table({"seed_id": ["s"], "policy": ["scam"], "image_path": ["p1.jpg"]})
    pq.write_table(seeds, tmp_path / "seeds.parquet")
    argv = ["recall", "--index", str(tmp_path / "idx"), "--seeds", str(tmp_path / "seeds.parquet")]
    argv += ["--out", str(tmp_path / "c.parquet"), "--image-base-dir", str(folder)]
    assert main(argv) == 0
    cands = pq.read_table(tmp_path / "c.parquet")
    best = dict(zip(cands["item_id"].to_pylist(), cands["pdq_best_distance"].to_pylist()))
    assert best["b"] == 0

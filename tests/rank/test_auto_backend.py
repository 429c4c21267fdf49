"""The text backend ``auto`` (the default since 2026-12-06) against what was made before it:
an upgrade keeps the encoder an index or model was built with, and refusals name the way out
(outsider AO's findings)."""

from __future__ import annotations

import json
import logging

import pyarrow.parquet as pq
import pytest
from conftest import train_small

from riskrank.index import IndexMismatchError
from riskrank.index.signals import TextEmbeddingSignal
from riskrank.index.signals import text as text_mod
from riskrank.index.standing import StandingIndex

pytest.importorskip("openvino")
pytest.importorskip("onnx")


@pytest.fixture
def auto_is_openvino(monkeypatch):
    monkeypatch.delenv(text_mod.BACKEND_ENV, raising=False)
    monkeypatch.setattr(text_mod, "_cuda_present", lambda: False)
    assert TextEmbeddingSignal().encoder.backend == "openvino"


def text_entry(index_dir) -> dict:
    current = StandingIndex(index_dir).current_dir()
    return json.loads((current / "manifest.json").read_text())["signals"]["text"]


def test_a_daily_update_of_a_pytorch_index_stays_pytorch(
    auto_is_openvino, tmp_path, inventory_items
):
    from riskrank.rank.app.cli import main

    inv = tmp_path / "inv.parquet"
    pq.write_table(inventory_items.slice(0, 8), inv)
    standing = tmp_path / "standing"
    args = ["index", "update", "--inventory", str(inv), "--index", str(standing)]
    assert main([*args, "--text-backend", "torch"]) == 0  # made before the upgrade
    pq.write_table(inventory_items.slice(0, 10), inv)
    # The same command line after it: without --signals, the index's own signals as its
    # manifest records them (index update's default), PyTorch among them.
    assert main(args) == 0
    assert text_entry(standing)["backend"] == "torch"
    # What a sweep's report (and summary) says of the index it ran on.
    from riskrank.rank.evaluation.report import encoder_rows
    from riskrank.rank.pipeline import encoder_record

    record = encoder_record(text_entry(standing))
    assert record["backend"] == "torch" and "precision" not in record  # (recorded on CUDA only)
    [(label, value)] = encoder_rows({"index": {"text": {"key": "Flat", "encoder": record}}})
    assert label == "text encoder" and value.endswith("; torch)")
    assert encoder_rows({"index": {"text": {"key": "Flat"}}}) == []  # a report from before
    assert encoder_record({"model": "pdq", "dim": 256}) == {"model": "pdq"}
    # The library's update does the same with a default signal, and says so; so does the
    # command line naming the signal (its backend only auto's choice).
    said: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = said.append
    text_mod.log.addHandler(handler)
    try:
        pq.write_table(inventory_items.slice(0, 11), inv)
        assert main([*args, "--signals", "text"]) == 0
        assert text_entry(standing)["backend"] == "torch"
        pq.write_table(inventory_items.slice(0, 12), inv)
        StandingIndex(standing).update(inv, [TextEmbeddingSignal()], show_progress=False)
    finally:
        text_mod.log.removeHandler(handler)
    assert text_entry(standing)["backend"] == "torch"
    assert sum("keeping backend 'torch'" in r.getMessage() for r in said) == 2
    # Named on the command line, the other backend is refused, and the refusal says why.
    with pytest.raises(IndexMismatchError, match="since 2026-12-06 the default 'auto'"):
        StandingIndex(standing).update(inv, [TextEmbeddingSignal(backend="openvino")])


def test_a_retrain_into_the_same_folder_keeps_its_encoder(
    auto_is_openvino, tmp_path, history, seeds
):
    model_dir = tmp_path / "model"
    first = train_small(history, seeds, model_dir, TextEmbeddingSignal(backend="torch"))
    assert first.signals[0].encoder.backend == "torch"
    again = train_small(history, seeds, model_dir, TextEmbeddingSignal())  # auto: openvino
    assert again.signals[0].encoder.backend == "torch"
    assert text_entry(model_dir / "history_index")["backend"] == "torch"
    # A new folder takes what auto chooses.
    new = train_small(history, seeds, tmp_path / "new", TextEmbeddingSignal())
    assert new.signals[0].encoder.backend == "openvino"


def test_only_auto_s_choice_gives_way(auto_is_openvino, monkeypatch, torch_signal):
    recorded = torch_signal.describe()
    assert TextEmbeddingSignal().recorded_instead(recorded).encoder.backend == "torch"
    # A backend named, or pinned by the environment, is the user's: refused, not replaced.
    assert TextEmbeddingSignal(backend="openvino").recorded_instead(recorded) is None
    monkeypatch.setenv(text_mod.BACKEND_ENV, "openvino")
    assert TextEmbeddingSignal().recorded_instead(recorded) is None
    monkeypatch.delenv(text_mod.BACKEND_ENV)
    # Another model or token cap is another encoder.
    assert TextEmbeddingSignal().recorded_instead({**recorded, "model": "other"}) is None
    assert TextEmbeddingSignal().recorded_instead({**recorded, "max_seq_length": 128}) is None


def test_a_precision_refusal_says_what_another_cpu_needs(auto_is_openvino):
    signal = TextEmbeddingSignal()
    spec = signal.describe()
    other = "f32" if spec["precision"] == "bf16" else "bf16"
    why = signal.compatible_with({**spec, "precision": other})
    assert why.startswith("precision:") and "RISKRANK_TEXT_BACKEND=torch" in why
    # Same backend, other precision: only another CPU gives it, so nothing gives way.
    assert signal.recorded_instead({**spec, "precision": other}) is None


def test_an_export_that_cannot_be_written_says_where_to_write_it(monkeypatch, tmp_path):
    """A read-only home and a model recorded as OpenVINO: a clear error, not a traceback."""
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("RISKRANK_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(PermissionError, match="set RISKRANK_CACHE to a writable folder"):
        text_mod.TextEncoder(backend="openvino").encode(["a text"])


def test_train_names_the_encoder_and_who_chose_it(auto_is_openvino, monkeypatch):
    from riskrank.rank.app.cli import _encoder_rows

    assert _encoder_rows([TextEmbeddingSignal(backend="torch")]) == [("text encoder", "torch")]
    ((_, auto),) = _encoder_rows([TextEmbeddingSignal()])
    assert auto.startswith("openvino ") and "(auto: a CPU with OpenVINO installed)" in auto
    monkeypatch.setenv(text_mod.BACKEND_ENV, "torch")  # a forgotten pin shows
    assert _encoder_rows([TextEmbeddingSignal()]) == [
        ("text encoder", "torch (RISKRANK_TEXT_BACKEND=torch)")
    ]

"""The int8 encoder's default calibration texts: history sides only, and always the same."""

from __future__ import annotations

import os

import pyarrow.compute as pc
import pytest

from riskrank.rank.app import datasets as ds


def _need(name: str) -> None:
    if not ds.is_fetched(name) and not os.environ.get("RISKRANK_FETCH"):
        pytest.skip(f"{name} not in {ds.cache_root()}; set RISKRANK_FETCH=1 to fetch it")


@pytest.mark.data
def test_history_calibration_is_fixed_and_never_the_swept_side():
    _need("spamassassin")
    _need("insults")
    from riskrank.rank.app.encoder_calibration import history_calibration_texts

    cal = history_calibration_texts()
    spam, insults = ds.load("spamassassin"), ds.load("insults")
    history = set(spam.filter(pc.equal(spam["era"], "old")).column("text").to_pylist())
    history |= set(insults.filter(pc.equal(insults["split"], "train")).column("text").to_pylist())
    # Every text is a history-side one (a swept text can match only as a verbatim copy).
    assert all(t in history for t in cal.texts)
    assert cal.identity()["size"] == 300
    # Pinned: the digest is what index manifests record, so the same name must mean the same
    # texts (a parser change that alters them needs a new NAME).
    assert cal.digest == "2ad23317ec5644cc"
    assert history_calibration_texts().digest == cal.digest


@pytest.mark.data
def test_cli_calibrates_int8_on_the_history_corpus_by_default(tmp_path, inventory_items):
    _need("spamassassin")
    _need("insults")
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    import json

    import pyarrow.parquet as pq

    from riskrank.rank.app.cli import main

    pq.write_table(inventory_items.slice(0, 6), tmp_path / "inv.parquet")
    out = tmp_path / "idx"
    args = ["index", "build", str(tmp_path / "inv.parquet"), "--out", str(out)]
    assert main([*args, "--text-backend", "openvino-int8"]) == 0
    entry = json.loads((out / "manifest.json").read_text())["signals"]["text"]
    assert entry["calibration"]["name"].startswith("history-v1:")
    assert entry["calibration"]["digest"] == "2ad23317ec5644cc"

"""Text + CLIP image + PDQ through recall and ranking: one evidence group per signal."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw

from riskrank.index import PdqSignal, TextEmbeddingSignal, build_index
from riskrank.index.signals.clip import ClipImageSignal, tiny_clip_encoder
from riskrank.rank.ranker import RiskRanker
from riskrank.recall.recaller import recall


def _creative(seed: int, caption: str | None = None, shift: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).resize((128, 128))
    draw = ImageDraw.Draw(img)
    draw.ellipse(
        (20 + shift, 20, 90 + shift, 100), fill=tuple(int(v) for v in rng.integers(0, 255, 3))
    )
    if caption:
        draw.rectangle((0, 110, 128, 128), fill=(0, 0, 0))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=70 + seed % 20)
    return buf.getvalue()


@pytest.fixture(scope="module")
def signals():
    return [TextEmbeddingSignal(), ClipImageSignal(tiny_clip_encoder()), PdqSignal()]


def test_multimodal_recall_has_a_column_group_per_signal(tmp_path, signals):
    # 10 known-bad creatives re-uploaded with a caption band and new text; 30 unrelated items;
    # some items have text only, some image only, one a corrupt image.
    rows = []
    for i in range(10):
        rows.append(
            {
                "item_id": f"bad{i}",
                "text": "Replica designer bags, 90% off",
                "image_bytes": _creative(i, caption="SALE"),
                "label": 1,
            }
        )
    for i in range(30):
        rows.append(
            {
                "item_id": f"ok{i}",
                "text": f"Weekly farmers market, stall {i}",
                "image_bytes": _creative(100 + i),
                "label": 0,
            }
        )
    rows.append(
        {"item_id": "textonly", "text": "Cheap replica handbags", "image_bytes": None, "label": 1}
    )
    rows.append({"item_id": "imgonly", "text": None, "image_bytes": _creative(2), "label": 1})
    rows.append(
        {"item_id": "corrupt", "text": "market day", "image_bytes": b"\xff\xd8broken", "label": 0}
    )
    inv = pa.Table.from_pylist(rows)
    idx = build_index(inv, tmp_path / "idx", signals=signals, show_progress=False)
    assert set(idx.signals) == {"text", "image", "pdq"}
    assert idx.manifest["items"]["indexed"] == inv.num_rows  # a bad image is not a bad item
    assert "corrupt" not in set(idx.signals["pdq"].ids)

    seeds = pa.table(
        {
            "seed_id": [f"s{i}" for i in range(3)],
            "policy": ["counterfeit"] * 3,
            "text": ["Replica designer handbags at 90% off"] * 3,
            "image_bytes": [_creative(i) for i in range(3)],  # the originals, without the caption
        }
    )
    cands = recall(idx, seeds, k=50, show_progress=False).to_pandas().set_index("item_id")
    for group in ("text", "image", "pdq"):
        assert f"{group}_best_sim" in cands.columns
    assert {"pdq_best_distance", "pdq_quality"} <= set(cands.columns)
    # The image-only item re-uploads seed s2's creative: PDQ sees it, text cannot.
    assert cands.loc["imgonly", "pdq_best_distance"] <= 31
    assert cands.loc["imgonly", "pdq_best_seed_id"] == "s2"
    assert np.isnan(cands.loc["imgonly", "text_best_sim"])
    assert np.isnan(cands.loc["textonly", "pdq_best_sim"])
    # Seeds' creatives come back under a caption band closer than unrelated creatives do.
    bad = cands.loc[[f"bad{i}" for i in range(3)], "pdq_best_distance"]
    good = cands.loc[[f"ok{i}" for i in range(30)], "pdq_best_distance"]
    assert bad.max() < good.min()

    # The ranker learns from whatever signals the index has.
    labels = dict(zip(inv["item_id"].to_pylist(), inv["label"].to_pylist()))
    train = pa.Table.from_pandas(cands.reset_index(), preserve_index=False)
    train = train.append_column(
        "verdict", pa.array([2 * labels[i] for i in train["item_id"].to_pylist()], pa.int8())
    )
    ranker = RiskRanker(n_estimators=20, min_child_samples=3, calibration_fraction=0.3).fit(train)
    assert any(f.startswith("pdq_") for f in ranker.features_)
    assert any(f.startswith("image_") for f in ranker.features_)


def test_train_and_sweep_with_image_signals_roundtrip(tmp_path, signals):
    from riskrank.rank.pipeline import RiskModel, sweep, train

    def rows(prefix, n_bad, n_ok, offset):
        out = []
        for i in range(n_bad):
            out.append(
                {
                    "item_id": f"{prefix}bad{i}",
                    "text": f"Replica bag offer {i}",
                    "image_bytes": _creative(offset + i % 3, caption="SALE"),
                    "verdict": 2,
                }
            )
        for i in range(n_ok):
            out.append(
                {
                    "item_id": f"{prefix}ok{i}",
                    "text": f"Garden club meets on day {i}",
                    "image_bytes": _creative(500 + offset + i),
                    "verdict": 0,
                }
            )
        return out

    history = pa.Table.from_pylist(rows("h", 30, 60, 0)).append_column(
        "policy", pa.array(["counterfeit"] * 90)
    )
    seeds = pa.table({"seed_id": ["s0"], "policy": ["counterfeit"], "image_bytes": [_creative(0)]})
    train(history, seeds, tmp_path / "m", signals=signals, k=90, show_progress=False)
    model = RiskModel.load(tmp_path / "m")  # CLIP + PDQ rebuilt from the manifest
    assert [s.name for s in model.signals] == ["text", "image", "pdq"]
    inv = pa.Table.from_pylist(rows("i", 10, 20, 0)).drop(["verdict"])
    res = sweep(inv, seeds, model, k=30, show_progress=False)
    top = res.queue.to_pandas().item_id.iloc[:10]
    assert sum(t.startswith("ibad") for t in top) >= 8
    # Reasons for image items: the image-only seed, the signal that matched, what to replace.
    for row in res.queue.slice(0, 5).to_pylist():
        assert row["closest_seed_id"] == "s0" and row["closest_seed_excerpt"] == "[image]"
        assert row["closest_seed_signal"] in ("image", "pdq")
        assert "replace the image that matches seed s0" in row["remediation"]
        if row["closest_seed_signal"] == "pdq":
            assert row["closest_seed_distance"] == row["pdq_best_distance"]

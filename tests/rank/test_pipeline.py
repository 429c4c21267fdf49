import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from riskrank.rank.app.cli import main
from riskrank.rank.evaluation.metrics import average_precision
from riskrank.rank.evaluation.report import score_population
from riskrank.rank.pipeline import RiskModel, sweep


def _with_bad_rows(items: pa.Table) -> pa.Table:
    bad = pa.table(
        {
            "item_id": [items["item_id"][0].as_py(), "empty", None],
            "text": ["duplicate id", "  ", "no id"],
            "label": [0, 0, 0],
            "advertiser": ["x", "x", "x"],
        }
    )
    return pa.concat_tables([items, bad])


def test_sweep_end_to_end_counts_and_quality(tmp_path, inventory_items, seeds, trained_model):
    inv = _with_bad_rows(inventory_items)
    res = sweep(
        inv.drop(["label"]),
        seeds,
        trained_model,
        out_dir=tmp_path / "sw",
        k=200,
        show_progress=False,
    )
    r = res.report
    assert r["items_in"] == inv.num_rows == r["items_indexed"] + r["items_quarantined"]
    assert r["items_quarantined"] == 3
    q = res.queue.to_pandas()
    assert not q.item_id.duplicated().any()
    assert list(q["rank"]) == list(range(1, len(q) + 1))
    assert (np.diff(q.risk_probability) <= 1e-12).all()
    ids = inventory_items["item_id"].to_pylist()
    y = np.array(inventory_items["label"].to_pylist())
    assert average_precision(y, score_population(res.queue, ids, "risk_probability")) > 0.9
    top = q.iloc[0]
    assert top.reasons and top.model == "full"
    assert q.matched_seed_ids.iloc[:10].map(len).sum() > 0
    assert top.action in {"remove", "human_review"}
    for f in ("queue.parquet", "candidates.parquet", "quarantine.parquet", "report.json"):
        assert (tmp_path / "sw" / f).exists()
    assert pq.read_table(tmp_path / "sw" / "quarantine.parquet").num_rows == 3


def test_model_roundtrip_and_cold_policy(tmp_path, inventory_items, seeds, trained_model):
    trained_model.save(tmp_path / "m")
    model = RiskModel.load(tmp_path / "m")
    assert not list((tmp_path / "m").glob("**/*.pkl"))
    new_policy = pa.table(
        {
            "seed_id": ["c1"],
            "policy": ["counterfeit"],
            "text": ["Replica designer handbags, authentic quality, 90% off"],
        }
    )
    res = sweep(inventory_items.drop(["label"]), new_policy, model, k=50, show_progress=False)
    assert res.report["cold_start_policies"] == ["counterfeit"]
    assert set(res.queue["model"].to_pylist()) == {"cold"}
    top = res.queue.to_pandas().text.iloc[:5]
    assert sum("replica" in t.lower() for t in top) >= 3


def test_killed_sweep_resumes_to_the_same_queue(
    tmp_path, inventory_items, seeds, trained_model, monkeypatch
):
    import riskrank.index.engine as build  # the local engine embeds through embed_chunk

    inv = inventory_items.drop(["label"])
    clean = sweep(inv, seeds, trained_model, out_dir=tmp_path / "clean", k=200, show_progress=False)
    real = build.embed_chunk
    calls = []

    def dying(signals, chunk):
        # Encode two chunks for real, then die as a killed process would.
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(chunk.num_rows)
        return real(signals, chunk)

    monkeypatch.setattr(build, "embed_chunk", dying)
    with pytest.raises(KeyboardInterrupt):
        sweep(
            inv,
            seeds,
            trained_model,
            out_dir=tmp_path / "sw",
            k=200,
            show_progress=False,
            chunk_size=16,
        )
    monkeypatch.setattr(build, "embed_chunk", real)
    assert len(list((tmp_path / "sw" / "index" / "_work").glob("chunk-*.parquet"))) == 2
    again = sweep(
        inv,
        seeds,
        trained_model,
        out_dir=tmp_path / "sw",
        k=200,
        show_progress=False,
        chunk_size=16,
    )
    assert again.queue["item_id"].to_pylist() == clean.queue["item_id"].to_pylist()
    np.testing.assert_allclose(
        again.queue["risk_probability"].to_numpy(),
        clean.queue["risk_probability"].to_numpy(),
        atol=1e-6,
    )


def test_cli_train_sweep_eval(tmp_path, history, inventory_items, seeds, capsys):
    pq.write_table(history, tmp_path / "history.parquet")
    pq.write_table(seeds, tmp_path / "seeds.parquet")
    pq.write_table(inventory_items.drop(["label"]), tmp_path / "inv.parquet")
    labels = inventory_items.select(["item_id", "label"])
    pq.write_table(labels, tmp_path / "labels.parquet")
    assert (
        main(
            [
                "train",
                "--history",
                str(tmp_path / "history.parquet"),
                "--seeds",
                str(tmp_path / "seeds.parquet"),
                "--out",
                str(tmp_path / "model"),
                "--k",
                "200",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "sweep",
                "--inventory",
                str(tmp_path / "inv.parquet"),
                "--seeds",
                str(tmp_path / "seeds.parquet"),
                "--model",
                str(tmp_path / "model"),
                "--out",
                str(tmp_path / "sweep"),
                "--budget",
                "20",
            ]
        )
        == 0
    )
    queue = pq.read_table(tmp_path / "sweep" / "queue.parquet")
    assert queue.num_rows == 20
    assert (tmp_path / "sweep" / "report.md").exists() and (
        tmp_path / "sweep" / "report.png"
    ).exists()
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "--queue",
                str(tmp_path / "sweep" / "queue.parquet"),
                "--labels",
                str(tmp_path / "labels.parquet"),
            ]
        )
        == 0
    )
    assert "AP" in capsys.readouterr().out
    assert (
        main(
            [
                "sweep",
                "--inventory",
                str(tmp_path / "missing.parquet"),
                "--seeds",
                str(tmp_path / "seeds.parquet"),
                "--model",
                str(tmp_path / "model"),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )

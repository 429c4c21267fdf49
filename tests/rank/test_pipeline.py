import json
import logging
import re
import tempfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from riskrank.index.tables import SchemaError
from riskrank.rank.app.cli import main
from riskrank.rank.evaluation.metrics import average_precision
from riskrank.rank.evaluation.report import evaluate, score_population
from riskrank.rank.model_store import MODEL_JSON, seal
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
    # Bad rows: an empty text, a null id, and an id repeated with other text (both rows:
    # which of the two is live is unknown).
    assert r["items_quarantined"] == 4
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
    # 24 held-out reviews cannot show 95% precision at 95% confidence: no automatic action.
    assert set(q.calibration) == {"policy_history"}
    assert trained_model.ranker.thresholds_["scam"].threshold is None
    assert q.action_threshold.isna().all() and set(q.action) == {"escalate"}
    # (too few of either verdict for EM, too: its level is kept, and the sweep says so)
    assert any("too few to re-estimate its base rate" in w for w in r["warnings"])
    assert r["decisions"]["scam"]["calibration"] == "policy_history"
    assert r["decisions"]["scam"]["base_rate"] == "held_out_level"
    assert 0 < r["coverage"] <= 1
    for f in ("queue.parquet", "candidates.parquet", "quarantine.parquet", "report.json"):
        assert (tmp_path / "sw" / f).exists()
    assert pq.read_table(tmp_path / "sw" / "quarantine.parquet").num_rows == 4


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
    # pytest's logging plugin is off (pyproject): listen on the library's logger directly.
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("riskrank").addHandler(handler)
    try:
        res = sweep(inventory_items.drop(["label"]), new_policy, model, k=50, show_progress=False)
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    assert res.report["cold_start_policies"] == ["counterfeit"]
    assert set(res.queue["model"].to_pylist()) == {"cold"}
    # Cold: calibration transferred with the base rate re-estimated here, never automatic.
    assert set(res.queue["calibration"].to_pylist()) == {"transferred"}
    assert set(res.queue["action"].to_pylist()) == {"escalate"}
    assert "estimated_base_rate" in res.report["decisions"]["counterfeit"]
    assert any("'counterfeit' has no review history" in w for w in res.report["warnings"])
    assert any("'counterfeit' has no review history" in r.getMessage() for r in records)
    top = res.queue.to_pandas().text.iloc[:5]
    assert sum("replica" in t.lower() for t in top) >= 3


def test_a_cold_policy_whose_seeds_are_close_to_nothing_is_taken_as_absent(
    inventory_items, seeds, hashing_model
):
    """A new policy swept where nothing resembles its seeds (insults over e-mails) was put at
    P 0.976 beside "No seed is close" by its relative evidence and took a queue's top 100
    from real spam (an outsider's report): its base rate is one violation among its rows now,
    its order within itself unchanged, and the warm policy's rows keep the top."""
    far = pa.table(
        {
            "seed_id": ["z1", "z2"],
            "policy": ["insult", "insult"],
            "text": ["zebra quantum violin orchard glacier", "tundra nebula harp marmalade"],
        }
    )
    both = pa.concat_tables([seeds.select(["seed_id", "policy", "text"]), far])
    inv = inventory_items.drop(["label"])
    # The hashing stand-in finds every text alike (cosine > 0.5): "close" is made stricter.
    signal = hashing_model.signals[0]
    signal.match_thresholds, signal.presence_threshold = (0.999, 0.9995), 0.999
    try:
        res = sweep(inv, both, hashing_model, k=None, show_progress=False)
        alone = sweep(inv, far, hashing_model, k=None, show_progress=False).queue
        words = far.append_column("kind", pa.array(["description", "example"]))
        described = sweep(inv, words, hashing_model, k=None, show_progress=False)
        # Present is read at the signal's presence threshold, not its weak match threshold:
        # a present policy's nearest item did not always reach the weak one (MiniLM: 5 insult
        # seeds over 300 comments, a quarter of them insults, in 9 of 20 draws).
        nearest = pa.compute.max(
            res.candidates.filter(pa.compute.equal(res.candidates["policy"], "insult"))[
                "text_best_sim"
            ]
        ).as_py()
        signal.presence_threshold = nearest - 1e-6
        present = sweep(inv, far, hashing_model, k=None, show_progress=False)
    finally:
        del signal.match_thresholds, signal.presence_threshold
    assert not any("taken as absent" in w for w in present.report["warnings"])
    assert present.report["decisions"]["insult"]["estimated_base_rate"] > 0.05
    cands = res.candidates.filter(pa.compute.equal(res.candidates["policy"], "insult"))
    n = cands.num_rows
    assert n > 50 and not (pa.compute.max(cands["text_n_seeds_lo"]).as_py() or 0)
    assert res.report["decisions"]["insult"]["estimated_base_rate"] == round(1 / (n + 1), 4)
    warnings = res.report["warnings"]
    assert any(f"'insult': none of its {n:,} candidates is close" in w for w in warnings)
    assert any(f"base rate {1 / (n + 1):.4g} (one violation" in w for w in warnings)
    assert not any("'insult' has no review" in w and "re-estimated" in w for w in warnings)
    # The ranker alone does not know the seeds (a description?): EM, unless given the mask.
    from riskrank.rank.ranker import seed_matched

    cold = res.candidates.filter(pa.compute.equal(res.candidates["policy"], "insult"))
    assert hashing_model.ranker.score(cold).base_rates["insult"] > 0.05
    masked = hashing_model.ranker.score(cold, matched=seed_matched(cold))
    assert masked.base_rates["insult"] == pytest.approx(1 / (n + 1))
    q = res.queue.to_pandas()
    assert (q.policy == "scam").iloc[:20].all()  # the policy that finds something leads
    assert (q.loc[q.policy == "insult", "risk_probability"] < 0.5).all()
    # Its own order is the raw scores' (a monotone shift of the base rate only).
    raw = alone["risk_score"].to_numpy()
    assert (np.diff(raw) <= 0).all() and alone["risk_probability"].to_numpy().max() < 0.5
    # A policy in words lies farther from its items than an example: never taken as absent.
    assert described.report["decisions"]["insult"]["estimated_base_rate"] > 0.05
    assert not any("taken as absent" in w for w in described.report["warnings"])


def test_killed_sweep_resumes_to_the_same_queue(
    tmp_path, inventory_items, seeds, trained_model, monkeypatch
):
    import riskrank.index.engine as build  # the local engine embeds through embed_chunk

    inv = inventory_items.drop(["label"])
    clean = sweep(inv, seeds, trained_model, out_dir=tmp_path / "clean", k=200, show_progress=False)
    real = build.embed_chunk
    calls = []

    def dying(signals, chunk, **kwargs):
        # Encode two chunks for real, then die as a killed process would.
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(chunk.num_rows)
        return real(signals, chunk, **kwargs)

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
    assert len(list((tmp_path / "sw" / "index" / "_delta").glob("*/_work/chunk-*.parquet"))) == 2
    again = sweep(
        inv,
        seeds,
        trained_model,
        out_dir=tmp_path / "sw",
        k=200,
        show_progress=False,
        chunk_size=16,
    )
    assert again.report["index_update"]["chunks_resumed"] == 2  # and the rest embedded now
    assert again.report["index_update"]["chunks"] > 2
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
                "--k",
                "all",
            ]
        )
        == 0
    )
    queue = pq.read_table(tmp_path / "sweep" / "queue.parquet")
    assert queue.num_rows == 20
    assert (tmp_path / "sweep" / "report.md").exists() and (
        tmp_path / "sweep" / "report.png"
    ).exists()
    out = capsys.readouterr().out
    # 24 held-out reviews cannot show the precision target: said in the summary and report.
    assert "WARNING: policy 'scam'" in out and "coverage" in out
    assert "## Warnings" in (tmp_path / "sweep" / "report.md").read_text()
    # Which encoder made the vectors: in report.json, report.md and the summary, for a sweep
    # without a standing index too (the summary named it only for a standing index's version).
    encoder = json.loads((tmp_path / "sweep" / "report.json").read_text())["index"]["text"]
    encoder = encoder["encoder"]
    assert encoder["backend"] in ("torch", "openvino") and encoder["model"]
    line = f"| text encoder | {encoder['model']} ({encoder['model_version']}; {encoder['backend']}"
    assert line in (tmp_path / "sweep" / "report.md").read_text()
    assert re.search(rf"text encoder\s+{re.escape(encoder['model'])} \(", out)
    with pytest.raises(SystemExit):
        main(
            ["sweep", "--inventory", "x", "--seeds", "x", "--model", "x", "--out", "x", "--k", "0"]
        )
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
    # Labels of items this sweep never took in are left out and counted, as its report does
    # (eval gave another AP for the same queue: an outsider's report).
    labels = pq.read_table(tmp_path / "labels.parquet")
    extra = pa.table({"item_id": ["never-1", "never-2"], "label": [1, 1]}).cast(labels.schema)
    pq.write_table(pa.concat_tables([labels, extra]), tmp_path / "more.parquet")
    scored = {}
    for name in ("labels", "more"):
        queue_file = str(tmp_path / "sweep" / "queue.parquet")
        args = ["eval", "--queue", queue_file, "--labels", str(tmp_path / f"{name}.parquet")]
        assert main([*args, "--json"]) == 0
        scored[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scored["more"].pop("labelled items not in this sweep (left out)") == 2
    assert scored["more"] == scored["labels"]
    # The index version its report names pruned (a standing index keeps two): the ids come
    # from swept_ids.parquet beside the queue (eval scored every label given, unsaid: an
    # outsider's audit); without it either, eval says it cannot tell.
    report_file = tmp_path / "sweep" / "report.json"
    report = json.loads(report_file.read_text())
    report["index_version_dir"] = str(tmp_path / "pruned")
    report_file.write_text(json.dumps(report))
    more = ["eval", "--queue", queue_file, "--labels", str(tmp_path / "more.parquet"), "--json"]
    assert main(more) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["labelled items not in this sweep (left out)"] == 2
    (tmp_path / "sweep" / "swept_ids.parquet").unlink()
    assert main(more) == 0
    out = capsys.readouterr().out
    assert "WARNING: which items the sweep" in out and "left out" not in out
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


def test_integer_ids_and_k_none_cover_every_item(
    inventory_items, seeds, trained_model, tmp_path, monkeypatch
):
    # A DataFrame whose ids are its integer index (a database key), and k=None: every indexed
    # item gets a queue row, ids come back as their decimal strings.
    df = inventory_items.drop(["label"]).to_pandas()
    df.index = pd.Index(range(100, 100 + len(df)), name="item_id")
    df = df.drop(columns=["item_id"])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    res = sweep(df, seeds, trained_model, k=None, show_progress=False)
    # No out_dir: the index lived in a temporary directory, removed when the sweep returned.
    assert list(tmp_path.iterdir()) == [] and res.report["index_version_dir"] is None
    q = res.queue.to_pandas()
    assert sorted(q.item_id) == sorted(str(i) for i in df.index)
    assert res.report["coverage"] == 1.0 and res.report["items_not_recalled"] == 0
    labels = pa.table({"item_id": list(df.index), "label": inventory_items["label"]})
    assert evaluate(res.queue, labels)["coverage"] == 1.0  # integer labels match string ids


def test_integer_ids_duplicates_still_caught():
    from riskrank.index.schema import validate_inventory
    from riskrank.index.tables import SchemaError
    from riskrank.recall.history import validate_history
    from riskrank.recall.seeds import SeedSet

    items, bad = validate_inventory({"item_id": [7, 8, 7], "text": ["a", "a", "a"]})
    assert items["item_id"].to_pylist() == ["7", "8"]
    assert bad["reason"].to_pylist() == ["duplicate item_id '7' (the same as row 0)"]
    hist, bad = validate_history({"item_id": [1, 1], "policy": ["p", "p"], "verdict": [2, 2]})
    assert hist["item_id"].to_pylist() == ["1"] and "duplicate review" in bad["reason"][0].as_py()
    assert SeedSet.from_table({"seed_id": [5], "policy": ["p"], "text": ["x"]}).table[
        "seed_id"
    ].to_pylist() == ["5"]
    with pytest.raises(SchemaError, match="floats are refused"):
        validate_inventory({"item_id": [1.0, 2.0], "text": ["a", "b"]})
    mixed = pd.DataFrame({"item_id": [1, "1"], "text": ["a", "b"]})
    with pytest.raises(SchemaError, match="item_id"):
        validate_inventory(mixed)


def test_eval_reads_the_queue_order_not_the_probability():
    # Two items tied at the same probability; the queue (raw score) puts the violation first.
    queue = pa.table(
        {
            "rank": [1, 2, 3],
            "item_id": ["b", "a", "c"],
            "risk_probability": [0.9999, 0.9999, 0.2],
        }
    )
    labels = pa.table({"item_id": ["a", "b", "c", "d"], "label": [0, 1, 0, 1]})
    q = evaluate(queue, labels)
    assert q["coverage"] == 0.75
    assert q["AP"] == pytest.approx((1 + 2 / 4) / 2)  # b first; d never queued ranks last
    with pytest.raises(SchemaError, match="rank"):
        evaluate(queue.drop(["rank"]), labels)


def test_model_without_thresholds_is_refused(tmp_path, trained_model):
    trained_model.save(tmp_path / "m")
    meta_path = tmp_path / "m" / "ranker" / "ranker.json"
    meta = json.loads(meta_path.read_text())
    meta["format"] = "riskrank.RiskRanker/1"
    meta_path.write_text(json.dumps(meta))
    # Re-seal, as an older riskrank would have saved it: the format check must refuse it,
    # not the checksum check.
    model_json = json.loads((tmp_path / "m" / MODEL_JSON).read_text())
    model_json.pop("checksums")
    seal(tmp_path / "m", model_json)
    with pytest.raises(ValueError, match="retrain"):
        RiskModel.load(tmp_path / "m")


def _png(seed: int = 0) -> bytes:
    import io

    from PIL import Image

    picture = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).resize((96, 96)).save(picture, format="PNG")
    return picture.getvalue()


def test_a_seed_no_signal_can_use_is_refused_and_one_half_used_is_named(
    tmp_path, history, seeds, inventory_items
):
    """A seed whose only content was an unreadable picture (or a picture under a text-only
    model) recalled nothing, with no word, where an empty seed is refused (an outsider's
    report): refused, naming the seed and why; beside a good text, used by it, with a warning."""
    from hashing_signal import HashingTextSignal

    from riskrank.index.signals.pdq import PdqSignal
    from riskrank.rank.pipeline import train
    from riskrank.rank.ranker import RiskRanker

    ranker = RiskRanker(n_estimators=30, n_jobs=1)
    train(history, seeds, tmp_path / "m", signals=[HashingTextSignal(), PdqSignal()],
          ranker=ranker, lexical_probe=False, show_progress=False)  # fmt: skip
    inv = inventory_items.drop(["label"]).slice(0, 20)
    broken = pa.table(
        {"seed_id": ["img"], "policy": ["scam"], "image_bytes": pa.array([b"not a jpeg"])}
    )
    kw = {"k": None, "show_progress": False}
    with pytest.raises(SchemaError, match="seed 'img': pdq: .*not a recognised image"):
        sweep(inv, broken, tmp_path / "m", index_dir=tmp_path / "st", **kw)
    assert not (tmp_path / "st").exists()  # refused before the inventory was embedded
    with_text = broken.append_column("text", pa.array([seeds["text"][0].as_py()]))
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("riskrank").addHandler(handler)
    try:
        res = sweep(inv, with_text, tmp_path / "m", **kw)
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    assert res.queue.num_rows > 0
    assert any("seed 'img': pdq: " in r.getMessage() and "other content only" in r.getMessage()
               for r in records)  # fmt: skip
    # k=None recalls what a seed can reach: image-only items under text seeds are not, and
    # the report says so (it did only by its counts: an outsider's report).
    pic = pa.table({"item_id": ["p2"], "image_bytes": [_png()]})
    unreached = sweep(
        pa.concat_tables([inv, pic], promote_options="default"), seeds, tmp_path / "m", **kw
    )
    assert unreached.report["items_not_recalled"] == 1
    assert any(
        w.startswith("k=None: 1 of 21 indexed items were recalled for no policy")
        and "no seed has content for pdq" in w
        for w in unreached.report["warnings"]
    )
    # A picture seed under a text-only model: nothing it could match.
    train(history, seeds, tmp_path / "t", signals=[HashingTextSignal()], ranker=ranker,
          lexical_probe=False, show_progress=False)  # fmt: skip
    with pytest.raises(SchemaError, match=r"seed 'img': no content the signals read \(text\)"):
        sweep(inv, broken, tmp_path / "t", **kw)
    # A retrain over a model's own seeds (an older version accepted such a seed, and an
    # import cannot drop one) names it and goes on (a reviewer's finding).
    from riskrank.index.build import build_index
    from riskrank.recall.recaller import recall

    index = build_index(inv, tmp_path / "idx", signals=[HashingTextSignal()], show_progress=False)
    mixed = pa.concat_tables([seeds, broken], promote_options="default")
    with pytest.raises(SchemaError, match="seed 'img'"):
        recall(index, mixed, show_progress=False)
    assert recall(index, mixed, show_progress=False, unusable_seeds="warn").num_rows > 0
    # But not a picture file this run cannot find (a retrain without the --image-base-dir
    # the model was trained with trained a model without pictures, exit 0: an outsider).
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "seed.png").write_bytes(_png())
    by_path = pa.table({"seed_id": ["p"], "policy": ["scam"], "image_path": ["seed.png"]})
    # (Indexes of no picture: these items have none; refused unless asked for, empty_ok.)
    pindex = build_index(
        inv, tmp_path / "pidx", signals=[PdqSignal()], show_progress=False, empty_ok=True
    )
    with pytest.raises(SchemaError, match=r"seed 'p': pdq: image file not found.*--image-base"):
        recall(pindex, by_path, show_progress=False, unusable_seeds="warn")
    pindex = build_index(inv, tmp_path / "pidx2", signals=[PdqSignal(base_dir=tmp_path / "pics")],
                         show_progress=False, empty_ok=True)  # fmt: skip
    recall(pindex, by_path, show_progress=False, unusable_seeds="warn")
    # One file gone for good while the others resolve (a takedown): named, not refused, or
    # every retrain would fail on a seed an import cannot drop (a reviewer's finding).
    one_gone = pa.table({"seed_id": ["p", "q"], "policy": ["scam"] * 2,
                         "image_path": ["seed.png", "gone.png"]})  # fmt: skip
    got = recall(pindex, one_gone, show_progress=False, unusable_seeds="warn")
    assert got.num_rows == 0  # (no refusal; these items have no pictures to recall)


def test_an_item_kept_without_its_image_is_counted_and_listed(
    tmp_path, history, seeds, inventory_items
):
    """A good text beside a corrupt image: the item is swept by its text, and the report
    says the image signal lacks it (and why), where before nothing did."""
    import io

    from hashing_signal import HashingTextSignal
    from PIL import Image

    from riskrank.index.signals.pdq import PdqSignal
    from riskrank.rank.pipeline import train
    from riskrank.rank.ranker import RiskRanker

    ranker = RiskRanker(n_estimators=50, min_child_samples=10, n_jobs=1)
    train(history, seeds, tmp_path / "m", signals=[HashingTextSignal(), PdqSignal()],
          ranker=ranker, lexical_probe=False, show_progress=False)  # fmt: skip
    inv = inventory_items.drop(["label"]).slice(0, 20)
    picture = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).resize((96, 96)).save(picture, format="PNG")
    images = [picture.getvalue(), b"not a jpeg", *[None] * 18]
    inv = inv.append_column("image_bytes", pa.array(images, pa.binary()))
    with_dup = pa.concat_tables([inv, inv.slice(1, 1)])  # the broken item again: a copy
    res = sweep(with_dup, seeds, tmp_path / "m", out_dir=tmp_path / "out", show_progress=False)
    assert res.report["signal_failures"] == {"pdq": 1}
    assert res.report["items_indexed"] == 20 and res.quarantine.num_rows == 1
    listed = pq.read_table(tmp_path / "out" / "signal_failures.parquet").to_pylist()
    assert [(r["item_id"], r["signal"]) for r in listed] == [(inv["item_id"][1].as_py(), "pdq")]
    assert res.signal_failures.to_pylist() == listed  # the table too, not only its counts
    assert "not a recognised image" in listed[0]["reason"]
    # A day with no image at all, and one with images only: the model's other signal has no
    # item to search, and its evidence is missing, as for one item without an image.
    texts = sweep(inv.drop(["image_bytes"]), seeds, tmp_path / "m", show_progress=False)
    assert texts.queue.num_rows > 0 and "pdq_best_rank" in texts.candidates.column_names
    pictures = pa.table({"item_id": ["p0"], "image_bytes": pa.array([images[0]], pa.binary())})
    by_image = pa.table(
        {"seed_id": ["img"], "policy": ["scam"], "image_bytes": pictures["image_bytes"]}
    )
    only = sweep(pictures, by_image, tmp_path / "m", show_progress=False)
    row = only.queue.to_pylist()[0]
    assert row["item_id"] == "p0" and row["pdq_best_distance"] == 0 and row["text_best_sim"] is None

    # image_base_dir is the sweep's, not the model's: one loaded model swept with it and then
    # without it read the pictures from the earlier folder (an outsider's report).
    (tmp_path / "creatives").mkdir()
    (tmp_path / "creatives" / "p0.png").write_bytes(images[0])
    by_path = pa.table({"item_id": ["p0"], "text": ["an offer"], "image_path": ["p0.png"]})
    model = RiskModel.load(tmp_path / "m")
    kw = {"show_progress": False}
    lost = sweep(by_path, seeds, model, **kw).report["signal_failures"]
    found = sweep(by_path, seeds, model, image_base_dir=tmp_path / "creatives", **kw)
    again = sweep(by_path, seeds, model, **kw).report["signal_failures"]
    assert lost == again == {"pdq": 1} and found.report["signal_failures"] == {}
    assert [s.get_runtime_options()["base_dir"] for s in model.signals[1:]] == [None]
    # Never set on the caller's model, even for the length of a sweep: two sweeps sharing a
    # model (threads) read each other's folders, and the first to end reset the other's.
    from riskrank.index.signals.clip import ClipImageSignal, tiny_clip_encoder
    from riskrank.index.signals.nsfw import NsfwSignal
    from riskrank.rank.model import with_image_base_dir

    clip = ClipImageSignal(tiny_clip_encoder())
    model.signals.extend([clip, NsfwSignal()])
    monday, tuesday = (with_image_base_dir(model, d) for d in ("/data/mon", "/data/tue"))
    for copy, folder in ((monday, "/data/mon"), (tuesday, "/data/tue")):
        assert [s.base_dir for s in copy.signals[1:]] == [folder] * 3
    assert [s.base_dir for s in model.signals[1:]] == [None] * 3
    assert monday.signals[2].encoder is clip.encoder and monday.ranker is model.ranker
    assert with_image_base_dir(model, None) is model


def test_history_rows_that_cannot_teach_are_quarantined_before_embedding():
    """Disagreeing reviews of one item (the file's row order chose the label), a blank
    sweep_id (histories concatenated: a TypeError after the embedding), a policy the seeds
    do not name (trained nothing, yet listed as a policy with history)."""
    from riskrank.rank.input_checks import history_rows_without_seeds
    from riskrank.recall.history import validate_history
    from riskrank.recall.seeds import SeedSet

    for order in ([2, 0], [0, 2]):
        hist, bad = validate_history(
            {"item_id": ["a", "a", "b"], "policy": ["p"] * 3, "verdict": [*order, 1]}
        )
        assert hist["item_id"].to_pylist() == ["b"]
        assert bad["row"].to_pylist() == [0, 1]
        assert all("conflicting verdicts [0, 2] for (a, p)" in r for r in bad["reason"].to_pylist())
    hist, _ = validate_history(
        {
            "item_id": ["a", "b", "c"],
            "policy": ["p"] * 3,
            "verdict": [0, 2, 3],
            "sweep_id": ["day1", None, " "],
        }  # fmt: skip
    )
    assert hist["sweep_id"].to_pylist() == ["day1", "history", "history"]
    seeds = SeedSet.from_table({"seed_id": ["s"], "policy": ["spam"], "text": ["buy now"]})
    hist, _ = validate_history(
        {"item_id": ["a", "b"], "policy": ["spam", "Spam"], "verdict": [0, 2]}
    )
    kept, bad = history_rows_without_seeds(hist, seeds)
    assert kept["item_id"].to_pylist() == ["a"]
    assert (
        bad.to_pylist()[0]["reason"] == "policy 'Spam' has no seeds (the seeds' policies: 'spam')"
    )


def test_history_quarantine_rows_are_the_input_files_rows(tmp_path, history, seeds, hashing_signal):
    # Rows refused after validation were numbered among the rows left: input row 5, with no
    # text, was reported as row 3 once rows 0 and 1 had gone (an outsider's report).
    from conftest import train_small

    n = history.num_rows
    verdicts = history["verdict"].to_pylist()
    verdicts[0], verdicts[1] = 7, 9
    texts = history["text"].to_pylist()
    texts[5] = ""
    policies = history["policy"].to_pylist()
    policies[6] = "Scam"  # a policy the seeds do not name
    hist = history.set_column(3, "verdict", pa.array(verdicts, pa.int64()))
    hist = hist.set_column(1, "text", pa.array(texts)).set_column(2, "policy", pa.array(policies))
    records: list[logging.LogRecord] = []  # (pytest's logging plugin is off: pyproject)
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("riskrank").addHandler(handler)
    try:
        train_small(hist, seeds, tmp_path / "m", hashing_signal)
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    # Said to a library caller, not only written to a file (an outsider's report).
    said = [r.getMessage() for r in records if "set aside" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("history: 4 rows set aside"), said
    assert "history_quarantine.parquet" in said[0]
    quarantine = pq.read_table(tmp_path / "m" / "history_quarantine.parquet").to_pylist()
    by_row = {r["row"]: (r["stage"], r["item_id"]) for r in quarantine}
    ids = history["item_id"].to_pylist()
    assert by_row == {
        0: ("history", ids[0]),
        1: ("history", ids[1]),
        5: ("history-index", ids[5]),
        6: ("history", ids[6]),
    }, by_row
    assert n > 6


def test_training_on_a_mistyped_policy_alone_says_so_before_embedding(tmp_path, seeds):
    from riskrank.rank.pipeline import train

    history = pa.table({"item_id": ["a", "b"], "text": ["x", "y"], "policy": ["Scam", "Scam"],
                        "verdict": [0, 2]})  # fmt: skip
    with pytest.raises(SchemaError, match=r"\(2 under policies the seeds do not name\)"):
        train(history, seeds, tmp_path / "m", show_progress=False)
    assert not (tmp_path / "m" / "history_index").exists()


@pytest.mark.parametrize("k", [0, -1, True, 2.5, "5"])
def test_a_bad_k_is_refused_before_anything_is_embedded(tmp_path, hashing_model, seeds, k):
    inv = pa.table({"item_id": ["a"], "text": ["an ad"]})
    with pytest.raises(ValueError, match=r"k=.*expected a positive number of neighbours"):
        sweep(inv, seeds, hashing_model, out_dir=tmp_path / "out", k=k, show_progress=False)
    assert not (tmp_path / "out" / "index").exists()


def test_a_max_memory_typo_is_refused_before_anything_is_embedded(tmp_path, hashing_model, seeds):
    from hashing_signal import HashingTextSignal

    from riskrank.index.build import build_index

    inv = pa.table({"item_id": ["a"], "text": ["an ad"]})
    with pytest.raises(ValueError, match="max_memory: cannot parse 'lots'"):
        sweep(inv, seeds, hashing_model, out_dir=tmp_path / "out", max_memory="lots")
    with pytest.raises(ValueError, match="max_memory: cannot parse 'lots'"):
        build_index(inv, tmp_path / "idx", signals=[HashingTextSignal()], max_memory="lots")
    assert not (tmp_path / "out" / "index").exists() and not (tmp_path / "idx").exists()


def test_a_sweep_whose_image_files_are_mostly_missing_says_so():
    """Run from another directory, or without the base directory its image paths are
    relative to, a sweep's pictures match nothing: the report warns, naming a path."""
    from riskrank.rank.pipeline import missing_files_warnings

    def failures(n_missing: int, n_other: int) -> pa.Table:
        reasons = [f"image file not found: '/x/{i}.jpg'" for i in range(n_missing)]
        reasons += ["image is truncated or corrupt: broken"] * n_other
        n = len(reasons)
        return pa.table(
            {"item_id": [str(i) for i in range(n)], "signal": ["pdq"] * n, "reason": reasons}
        )

    manifest = {"signals": {"pdq": {"count": 24}, "text": {"count": 800}}}
    (warning,) = missing_files_warnings(failures(722, 5), manifest)
    assert "the image files of 722 items were not found and 24 were read" in warning
    assert "--image-base-dir" in warning
    assert "'/x/0.jpg'" in warning
    # A few missing files among many pictures is the ordinary day: listed, not warned about.
    assert missing_files_warnings(failures(3, 0), manifest) == []
    assert missing_files_warnings(failures(20, 0), {"signals": {"pdq": {"count": 700}}}) == []
    assert missing_files_warnings(None, manifest) == []


def test_a_queue_of_pictures_only_keeps_the_contract_columns(tmp_path, history, seeds):
    """An inventory without a text column gave a queue without ``text_sha256`` (and in campaign
    mode without ``campaign_members_text_sha256``), where an empty queue had them: a queue's
    columns depended on its inventory (an outsider's review)."""

    from hashing_signal import HashingTextSignal

    from riskrank.index.signals.pdq import PdqSignal
    from riskrank.rank.campaigns import MEMBER_DIGESTS
    from riskrank.rank.pipeline import train
    from riskrank.rank.queue import QUEUE_SCHEMA
    from riskrank.rank.ranker import RiskRanker
    from riskrank.rank.review import import_verdicts

    train(history, seeds, tmp_path / "m", signals=[HashingTextSignal(), PdqSignal()],
          ranker=RiskRanker(n_estimators=30, n_jobs=1), lexical_probe=False,
          show_progress=False)  # fmt: skip
    pics = [_png(0)] * 3 + [_png(k) for k in range(1, 6)]
    inv = pa.table({"item_id": [f"p{k}" for k in range(8)], "image_bytes": pics})
    seed = pa.table({"seed_id": ["img"], "policy": ["scam"], "image_bytes": [pics[0]]})
    captioned = inv.append_column("text", pa.array([f"caption {k}" for k in range(8)]))
    for campaigns in (False, True):
        out = tmp_path / f"sweep{int(campaigns)}"
        queue = sweep(
            inv, seed, tmp_path / "m", k=None, show_progress=False, campaigns=campaigns,
            explore=0, out_dir=out,
        ).queue  # fmt: skip
        assert queue.num_rows
        assert [c for c in QUEUE_SCHEMA.names if c not in queue.column_names] == []
        assert queue["text_sha256"].null_count == queue.num_rows
        verdict = {"item_id": [queue["item_id"][0].as_py()], "policy": ["scam"], "verdict": [2]}
        if campaigns:
            assert MEMBER_DIGESTS in queue.column_names
            verdict["campaign_id"] = [queue["campaign_id"][0].as_py()]
        # The null digest says the item had no text: a caption added since is not what the
        # reviewer saw (it was stored with the verdict, without a word: a reviewer's repro).
        kw = {"retrain": False, "seeds": seed}
        late = import_verdicts(
            pa.table(verdict), out / "queue.parquet", tmp_path / "m", inventory=captioned,
            out_dir=tmp_path / f"late{int(campaigns)}", **kw,
        )  # fmt: skip
        assert late.imported.num_rows == 0
        assert set(late.quarantine["reason"].to_pylist()) == {
            "the item has a text now, and the queue showed none (it had no text when swept): "
            "edited since the sweep? pass the inventory the sweep ran on"
        }
        same = import_verdicts(
            pa.table(verdict), out / "queue.parquet", tmp_path / "m", inventory=inv,
            out_dir=tmp_path / f"same{int(campaigns)}", **kw,
        )  # fmt: skip
        assert same.imported.num_rows == (3 if campaigns else 1)  # (three copies of one picture)


def test_the_decision_report_says_how_each_policys_probability_was_read():
    from riskrank.rank.pipeline import decision_report
    from riskrank.rank.ranker import ScoredCandidates

    cands = pa.table({"item_id": ["a", "b", "c"], "policy": ["scam", "scam", "new"]})
    p = np.array([0.9, 0.2, 0.4])
    scored = ScoredCandidates(
        p,
        p,
        [""] * 3,
        np.array(["full", "full", "transfer"], dtype=object),
        np.array(["policy_history", "policy_history", "policy_reviews"], dtype=object),
        np.full(3, np.nan),
        {"scam": 0.3, "new": 0.4},
    )
    report = decision_report(cands, scored)
    assert report["decisions"]["new"]["calibration"] == "policy_reviews"
    assert report["decisions"]["new"]["estimated_base_rate"] == 0.4
    new, scam = report["warnings"]
    assert "re-weighted to this sweep's estimated base rate (0.3)" in scam
    # A young policy's probabilities are its reviews' as they are: nothing was re-weighted,
    # and it never acts (an outsider read neither from the report).
    assert new.startswith("policy 'new' is young") and "re-weighted" not in new
    assert "mean probability here 0.4" in new and "every item is escalated" in new
    # What makes it young is the count; where its reviews came from the sweep cannot know (a
    # history sampled at random was told "its reviews came from the tops of its queues").
    assert "min_policy_reviews" in new and "came from the tops" not in new


def test_a_policy_with_reviews_but_no_calibration_of_its_own_is_said():
    """A policy whose reviews another policy's growing history crowded out of its seeds'
    nearest reviewed items at training ran on the pooled calibration, unsaid for days (an
    outsider's week: insult 185 -> 105 training rows, policy_history -> transferred)."""
    from riskrank.rank.pipeline import decision_report
    from riskrank.rank.ranker import ScoredCandidates

    cands = pa.table({"item_id": ["a", "b", "c"], "policy": ["spam", "insult", "cold"]})
    p = np.array([0.9, 0.2, 0.4])
    scored = ScoredCandidates(
        p, p, [""] * 3, np.array(["full", "full", "cold"], dtype=object),
        np.array(["policy_history", "transferred", "transferred"], dtype=object),
        np.array([0.8, np.nan, np.nan]), {"spam": 0.3, "insult": 0.05, "cold": 0.4},
    )  # fmt: skip
    reviewed = ("spam", "insult")
    said = decision_report(cands, scored, trained_rows={"spam": 689, "insult": 105},
                           with_history=reviewed)["warnings"]  # fmt: skip
    insult = [w for w in said if w.startswith("policy 'insult' has reviews")]
    assert len(insult) == 1 and "(105 training rows)" in insult[0], said
    assert "calibration_fraction" in insult[0] and "larger k" in insult[0]
    assert "transferred; base rate re-estimated on this sweep: 0.05" in insult[0]
    assert not [w for w in said if w.startswith(("policy 'cold' has reviews", "policy 'spam'"))]
    # A policy without reviews, run by a model with no cold booster, is not told it has some
    # (a reviewer's finding); a model that kept no training counts says so.
    said = decision_report(cands, scored, with_history=("spam",))["warnings"]
    assert not [w for w in said if "has reviews" in w]
    said = decision_report(cands, scored, with_history=reviewed)["warnings"]
    assert [w for w in said if "(training rows not recorded)" in w]


def test_a_policys_training_rows_do_not_depend_on_another_policys_reviews(
    tmp_path, history, seeds, hashing_signal
):
    """Training recalled each policy's rows from one history index shared by all policies:
    as another policy's reviews grew they crowded a policy's own reviews out of its seeds'
    ``k`` nearest (an outsider's week: 700 insult reviews, 185 -> 105 -> 98 training rows, its
    own calibration lost). Its seeds' ``k`` nearest of its own reviews now train it, however
    many reviews other policies have."""
    from conftest import make_items, train_small

    def spam_history(n: int) -> pa.Table:
        t = make_items(n // 3, n - n // 3, prefix=f"x{n}", seed=n)
        return pa.table({
            "item_id": t["item_id"], "text": t["text"], "policy": pa.array(["spam"] * n),
            "verdict": pa.array([2 * v for v in t["label"].to_pylist()], pa.int8()),
        })  # fmt: skip

    more_seeds = pa.concat_tables(
        [seeds, seeds.set_column(0, "seed_id", pa.array(["p1", "p2", "p3"])).set_column(
            1, "policy", pa.array(["spam"] * 3))]
    )  # fmt: skip
    rows = {}
    for n in (60, 240):
        hist = pa.concat_tables([history, spam_history(n)])
        model = train_small(hist, more_seeds, tmp_path / f"m{n}", hashing_signal, k=30)
        rows[n] = model.ranker.policy_reviews_
    # Each scam seed's 30 nearest among the scam reviews, whatever spam's volume (before: 53
    # rows, then 28 as spam's reviews grew); at most 3 seeds x k.
    assert rows[60]["scam"] == rows[240]["scam"], rows
    assert 30 <= rows[60]["scam"] <= 90, rows


def test_quality_is_scored_over_the_items_the_sweep_took_in(tmp_path, explained_sweep):
    # A label table of a whole data set scored a 150-item sweep at coverage 0.02 and AP 0.27
    # against 1.00 and 0.84 over its own items, with nothing saying why (an outsider's report).
    from riskrank.rank.evaluation.report import OUTSIDE, sweep_quality, write_reports_into

    inv, seeds, result = explained_sweep
    own = pa.table({"item_id": inv["item_id"], "verdict": pa.compute.multiply(inv["label"], 2)})
    others = pa.table(
        {"item_id": [f"never-{i}" for i in range(500)], "verdict": pa.array([2] * 500, pa.int8())}
    )
    everything = pa.concat_tables([own, others.cast(own.schema)])
    quality, kept = sweep_quality(result, everything)
    assert kept.num_rows == own.num_rows and quality[OUTSIDE] == 500
    assert {k: v for k, v in quality.items() if k != OUTSIDE} == evaluate(result.queue, own)
    assert OUTSIDE not in sweep_quality(result, own)[0]
    # A label row without an id is left out, and said apart from items never swept.
    gap = pa.table({"item_id": pa.array([None], pa.string()), "verdict": pa.array([2], pa.int8())})
    quality, _ = sweep_quality(result, pa.concat_tables([own.cast(gap.schema), gap]))
    assert quality.pop("label rows without an item_id (left out)") == 1
    assert quality == evaluate(result.queue, own)
    write_reports_into(result, seeds, out_dir=tmp_path / "r", labels=everything)
    assert f"| {OUTSIDE} | 500 |" in (tmp_path / "r" / "report.md").read_text()


def test_quality_counts_an_item_labelled_twice_once():
    # Two reviewers' label exports concatenated listed items twice: they counted twice in
    # items, positives and AP. One row per item now, violating if any row says so.
    from types import SimpleNamespace

    from riskrank.rank.evaluation.report import REPEATED, sweep_quality

    queue = pa.table({"item_id": ["a", "b", "c"], "rank": [1, 2, 3]})
    swept = pa.chunked_array([["a", "b", "c", "d"]])
    once = pa.table({"item_id": ["a", "b", "c", "d"], "verdict": [2, 0, 0, 2]})
    twice = pa.table({"item_id": ["a", "b", "c", "d", "a", "c"], "verdict": [2, 0, 0, 2, 2, 2]})
    result = SimpleNamespace(queue=queue, swept_ids=swept)
    plain, _ = sweep_quality(result, once)
    quality, kept = sweep_quality(result, twice)
    assert quality.pop(REPEATED) == 2 and kept.num_rows == 4
    assert quality["items"] == 4 and quality["positives"] == 3  # c: violating in one row
    assert evaluate(queue, twice) == {**quality, REPEATED: 2}
    assert plain["items"] == 4 and plain["positives"] == 2 and REPEATED not in plain


def test_quality_reads_number_ids_as_the_queues_text_ids():
    # Labels read by pandas from a column with a gap have float ids (3.0): counted as swept,
    # they were scored as missing from the queue (coverage 0; an outsider's report).
    from types import SimpleNamespace

    from riskrank.rank.evaluation.report import sweep_quality

    queue = pa.table({"item_id": ["3", "12"], "rank": [1, 2]})
    swept = pa.chunked_array([["3", "12", "40"]])
    labels = pa.table({"item_id": [3.0, 12.0, 40.0], "verdict": [2, 0, 2]})
    quality, kept = sweep_quality(SimpleNamespace(queue=queue, swept_ids=swept), labels)
    assert kept["item_id"].to_pylist() == ["3", "12", "40"]
    assert quality["coverage"] == pytest.approx(2 / 3)


def test_a_swept_flat_pictures_seed_match_is_said_to_be_unreliable(tmp_path, history, seeds):
    """The queue's reasons read the item's PDQ quality with the signal's floor: a blank white
    ad was "a near-copy of seed s_white (PDQ: 0 bits differ)" (an outsider's report)."""
    import io

    from hashing_signal import HashingTextSignal
    from PIL import Image

    from riskrank.index.signals.pdq import PdqSignal
    from riskrank.rank.pipeline import train
    from riskrank.rank.ranker import RiskRanker

    train(history, seeds, tmp_path / "m", signals=[HashingTextSignal(), PdqSignal()],
          ranker=RiskRanker(n_estimators=30, n_jobs=1), lexical_probe=False,
          show_progress=False)  # fmt: skip

    def flat(colour) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (120, 90), colour).save(buf, "PNG")
        return buf.getvalue()

    inv = pa.table(
        {
            "item_id": ["white", "cream", "pic", "other"],
            "image_bytes": [flat("white"), flat((250, 250, 245)), _png(0), _png(7)],
        }
    )
    seed = pa.table(
        {"seed_id": ["s_white", "s_pic"], "policy": ["scam"] * 2,
         "image_bytes": [flat("white"), _png(0)]}
    )  # fmt: skip
    queue = sweep(inv, seed, tmp_path / "m", k=None, show_progress=False, explore=0).queue
    said = dict(zip(queue["item_id"].to_pylist(), queue["explanation"].to_pylist()))
    assert "hashes like seed s_white (PDQ: 0 bits differ), but it is nearly flat" in said["white"]
    assert "near-copy" not in said["cream"]  # (78 bits from the white seed: no match here)
    assert "near-copy of seed s_pic (PDQ: 0 bits differ)" in said["pic"]


def test_the_reports_count_quarantined_rows_by_kind_of_reason(
    tmp_path, inventory_items, seeds, trained_model
):
    # One total hid 74 texts set aside as unreadable among 200 duplicate rows (an outsider's
    # 300k run): the report says how many rows each kind of reason holds.
    inv = _with_bad_rows(inventory_items)
    out = tmp_path / "sw"
    res = sweep(
        inv.drop(["label"]), seeds, trained_model, out_dir=out, k=50, show_progress=False,
        reports=True,
    )  # fmt: skip
    kinds = res.report["quarantine_reasons"]
    assert sum(kinds.values()) == res.report["items_quarantined"] == 4
    # the ids and row numbers are left out, so rows of one kind count together
    assert kinds["item_id … differs between row …"] == 2
    assert not any("'" in k or any(c.isdigit() for c in k) for k in kinds)
    markdown = (out / "report.md").read_text()
    for kind, n in kinds.items():
        assert f"quarantined: {kind} | {n}" in markdown
    assert "quarantined: item_id … differs between row …" in (out / "report.html").read_text()


def test_a_sweep_says_which_reviewed_policies_its_seeds_leave_out(
    inventory_items, trained_model, explained_sweep
):
    """A daily job given yesterday's seed file swept one policy and dropped another the model
    holds 230 reviews of, unsaid (an outsider's week): the report names it. A sweep of all
    the model's policies says nothing of it."""
    from riskrank.rank.pipeline import policies_left_out, sweep

    assert policies_left_out(["spam"], ["phishing", "spam"]) == [
        "the model holds reviews of 1 policy(ies) these seeds leave out, not swept today: "
        "'phishing' (a sweep sweeps its seeds' policies only; pass a seed file that names them "
        "to sweep them)"
    ]
    assert policies_left_out([" Spam"], ["spam"]) == []  # (the slip of case is said apart)
    _, seeds, both = explained_sweep  # scam (reviewed) and diet (new)
    assert not any("leave out" in w for w in both.report["warnings"])
    import pyarrow.compute as pc

    diet = seeds.filter(pc.equal(seeds["policy"], "diet"))
    alone = sweep(inventory_items.drop(["label"]), diet, trained_model, k=200, show_progress=False)
    assert any("leave out, not swept today: 'scam'" in w for w in alone.report["warnings"])


def test_a_sweep_says_which_seeds_share_an_id_with_the_models_but_not_its_seed(
    inventory_items, history, seeds, tmp_path
):
    """A seed edited under its id was swept with no note, and the next import kept the
    model's old seed under it (an outsider's week). (A model of its own: the session's is
    saved elsewhere by other tests, without its seeds.)"""
    from hashing_signal import HashingTextSignal

    from riskrank.rank.pipeline import sweep, train

    trained_model = train(
        history, seeds, tmp_path / "m", signals=[HashingTextSignal()], k=200, show_progress=False
    )

    edited = seeds.set_column(
        seeds.column_names.index("text"),
        "text",
        pa.array(["Claim your free gift card now"] + seeds["text"].to_pylist()[1:]),
    )
    res = sweep(inventory_items.drop(["label"]), edited, trained_model, k=200, show_progress=False)
    said = [w for w in res.report["warnings"] if "share an id with the model's seeds" in w]
    assert said and "'s1'" in said[0], res.report["warnings"]
    same = sweep(inventory_items.drop(["label"]), seeds, trained_model, k=200, show_progress=False)
    assert not any("share an id" in w for w in same.report["warnings"])


def test_seeds_are_compared_with_the_models_on_the_columns_both_have(tmp_path):
    """A model of picture seeds has no text column: today's seeds with one (all blank, as a
    DataFrame gives it) crashed the sweep after its ranking (a reviewer's report). A policy
    off by case is said apart, not as a changed seed."""
    from riskrank.rank.review import seeds_unlike_models
    from riskrank.recall.seeds import SeedSet

    picture = b"\x89PNG fake bytes"
    pq.write_table(
        pa.table({"seed_id": ["p1"], "policy": ["scam"], "image_bytes": [picture]}),
        tmp_path / "seeds.parquet",
    )
    today = SeedSet.from_table(
        pa.table(
            {
                "seed_id": ["p1", "t1"],
                "policy": ["Scam", "scam"],
                "text": [None, "a loan"],
                "image_bytes": [picture, None],
            }
        )  # fmt: skip
    )
    assert seeds_unlike_models(today, tmp_path) == []
    edited = SeedSet.from_table(
        pa.table({"seed_id": ["p1"], "policy": ["diet"], "image_bytes": [picture]})
    )
    assert "'p1'" in seeds_unlike_models(edited, tmp_path)[0]


def test_pictures_no_signal_reads_are_said_not_silently_skipped(
    tmp_path, hashing_model, seeds, inventory_items
):
    """A text-only model swept ads with pictures on their text, and nothing said the pictures
    were not looked at (outsider CB)."""
    inv = inventory_items.drop(["label"])
    pictures = [b"\x89PNG..." if i < 5 else None for i in range(inv.num_rows)]
    with_pictures = inv.append_column("image_bytes", pa.array(pictures, pa.binary()))
    said = sweep(with_pictures, seeds, hashing_model, show_progress=False).report["warnings"]
    unread = [w for w in said if "'image_bytes'" in w]
    assert len(unread) == 1 and "in 5 rows," in unread[0] and "(text)" in unread[0], said
    # an empty column (every cell null, or empty, of any binary or text type) is nothing
    # to look at (large and dictionary types warned falsely: reviewer CE)
    from riskrank.rank.pipeline import unread_content_warnings

    assert not unread_content_warnings(
        inv.append_column("image_bytes", pa.nulls(inv.num_rows, pa.binary())), hashing_model.signals
    )
    for col in (
        pa.array([b""] * inv.num_rows, pa.large_binary()),
        pa.array([""] * inv.num_rows, pa.large_string()),
        pa.array([""] * inv.num_rows).dictionary_encode(),
    ):
        assert not unread_content_warnings(
            inv.append_column("image_path", col), hashing_model.signals
        )
    named = pa.array(["a.jpg"] + [""] * (inv.num_rows - 1)).dictionary_encode()
    said = unread_content_warnings(inv.append_column("image_path", named), hashing_model.signals)
    assert len(said) == 1 and "in 1 row," in said[0]


def test_texts_that_are_a_missing_value_written_out_are_said(
    tmp_path, hashing_model, seeds, inventory_items
):
    """Outsider CD: 20 of 60 texts were 'nan' / 'None' / '<NA>' (a stringify step), indexed and
    queued as content with nothing said."""
    inv = inventory_items.drop(["label"])
    texts = inv["text"].to_pylist()
    texts[:4] = ["nan", " None", "<NA>", "nan"]
    stringified = inv.set_column(inv.column_names.index("text"), "text", pa.array(texts))
    said = sweep(stringified, seeds, hashing_model, show_progress=False).report["warnings"]
    placeholders = [w for w in said if "missing value written out as text" in w]
    assert len(placeholders) == 1 and "4 rows" in placeholders[0], said
    assert "' None'" in placeholders[0] and "'<NA>'" in placeholders[0]
    said = sweep(inv, seeds, hashing_model, show_progress=False).report["warnings"]
    assert not [w for w in said if "missing value written out" in w]

"""Already reviewed items are not escalated again unless their content changed since."""

import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from riskrank.rank.app.cli import main
from riskrank.rank.model import RiskModel
from riskrank.rank.pipeline import sweep
from riskrank.rank.reviewed import content_digests, mark_reviewed, reviewed_table


def _inventory(history: pa.Table, inventory_items: pa.Table) -> tuple[pa.Table, set, set]:
    """New items, plus 20 reviewed items of which the first 5 were edited since review."""
    reviewed = history.slice(0, 20).select(["item_id", "text"])
    texts = reviewed["text"].to_pylist()
    edited = [t + " Limited offer, act now!" if i < 5 else t for i, t in enumerate(texts)]
    ids = reviewed["item_id"].to_pylist()
    old = pa.table({"item_id": ids, "text": edited})
    new = inventory_items.select(["item_id", "text"])
    return pa.concat_tables([new, old]), set(ids[:5]), set(ids[5:])


def test_unchanged_reviews_leave_the_queue_changed_ones_come_back(
    tmp_path, history, inventory_items, seeds, hashing_model
):
    inv, changed, unchanged = _inventory(history, inventory_items)
    res = sweep(inv, seeds, hashing_model, out_dir=tmp_path / "sw", k=None, show_progress=False)
    q = res.queue.to_pandas().set_index("item_id")
    assert not set(q.index) & unchanged
    assert changed <= set(q.index)
    assert set(q.loc[list(changed), "reviewed"]) == {"changed"}
    verdict = dict(zip(history["item_id"].to_pylist(), history["verdict"].to_pylist()))
    assert all(q.loc[i, "previous_verdict"] == verdict[i] for i in changed)
    new = q.drop(index=list(changed))
    assert set(new.reviewed) == {""} and new.previous_verdict.isna().all()
    rev = res.report["reviewed"]
    # Of the 15 left out, those confirmed violating are still live, and counted (nothing did:
    # an outsider's week found 1,360 of 1,400 confirmed violations still in the inventory).
    live = sum(verdict[i] >= 2 for i in unchanged)
    assert 0 < live < 15
    assert rev == {
        "unchanged": 15,
        "changed": 5,
        "unchanged_items": 15,
        "excluded_from_queue": 15,
        "confirmed_violating_live": live,
        "queued_for_other_policies": 0,
        "include_reviewed": False,
    }
    assert f"| confirmed violating, unchanged and still in the inventory (items) | {live} |" in (
        rr_report_md(res)
    )
    assert json.loads((tmp_path / "sw" / "report.json").read_text())["reviewed"] == rev
    # Each base rate is the one of the items left to decide: the 15 out (BW's F2).
    ranker, cands = hashing_model.ranker, res.candidates
    raw = ranker.score(cands, calibrate=False)
    reviewed, verdicts = cands["reviewed"].to_pylist(), cands["previous_verdict"].to_pylist()
    known = np.array(
        [float(v >= 2) if r == "unchanged" else np.nan for r, v in zip(reviewed, verdicts)]
    )
    pols = cands["policy"].to_pylist()
    cal = ranker.calibrate(
        raw.scores, raw.variant, pols, covered=ranker.covered(cands), known=known
    )
    every = ranker.calibrate(raw.scores, raw.variant, pols, covered=ranker.covered(cands))
    # Its 9 held-out violations are too few for EM: the level is kept, and the report says so.
    assert res.report["decisions"]["scam"]["base_rate"] == "held_out_level"
    assert any("too few to re-estimate" in w for w in res.report["warnings"])
    for policy, rate in cal.base_rates.items():
        assert res.report["decisions"][policy]["estimated_base_rate"] == round(rate, 4)
        assert round(rate, 4) != round(every.base_rates[policy], 4)
    # Every indexed item is recalled (k=None): the 15 are missing from the queue, nothing else.
    assert res.queue.num_rows == res.report["items_indexed"] - 15

    kept = sweep(inv, seeds, hashing_model, k=None, include_reviewed=True, show_progress=False)
    kq = kept.queue.to_pandas().set_index("item_id")
    assert unchanged <= set(kq.index)
    assert set(kq.loc[list(unchanged), "reviewed"]) == {"unchanged"}
    assert kept.report["reviewed"]["excluded_from_queue"] == 0
    assert kept.queue.num_rows == res.queue.num_rows + 15


def test_a_review_counts_for_its_own_policy_only(history, inventory_items, seeds, hashing_model):
    inv, changed, unchanged = _inventory(history, inventory_items)
    other = seeds.set_column(1, "policy", pa.array(["counterfeit"] * seeds.num_rows))
    res = sweep(inv, other, hashing_model, k=None, show_progress=False)
    q = res.queue.to_pandas().set_index("item_id")
    assert unchanged <= set(q.index)  # reviewed for "scam", never for "counterfeit"
    assert set(q.reviewed) == {""}
    # ... but the reviewer sees that this same content was judged for "scam" (not the edited).
    verdict = dict(zip(history["item_id"].to_pylist(), history["verdict"].to_pylist()))
    for item in unchanged:
        assert list(q.loc[item, "reviewed_elsewhere"]) == [f"scam:{verdict[item]}"]
    for item in changed & set(q.index):
        assert list(q.loc[item, "reviewed_elsewhere"]) == []
    fresh = q.drop(index=list((unchanged | changed) & set(q.index)))
    assert all(len(v) == 0 for v in fresh.reviewed_elsewhere)
    # Both policies at once: the 15 are not left out (queued for counterfeit), and the report
    # says so rather than "0 left out" alone.
    renamed = other.set_column(0, "seed_id", pa.array([f"cf-{i}" for i in range(other.num_rows)]))
    two = pa.concat_tables([seeds, renamed])
    both = sweep(inv, two, hashing_model, k=None, show_progress=False)
    rev = both.report["reviewed"]
    assert (rev["excluded_from_queue"], rev["queued_for_other_policies"]) == (0, 15)
    assert rev["unchanged_items"] == 15  # left out for "scam", the policy that reviewed them
    from riskrank.rank.evaluation.report import count_rows

    rows = count_rows(both.report)
    assert ("reviewed and unchanged for a policy, queued for another (items)", "15") in rows
    assert ("reviewed and unchanged for a policy, left out for it (items)", "15") in rows
    cut = sweep(inv, two, hashing_model, k=None, budget=20, show_progress=False)
    shown = set(cut.queue["item_id"].to_pylist()) & unchanged
    assert cut.report["reviewed"]["queued_for_other_policies"] == len(shown) < 15


def test_content_digest_sees_text_and_image_edits_not_absent_columns():
    text_only = pa.table({"item_id": ["a"], "text": ["hello"]})
    with_image = pa.table(
        {"item_id": ["a"], "text": ["hello"], "image_bytes": pa.array([None], pa.binary())}
    )
    other_id = pa.table({"item_id": ["b"], "text": ["hello"]})
    assert content_digests(text_only, []) == content_digests(with_image, [])
    assert content_digests(text_only, []) == content_digests(other_id, [])
    edited = pa.table({"item_id": ["a"], "text": ["hello!"]})
    assert content_digests(text_only, []) != content_digests(edited, [])
    img = pa.table({"item_id": ["a"], "text": ["hello"], "image_bytes": [b"\x89PNG1"]})
    img2 = pa.table({"item_id": ["a"], "text": ["hello"], "image_bytes": [b"\x89PNG2"]})
    assert content_digests(img, []) != content_digests(img2, [])


class _ImageDir:
    """A signal's runtime options as content_digests reads them: where image paths live."""

    def __init__(self, base_dir) -> None:
        self.base_dir = base_dir

    def get_runtime_options(self) -> dict:
        return {"base_dir": self.base_dir}


def test_an_image_digests_as_the_picture_wherever_it_is_kept(tmp_path):
    """A reviewed creative moved from bytes into a file, or to a dated folder under a new
    name, is what the reviewer saw: unchanged. Another picture is changed. A model trained
    before (its digests named the path too) is still read the way it was written."""
    pic, other = b"\x89PNG picture one", b"\x89PNG picture two"
    for name, data in [("d1/a.png", pic), ("d2/ad-a-v2.png", pic), ("d2/b.png", other)]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    signals = [_ImageDir(tmp_path)]

    def row(**image) -> pa.Table:
        return pa.table({"item_id": ["a"], "text": ["hi"], **{k: [v] for k, v in image.items()}})

    same = [row(image_bytes=pic), row(image_path="d1/a.png"), row(image_path="d2/ad-a-v2.png")]
    digests = {content_digests(t, signals)[0] for t in same}
    assert len(digests) == 1
    assert content_digests(row(image_path="d2/b.png"), signals)[0] not in digests
    gone = [content_digests(row(image_path=f"d3/{n}.png"), signals)[0] for n in "xy"]
    assert gone[0] != gone[1]  # two missing files are not one content

    history = row(image_path="d1/a.png").append_column("policy", pa.array(["scam"]))
    history = history.append_column("verdict", pa.array([3], pa.int8()))
    cands = pa.table({"item_id": ["a"], "policy": ["scam"]})
    reviewed = reviewed_table(history, signals)
    for today, status in [(same[2], "unchanged"), (row(image_path="d2/b.png"), "changed")]:
        assert mark_reviewed(cands, reviewed, today, signals)["reviewed"].to_pylist() == [status]
    legacy = reviewed.set_column(
        3, "content_digest", pa.array(content_digests(history, signals, images="cells"))
    ).replace_schema_metadata({"doc": "a model trained before 2026-12-05"})
    assert legacy["content_digest"] != reviewed["content_digest"]
    marked = mark_reviewed(cands, legacy, same[1], signals)
    assert marked["reviewed"].to_pylist() == ["unchanged"]


def test_model_keeps_digests_and_an_older_model_says_it_cannot(
    tmp_path, history, inventory_items, seeds, hashing_model
):
    saved = RiskModel.load(hashing_model.save(tmp_path / "m"))
    assert saved.reviewed.num_rows == history.num_rows
    assert pq.read_table(tmp_path / "m" / "reviewed.parquet").equals(saved.reviewed)
    # A model from before digests were kept: nothing is recognised, and a warning says why.
    saved.reviewed = None
    saved.save(tmp_path / "old")
    old = RiskModel.load(tmp_path / "old")
    assert old.reviewed is None and not (tmp_path / "old" / "reviewed.parquet").exists()
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("riskrank").addHandler(handler)
    try:
        inv, _, unchanged = _inventory(history, inventory_items)
        res = sweep(inv, seeds, old, k=None, show_progress=False)
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    assert unchanged <= set(res.queue["item_id"].to_pylist())
    assert res.report["reviewed"]["unchanged"] == 0
    assert any("no content digests of its reviews" in r.getMessage() for r in records)


def test_cli_include_reviewed(tmp_path, history, inventory_items, seeds, hashing_model, capsys):
    inv, _, unchanged = _inventory(history, inventory_items)
    pq.write_table(inv, tmp_path / "inv.parquet")
    pq.write_table(seeds, tmp_path / "seeds.parquet")
    hashing_model.save(tmp_path / "m")
    common = [
        "--inventory",
        str(tmp_path / "inv.parquet"),
        "--seeds",
        str(tmp_path / "seeds.parquet"),
    ]
    common += ["--model", str(tmp_path / "m"), "--k", "all"]
    assert main(["sweep", *common, "--out", str(tmp_path / "a")]) == 0
    assert "reviewed, unchanged (not queued for that policy)" in capsys.readouterr().out
    md = (tmp_path / "a" / "report.md").read_text()
    assert "every policy that recalled them, left out (items) | 15" in md
    assert main(["sweep", *common, "--out", str(tmp_path / "b"), "--include-reviewed"]) == 0
    ids = set(pq.read_table(tmp_path / "b" / "queue.parquet")["item_id"].to_pylist())
    assert unchanged <= ids


def test_parquet_inventory_is_marked_as_a_table_is(
    tmp_path, history, inventory_items, hashing_model
):
    """The Ray engine hands over Parquet files or a directory: the marks must not differ."""
    inv, changed, unchanged = _inventory(history, inventory_items)
    (tmp_path / "inv").mkdir()
    pq.write_table(inv.slice(0, 50), tmp_path / "inv" / "part-0.parquet")
    pq.write_table(inv.slice(50), tmp_path / "inv" / "part-1.parquet")
    ids = inv["item_id"].to_pylist()
    cands = pa.table({"item_id": ids, "policy": ["scam"] * len(ids)})
    signals = hashing_model.signals
    as_table = mark_reviewed(cands, hashing_model.reviewed, inv, signals)
    for source in (tmp_path / "inv", sorted((tmp_path / "inv").glob("*.parquet"))):
        marked = mark_reviewed(cands, hashing_model.reviewed, source, signals)
        assert marked.equals(as_table)
    status = dict(zip(ids, as_table["reviewed"].to_pylist()))
    assert {status[i] for i in changed} == {"changed"}
    assert {status[i] for i in unchanged} == {"unchanged"}
    assert sum(s == "" for s in status.values()) == inventory_items.num_rows


def test_a_retroactive_sweep_knows_reviewed_pictures_it_no_longer_holds(
    tmp_path, history, inventory_items, seeds, hashing_signal
):
    """A sweep without the inventory reads today's content from the standing index, which
    keeps no ``image_bytes``: every reviewed item whose picture came as bytes was taken as
    changed and queued again (an outsider's report). The index keeps the pictures' digests."""
    from riskrank.rank.pipeline import train
    from riskrank.rank.ranker import RiskRanker

    pics = [f"\x89PNG picture {i}".encode() for i in range(8)]
    hist = history.append_column(
        "image_bytes", pa.array(pics + [None] * (history.num_rows - 8), pa.binary())
    )
    model = train(
        hist, seeds, tmp_path / "m", signals=[hashing_signal], k=200, lexical_probe=False,
        ranker=RiskRanker(n_estimators=30, n_jobs=1), show_progress=False,
    )  # fmt: skip
    reviewed = hist.slice(0, 8).select(["item_id", "text", "image_bytes"])
    today_pics = pics[:6] + [b"another picture", b"yet another"]  # 2 replaced since review
    reviewed = reviewed.set_column(2, "image_bytes", pa.array(today_pics, pa.binary()))
    new = inventory_items.select(["item_id", "text"])
    new = new.append_column("image_bytes", pa.nulls(new.num_rows, pa.binary()))
    inv = pa.concat_tables([new, reviewed])
    kw = {"k": None, "index_dir": tmp_path / "st", "show_progress": False}
    with_inv = sweep(inv, seeds, model, **kw)
    retro = sweep(None, seeds, model, **kw)
    assert with_inv.report["reviewed"]["unchanged"] == 6
    assert with_inv.report["reviewed"]["changed"] == 2
    assert retro.report["reviewed"] == with_inv.report["reviewed"]
    assert retro.queue["item_id"].to_pylist() == with_inv.queue["item_id"].to_pylist()
    # A model trained before digests read pictures by content digests the bytes cell, which
    # the index's rows lack: its sweeps with the inventory mark from the inventory's rows (a
    # reviewer's repro: every reviewed picture came back as changed).
    import dataclasses

    from riskrank.index.content_digest import IMAGE_CELLS

    cells = content_digests(
        hist.select(["item_id", "text", "image_bytes"]), model.signals, images=IMAGE_CELLS
    )
    digest_of = dict(zip(hist["item_id"].to_pylist(), cells))
    rows = model.reviewed.select(["item_id", "policy", "verdict"])
    legacy = rows.append_column(
        "content_digest", pa.array([digest_of[i] for i in rows["item_id"].to_pylist()])
    ).replace_schema_metadata(None)
    old = dataclasses.replace(model, reviewed=legacy)
    assert sweep(inv, seeds, old, **kw).report["reviewed"] == with_inv.report["reviewed"]


def test_an_ad_in_two_day_folders_is_judged_on_the_export_the_index_kept(
    tmp_path, history, inventory_items, seeds, hashing_model
):
    """The index keeps the newest hive folder's row of an ad exported on two days; whether a
    reviewer saw it was judged on the inventory's first row of the id, the older export: the
    5 ads edited after their review were marked unchanged and left out of the queue (an
    outsider's repro), and ads reviewed on the newer text would have been queued again."""
    inv, changed, unchanged = _inventory(history, inventory_items)
    reviewed = history.slice(0, 20).select(["item_id", "text"])
    older = inv.filter(pa.compute.invert(pa.compute.is_in(inv["item_id"], reviewed["item_id"])))
    day1, day2 = tmp_path / "inv" / "day=2026-12-01", tmp_path / "inv" / "day=2026-12-02"
    day1.mkdir(parents=True), day2.mkdir()
    pq.write_table(pa.concat_tables([older, reviewed]), day1 / "part.parquet")  # as reviewed
    pq.write_table(inv.slice(older.num_rows), day2 / "part.parquet")  # 5 of them edited since
    res = sweep(tmp_path / "inv", seeds, hashing_model, k=None, show_progress=False)
    q = res.queue.to_pandas().set_index("item_id")
    assert changed <= set(q.index) and not set(q.index) & unchanged
    assert set(q.loc[list(changed), "reviewed"]) == {"changed"}
    assert res.report["reviewed"]["changed"] == 5
    assert res.report["reviewed"]["excluded_from_queue"] == 15


def test_campaign_mode_counts_the_members_it_queues_for_other_policies(
    history, inventory_items, seeds, hashing_model
):
    """The report's ``queued_for_other_policies`` counted campaign mode's representatives
    only: 4 of the 15 items reviewed for one policy and queued for another (an outsider's
    repro); item mode said 15."""
    inv, changed, unchanged = _inventory(history, inventory_items)
    other = seeds.set_column(1, "policy", pa.array(["counterfeit"] * seeds.num_rows))
    other = other.set_column(0, "seed_id", pa.array([f"cf-{i}" for i in range(seeds.num_rows)]))
    two = pa.concat_tables([seeds, other])
    kw = dict(k=None, show_progress=False, explore=0)
    items = sweep(inv, two, hashing_model, **kw).report["reviewed"]
    camps = sweep(inv, two, hashing_model, campaigns=True, **kw)
    assert items["queued_for_other_policies"] > 1
    assert camps.report["reviewed"] == items
    assert camps.report["queued_items"] == sum(
        map(len, camps.queue["campaign_members"].to_pylist())
    )


def test_arrange_queue_keeps_reviewed_items_whose_content_changed(tmp_path):
    # ``reviewed=`` dropped every (item, policy) with a verdict, the edited ones too.
    from hashing_signal import HashingTextSignal

    from riskrank.index.build import build_index
    from riskrank.rank.exploration import arrange_queue

    items = pa.table({"item_id": ["a", "b", "c"], "text": ["cheap pills", "a lake", "win a car"]})
    index = build_index(items, tmp_path / "idx", signals=[HashingTextSignal()], show_progress=False)
    queue = pa.table(
        {
            "rank": [1, 2, 3],
            "item_id": ["a", "b", "c"],
            "policy": ["spam"] * 3,
            "risk_probability": [0.9, 0.8, 0.7],
            "reviewed": ["changed", "unchanged", ""],
        }
    )
    out = arrange_queue(
        queue, index, budget=None, explore=0, reviewed={("a", "spam"), ("b", "spam")}
    )
    assert out["item_id"].to_pylist() == ["a", "c"]


def test_a_reexport_with_windows_line_breaks_or_decomposed_accents_changes_no_review(
    history, inventory_items, seeds, hashing_model
):
    """An export whose only change was LF -> CRLF marked every reviewed item ``changed`` and
    queued it again (an outsider's loop: 93 of 100 rows): a reviewer saw the same text. So
    does NFD against NFC. A real edit is still ``changed``; a model whose digests read the
    text's bytes (``content_digests`` 2) is read that way."""
    import dataclasses
    import unicodedata

    texts = ["Line one\nline two\n\nWin a prize", "Café crème\nbrûlée", "plain"]
    ids = ["r-crlf", "r-nfd", "r-edit"]
    hist = pa.table(
        {
            "item_id": ids,
            "text": texts,
            "policy": ["scam"] * 3,
            "verdict": pa.array([3, 0, 0], pa.int8()),
        }
    )
    reviewed = reviewed_table(hist, [])
    assert (reviewed.schema.metadata or {})[b"content_digests"] == b"3"
    today = pa.table(
        {
            "item_id": ids,
            "text": [
                texts[0].replace("\n", "\r\n"),
                unicodedata.normalize("NFD", texts[1]).replace("\n", "\r"),
                "plain, edited",
            ],
        }
    )
    assert today["text"][1].as_py() != texts[1]  # the bytes differ
    cands = pa.table({"item_id": ids, "policy": ["scam"] * 3})
    marked = mark_reviewed(cands, reviewed, today, [])
    assert marked["reviewed"].to_pylist() == ["unchanged", "unchanged", "changed"]
    assert marked["previous_verdict"].to_pylist() == [3, 0, 0]
    # A model trained before: its digests are of the bytes, and are read as such.
    older = reviewed.set_column(
        3, "content_digest", pa.array(content_digests(hist, [], text_as_seen=False))
    ).replace_schema_metadata({b"content_digests": b"2"})
    assert mark_reviewed(cands, older, hist, [])["reviewed"].to_pylist() == ["unchanged"] * 3
    assert mark_reviewed(cands, older, today, [])["reviewed"].to_pylist() == ["changed"] * 3

    # Through a sweep: reviewed texts with line breaks, exported again with CRLF.
    hist_nl = history.set_column(
        1, "text", pa.array([t.replace(" ", "\n", 1) for t in history["text"].to_pylist()])
    )
    model = dataclasses.replace(
        hashing_model, reviewed=reviewed_table(hist_nl, hashing_model.signals)
    )
    inv, changed, unchanged = _inventory(hist_nl, inventory_items)
    crlf = inv.set_column(
        1, "text", pa.array([t.replace("\n", "\r\n") for t in inv["text"].to_pylist()])
    )
    assert sum(a != b for a, b in zip(inv["text"].to_pylist(), crlf["text"].to_pylist())) >= 20
    for table in (inv, crlf):
        res = sweep(table, seeds, model, k=None, show_progress=False)
        assert (res.report["reviewed"]["unchanged"], res.report["reviewed"]["changed"]) == (15, 5)
        assert not set(res.queue["item_id"].to_pylist()) & unchanged
    bytes_digests = content_digests(hist_nl, hashing_model.signals, text_as_seen=False)
    older = dataclasses.replace(
        model,
        reviewed=model.reviewed.set_column(3, "content_digest", pa.array(bytes_digests))
        .replace_schema_metadata({b"content_digests": b"2"}),
    )  # fmt: skip
    kw = dict(k=None, show_progress=False)
    assert sweep(inv, seeds, older, **kw).report["reviewed"]["unchanged"] == 15
    assert sweep(crlf, seeds, older, **kw).report["reviewed"]["changed"] == 20


def test_review_import_compares_what_a_reviewer_saw_too():
    """``review import`` decides "already in the history" / "changed since the review" with
    the same digests: a verdict again on a CRLF re-export is nothing to change."""
    from riskrank.rank.review import _changed_since_review

    history = pa.table({"item_id": ["a", "b"], "text": ["win\na prize", "Café"]})
    contents = [{"text": "win\r\na prize"}, {"text": "Cafe\u0301"}]
    assert _changed_since_review(history, [0, 1], contents, []) == [False, False]
    edited = [{"text": "win a prize"}, {"text": "Cafe"}]
    assert _changed_since_review(history, [0, 1], edited, []) == [True, True]


def rr_report_md(result) -> str:
    """The sweep's report.md, as ``write_report`` writes it."""
    import tempfile
    from pathlib import Path

    from riskrank.rank.evaluation.report import write_report

    with tempfile.TemporaryDirectory() as d:
        return write_report(Path(d), result.report, result.queue).read_text()


def test_only_a_changed_review_s_missing_picture_file_is_said(tmp_path):
    """The warning for reviewed pictures not found spoke of remote URLs, paths outside the
    folder and items whose file was already missing at review (which stay unchanged): a
    reviewer's finding. Only a changed item whose file is not found is said."""
    from riskrank.index.signals.pdq import PdqSignal
    from riskrank.rank.reviewed import _unread_pictures_warning

    (tmp_path / "here.jpg").write_bytes(b"x")
    rows = pa.table(
        {
            "item_id": ["url", "outside", "bytes", "here", "gone", "gone-unchanged"],
            "image_bytes": pa.array([None, None, b"", None, None, None], pa.binary()),
            "image_path": ["https://cdn.example.com/a.jpg", "../../etc/passwd", "x.jpg",
                           "here.jpg", "gone.jpg", "gone2.jpg"],
        }
    )  # fmt: skip
    changed = {"url", "outside", "bytes", "here", "gone"}
    signals = [PdqSignal(base_dir=tmp_path)]
    said = _unread_pictures_warning(rows, [None] * 6, signals, changed)
    assert "the picture files of 1 reviewed items were not found (e.g. gone: gone.jpg" in said
    assert _unread_pictures_warning(rows, [None] * 6, signals, {"here"}) is None


def test_a_gone_file_is_no_picture_any_review_saw_where_they_saw_different_ones(tmp_path):
    """A picture file gone, an item's reviews put the picture they saw back into today's
    digest (``_gone_as_reviewed``). Where two reviews saw different pictures under the same
    path (the file replaced between them), which one is gone cannot be told: both counted
    as unchanged, and each as the same content as the other (a reviewer's finding). One
    picture under the path: as reviewed."""
    from riskrank.rank.reviewed import mark_reviewed, reviewed_table

    class Reads:  # a signal reading image paths from tmp_path
        def get_runtime_options(self):
            return {"base_dir": str(tmp_path)}

    signals = [Reads()]
    schema = pa.schema([("item_id", pa.string()), ("policy", pa.string()),
                        ("verdict", pa.int64()), ("text", pa.string()),
                        ("image_bytes", pa.binary()), ("image_path", pa.string())])  # fmt: skip
    (tmp_path / "a.png").write_bytes(b"P2")
    (tmp_path / "b.png").write_bytes(b"P3")
    history = pa.table(
        {"item_id": ["2", "2", "3", "3"], "policy": ["spam", "scam", "spam", "scam"],
         "verdict": [0, 1, 0, 1], "text": ["t"] * 4,
         "image_bytes": [b"P1", None, None, None],
         "image_path": ["a.png", "a.png", "b.png", "b.png"]},
        schema=schema,
    )  # fmt: skip
    reviewed = reviewed_table(history, signals)
    (tmp_path / "a.png").unlink()
    (tmp_path / "b.png").unlink()
    cands = pa.table({"item_id": ["2", "2", "3", "3"], "policy": ["spam", "scam"] * 2})
    today = pa.table({"item_id": ["2", "3"], "text": ["t", "t"], "image_path": ["a.png", "b.png"]})
    out = mark_reviewed(cands, reviewed, today, signals, warnings=[])
    status = list(zip(out["item_id"].to_pylist(), out["reviewed"].to_pylist()))
    assert status == [("2", "changed"), ("2", "changed"), ("3", "unchanged"), ("3", "unchanged")]
    assert out["reviewed_elsewhere"].to_pylist() == [[], [], ["scam:1"], ["spam:0"]]

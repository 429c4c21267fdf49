import json
import logging
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from hashing_signal import HashingTextSignal

from riskrank.index.store import current_version
from riskrank.index.tables import SchemaError
from riskrank.rank.app.cli import main
from riskrank.rank.model import RiskModel
from riskrank.rank.pipeline import sweep, train
from riskrank.rank.review import history_digest, import_verdicts


@pytest.fixture(scope="module")
def loop(tmp_path_factory, history, seeds, inventory_items, text_signal):
    """A version-1 model and the sweep queue it made (item mode, exploration off)."""
    root = tmp_path_factory.mktemp("loop")
    train(history, seeds, root / "v1", signals=[text_signal], k=200, show_progress=False)
    inv = inventory_items.drop(["label"])
    sweep(inv, seeds, root / "v1", out_dir=root / "day1", k=200, show_progress=False, explore=0)
    return root, pq.read_table(root / "day1" / "queue.parquet")


def _campaign(queue):
    """A campaign with >= 2 members in the queue, and its members."""
    big = queue.filter(pc.greater(queue["campaign_size"], 1))
    cid = big["campaign_id"][0].as_py()
    return cid, queue.filter(pc.equal(queue["campaign_id"], cid))["item_id"].to_pylist()


def test_first_model_records_version_and_history(loop, history):
    root, _ = loop
    meta = json.loads((root / "v1" / "model.json").read_text())
    assert meta["version"] == 1 and meta["parent_version"] is None
    assert meta["history_digest"] == history_digest(history)
    assert meta["created_at"].endswith("Z")
    assert pq.read_table(root / "v1" / "history.parquet").num_rows == history.num_rows


def test_reviews_under_a_policy_without_seeds_stay_in_the_lineage(
    history, seeds, text_signal, tmp_path
):
    """Reviews under a policy the seeds leave out train nothing now (quarantined for this
    training, as before) but stay in the history the next import starts from: they were
    dropped from every later version, and bringing the policy's seeds back found 1 of its 31
    reviews (a reviewer's report). The next version trains on them once the seeds name it."""
    diet = history.slice(0, 20)
    diet = diet.set_column(0, "item_id", pa.array([f"d{i}" for i in range(20)]))
    diet = diet.set_column(diet.column_names.index("policy"), "policy", pa.array(["diet"] * 20))
    both = pa.concat_tables([history, diet])
    train(both, seeds, tmp_path / "v1", signals=[text_signal], k=200, show_progress=False)
    kept = pq.read_table(tmp_path / "v1" / "history.parquet")
    assert kept.num_rows == both.num_rows
    assert kept.filter(pc.equal(kept["policy"], "diet"))["item_id"].to_pylist() == [
        f"d{i}" for i in range(20)
    ]
    set_aside = pq.read_table(tmp_path / "v1" / "history_quarantine.parquet")
    assert set_aside.num_rows == 20 and "has no seeds" in set_aside["reason"][0].as_py()
    meta = json.loads((tmp_path / "v1" / "model.json").read_text())
    assert meta["policies_with_history"] == ["scam"]
    assert meta["history_digest"] == history_digest(both)
    # The diet seeds back: the next version trains on its 20 reviews.
    with_diet = pa.concat_tables(
        [seeds, seeds.slice(0, 1).set_column(1, "policy", pa.array(["diet"]))]
    )
    seed_ids = [*seeds["seed_id"].to_pylist(), "d-seed"]
    with_diet = with_diet.set_column(0, "seed_id", pa.array(seed_ids))
    train(kept, with_diet, tmp_path / "v1b", signals=[text_signal], k=200, show_progress=False)
    meta = json.loads((tmp_path / "v1b" / "model.json").read_text())
    assert meta["policies_with_history"] == ["diet", "scam"]


def test_bad_verdict_rows_are_quarantined_with_reasons_and_nothing_lost(loop, tmp_path):
    root, queue = loop
    ids = queue["item_id"].to_pylist()
    cid, members = _campaign(queue)
    free = [i for i in ids if i not in members]
    rows = [
        {"item_id": free[0], "campaign_id": None, "verdict": "2"},  # 0 ok
        {"item_id": "nope", "campaign_id": None, "verdict": "2"},  # 1 unknown item
        {"item_id": free[1], "campaign_id": None, "verdict": "5"},  # 2 out of range
        {"item_id": free[2], "campaign_id": None, "verdict": "1.5"},  # 3 not an integer
        {"item_id": free[3], "campaign_id": None, "verdict": "abc"},  # 4 not a number
        {"item_id": free[4], "campaign_id": None, "verdict": None},  # 5 missing
        {"item_id": free[5], "campaign_id": None, "verdict": "0"},  # 6 conflicts with 7
        {"item_id": free[5], "campaign_id": None, "verdict": "3"},  # 7
        {"item_id": free[6], "campaign_id": None, "verdict": "2.0"},  # 8 ok (integral)
        {"item_id": free[6], "campaign_id": None, "verdict": "2"},  # 9 duplicate of 8
        {"item_id": None, "campaign_id": "c-nope", "verdict": "2"},  # 10 unknown campaign
        {"item_id": None, "campaign_id": None, "verdict": "2"},  # 11 no id
        {"item_id": None, "campaign_id": cid, "verdict": "3"},  # 12 ok: whole campaign
        {"item_id": members[1], "campaign_id": None, "verdict": "0"},  # 13 ok: member override
    ]
    path = tmp_path / "verdicts.csv"
    pcsv.write_csv(pa.Table.from_pylist(rows), path)
    res = import_verdicts(
        path, root / "day1" / "queue.parquet", root / "v1", out_dir=tmp_path / "v2", retrain=False
    )
    reasons = {r["row"]: r["reason"] for r in res.quarantine.to_pylist()}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 9, 10, 11]
    assert "unknown item_id 'nope'" in reasons[1]
    assert "not a grade 0-3 (benign = 0, borderline = 1" in reasons[2] and "'1.5'" in reasons[3]
    assert "conflicting" in reasons[6] and "row 7 = 3" in reasons[6]
    assert "duplicate" in reasons[9] and "row 8" in reasons[9]
    assert "unknown campaign_id" in reasons[10] and "neither" in reasons[11]
    got = {r["item_id"]: r for r in res.imported.to_pylist()}
    assert got[free[0]]["verdict"] == 2 and got[free[6]]["verdict"] == 2
    # The campaign verdict reaches every member and says so; the member's own verdict wins.
    for m in members:
        assert m in got
    assert got[members[0]]["verdict"] == 3
    assert got[members[0]]["verdict_source"] == f"campaign:{cid}"
    assert got[members[1]]["verdict"] == 0 and got[members[1]]["verdict_source"] == "item"
    # Nothing lost: every input row is imported or quarantined.
    assert set(res.imported["row"].to_pylist()) | set(reasons) == set(range(len(rows)))
    assert pq.read_table(tmp_path / "v2" / "verdicts_quarantine.parquet").num_rows == 10
    # Full text, not the queue's 300-character cut, goes to the history.
    hist = pq.read_table(tmp_path / "v2" / "history.parquet")
    assert hist.num_rows == 120 + res.imported.num_rows
    assert None not in hist["text"].to_pylist()


def test_strict_import_refuses_the_file_naming_rows(loop, tmp_path):
    root, queue = loop
    ok = queue["item_id"][0].as_py()
    bad = pa.table({"item_id": [ok, "ghost"], "verdict": [2, 9]})
    with pytest.raises(SchemaError, match=r"1 bad rows \(1 item verdicts\).*row 1 \(ghost\)"):
        import_verdicts(
            bad,
            root / "day1" / "queue.parquet",
            root / "v1",
            out_dir=tmp_path / "v2",
            strict=True,
            retrain=False,
        )
    assert not (tmp_path / "v2").exists()
    with pytest.raises(SchemaError, match="need a 'verdict' column"):
        import_verdicts(
            pa.table({"item_id": [ok]}),
            root / "day1" / "queue.parquet",
            root / "v1",
            out_dir=tmp_path / "v3",
            retrain=False,
        )


def test_an_import_that_takes_nothing_without_a_retrain_says_so(loop, tmp_path):
    """Outsider CD: every row quarantined, retrain=False: a normal return (added_nothing),
    nothing said to a caller who did not read that flag."""
    root, _ = loop
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("riskrank").addHandler(handler)
    try:
        got = import_verdicts(
            pa.table({"item_id": ["ghost", "nobody"], "verdict": [2, 0]}),
            root / "day1" / "queue.parquet",
            root / "v1",
            out_dir=tmp_path / "v2",
            retrain=False,
        )
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    assert got.added_nothing
    said = [r.getMessage() for r in records if "none of the 2 verdict row(s)" in r.getMessage()]
    assert len(said) == 1 and "unknown item_id" in said[0], said


def test_cli_review_import_retrains_a_new_version(loop, tmp_path, capsys):
    root, queue = loop
    top = queue["item_id"].to_pylist()[:12]
    truth = dict(zip(queue["item_id"].to_pylist(), queue["text"].to_pylist()))
    verdicts = pa.table(
        {
            "item_id": top,
            "verdict": [2 if "won" in truth[i] or "loan" in truth[i] else 0 for i in top],
        }
    )
    pq.write_table(verdicts, tmp_path / "v.parquet")
    rc = main(
        [
            "review",
            "import",
            str(tmp_path / "v.parquet"),
            "--queue",
            str(root / "day1" / "queue.parquet"),
            "--model",
            str(root / "v1"),
            "--out",
            str(tmp_path / "v2"),
        ]
    )
    assert rc == 0
    assert "model version" in capsys.readouterr().out
    meta = json.loads((tmp_path / "v2" / "model.json").read_text())
    parent = json.loads((root / "v1" / "model.json").read_text())
    assert meta["version"] == 2 and meta["parent_version"] == 1
    assert meta["parent_history_digest"] == parent["history_digest"] != meta["history_digest"]
    assert meta["history_rows"] == 120 + 12
    # The retrain started from v1's history index: only the 12 new reviews were embedded.
    update = json.loads(
        (current_version(tmp_path / "v2" / "history_index") / "manifest.json").read_text()
    )["standing"]["update"]
    assert (update["added"], update["unchanged"]) == (12, 120)
    assert update["embedded"] <= 12
    # The next sweep of the same inventory leaves the reviewed items out of the queue.
    inv = pq.read_table(current_version(root / "day1" / "index") / "items.parquet")
    seeds = pq.read_table(tmp_path / "v2" / "seeds.parquet")
    day2 = sweep(inv, seeds, tmp_path / "v2", k=200, show_progress=False, explore=0).queue
    assert not set(top) & set(day2["item_id"].to_pylist())
    assert day2.num_rows == queue.num_rows - len(top)
    # Re-importing the same verdicts onto v2 is refused row by row: already in the history.
    rc = main(
        [
            "review",
            "import",
            str(tmp_path / "v.parquet"),
            "--queue",
            str(root / "day1" / "queue.parquet"),
            "--model",
            str(tmp_path / "v2"),
            "--out",
            str(tmp_path / "v3"),
            "--strict",
        ]
    )
    assert rc == 2
    assert "already in the history" in capsys.readouterr().err
    # Without a retrain the rows are counted apart from problems, and listed as such.
    rc = main(
        [
            "review", "import", str(tmp_path / "v.parquet"),
            "--queue", str(root / "day1" / "queue.parquet"),
            "--model", str(tmp_path / "v2"), "--out", str(tmp_path / "v4"), "--no-retrain",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 1  # it added nothing
    assert re.search(r"  quarantined +\| 0\b", out) or re.search(r"  quarantined +0\b", out), out
    assert "already in the history with that verdict" in out and "already recorded row" in out


def test_reviewed_items_vectors_come_from_the_sweeps_index(loop, seeds, inventory_items, tmp_path):
    """Reviewed items the sweep embedded are not embedded again for the history index: the
    retrain takes their vectors from the sweep's standing index (same content and encoder)."""
    root, _ = loop
    inv = inventory_items.drop(["label"])
    texts = [f"{t} (seen only on day 3, ad {i})" for i, t in enumerate(inv["text"].to_pylist())]
    inv = inv.set_column(inv.schema.get_field_index("text"), "text", pa.array(texts))
    day3 = tmp_path / "day3"
    sweep(inv, seeds, root / "v1", out_dir=day3, k=200, show_progress=False, explore=0)
    queue = pq.read_table(day3 / "queue.parquet")
    top = queue["item_id"].to_pylist()[:5]
    verdicts = pa.table({"item_id": top, "verdict": [2, 0, 2, 0, 0]})
    import_verdicts(verdicts, day3 / "queue.parquet", root / "v1", out_dir=tmp_path / "v2")
    update = json.loads(
        (current_version(tmp_path / "v2" / "history_index") / "manifest.json").read_text()
    )["standing"]["update"]
    assert (update["added"], update["embedded"], update["donated_vectors"]) == (5, 0, 5)


def _import(verdicts, root, out, **kw):
    return import_verdicts(
        verdicts, root / "day1" / "queue.parquet", root / "v1", out_dir=out, retrain=False, **kw
    )


def test_every_awkward_row_is_imported_or_quarantined(loop, tmp_path):
    """Rows that used to vanish or win wrongly: a campaign verdict all of whose members judged
    themselves, a member whose own verdicts conflict, an item named with a campaign it is not
    in, a blank policy cell (the default, not an unknown policy)."""
    root, queue = loop
    cid, members = _campaign(queue)
    other, others = _campaign(queue.filter(pc.not_equal(queue["campaign_id"], cid)))
    free = [i for i in queue["item_id"].to_pylist() if i not in members + others]
    rows = [
        [None, cid, "2", ""],  # 0: every member has its own verdict below: reaches none
        *[[m, None, "0", ""] for m in members],  # 1..n: the members' own (blank policy)
        [None, other, "3", ""],  # applies to others[1:]
        [others[0], None, "0", ""],  # conflicts with the next row: both quarantined,
        [others[0], None, "2", ""],  # and others[0] takes no campaign verdict either
        [free[0], cid, "2", ""],  # an item named with a campaign it is not in
        [members[0], cid, "0", ""],  # member + campaign, item-mode queue: the item's own
    ]
    path = tmp_path / "v.csv"
    path.write_text(
        "item_id,campaign_id,verdict,policy\n"
        + "\n".join(",".join(c or "" for c in r) for r in rows)
        + "\n"
    )
    res = _import(path, root, tmp_path / "v2")
    n = len(members)
    why = {}
    for r in res.quarantine.to_pylist():
        why.setdefault(r["row"], []).append(r["reason"])
    got = {r["item_id"]: r for r in res.imported.to_pylist()}
    assert "reaches no member" in why[0][0]
    assert "not a member of campaign_id" in why[n + 4][0]
    assert all("conflicting" in w for w in why[n + 2] + why[n + 3])
    assert "duplicate verdict for item" in why[n + 5][0]  # of row 1
    # others[0] judged alone (and quarantined): the campaign verdict passes it over, saying so.
    assert others[0] not in got and "not applied to member" in why[n + 1][0]
    assert all(got[m]["verdict_source"] == f"campaign:{other}" for m in others[1:])
    assert all(got[m]["policy"] == "scam" and got[m]["verdict"] == 0 for m in members[1:])
    assert set(res.imported["row"].to_pylist()) | set(why) == set(range(len(rows)))
    assert res.rows == len(rows)


def test_badly_typed_verdict_files_get_a_clear_error(loop, tmp_path):
    root, queue = loop
    ok = queue["item_id"][0].as_py()
    path = tmp_path / "twice.csv"
    path.write_text(f"item_id,verdict,verdict\n{ok},2,0\n")
    with pytest.raises(SchemaError, match=r"\['verdict'\] twice"):
        _import(path, root, tmp_path / "a")
    for table, column in (
        (pa.table({"item_id": [ok], "verdict": pa.array([[2]])}), "verdict"),
        (pa.table({"campaign_id": pa.array([["c-x"]]), "verdict": [2]}), "campaign_id"),
    ):
        with pytest.raises(SchemaError, match=f"column '{column}' is"):
            _import(table, root, tmp_path / "b")
    with pytest.raises(SchemaError, match="column 'item_id' holds numbers, 1.5 among them"):
        _import(pa.table({"item_id": [3.0, 1.5], "verdict": [2, 2]}), root, tmp_path / "b")
    coded = pa.table({"item_id": pa.array([3.0, 1.5]).dictionary_encode(), "verdict": [2, 2]})
    with pytest.raises(SchemaError, match="column 'item_id' holds numbers, 1.5 among them"):
        _import(coded, root, tmp_path / "b")
    # Integer ids are read as their digits (as the inventory reads them): here, unknown ones.
    warned = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warned.append(record.getMessage())
    logging.getLogger("riskrank").addHandler(handler)
    try:
        res = _import(pa.table({"item_id": [0, 123], "verdict": [2, 2]}), root, tmp_path / "c")
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    assert [r["reason"] for r in res.quarantine.to_pylist()] == [
        "unknown item_id '0': not in the queue",
        "unknown item_id '123': not in the queue",
    ]
    # Most rows unknown to the queue: the likeliest mistake, the queue, is named (an
    # outsider imported yesterday's verdicts with today's queue and got no pointer).
    assert any("2 of the file's 2 rows name ids the queue given does not hold" in w
               and "(--queue" in w for w in warned), warned  # fmt: skip
    # A queued id a spreadsheet read as a number, its leading zeros lost: said so (a team
    # was pointed at another day's queue: an outsider's week).
    from riskrank.rank.review import QueueIndex, check_verdicts

    padded = QueueIndex(pa.table({"item_id": ["0000699", "a1"], "policy": ["scam", "scam"]}))
    got = check_verdicts(pa.table({"item_id": ["699"], "verdict": [2]}), padded, {"scam"})
    assert got.quarantine["reason"].to_pylist() == [
        "unknown item_id '699': not in the queue (the queue has '0000699': leading zeros lost "
        "in a spreadsheet?)"
    ]
    # As a round trip writes them too (a reviewer's report), and not also blamed on the queue.
    got = check_verdicts(
        pa.table({"item_id": ["699.0", " 699", "699\t"], "verdict": [2, 2, 2]}), padded, {"scam"}
    )
    assert all("the queue has '0000699'" in r for r in got.quarantine["reason"].to_pylist())
    warned.clear()
    logging.getLogger("riskrank").addHandler(handler)
    try:
        from riskrank.rank.review import _warn_another_queue

        _warn_another_queue(got.quarantine, 3)
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    assert warned == []


def test_a_campaign_mode_queue_row_is_its_campaigns_verdict(loop, inventory_items, tmp_path):
    """Verdicts written back on a campaign-mode queue's rows (item_id and campaign_id both
    copied from the row) judge the campaign; naming another member judges that item."""
    root, queue = loop
    cid, members = _campaign(queue)
    shown = pa.table(
        {
            "item_id": [members[0]],
            "policy": ["scam"],
            "campaign_id": [cid],
            "campaign_members": pa.array([members], pa.list_(pa.string())),
        }
    )
    inv = inventory_items.drop(["label"])
    both = pa.table({"item_id": [members[0]], "campaign_id": [cid], "verdict": [2]})
    res = import_verdicts(both, shown, root / "v1", out_dir=tmp_path / "a", inventory=inv,
                          retrain=False)  # fmt: skip
    assert sorted(res.imported["item_id"].to_pylist()) == sorted(members)
    one = pa.table({"item_id": [members[1]], "campaign_id": [cid], "verdict": [2]})
    res = import_verdicts(one, shown, root / "v1", out_dir=tmp_path / "b", inventory=inv,
                          retrain=False)  # fmt: skip
    assert res.imported["item_id"].to_pylist() == [members[1]]
    assert res.imported["verdict_source"].to_pylist() == ["item"]


def test_the_retrained_model_knows_the_campaign_and_day_of_each_review(
    loop, inventory_items, tmp_path
):
    """What the queue's reasons name for the closest review (rank/reasons.py): the campaign
    decided and when its queue was swept, kept by the retrained model's exemplars."""
    from riskrank.rank.review import QUEUE_SWEPT_AT, queue_provenance

    root, queue = loop
    cid, members = _campaign(queue)
    inv = inventory_items.drop(["label"])
    verdicts = pa.table({"campaign_id": [cid], "verdict": [2]})
    res = import_verdicts(verdicts, root / "day1" / "queue.parquet", root / "v1",
                          out_dir=tmp_path / "v2", inventory=inv)  # fmt: skip
    swept = queue_provenance(queue)["swept_at"]
    for ex in res.model.exemplars.values():
        for review in ex.reviewed(members):
            assert review["verdict_source"] == f"campaign:{cid}"
            assert review[QUEUE_SWEPT_AT] == swept


def test_items_without_content_are_quarantined_not_imported(loop, inventory_items, tmp_path):
    root, queue = loop
    top = queue["item_id"].to_pylist()[:3]
    inv = inventory_items.drop(["label"])
    blank = {top[0]: "", top[1]: " \u200b "}
    texts = [blank.get(i, t) for i, t in zip(inv["item_id"].to_pylist(), inv["text"].to_pylist())]
    inv = inv.set_column(inv.schema.get_field_index("text"), "text", pa.array(texts))
    res = _import(pa.table({"item_id": top, "verdict": [2, 2, 2]}), root, tmp_path / "v2",
                  inventory=inv)  # fmt: skip
    assert res.imported["item_id"].to_pylist() == [top[2]]
    assert [r["item_id"] for r in res.quarantine.to_pylist()] == top[:2]
    assert all("no content" in r["reason"] for r in res.quarantine.to_pylist())


def test_import_refuses_targets_and_queues_before_writing(loop, tmp_path):
    root, queue = loop
    verdicts = pa.table({"item_id": [queue["item_id"][0].as_py()], "verdict": [2]})
    before = (root / "v1" / "model.json").read_text()
    # A finished model is never overwritten, with or without a retrain.
    shutil.copytree(root / "v1", tmp_path / "copy")
    for retrain in (False, True):
        with pytest.raises(FileExistsError, match="already holds a model"):
            import_verdicts(verdicts, root / "day1" / "queue.parquet", root / "v1",
                            out_dir=tmp_path / "copy", retrain=retrain)  # fmt: skip
    RiskModel.load(tmp_path / "copy")  # untouched: every checksum still holds
    assert (root / "v1" / "model.json").read_text() == before
    # A user's own directory: refused, and nothing is written into it.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "history.parquet").write_text("my own file")
    for retrain in (False, True):
        with pytest.raises(FileExistsError):
            import_verdicts(verdicts, root / "day1" / "queue.parquet", root / "v1",
                            out_dir=mine, retrain=retrain)  # fmt: skip
        assert sorted(p.name for p in mine.iterdir()) == ["history.parquet"]
    # A queue made by a later model version than --model: its reviews would be lost.
    later = tmp_path / "later"
    later.mkdir()
    pq.write_table(queue, later / "queue.parquet")
    report = json.loads((root / "day1" / "report.json").read_text())
    assert report["model"]["version"] == 1
    report["model"] = {"version": 2, "history_digest": "f" * 64, "created_at": "2026-12-03"}
    (later / "report.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="made by model version 2"):
        import_verdicts(verdicts, later / "queue.parquet", root / "v1", out_dir=tmp_path / "v2")
    assert not (tmp_path / "v2").exists()


def test_a_finished_import_run_again_is_answered_not_refused(loop, tmp_path, capsys):
    # A cron job retried after a kill that came once the import had finished: the same
    # verdicts from the same parent find their model (or --no-retrain files) and write
    # nothing; other verdicts into that directory are refused as before.
    root, queue = loop
    q = str(root / "day1" / "queue.parquet")
    ids = queue["item_id"].to_pylist()
    pq.write_table(pa.table({"item_id": ids[:3], "verdict": [2, 0, 2]}), tmp_path / "v.pq")
    argv = ["review", "import", str(tmp_path / "v.pq"), "--queue", q, "--model", str(root / "v1")]
    assert main([*argv, "--out", str(tmp_path / "v2")]) == 0
    stamp = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "v2").iterdir()}
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "v2")]) == 0
    assert "a run of this import finished before" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "v2").iterdir()} == stamp
    again = import_verdicts(tmp_path / "v.pq", q, root / "v1", out_dir=tmp_path / "v2")
    assert again.already_done and again.version == 2 and again.imported.num_rows == 3
    assert again.model.info["history_digest"] == history_digest(again.history)
    # Other verdicts, other seeds: not this import.
    other = pa.table({"item_id": ids[:3], "verdict": [2, 2, 2]})
    with pytest.raises(FileExistsError, match="already holds a model"):
        import_verdicts(other, q, root / "v1", out_dir=tmp_path / "v2")
    seeds = pa.table({"seed_id": ["p1"], "policy": ["new"], "text": ["a new policy's seed"]})
    with pytest.raises(FileExistsError, match="already holds a model"):
        import_verdicts(tmp_path / "v.pq", q, root / "v1", out_dir=tmp_path / "v2", seeds=seeds)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "v2").iterdir()} == stamp
    # --no-retrain: the same, over its pending files.
    first = _import(tmp_path / "v.pq", root, tmp_path / "h")
    assert not first.already_done
    assert _import(tmp_path / "v.pq", root, tmp_path / "h").already_done
    with pytest.raises(FileExistsError, match="another --no-retrain import"):
        _import(other, root, tmp_path / "h")
    (tmp_path / "h" / "history.parquet").write_bytes(b"edited")  # no longer what it wrote
    with pytest.raises(FileExistsError, match="not empty"):
        _import(tmp_path / "v.pq", root, tmp_path / "h")


def test_verdicts_in_words_are_grades(loop, tmp_path):
    # Moderation tools export words: the report's own (benign, borderline, violating,
    # severe), in any case, are the grades 0-3; other words are quarantined saying so.
    root, queue = loop
    ids = queue["item_id"].to_pylist()[:5]
    words = ["Violating", " benign ", "SEVERE", "borderline", "spam"]
    res = _import(pa.table({"item_id": ids, "verdict": words}), root, tmp_path / "w")
    got = dict(zip(res.imported["item_id"].to_pylist(), res.imported["verdict"].to_pylist()))
    assert got == dict(zip(ids[:4], [2, 0, 3, 1]))
    assert "'spam' is not a grade 0-3 (benign = 0" in res.quarantine["reason"][0].as_py()
    # A blank cell (NaN from a sheet) read "verdict None is not a grade" (an outsider).
    blank = pa.table({"item_id": ids[:2], "verdict": pa.array([2.0, float("nan")])})
    res = _import(blank, root, tmp_path / "b")
    missing = (
        "verdict is missing (a blank cell): give a grade 0-3 (benign = 0, borderline = 1, "
        "violating = 2, severe = 3)"
    )
    assert res.quarantine["reason"].to_pylist() == [missing]
    # A CSV's blank cell is "" (read as text): the same words (it read "verdict '' is not a
    # grade", an outsider's week).
    (tmp_path / "v.csv").write_text(f"item_id,verdict\n{ids[0]},2\n{ids[1]},\n{ids[2]}, \n")
    res = _import(tmp_path / "v.csv", root, tmp_path / "c")
    assert res.quarantine["reason"].to_pylist() == [missing, missing]


def test_a_models_history_reads_back_as_grades_in_pandas(loop, tmp_path, history, seeds):
    # A history given as a pandas frame of words kept the frame's pandas metadata, so pandas
    # read the saved int8 grades back as text ("verdict >= 2" raised); an import's history
    # came out int64 (an outsider's report).
    import pandas as pd

    from riskrank.rank.pipeline import train

    root, queue = loop
    frame = history.to_pandas()
    frame["verdict"] = frame["verdict"].map({0: "benign", 2: "violating"})
    model = tmp_path / "words"
    train(frame, seeds, model, k=200, show_progress=False)
    saved = pd.read_parquet(model / "history.parquet")
    assert str(saved["verdict"].dtype) == "int8" and int((saved["verdict"] >= 2).sum()) > 0
    ids = queue["item_id"].to_pylist()[:3]
    _import(pa.table({"item_id": ids, "verdict": [2, 0, 2]}), root, tmp_path / "v2")
    assert pq.read_schema(tmp_path / "v2" / "history.parquet").field("verdict").type == pa.int8()


def test_verdict_files_as_review_tools_export_them(loop, tmp_path):
    # From an outsider's fuzzing: a `Policy` header was kept as a note and every verdict went
    # in under the queue's policy; an all-blank column read by pandas (float NaN) refused the
    # file; float() took "0_2" and a fullwidth digit; a .tsv was called corrupt Parquet.
    import pandas as pd

    root, queue = loop
    ids = queue["item_id"].to_pylist()[:6]
    pol = queue["policy"][0].as_py()
    frame = pd.DataFrame(
        {" Item ID": ids, "Verdict": ["2", "+2", "2.0", "0_2", "\uff12", "1e0"], "Policy": pol}
    )
    res = _import(frame, root, tmp_path / "a")
    assert res.imported["item_id"].to_pylist() == ids[:3]
    assert set(res.quarantine["item_id"].to_pylist()) == set(ids[3:])
    assert "Policy" not in res.history.column_names
    other = _import(frame.assign(Policy="no-such-policy"), root, tmp_path / "b")
    assert other.imported.num_rows == 0
    assert "no-such-policy" in other.quarantine["reason"][0].as_py()
    blank = pd.DataFrame({"item_id": ids[:2], "verdict": [2, 0], "policy": [float("nan")] * 2})
    assert _import(blank, root, tmp_path / "c").imported["policy"].to_pylist() == [pol, pol]
    with pytest.raises(SchemaError, match="are all 'policy'"):
        _import(frame.assign(policy=pol), root, tmp_path / "d")
    (tmp_path / "v.tsv").write_text("item_id\tverdict\n" + ids[0] + "\t2\n")
    with pytest.raises(SchemaError, match=r"CSV \(\.csv\) or Parquet; \.tsv is neither"):
        _import(tmp_path / "v.tsv", root, tmp_path / "e")
    # A Parquet file with a dated name is Parquet still.
    pq.write_table(pa.table({"item_id": ids[:1], "verdict": [2]}), tmp_path / "v.2026-12-05")
    assert _import(tmp_path / "v.2026-12-05", root, tmp_path / "f").imported.num_rows == 1


def test_a_campaign_correction_leaves_members_own_item_verdicts(loop, tmp_path):
    """In one file a member's own item verdict wins over its campaign's; a later campaign
    correction overwrote it (an outsider's repro: two members judged 0 became 3)."""
    root, queue = loop
    cid, members = _campaign(queue)
    first = pa.table({"item_id": [None, members[1]], "campaign_id": [cid, None], "verdict": [2, 0]})
    import_verdicts(first, root / "day1" / "queue.parquet", root / "v1", out_dir=tmp_path / "v2")
    fix = pa.table({"campaign_id": [cid], "verdict": [3]})
    res = import_verdicts(fix, root / "day1" / "queue.parquet", tmp_path / "v2",
                          out_dir=tmp_path / "v3", corrections=True)  # fmt: skip
    got = dict(zip(res.history["item_id"].to_pylist(), res.history["verdict"].to_pylist()))
    assert got[members[1]] == 0 and got[members[0]] == 3
    why = dict(zip(res.quarantine["item_id"].to_pylist(), res.quarantine["reason"].to_pylist()))
    assert "has its own item verdict 0" in why[members[1]]


def test_a_campaign_correction_leaves_the_training_historys_verdicts(
    history, seeds, inventory_items, text_signal, tmp_path
):
    """A first model's history (riskrank train) carries no verdict_source: its verdicts are
    item verdicts, which a campaign correction must not overturn either (a reviewer's repro
    turned five members' 0s into 3s)."""
    extra = inventory_items.slice(0, 60)
    judged = pa.table(
        {
            "item_id": extra["item_id"],
            "text": extra["text"],
            "policy": pa.array(["scam"] * 60),
            "verdict": pa.array([0] * 60, pa.int8()),
        }
    )
    train(pa.concat_tables([history, judged]), seeds, tmp_path / "v1", signals=[text_signal],
          k=200, show_progress=False)  # fmt: skip
    assert "verdict_source" not in pq.read_table(tmp_path / "v1" / "history.parquet").column_names
    sweep(inventory_items.drop(["label"]), seeds, tmp_path / "v1", out_dir=tmp_path / "day1",
          k=200, show_progress=False, explore=0, include_reviewed=True)  # fmt: skip
    q = pq.read_table(tmp_path / "day1" / "queue.parquet")
    rows = [r for r in q.to_pylist() if r["reviewed"] == "unchanged" and r["campaign_size"] > 1]
    cid = rows[0]["campaign_id"]
    res = import_verdicts(pa.table({"campaign_id": [cid], "verdict": [3]}),
                          tmp_path / "day1" / "queue.parquet", tmp_path / "v1",
                          out_dir=tmp_path / "v2", corrections=True, retrain=False)  # fmt: skip
    got = dict(zip(res.history["item_id"].to_pylist(), res.history["verdict"].to_pylist()))
    kept = [r["item_id"] for r in rows if r["campaign_id"] == cid]
    assert kept and all(got[i] == 0 for i in kept)
    why = dict(zip(res.quarantine["item_id"].to_pylist(), res.quarantine["reason"].to_pylist()))
    assert all("has its own item verdict 0" in why[i] for i in kept)


def test_representatives_judged_alone_in_campaign_mode_are_warned_about(
    loop, inventory_items, seeds, tmp_path
):
    """The README's loop with item_id for campaign_id: 100 verdicts where the same decisions
    by campaign gave 750, and nothing said so (an outsider's repro)."""
    root, _ = loop
    inv = inventory_items.drop(["label"])
    sweep(inv, seeds, root / "v1", out_dir=tmp_path / "day1", k=200, show_progress=False,
          explore=0, campaigns=True, index_dir=root / "day1" / "index")  # fmt: skip
    queue = pq.read_table(tmp_path / "day1" / "queue.parquet")
    big = queue.filter(pc.greater(queue["campaign_size"], 1))
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logging.getLogger("riskrank").addHandler(handler)
    try:
        reps = pa.table({"item_id": big["item_id"].to_pylist(), "verdict": [2] * big.num_rows})
        res = import_verdicts(reps, tmp_path / "day1" / "queue.parquet", root / "v1",
                              out_dir=tmp_path / "v2", retrain=False)  # fmt: skip
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    assert res.imported.num_rows == big.num_rows
    members = sum(big["campaign_size"].to_pylist()) - big.num_rows
    assert any(
        f"{big.num_rows} campaigns were judged by their representative's item_id alone" in m
        and f"the {members} other members" in m
        for m in seen
    )


def test_a_verdict_file_adds_a_bounded_number_of_note_columns(loop, tmp_path):
    # Every kept column stays in every later version: a 3,000-column file made a 3,006-column
    # history (an outsider's repro).
    root, queue = loop
    ids = queue["item_id"].to_pylist()[:2]
    notes = {f"note{n:02d}": ["x", "y"] for n in range(40)}
    res = _import(pa.table({"item_id": ids, "verdict": [2, 0], **notes}), root, tmp_path / "n")
    kept = [c for c in res.history.column_names if c.startswith("note")]
    assert kept == [f"note{n:02d}" for n in range(32)]
    # Over the history's lifetime: a next import's new columns find no room left.
    fresh = {f"more{n}": ["x", "y"] for n in range(5)}
    v2 = tmp_path / "n2"
    import_verdicts(pa.table({"item_id": ids, "verdict": [2, 0], **notes}),
                    root / "day1" / "queue.parquet", root / "v1", out_dir=v2)  # fmt: skip
    again = import_verdicts(
        pa.table({"item_id": queue["item_id"].to_pylist()[2:4], "verdict": [2, 0], **fresh}),
        root / "day1" / "queue.parquet", v2, out_dir=tmp_path / "n3", retrain=False,
    )  # fmt: skip
    assert not [c for c in again.history.column_names if c.startswith("more")]


def test_a_second_import_into_the_same_directory_is_refused(loop, tmp_path):
    from riskrank.index.output_lock import OutputLockedError, output_lock

    root, queue = loop
    verdicts = pa.table({"item_id": [queue["item_id"][0].as_py()], "verdict": [2]})
    with output_lock(tmp_path / "v2", what="model directory"):  # another import, running
        # ... in this process (a thread of an analyst's): said so, not "when that process
        # ends", which is this one (an outsider's note).
        with pytest.raises(OutputLockedError, match="another call in this process.*when that call"):
            _import(verdicts, root, tmp_path / "v2")


def test_a_file_that_imports_nothing_trains_no_new_version(loop, tmp_path):
    # A header-only file, or one whose every row is quarantined: a "new" version would be its
    # parent trained again. Refused with the reasons counted; nothing is written.
    root, queue = loop
    header = tmp_path / "header.csv"
    header.write_text("item_id,verdict\n")
    bad = pa.table(
        {"item_id": ["nope-1", "nope-2", queue["item_id"][0].as_py()], "verdict": [2, 2, 9]}
    )
    for verdicts, why in (
        (header, "the file has no rows"),
        (bad, r"all 3 rows were quarantined: unknown item_id 'nope-1'.*\(1\)"),
    ):
        out = tmp_path / "v2"
        with pytest.raises(SchemaError, match=f"nothing to import, no new model version.*{why}"):
            import_verdicts(verdicts, root / "day1" / "queue.parquet", root / "v1", out_dir=out)
        assert not out.exists()
    # Without a retrain the history is written unchanged, with the quarantine beside it.
    res = _import(bad, root, tmp_path / "h")
    assert res.imported.num_rows == 0 and res.quarantine.num_rows == 3


def _one_item_queue(item_id: str, text: str, policy: str = "scam") -> pa.Table:
    """A queue as a sweep writes it for one item: the start of its text, as shown."""
    return pa.table({"item_id": [item_id], "policy": [policy], "text": [text[:300]]})


def test_a_re_review_of_an_edited_item_replaces_its_old_verdict(loop, tmp_path):
    """An item reviewed before and edited since (the sweep queues it as reviewed=changed)
    takes the new verdict on its new content, in place of the old row; the same content
    again is still refused, and the next sweep sees the item reviewed and unchanged."""
    from riskrank.rank.reviewed import UNCHANGED, mark_reviewed

    root, _ = loop
    history = pq.read_table(root / "v1" / "history.parquet")
    old = history.slice(3, 1).to_pylist()[0]
    edited = old["text"] + " Updated: now with free shipping, reply with your card number."
    inventory = pa.table({"item_id": [old["item_id"]], "text": [edited]})
    verdicts = pa.table({"item_id": [old["item_id"]], "verdict": [1 - min(old["verdict"], 1)]})
    queue = _one_item_queue(old["item_id"], edited)
    res = import_verdicts(verdicts, queue, root / "v1", out_dir=tmp_path / "v2",
                          inventory=inventory)  # fmt: skip
    assert res.replaced == 1 and res.quarantine.num_rows == 0
    hist = pq.read_table(tmp_path / "v2" / "history.parquet")
    mine = hist.filter(pc.equal(hist["item_id"], old["item_id"])).to_pylist()
    assert len(mine) == 1 and hist.num_rows == history.num_rows  # replaced, not added
    assert mine[0]["text"] == edited and mine[0]["verdict"] == verdicts["verdict"][0].as_py()
    # The next sweep of this content: reviewed, unchanged (so not queued again).
    model = RiskModel.load(tmp_path / "v2")
    reviewed = pq.read_table(tmp_path / "v2" / "reviewed.parquet")
    marked = mark_reviewed(queue.select(["item_id", "policy"]), reviewed, inventory, model.signals)
    assert marked["reviewed"].to_pylist() == [UNCHANGED]
    # The old content again (nothing edited): already in the history, refused.
    same = pa.table({"item_id": [old["item_id"]], "text": [old["text"]]})
    res = import_verdicts(verdicts, _one_item_queue(old["item_id"], old["text"]), root / "v1",
                          out_dir=tmp_path / "v3", inventory=same, retrain=False)  # fmt: skip
    assert res.imported.num_rows == 0 and res.replaced == 0
    assert "content unchanged" in res.quarantine["reason"][0].as_py()
    assert "--correct" in res.quarantine["reason"][0].as_py()
    # The row's own verdict is said, not its source ("this row's verdict: item": an outsider).
    got = verdicts["verdict"][0].as_py()
    assert f"this row's verdict: {got}, an item verdict" in res.quarantine["reason"][0].as_py()
    # A mistaken decision overturned: with corrections, it replaces the earlier verdict (no
    # way to do so but editing the history before: an outsider's note); the same verdict again
    # is still refused.
    res = import_verdicts(verdicts, _one_item_queue(old["item_id"], old["text"]), root / "v1",
                          out_dir=tmp_path / "v4", inventory=same, corrections=True)  # fmt: skip
    assert res.replaced == 1 and res.quarantine.num_rows == 0
    hist = pq.read_table(tmp_path / "v4" / "history.parquet")
    mine = hist.filter(pc.equal(hist["item_id"], old["item_id"])).to_pylist()
    assert len(mine) == 1 and hist.num_rows == history.num_rows
    assert mine[0]["verdict"] == verdicts["verdict"][0].as_py()
    assert mine[0]["verdict_source"].endswith("correction")
    # The result's imported rows say so too (they said "item": an analyst's report).
    assert res.imported["verdict_source"].to_pylist() == [mine[0]["verdict_source"]]
    again = pa.table({"item_id": [old["item_id"]], "verdict": [old["verdict"]]})
    res = import_verdicts(again, _one_item_queue(old["item_id"], old["text"]), root / "v1",
                          out_dir=tmp_path / "v5", inventory=same, corrections=True,
                          retrain=False)  # fmt: skip
    assert res.replaced == 0 and "with this verdict" in res.quarantine["reason"][0].as_py()


def test_a_verdict_the_history_already_holds_is_set_apart_not_a_conflict(loop, tmp_path):
    """The same verdict on unchanged content again (a campaign verdict whose members were
    judged alike before) read "to overturn it, import with --correct" and was listed among
    the problems (an outsider's week: 45 of 49 quarantine entries)."""
    from riskrank.rank.review import ALREADY

    root, _ = loop
    history = pq.read_table(root / "v1" / "history.parquet")
    old = history.slice(3, 1).to_pylist()[0]
    same = pa.table({"item_id": [old["item_id"]], "text": [old["text"]]})
    again = pa.table({"item_id": [old["item_id"]], "verdict": [old["verdict"]]})
    res = import_verdicts(again, _one_item_queue(old["item_id"], old["text"]), root / "v1",
                          out_dir=tmp_path / "v2", inventory=same, retrain=False)  # fmt: skip
    (row,) = res.quarantine.to_pylist()
    assert row["stage"] == ALREADY and row["reason"].endswith("nothing to change")
    assert "--correct" not in row["reason"]
    # ... and no bad row for --strict: a cumulative verdict file imports (a review).
    res = import_verdicts(again, _one_item_queue(old["item_id"], old["text"]), root / "v1",
                          out_dir=tmp_path / "v3", inventory=same, retrain=False,
                          strict=True)  # fmt: skip
    assert res.quarantine["stage"].to_pylist() == [ALREADY]


def test_the_same_verdict_on_an_item_taken_down_changes_nothing(loop, tmp_path):
    """A cumulative verdict file imported again once an item is gone: its content cannot be
    found, but the history holds that very verdict: nothing to change, not a bad row (it
    failed --strict, asking for an inventory: an outsider's loop). Another verdict still
    needs the content."""
    from riskrank.rank.review import ALREADY

    root, _ = loop
    history = pq.read_table(root / "v1" / "history.parquet")
    old = history.slice(3, 1).to_pylist()[0]
    queue = _one_item_queue(old["item_id"], old["text"])
    gone = pa.table({"item_id": ["someone-else"], "text": ["another ad"]})
    same = pa.table({"item_id": [old["item_id"]], "verdict": [old["verdict"]]})
    res = import_verdicts(same, queue, root / "v1", out_dir=tmp_path / "a", inventory=gone,
                          retrain=False, strict=True)  # fmt: skip
    (row,) = res.quarantine.to_pylist()
    assert row["stage"] == ALREADY and "taken down since?" in row["reason"]
    # With a retrain there is nothing to train on; the refusal does not call the rows
    # quarantined, which the CLI counts apart (a reviewer).
    with pytest.raises(SchemaError, match="already in the history or superseded .* nothing new"):
        import_verdicts(same, queue, root / "v1", out_dir=tmp_path / "r", inventory=gone)
    # Without an inventory, content not found may be an edited item's re-review whose new
    # text could not be read: not set apart (a reviewer's repro kept the old text).
    with pytest.raises(SchemaError, match="pass the inventory"):
        import_verdicts(same, queue, root / "v1", out_dir=tmp_path / "n", retrain=False,
                        strict=True)  # fmt: skip
    other = pa.table({"item_id": [old["item_id"]], "verdict": [3 - old["verdict"]]})
    with pytest.raises(SchemaError):
        import_verdicts(other, queue, root / "v1", out_dir=tmp_path / "b", inventory=gone,
                        retrain=False, strict=True)  # fmt: skip


def test_a_campaign_verdict_decided_on_another_days_queue_is_refused(loop, tmp_path):
    """A campaign id names its riskiest member, so the next day's queue can hold the same id
    over another group: a day-1 verdict imported with the day-2 queue went to members nobody
    reviewed (an outsider's loop). A row that carries the members it was decided on
    (``campaign_members``, as a campaign-mode row copied back) or their count
    (``campaign_size``) is checked against the queue given."""
    root, queue = loop
    cid, members = _campaign(queue)
    others = [i for i in queue["item_id"].to_pylist() if i not in members]

    def imported(**cols):
        res = import_verdicts(
            pa.table({"campaign_id": [cid], "verdict": [2], **cols}), queue, root / "v1",
            out_dir=tmp_path / f"o{len(list(tmp_path.iterdir()))}", retrain=False,
        )  # fmt: skip
        return res.imported["item_id"].to_pylist(), res.quarantine["reason"].to_pylist()

    for cols in (
        {"campaign_members": pa.array([members[:1]], pa.list_(pa.string()))},  # day 1: fewer
        {"campaign_members": pa.array([members + others[:1]], pa.list_(pa.string()))},
        {"campaign_members": [str(members[:-1])]},  # a CSV's text of a list
        {"campaign_size": [len(members) - 1]},
        {"campaign_size": [str(len(members) + 2)]},
    ):
        ids, (why,) = imported(**cols)
        assert ids == [] and "decided on another queue" in why, cols
    for cols in (
        {"campaign_size": ["inf"]},  # an OverflowError escaped (a reviewer)
        {"campaign_size": ["1e400"]},
        {"campaign_size": ["2.5"]},
        {"campaign_members": ["[" + ", ".join(members[:-1]) + "]"]},  # DuckDB's text
    ):
        ids, (why,) = imported(**cols)
        assert ids == [] and ("not a count" in why or "another queue" in why), cols
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("riskrank").addHandler(handler)
    try:
        # A list that cannot be read whole (NumPy's "[... ...]" of a long campaign) is not
        # held against the row; nor is a NaN size; both are named in one warning, as rows
        # without either column are.
        for cols in (
            {"campaign_members": [f"['{members[0]}' ... '{members[-1]}']"]},
            {"campaign_size": pa.array([float("nan")], pa.float64())},
            {},
        ):
            records.clear()
            ids, _ = imported(**cols)
            assert sorted(ids) == sorted(members), cols
            assert any(
                "neither campaign_members nor campaign_size" in r.getMessage() for r in records
            )
        records.clear()
        imported(campaign_size=[len(members)])
        assert not any("campaign_members" in r.getMessage() for r in records)
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    # Headers as a spreadsheet writes them are the columns.
    ids, (why,) = imported(**{"Campaign Size": [len(members) + 1]})
    assert ids == [] and "another queue" in why
    for cols in (
        {"campaign_members": pa.array([members[::-1]], pa.list_(pa.string()))},
        {"campaign_members": ["[" + " ".join(repr(m) for m in members) + "]"]},  # NumPy's
        {"campaign_members": [json.dumps(members)]},
        {"campaign_size": [str(len(members))]},
        {"campaign_size": [None]},
        {},
    ):
        ids, _ = imported(**cols)
        assert sorted(ids) == sorted(members), cols
    # A row that names an item as well (a member's own verdict, copied from another day's
    # queue with its campaign's columns) is checked the same way: it went in as an item
    # verdict on an edit nobody saw (an outsider's week).
    member = members[0]
    for cols, ok in (
        ({"campaign_members": pa.array([members[:1]], pa.list_(pa.string()))}, False),
        ({"campaign_size": [len(members) + 1]}, False),
        ({"campaign_size": [len(members)]}, True),
        ({}, True),
    ):
        res = import_verdicts(
            pa.table({"item_id": [member], "campaign_id": [cid], "verdict": [0], **cols}),
            queue, root / "v1", out_dir=tmp_path / f"i{len(list(tmp_path.iterdir()))}",
            retrain=False,
        )  # fmt: skip
        got = res.imported["item_id"].to_pylist()
        assert got == ([member] if ok else []), cols
        assert ok or "decided on another queue" in res.quarantine["reason"][0].as_py()
    # A queue that itself shows another size for the campaign than the rows it holds (a
    # budget-cut queue written before 65ee04b showed the whole campaign's): a row copied from
    # it is this queue's (a reviewer's report: 13 of 40 quarantined against their own queue).
    shown = len(members) + 5
    older = queue.set_column(
        queue.column_names.index("campaign_size"), "campaign_size",
        pa.array([shown if c == cid else n for c, n in
                  zip(queue["campaign_id"].to_pylist(), queue["campaign_size"].to_pylist())],
                 queue.schema.field("campaign_size").type),
    )  # fmt: skip
    for size in (shown, str(shown), f"{shown}.0"):
        res = import_verdicts(
            pa.table({"item_id": [member], "campaign_id": [cid], "verdict": [0],
                      "campaign_size": [size]}),
            older, root / "v1", out_dir=tmp_path / f"o{len(list(tmp_path.iterdir()))}",
            retrain=False,
        )  # fmt: skip
        assert res.imported["item_id"].to_pylist() == [member], size


def test_a_late_verdict_from_an_older_queue_does_not_replace_a_newer_review(loop, tmp_path):
    """Day 1's queue shows an item; it is edited, queued again on day 2 and re-reviewed as
    severe. A slower reviewer's day-1 file then arrived: it replaced the day-2 review with
    the day-1 text under verdict 0 (an outsider's report). When each queue swept orders them:
    not model versions (a model retrained from scratch is version 1 again, and a late file
    imported first made the live text's verdict look the older: a reviewer's report)."""
    from riskrank.rank.review import QUEUE_SWEPT_AT, with_provenance

    root, _ = loop
    v1 = json.loads((root / "v1" / "model.json").read_text())
    made_by = {"version": 1, "history_digest": v1["history_digest"]}
    history = pq.read_table(root / "v1" / "history.parquet")
    old = history.slice(3, 1).to_pylist()[0]
    edited = old["text"] + " Updated: now with free shipping, reply with your card number."
    monday, tuesday = "2026-12-07T06:00:00.000000+00:00", "2026-12-08T06:00:00.000000+00:00"

    def queue_of(text, swept):
        return with_provenance(_one_item_queue(old["item_id"], text), made_by, swept, swept)

    def verdict(v):
        return pa.table({"item_id": [old["item_id"]], "verdict": [v]})

    def shown(text):
        return pa.table({"item_id": [old["item_id"]], "text": [text]})

    def row(model):
        hist = pq.read_table(model / "history.parquet")
        return hist.filter(pc.equal(hist["item_id"], old["item_id"])).to_pylist()

    # Tuesday's queue shows the edit: re-reviewed as 3 -> v2, stamped with its sweep.
    res = import_verdicts(verdict(3), queue_of(edited, tuesday), root / "v1",
                          out_dir=tmp_path / "v2", inventory=shown(edited))  # fmt: skip
    assert res.replaced == 1 and row(tmp_path / "v2")[0][QUEUE_SWEPT_AT] == tuesday
    # The late file on Monday's queue (the old text) into v2: refused, row by row.
    late = import_verdicts(verdict(0), queue_of(old["text"], monday), tmp_path / "v2",
                           out_dir=tmp_path / "v3", retrain=False,
                           inventory=shown(old["text"]))  # fmt: skip
    assert late.imported.num_rows == 0 and late.replaced == 0
    assert "a review from a later sweep is in the history (verdict 3" in (
        late.quarantine["reason"][0].as_py()
    )
    # Set apart, not a bad row: a cumulative verdict file imported again with --strict was
    # refused for it, and without the inventory it was told to pass one (an outsider's loop).
    from riskrank.rank.review import SUPERSEDED

    for inv in (shown(old["text"]), None):
        late = import_verdicts(verdict(0), queue_of(old["text"], monday), tmp_path / "v2",
                               out_dir=tmp_path / f"v3s{inv is None}", retrain=False,
                               inventory=inv, strict=True)  # fmt: skip
        assert late.quarantine["stage"].to_pylist() == [SUPERSEDED]
    # Monday's queue file re-saved by a tool that drops Arrow's metadata: the report.json
    # beside it says when it was swept (the late file replaced the newer review silently:
    # a reviewer's report). A report without the time (written before it): replaced, said.
    bare = tmp_path / "monday"
    bare.mkdir()
    pq.write_table(queue_of(old["text"], monday).replace_schema_metadata(None),
                   bare / "queue.parquet")  # fmt: skip
    warned = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warned.append(record.getMessage())
    for said, out in (({"swept_at": monday}, "v3r"), ({}, "v3o")):
        (bare / "report.json").write_text(json.dumps({"model": made_by, **said}))
        logging.getLogger("riskrank").addHandler(handler)
        try:
            late = import_verdicts(verdict(0), bare / "queue.parquet", tmp_path / "v2",
                                   out_dir=tmp_path / out, retrain=False,
                                   inventory=shown(old["text"]))  # fmt: skip
        finally:
            logging.getLogger("riskrank").removeHandler(handler)
        if said:
            assert late.quarantine["stage"].to_pylist() == [SUPERSEDED] and late.replaced == 0
        else:
            assert late.replaced == 1
            assert any("does not say when it was swept" in w for w in warned), warned
    # The other order: a verdict on Monday's queue (the edit, then live) imported first, then
    # Tuesday's on the text live then (the edit undone) replaces it; the version rule had
    # refused it, Tuesday's queue being made by the model before Monday's import.
    first = import_verdicts(verdict(0), queue_of(edited, monday), root / "v1",
                            out_dir=tmp_path / "m2", inventory=shown(edited))  # fmt: skip
    assert first.replaced == 1
    then = import_verdicts(verdict(3), queue_of(old["text"], tuesday), tmp_path / "m2",
                           out_dir=tmp_path / "m3", retrain=False,
                           inventory=shown(old["text"]))  # fmt: skip
    assert then.replaced == 1 and then.imported["verdict"].to_pylist() == [3]
    # A model retrained from scratch on that history is version 1 again: a later sweep's
    # re-review is still a re-review (versions refused it until they caught up).
    retrained = tmp_path / "scratch"
    train(pq.read_table(tmp_path / "v2" / "history.parquet"), root / "v1" / "seeds.parquet",
          retrained, k=200, show_progress=False)  # fmt: skip
    scratch = json.loads((retrained / "model.json").read_text())
    assert scratch["version"] == 1
    wednesday = "2026-12-09T06:00:00.000000+00:00"
    again = import_verdicts(
        verdict(1),
        with_provenance(
            _one_item_queue(old["item_id"], old["text"]),
            {"version": 1, "history_digest": scratch["history_digest"]},
            wednesday,
            wednesday,
        ),  # fmt: skip
        retrained,
        out_dir=tmp_path / "s2",
        retrain=False,
        inventory=shown(old["text"]),
    )
    assert again.replaced == 1


def test_a_queue_in_memory_is_checked_as_one_on_disk(loop, tmp_path):
    """result.queue (or a table read from queue.parquet) skipped the check of which model
    made it, and made a second 'version 2' (an outsider's report); it carries its model now."""
    from riskrank.rank.review import queue_provenance, with_provenance

    root, queue = loop
    made = queue_provenance(queue)
    report = json.loads((root / "day1" / "report.json").read_text())
    assert {k: made[k] for k in ("model", "run_id")} == {
        "model": report["model"], "run_id": report["run_id"]
    }  # fmt: skip
    assert made["swept_at"].endswith("+00:00")  # when it swept: what orders late verdicts
    later = with_provenance(queue, {"version": 3, "history_digest": "f" * 64}, "a-later-run")
    verdicts = pa.table({"item_id": [queue["item_id"][0].as_py()], "verdict": [2]})
    with pytest.raises(ValueError, match="later than"):
        import_verdicts(verdicts, later, root / "v1", out_dir=tmp_path / "v2")
    assert not (tmp_path / "v2").exists()
    # Read with pandas (the outsider's repro: a DataFrame drops Arrow's metadata), the queue
    # keeps its provenance in DataFrame.attrs, which pd.read_parquet restores.
    import pandas as pd

    swept = pd.read_parquet(root / "day1" / "queue.parquet").attrs["riskrank.queue"]
    assert swept["run_id"] == report["run_id"]  # as the sweep wrote it
    assert swept["swept_at"] == report["swept_at"]  # the report says it too (for a bare copy)
    pq.write_table(later, tmp_path / "later.parquet")
    frame = pd.read_parquet(tmp_path / "later.parquet")
    assert frame.attrs["riskrank.queue"]["run_id"] == "a-later-run"
    with pytest.raises(ValueError, match="later than"):
        import_verdicts(verdicts, frame, root / "v1", out_dir=tmp_path / "v2")
    # Its file beside another run's report.json: refused too.
    folder = tmp_path / "moved"
    folder.mkdir()
    pq.write_table(with_provenance(queue, report["model"], "another-run"), folder / "queue.parquet")
    (folder / "report.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="another sweep run"):
        import_verdicts(verdicts, folder / "queue.parquet", root / "v1", out_dir=tmp_path / "v3")


def test_ids_and_policies_padded_by_a_spreadsheet_are_the_queued_ones(loop, tmp_path):
    """A spreadsheet export pads cells with spaces or a tab: such rows were quarantined as
    unknown ids and policies (an outsider's report)."""
    root, queue = loop
    a, b = queue["item_id"].to_pylist()[:2]
    verdicts = pa.table({"item_id": [f" {a}\t", b], "policy": ["scam", " scam "],
                         "verdict": [2, 0]})  # fmt: skip
    res = _import(verdicts, root, tmp_path / "v2")
    assert sorted(res.imported["item_id"].to_pylist()) == sorted([a, b])
    assert res.quarantine.num_rows == 0 and set(res.imported["policy"].to_pylist()) == {"scam"}


def test_a_file_of_only_zeros_and_ones_is_refused_until_it_says_what_one_means(
    loop, tmp_path, capsys
):
    """A team that writes 1 for "violating" had its confirmed violations stored as
    borderline (not violating, never queued again): a warning said so and scrolled past
    (outsiders' reports). Such a file is refused, nothing written, until --ones-mean says."""
    from riskrank.rank.review import _binary_scale

    assert _binary_scale([0, 1] * 5) and not _binary_scale([0, 1] * 4)  # too few to tell
    assert not _binary_scale([0, 1, 2] * 5) and not _binary_scale([0] * 12)
    root, queue = loop
    ids = queue["item_id"].to_pylist()[:12]
    binary = pa.table({"item_id": ids, "verdict": [1, 0, 0, 1] * 3})
    with pytest.raises(SchemaError, match="--ones-mean violating"):
        _import(binary, root, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    read = _import(binary, root, tmp_path / "v", ones_mean="violating")
    assert read.imported["verdict"].to_pylist() == [2, 0, 0, 2] * 3
    kept = _import(binary, root, tmp_path / "b", ones_mean="borderline")
    assert kept.imported["verdict"].to_pylist() == [1, 0, 0, 1] * 3
    graded = pa.table({"item_id": ids, "verdict": [1, 0, 2, 1] * 3})
    with pytest.raises(SchemaError, match="holds grades 2-3 too"):
        _import(graded, root, tmp_path / "g", ones_mean="violating")
    # Words are the grades they name: "borderline" stays 1 under --ones-mean violating, and a
    # file in words only is no 0/1 file (it was refused, and read as 2: a reviewer's report).
    worded = pa.table({"item_id": ids, "verdict": ["1", "borderline", "0", "benign"] * 3})
    mixed = _import(worded, root, tmp_path / "w", ones_mean="violating")
    assert mixed.imported["verdict"].to_pylist() == [2, 1, 0, 0] * 3
    words = pa.table({"item_id": ids, "verdict": ["borderline", "benign"] * 6})
    assert _import(words, root, tmp_path / "w2").imported.num_rows == 12
    # A file's rows are counted, not the campaign members one row reaches; too few rows to
    # refuse on are imported as written, and said (9 confirmed spams went unsaid: an
    # outsider's week).
    cid, members = _campaign(queue)
    one = pa.table({"campaign_id": [cid], "verdict": [1]})
    warned = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warned.append(record.getMessage())
    logging.getLogger("riskrank").addHandler(handler)
    try:
        assert _import(one, root, tmp_path / "c").imported.num_rows == len(members)
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    assert any("1 verdicts written as numbers are all 0 or 1" in w for w in warned), warned
    pq.write_table(binary, tmp_path / "binary.parquet")
    argv = ["review", "import", str(tmp_path / "binary.parquet"), "--no-retrain", "--queue",
            str(root / "day1" / "queue.parquet"), "--model", str(root / "v1")]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "cli")]) == 2
    assert "--ones-mean" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "cli"), "--ones-mean", "violating"]) == 0


def test_candidates_are_not_taken_for_the_queue(loop, tmp_path):
    """candidates.parquet (beside the queue) lists an item per policy; taken as the queue, its
    last row's policy won and insults were imported as spam (an outsider's report)."""
    root, queue = loop
    row = queue.slice(0, 1)
    other = row.to_pylist()[0] | {"policy": "counterfeit"}
    twice = pa.concat_tables([queue, pa.Table.from_pylist([other], schema=queue.schema)])
    verdicts = pa.table({"item_id": [row["item_id"][0].as_py()], "verdict": [2]})
    with pytest.raises(SchemaError, match="candidates.parquet lists an item per policy"):
        import_verdicts(verdicts, twice, root / "v1", out_dir=tmp_path / "v2", retrain=False)
    # A labels file (one policy, each item once) is not a queue either (a reviewer's report);
    # a queue exported whole with a verdict column added still is one.
    labels = pa.table({"item_id": queue["item_id"], "policy": queue["policy"],
                       "label": [1] * queue.num_rows})  # fmt: skip
    with pytest.raises(SchemaError, match="a verdicts or labels file"):
        import_verdicts(verdicts, labels, root / "v1", out_dir=tmp_path / "v3", retrain=False)
    # With one policy, candidates.parquet lists each item once: its verdicts were all
    # quarantined as "edited since the sweep" (an outsider's note). It has no rank.
    cands = pq.read_table(root / "day1" / "candidates.parquet")
    one = cands.filter(pc.equal(cands["policy"], cands["policy"][0]))
    pq.write_table(one, tmp_path / "cands.parquet")
    with pytest.raises(SchemaError, match="a sweep's candidates.parquet, not its queue"):
        import_verdicts(verdicts, tmp_path / "cands.parquet", root / "v1",
                        out_dir=tmp_path / "v5", retrain=False)  # fmt: skip
    whole = queue.append_column("verdict", pa.array([2] * queue.num_rows))
    res = import_verdicts(whole.slice(0, 3), whole, root / "v1", out_dir=tmp_path / "v4",
                          retrain=False)  # fmt: skip
    # Read as the queue; in memory, its content is found through the index version its
    # provenance names.
    assert res.rows == 3 and res.imported.num_rows == 3 and res.quarantine.num_rows == 0


def test_a_text_edited_past_what_the_queue_shows_is_not_the_one_reviewed(loop, tmp_path):
    """The queue shows a text's first 300 characters; an edit after them passed the check and
    the verdict was stored on text the reviewer never saw (an outsider's report: the sweep's
    index version was gone, and the current one held the edit). text_sha256 tells. (The
    fixture's texts are shorter than 300 characters: a reviewer found the first version of
    this test passed without the digest.)"""
    from riskrank.rank.queue import shown_text, text_digests

    root, queue = loop
    assert "text_sha256" in queue.column_names and all(queue["text_sha256"].to_pylist())
    mail = "Dear customer, your parcel is waiting. " * 12  # 468 characters
    edited = mail + "Pay the release fee at http://pay.example now."
    assert len(mail) > 300 and edited[:300] == mail[:300]
    shown = pa.table(
        {"item_id": ["long-1"], "policy": ["scam"], "text": shown_text(pa.array([mail])),
         "text_sha256": text_digests([mail])}
    )  # fmt: skip
    verdicts = pa.table({"item_id": ["long-1"], "verdict": [2]})
    for text, imported in ((edited, 0), (mail, 1)):
        res = import_verdicts(verdicts, shown, root / "v1", out_dir=tmp_path / f"v{imported}",
                              inventory=pa.table({"item_id": ["long-1"], "text": [text]}),
                              retrain=False)  # fmt: skip
        assert res.imported.num_rows == imported
        if not imported:
            assert "another text_sha256" in res.quarantine["reason"][0].as_py()


@pytest.mark.parametrize(
    "swept, given, queue_digest",
    [
        ("crlf", "lf", "seen"),  # swept from a Windows export, imported with a later one
        ("lf", "crlf", "seen"),
        ("lf", "crlf", "bytes"),  # a queue written before the digest read text as seen
        ("nfd", "nfc", "seen"),
    ],
)
def test_a_re_export_of_the_text_shown_is_the_text_shown(
    swept, given, queue_digest, loop, tmp_path
):
    """``text_sha256`` digested the bytes: an ``--inventory`` re-exported with CRLF line
    breaks held the text the reviewer read, and every verdict was quarantined as "edited since
    the sweep?" (a reviewer's finding). The queue now digests the text as seen, and import
    takes either form; an edit is still caught."""
    import hashlib
    import unicodedata

    from riskrank.rank.queue import shown_text, text_digests

    root, _ = loop
    mail = "Dear customer,\nyour parcel is waiting at the d\u00e9p\u00f4t.\nPay the fee now.\n"
    forms = {"lf": mail, "crlf": mail.replace("\n", "\r\n"),
             "nfd": unicodedata.normalize("NFD", mail), "nfc": mail}  # fmt: skip
    assert forms["nfd"] != forms["nfc"] and forms["crlf"] != forms["lf"]
    if queue_digest == "bytes":
        digest = hashlib.sha256(forms[swept].encode()).hexdigest()
    else:
        digest = text_digests([forms[swept]])[0].as_py()
        assert digest == hashlib.sha256(mail.encode()).hexdigest()  # LF, NFC: the bytes' digest
    shown = pa.table(
        {"item_id": ["m-1"], "policy": ["scam"], "text": shown_text(pa.array([forms[swept]])),
         "text_sha256": [digest]}
    )  # fmt: skip
    verdicts = pa.table({"item_id": ["m-1"], "verdict": [2]})
    edited = forms[given].replace("Pay the fee", "Pay the release fee")
    for n, (text, imported) in enumerate(((forms[given], 1), (edited, 0))):
        res = import_verdicts(verdicts, shown, root / "v1", out_dir=tmp_path / f"v{n}",
                              inventory=pa.table({"item_id": ["m-1"], "text": [text]}),
                              retrain=False)  # fmt: skip
        assert res.imported.num_rows == imported, res.quarantine.to_pylist()
        if imported:
            stored = res.history.filter(pc.equal(res.history["item_id"], "m-1"))
            assert stored["text"].to_pylist() == [text]  # as the inventory holds it
        else:
            assert "another text_sha256" in res.quarantine["reason"][0].as_py()


@pytest.mark.parametrize(
    "digests, version, inventory",
    [
        ("kept", "kept", True),
        ("kept", "gone", True),  # the member digests alone catch the edit
        ("dropped", "kept", True),  # the version the sweep searched does
        ("dropped", "gone", True),  # nothing can: warned
        ("dropped", "gone", False),  # the index's later text: members quarantined
    ],
)
def test_a_campaign_verdict_skips_a_member_edited_since_the_sweep(
    digests, version, inventory, loop, inventory_items, tmp_path
):
    """A campaign-mode queue shows one row per campaign; its other members had no digest of
    their own, so a campaign verdict was stored on a member's edited text (a noted gap).
    The campaign's row now carries each member's text_sha256; a queue without them (written
    before, or the column dropped in a notebook: an outsider's report) is checked against
    the index version its sweep searched; where that is gone, members' verdicts on an
    inventory's text are warned about, and on the index's later text quarantined (a
    reviewer's repro stored five edited texts)."""
    from riskrank.rank.campaigns import MEMBER_DIGESTS, campaign_view
    from riskrank.rank.review import PROVENANCE_KEY

    root, queue = loop
    cid, members = _campaign(queue)
    shown = campaign_view(queue).filter(pc.equal(pc.field("campaign_id"), cid))
    assert shown[MEMBER_DIGESTS].to_pylist() == [
        queue.filter(pc.equal(queue["campaign_id"], cid))["text_sha256"].to_pylist()
    ]
    if digests == "dropped":
        shown = shown.drop([MEMBER_DIGESTS])
    if version == "gone":  # pruned by later sweeps: the standing index's current one is left
        about = json.loads(shown.schema.metadata[PROVENANCE_KEY])
        about["index_version_dir"] = str(Path(about["index_version_dir"]).parent / "v999999")
        meta = {**shown.schema.metadata, PROVENANCE_KEY: json.dumps(about).encode()}
        shown = shown.replace_schema_metadata(meta)
    inv = inventory_items.drop(["label"])
    texts = [t + " Call now." if i == members[1] else t
             for i, t in zip(inv["item_id"].to_pylist(), inv["text"].to_pylist())]  # fmt: skip
    inv = inv.set_column(inv.schema.get_field_index("text"), "text", pa.array(texts))
    verdicts = pa.table({"campaign_id": [cid], "verdict": [2]})
    said = []  # pytest's log capture is off (pyproject.toml): a handler of our own
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: said.append(record.getMessage())
    logging.getLogger("riskrank").addHandler(handler)
    try:
        res = import_verdicts(verdicts, shown, root / "v1", out_dir=tmp_path / "v",
                              inventory=inv if inventory else None, retrain=False)  # fmt: skip
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    warned = any("stored on the inventory's text unchecked" in m for m in said)
    assert warned == (digests == "dropped" and version == "gone" and inventory)
    if warned:
        return
    bad = res.quarantine.to_pylist()
    if not inventory:  # the representative's own digest checks it; its members cannot be
        assert res.imported["item_id"].to_pylist() == members[:1]
        assert sorted(r["item_id"] for r in bad) == sorted(members[1:])
        assert all("carries no digest" in r["reason"] for r in bad)
        return
    assert sorted(res.imported["item_id"].to_pylist()) == sorted(members[:1] + members[2:])
    assert [r["item_id"] for r in bad] == [members[1]] and "another text_sha256" in bad[0]["reason"]


def test_a_queue_in_memory_finds_what_its_sweep_searched(loop, tmp_path):
    """The README's library example (the sweep's queue handed over in memory, no inventory)
    quarantined every verdict as "no content found": only a queue's path led to the index.
    The queue's provenance names the index version its sweep searched."""
    root, queue = loop
    top = queue["item_id"].to_pylist()[:3]
    verdicts = pa.table({"item_id": top, "verdict": [2, 0, 3]})
    res = import_verdicts(verdicts, queue, root / "v1", out_dir=tmp_path / "v", retrain=False)
    assert sorted(res.imported["item_id"].to_pylist()) == sorted(top)


def test_a_queue_whose_member_lists_became_text_is_refused(loop, tmp_path):
    """A campaign-mode queue exported to CSV (or a sheet's joined list) holds its members as
    text: it was read character by character and every verdict quarantined with reasons
    naming '[' and 's' (an outsider's report)."""
    from riskrank.rank.campaigns import campaign_view

    root, queue = loop
    view = campaign_view(queue)
    joined = pa.array(["; ".join(m) for m in view["campaign_members"].to_pylist()])
    view = view.set_column(view.schema.get_field_index("campaign_members"), "campaign_members",
                           joined)  # fmt: skip
    verdicts = pa.table({"campaign_id": view["campaign_id"].to_pylist()[:1], "verdict": [2]})
    with pytest.raises(SchemaError, match="'campaign_members' is string, not a list of item ids"):
        import_verdicts(verdicts, view, root / "v1", out_dir=tmp_path / "v", retrain=False)


def test_content_that_is_not_what_the_queue_showed_is_quarantined(loop, tmp_path):
    """An --inventory edited since the sweep would put the verdict on content the reviewer
    never saw: the row is quarantined instead."""
    root, queue = loop
    top = queue.slice(0, 2).to_pylist()
    inv = pa.table(
        {
            "item_id": [r["item_id"] for r in top],
            "text": ["Hi team, the quarterly report is attached. Regards, Ann", top[1]["text"]],
        }
    )
    third = queue["item_id"][2].as_py()  # taken down: not in the inventory given
    verdicts = pa.table({"item_id": [r["item_id"] for r in top] + [third], "verdict": [3, 2, 1]})
    res = _import(verdicts, root, tmp_path / "v2", inventory=inv)
    assert res.imported["item_id"].to_pylist() == [top[1]["item_id"]]
    assert res.quarantine["item_id"].to_pylist() == [top[0]["item_id"], third]
    # The reasons say what is wrong with the inventory given, not to pass one (an outsider).
    edited, gone = res.quarantine["reason"].to_pylist()
    assert edited.startswith("the inventory given holds another text for the item than the queue")
    assert gone == "not in the inventory given (taken down since the sweep?)"


def test_a_blank_policy_is_checked_like_a_written_one(loop, tmp_path):
    """A blank policy cell takes the queue's policy, and that policy must be one the model
    has seeds for, as a written one must (a new policy's sweep runs without its seeds in
    the model)."""
    root, queue = loop
    item = queue["item_id"][0].as_py()
    shown = _one_item_queue(item, queue["text"][0].as_py(), policy="phishing")
    for policy in (None, "phishing"):
        verdicts = pa.table({"item_id": [item], "verdict": [2], "policy": [policy]})
        res = import_verdicts(verdicts, shown, root / "v1", out_dir=tmp_path / str(policy),
                              retrain=False)  # fmt: skip
        assert res.imported.num_rows == 0
        assert "not one of the model's seed policies" in res.quarantine["reason"][0].as_py()
    # A policy that differs from the model's only by case is told so, not to bring a new
    # policy's seeds ("Scam" beside "scam": a reviewer's report).
    verdicts = pa.table({"item_id": [item], "verdict": [2], "policy": [" Scam"]})
    res = import_verdicts(verdicts, queue, root / "v1", out_dir=tmp_path / "case", retrain=False)
    assert res.quarantine["reason"].to_pylist() == [
        "policy ' Scam' differs from the model's 'scam' only by case and spaces: write 'scam' "
        "(or leave the cell blank: the policy the queue showed)"
    ]


def test_a_queue_made_by_a_sibling_model_is_refused(loop, tmp_path):
    """Two imports from one parent both make a version 2: a queue of one is not the other's."""
    root, queue = loop
    sibling = tmp_path / "sibling"
    sibling.mkdir()
    pq.write_table(queue, sibling / "queue.parquet")
    report = json.loads((root / "day1" / "report.json").read_text())
    parent = json.loads((root / "v1" / "model.json").read_text())
    report["model"] = {"version": 1, "history_digest": "e" * 64, "created_at": "2026-12-04"}
    (sibling / "report.json").write_text(json.dumps(report))
    verdicts = pa.table({"item_id": [queue["item_id"][0].as_py()], "verdict": [2]})
    assert parent["history_digest"] != "e" * 64 and parent["version"] == 1
    with pytest.raises(ValueError, match="a different model of the same version"):
        import_verdicts(verdicts, sibling / "queue.parquet", root / "v1", out_dir=tmp_path / "v2")
    assert not (tmp_path / "v2").exists()


def test_integer_ids_that_pandas_wrote_as_floats_are_the_queued_items(
    loop, seeds, inventory_items, tmp_path
):
    """A verdict file built in pandas with item rows and a campaign row: the blank item id of
    the campaign row makes an integer id column float, "1072.0" in a CSV, a double column in
    Parquet. The item rows are the queued items, and their own verdicts win over their
    campaign's (a reviewer's report: they matched nothing, were quarantined as unknown, and
    the campaign's 3 overwrote a reviewer's 0)."""
    import pandas as pd

    root, _ = loop
    day = tmp_path / "day"
    inv = inventory_items.drop(["label"])
    ints = inv.set_column(0, "item_id", pa.array(range(1000, 1000 + inv.num_rows), pa.int64()))
    sweep(ints, seeds, root / "v1", out_dir=day, k=200, show_progress=False, explore=0)
    big, members = _campaign(pq.read_table(day / "queue.parquet"))
    a, b = int(members[0]), int(members[1])
    df = pd.DataFrame({"item_id": [a, b, None], "campaign_id": [None, None, big],
                       "verdict": [2, 0, 3]})  # fmt: skip
    assert df["item_id"].dtype == "float64"
    df.to_csv(tmp_path / "v.csv", index=False)
    assert f"{a}.0," in (tmp_path / "v.csv").read_text()
    df.to_parquet(tmp_path / "v.parquet")
    for name, data in (("csv", tmp_path / "v.csv"), ("parquet", tmp_path / "v.parquet"),
                       ("frame", df)):  # fmt: skip
        res = import_verdicts(data, day / "queue.parquet", root / "v1",
                              out_dir=tmp_path / name, retrain=False, inventory=ints)  # fmt: skip
        assert res.quarantine.num_rows == 0, (name, res.quarantine.to_pylist())
        got = {r["item_id"]: r for r in res.imported.to_pylist()}
        assert got[str(a)]["verdict"] == 2 and got[str(a)]["verdict_source"] == "item", name
        assert got[str(b)]["verdict"] == 0 and got[str(b)]["verdict_source"] == "item", name
        assert len(got) == len(members), name


def test_verdicts_on_a_queue_whose_index_version_was_pruned(loop, inventory_items, tmp_path):
    """A standing index keeps two versions; a queue older than that still finds its items'
    content in the index's current version, checked against what the queue showed."""
    root, _ = loop
    inv = inventory_items.drop(["label"])
    out = tmp_path / "day1"
    sweep(inv, root / "v1" / "seeds.parquet", root / "v1", out_dir=out, k=200,
          index_dir=tmp_path / "standing", show_progress=False, explore=0)  # fmt: skip
    queue = pq.read_table(out / "queue.parquet")
    report = json.loads((out / "report.json").read_text())
    pruned = tmp_path / "standing" / "versions" / "v000000"  # as if later sweeps removed it
    assert not pruned.exists() and report["index_version_dir"] != str(pruned)
    report["index_version_dir"] = str(pruned)
    (out / "report.json").write_text(json.dumps(report))
    top = queue["item_id"].to_pylist()[:3]
    verdicts = pa.table({"item_id": top, "verdict": [2, 2, 2]})
    res = import_verdicts(verdicts, out / "queue.parquet", root / "v1", out_dir=tmp_path / "v2",
                          retrain=False)  # fmt: skip
    assert res.imported["item_id"].to_pylist() == top and res.quarantine.num_rows == 0


def test_cli_no_retrain_says_no_model_was_trained(loop, tmp_path, capsys):
    root, queue = loop
    verdicts = tmp_path / "v.csv"
    verdicts.write_text(f"item_id,verdict\n{queue['item_id'][0].as_py()},2\n")
    argv = ["review", "import", str(verdicts), "--queue", str(root / "day1" / "queue.parquet")]
    rc = main(argv + ["--model", str(root / "v1"), "--out", str(tmp_path / "h"), "--no-retrain"])
    out = capsys.readouterr().out
    assert rc == 0 and "none trained (--no-retrain)" in out and "model version" not in out
    assert not (tmp_path / "h" / "model.json").exists()
    assert f"riskrank review retrain {tmp_path / 'h'}" in out
    # Every verdict quarantined: the history and quarantine are kept, but there is nothing to
    # train (a retrain would refuse it), so the CLI does not suggest one, and exits 1 as an
    # import with a retrain does (it exited 0: an outsider's report).
    verdicts.write_text("item_id,verdict\nghost,2\n")
    rc = main(argv + ["--model", str(root / "v1"), "--out", str(tmp_path / "g"), "--no-retrain"])
    out = capsys.readouterr().out
    assert rc == 1 and "nothing to train" in out and "review retrain" not in out
    assert (tmp_path / "g" / "verdicts_quarantine.parquet").exists()


def test_a_new_policys_verdicts_import_with_its_seeds(loop, inventory_items, seeds, tmp_path):
    """Verdicts from a sweep that ran a new policy's seeds: with those seeds added the
    verdicts are imported and the next version holds the policy; a seed_id that names
    another seed than the model's is refused."""
    root, queue = loop
    item = queue["item_id"][0].as_py()
    inv = inventory_items.drop(["label"])
    inv = inv.filter(pc.equal(inv["item_id"], item))
    shown = _one_item_queue(item, inv["text"][0].as_py(), policy="phishing")
    new = pa.table({"seed_id": ["p1"], "policy": ["phishing"], "text": ["verify your account"]})
    sweep_seeds = pa.concat_tables([seeds, new], promote_options="default")  # as the sweep had
    verdicts = pa.table({"item_id": [item], "verdict": [2]})
    res = import_verdicts(verdicts, shown, root / "v1", out_dir=tmp_path / "v2", inventory=inv,
                          seeds=sweep_seeds)  # fmt: skip
    assert res.imported["policy"].to_pylist() == ["phishing"] and res.quarantine.num_rows == 0
    kept = pq.read_table(tmp_path / "v2" / "seeds.parquet")
    assert sorted(kept["seed_id"].to_pylist()) == sorted(sweep_seeds["seed_id"].to_pylist())
    assert "phishing" in RiskModel.load(tmp_path / "v2").info["policies_with_history"]
    other = new.set_column(2, "text", pa.array([seeds["text"][0].as_py()]))
    clash = other.set_column(0, "seed_id", pa.array([seeds["seed_id"][0].as_py()]))
    with pytest.raises(SchemaError, match="differs from the model's seed of that id"):
        import_verdicts(verdicts, shown, root / "v1", out_dir=tmp_path / "v3", inventory=inv,
                        seeds=clash, retrain=False)  # fmt: skip
    assert not (tmp_path / "v3").exists()
    # Every verdict quarantined but the new policy's seeds added: a new version holding them,
    # as a --no-retrain import and its retrain give (it was refused as "nothing to import").
    # It says that none was imported (only the rows' reasons said it, beside "model version
    # 2": an outsider's retroactive picture import).
    ghost = pa.table({"item_id": ["ghost"], "verdict": [2]})
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("riskrank").addHandler(handler)
    try:
        res = import_verdicts(ghost, shown, root / "v1", out_dir=tmp_path / "v4", inventory=inv,
                              seeds=sweep_seeds)  # fmt: skip
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    assert res.imported.num_rows == 0 and res.seeds_added == 1 and res.model is not None
    said = [r.getMessage() for r in records if "none of the 1 verdict row(s)" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith("the new model version adds only the 1 new seed(s)")
    assert "p1" in pq.read_table(tmp_path / "v4" / "seeds.parquet")["seed_id"].to_pylist()


def test_a_no_retrain_import_trains_later_with_its_lineage(loop, seeds, tmp_path, capsys):
    """`review import --no-retrain` then `review retrain`: the model is the version, parent
    and history an import with a retrain gives; what would break the lineage is refused."""
    root, queue = loop
    top = queue["item_id"].to_pylist()[:6]
    pq.write_table(pa.table({"item_id": top, "verdict": [2, 0, 2, 0, 2, 0]}), tmp_path / "v.pq")
    new = pa.table({"seed_id": ["p1"], "policy": ["phishing"], "text": ["verify your account"]})
    pq.write_table(pa.concat_tables([seeds, new], promote_options="default"), tmp_path / "s.pq")
    argv = [
        "review",
        "import",
        str(tmp_path / "v.pq"),
        "--queue",
        str(root / "day1" / "queue.parquet"),
    ]
    argv += ["--seeds", str(tmp_path / "s.pq")]
    h = tmp_path / "h"
    assert main(argv + ["--model", str(root / "v1"), "--out", str(h), "--no-retrain"]) == 0
    assert f"riskrank review retrain {h}" in capsys.readouterr().out
    # A pending import is not a model: importing into it says what to do.
    assert main(argv + ["--model", str(h), "--out", str(tmp_path / "x")]) == 2
    assert "--no-retrain import" in capsys.readouterr().err
    # Its history edited since, or another parent: refused before anything is written.
    saved = pq.read_table(h / "history.parquet")
    pq.write_table(saved.slice(1), h / "history.parquet")
    assert main(["review", "retrain", str(h), "--out", str(tmp_path / "bad")]) == 2
    assert "changed since the import" in capsys.readouterr().err
    pq.write_table(saved, h / "history.parquet")
    kept_seeds = pq.read_table(h / "seeds.parquet")
    pq.write_table(kept_seeds.slice(1), h / "seeds.parquet")
    assert main(["review", "retrain", str(h), "--out", str(tmp_path / "bad")]) == 2
    assert "seeds.parquet changed since the import" in capsys.readouterr().err
    pq.write_table(kept_seeds, h / "seeds.parquet")
    sibling = tmp_path / "sib"
    import_verdicts(tmp_path / "v.pq", root / "day1" / "queue.parquet", root / "v1",
                    out_dir=sibling, seeds=tmp_path / "s.pq")  # fmt: skip
    rc = main(
        ["review", "retrain", str(h), "--out", str(tmp_path / "bad"), "--model", str(sibling)]
    )
    assert rc == 2 and "is not the model" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    # Trained: version 2 of v1, on the imported history, with the added policy's seeds.
    assert main(["review", "retrain", str(h), "--out", str(tmp_path / "v2")]) == 0
    meta = json.loads((tmp_path / "v2" / "model.json").read_text())
    parent = json.loads((root / "v1" / "model.json").read_text())
    assert (meta["version"], meta["parent_version"]) == (2, 1)
    assert meta["parent_history_digest"] == parent["history_digest"]
    assert (
        meta["history_digest"]
        == history_digest(saved)
        == json.loads((sibling / "model.json").read_text())["history_digest"]
    )  # the same as the import that retrained at once
    assert "p1" in pq.read_table(tmp_path / "v2" / "seeds.parquet")["seed_id"].to_pylist()
    # Run again (a retry after a kill that came too late), it is answered with the model it
    # left, nothing written, as an import's retry is (it was refused: an outsider's report).
    made = (tmp_path / "v2" / "model.json").read_bytes()
    assert main(["review", "retrain", str(h), "--out", str(tmp_path / "v2")]) == 0
    assert (tmp_path / "v2" / "model.json").read_bytes() == made
    # Another model in it is refused.
    assert main(["review", "retrain", str(h), "--out", str(root / "v1")]) == 2
    assert "already holds a model" in capsys.readouterr().err
    # So is the model of a pending import of the same verdicts without the added seeds: it
    # was taken for this retrain's ("already holds this retrain's model"), and the new
    # policy's seeds went untrained (a reviewer's report).
    plain = tmp_path / "h-plain"
    assert main(argv[:5] + ["--model", str(root / "v1"), "--out", str(plain), "--no-retrain"]) == 0
    assert main(["review", "retrain", str(plain), "--out", str(tmp_path / "v2-plain")]) == 0
    capsys.readouterr()
    assert main(["review", "retrain", str(h), "--out", str(tmp_path / "v2-plain")]) == 2
    assert "already holds a model" in capsys.readouterr().err
    # ... and of one whose seed was edited under the same id (it was taken for this one).
    edited = pa.concat_tables([seeds, new.set_column(2, "text", pa.array(["verify now"]))],
                              promote_options="default")  # fmt: skip
    pq.write_table(edited, tmp_path / "s2.pq")
    other = tmp_path / "h-edited"
    argv2 = [*argv[:5], "--seeds", str(tmp_path / "s2.pq")]
    assert main(argv2 + ["--model", str(root / "v1"), "--out", str(other), "--no-retrain"]) == 0
    assert main(["review", "retrain", str(other), "--out", str(tmp_path / "v2")]) == 2
    assert "already holds a model" in capsys.readouterr().err
    # A pending import that took no verdict would train its parent again: refused.
    (tmp_path / "none.csv").write_text("item_id,verdict\nno-such-item,2\n")
    none = ["review", "import", str(tmp_path / "none.csv"), "--queue", argv[4]]
    assert (
        main(none + ["--model", str(root / "v1"), "--out", str(tmp_path / "h0"), "--no-retrain"])
        == 1  # (nothing imported)
    )
    assert main(["review", "retrain", str(tmp_path / "h0"), "--out", str(tmp_path / "v0")]) == 2
    assert "took no verdicts" in capsys.readouterr().err
    # ... and `info` does not offer to train it (it did: an outsider's audit of the README).
    assert main(["info", str(tmp_path / "h0")]) == 0
    said = capsys.readouterr().out
    assert "nothing to train" in said and "review retrain" not in said
    # The right file next, into the same directory: refused, saying what is there.
    right = ["review", "import", str(tmp_path / "v.pq"), "--queue", argv[4]]
    assert (
        main(right + ["--model", str(root / "v1"), "--out", str(tmp_path / "h0"), "--no-retrain"])
        == 2
    )
    assert "one that took nothing (see its quarantine)" in capsys.readouterr().err


def test_a_no_retrain_import_killed_between_its_writes_runs_again(loop, tmp_path, monkeypatch):
    """Killed after two of its files (or out of disk), a --no-retrain import's re-run was
    refused as "not empty", and `review retrain` called the folder not an import's output (a
    reviewer's report): without pending.json nothing trusts those files, so the re-run
    writes them again and gives the uninterrupted run's."""
    import riskrank.rank.review as review

    root, queue = loop
    verdicts = pa.table({"item_id": queue["item_id"].to_pylist()[:5], "verdict": [2, 2, 0, 0, 3]})
    whole = _import(verdicts, root, tmp_path / "whole")
    written = []
    real = review.write_parquet

    def dying(table, path):
        real(table, path)
        written.append(Path(path).name)
        if len(written) == 2:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(review, "write_parquet", dying)
    with pytest.raises(KeyboardInterrupt):
        _import(verdicts, root, tmp_path / "v2")
    monkeypatch.setattr(review, "write_parquet", real)
    assert not (tmp_path / "v2" / "pending.json").exists() and len(written) == 2
    with pytest.raises(FileNotFoundError, match="an unfinished .* run that import again"):
        review.retrain_pending(tmp_path / "v2", out_dir=tmp_path / "v3")
    again = _import(verdicts, root, tmp_path / "v2")
    assert again.imported.equals(whole.imported)
    assert sorted(p.name for p in (tmp_path / "v2").iterdir()) == sorted(
        p.name for p in (tmp_path / "whole").iterdir()
    )  # its mark of unfinished files gone
    for name in ("history.parquet", "seeds.parquet", "verdicts_quarantine.parquet"):
        assert pq.read_table(tmp_path / "v2" / name).equals(
            pq.read_table(tmp_path / "whole" / name)
        )
    # A user's own file beside them is still refused.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "history.parquet").write_bytes(b"")
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        _import(verdicts, root, tmp_path / "mine")


def test_a_picture_the_sweeps_index_did_not_keep_is_not_lost_silently(tmp_path):
    """An index keeps image paths but not image bytes: a verdict on an item whose picture
    came as bytes, with content taken from the sweep's index, would store a history row
    without its picture (and the next model would queue the item again as changed). Such
    rows are quarantined with what to do; with the inventory they import whole."""

    from riskrank.index.build import build_index
    from riskrank.index.signals.pdq import PdqSignal
    from riskrank.rank.review import QueueIndex, _content, _new_rows, check_verdicts
    from riskrank.rank.reviewed import content_digests

    (tmp_path / "b.jpg").write_bytes(_jpeg(2))
    inv = pa.table(
        {
            "item_id": ["a", "b", "c"],
            "text": ["ad a", "ad b", "ad c"],
            "image_bytes": pa.array([_jpeg(1), None, None], pa.binary()),
            "image_path": [None, "b.jpg", None],
        }
    )
    signals = [HashingTextSignal(), PdqSignal(base_dir=tmp_path)]
    build_index(inv, tmp_path / "sw" / "index", signals=signals)
    queue_path = tmp_path / "sw" / "queue.parquet"
    content, lost = _content(["a", "b", "c"], None, queue_path)
    assert lost == {"a"} and "image_bytes" not in content["a"]
    content_inv, lost_inv = _content(["a", "b", "c"], inv, queue_path)
    assert lost_inv == set() and content_inv["a"]["image_bytes"] is not None
    queue = pa.table({"item_id": ["a", "b", "c"], "policy": ["scam"] * 3, "rank": [1, 2, 3]})
    verdicts = pa.table({"item_id": ["a", "b", "c"], "verdict": [2, 2, 0]})
    check = check_verdicts(verdicts, QueueIndex(queue), {"scam"})
    empty = pa.table({"item_id": pa.array([], pa.string()), "policy": pa.array([], pa.string()),
                      "verdict": pa.array([], pa.int8())})  # fmt: skip
    new, _, bad, _ = _new_rows(check, empty, content, "s", signals=signals, pictures_lost=lost)
    assert new["item_id"].to_pylist() == ["b", "c"]
    assert [r["item_id"] for r in bad] == ["a"] and "--inventory" in bad[0]["reason"]
    # The history keeps the picture itself, not only a path into an export folder a later
    # day rotates away; it digests as the picture the sweep saw.
    assert new["image_bytes"].to_pylist() == [(tmp_path / "b.jpg").read_bytes(), None]
    assert new["image_path"].to_pylist() == ["b.jpg", None]
    seen = content_digests(inv.slice(1, 1), signals)
    (tmp_path / "b.jpg").unlink()
    assert content_digests(new.slice(0, 1), signals) == seen
    # Each way a picture is lost says which: bytes not kept, a file gone (a retention job: one
    # reason named all three ways, an outsider's week), a file replaced.
    _, _, bad, _ = _new_rows(check, empty, content, "s", signals=signals, pictures_lost={"a", "b"})
    why = {r["item_id"]: r["reason"] for r in bad}
    assert why["a"].startswith("its picture came as image_bytes") and "b.jpg" not in why["a"]
    assert why["b"].startswith("its image file b.jpg is not found"), why["b"]
    (tmp_path / "b.jpg").write_bytes(_jpeg(3))
    _, _, bad, _ = _new_rows(check, empty, content, "s", signals=signals, pictures_lost={"b"})
    assert bad[0]["reason"].startswith("its image file b.jpg is not the picture the sweep saw")
    # Not readable here for another reason (outside the folder): that reason, not "replaced".
    content["b"] = {**content["b"], "image_path": "../b.jpg"}
    _, _, bad, _ = _new_rows(check, empty, content, "s", signals=signals, pictures_lost={"b"})
    assert bad[0]["reason"].startswith("its image file cannot be read here ("), bad[0]["reason"]


def test_which_pictures_an_import_cannot_take_from_the_sweeps_index(tmp_path):
    """Only a signal that reads nothing but pictures marks an item whose picture the index
    lacks (a plug-in reading every column may hold it by its text); and with a standing
    index's content keys, a file that is not the picture the sweep embedded is found too."""

    from riskrank.index.signals.pdq import PdqSignal
    from riskrank.index.signals.registry import register_signal, unregister_signal
    from riskrank.index.standing import StandingIndex
    from riskrank.rank.review import _pictures_not_kept

    class ReadsEverything(HashingTextSignal):  # a plug-in that does not say what it reads
        type_name = "test_reads_everything"
        name = "everything"
        content_columns = ("text", "image_bytes", "image_path")

    register_signal(ReadsEverything)
    try:
        (tmp_path / "same.jpg").write_bytes(_jpeg(1))
        (tmp_path / "other.jpg").write_bytes(_jpeg(3))
        inv = pa.table(
            {
                "item_id": ["bytes-only", "same", "both", "text-only"],
                "text": ["ad 0", "ad 1", "ad 2", "ad 3"],
                "image_bytes": pa.array([_jpeg(0), None, _jpeg(2), None], pa.binary()),
                "image_path": [None, "same.jpg", "other.jpg", None],
            }
        )
        pdq = PdqSignal(base_dir=tmp_path)
        StandingIndex(tmp_path / "st").update(inv, [ReadsEverything(), pdq], show_progress=False)
        vdir = StandingIndex(tmp_path / "st").current_dir()
        content = {
            r["item_id"]: {"text": r["text"], "image_path": r["image_path"]}
            for r in inv.select(["item_id", "text", "image_path"]).to_pylist()
        }
        # "both": the sweep embedded its bytes, its file is another picture.
        assert _pictures_not_kept(vdir, content, [pdq]) == {"bytes-only", "both"}
        assert _pictures_not_kept(vdir, content) == {"bytes-only"}  # no keys compared
    finally:
        unregister_signal("test_reads_everything")


def test_a_verdict_is_not_stored_on_a_picture_the_sweep_did_not_embed(tmp_path):
    """An outsider's three days with pictures: a picture replaced under its path (or edited
    in the --inventory) after the sweep took the verdict; a late import, the version its
    sweep searched gone, put day-1 verdicts on day-3 pictures; a moved export folder made
    good reviews rows with a dead path. Each is quarantined with why now."""

    from riskrank.index.signals.pdq import PdqSignal
    from riskrank.index.standing import StandingIndex
    from riskrank.rank.review import _picture_problems, _with_picture

    for i in range(3):
        (tmp_path / f"p{i}.jpg").write_bytes(_jpeg(i))
    inv = pa.table({"item_id": ["a", "b", "c"], "text": ["ad a", "ad b", "ad c"],
                    "image_path": ["p0.jpg", "p1.jpg", "p2.jpg"]})  # fmt: skip
    signals = [HashingTextSignal(), PdqSignal(base_dir=tmp_path)]
    standing = StandingIndex(tmp_path / "st")
    standing.update(inv, signals, show_progress=False)
    swept = standing.current_dir()
    (tmp_path / "p1.jpg").write_bytes(_jpeg(7))  # replaced under its path after the sweep
    (tmp_path / "p2.jpg").unlink()  # the export folder rotated away
    # As import_verdicts hands them over: each picture read once (bytes beside the path).
    content = {r["item_id"]: _with_picture(r, signals) for r in inv.to_pylist()}
    edited = {**content, "a": {**content["a"], "image_bytes": _jpeg(8)}}  # edited inventory
    # A file the sweep embedded, read into bytes, is the picture it embedded.
    assert _picture_problems({"a": content["a"]}, swept, None, True, signals) == {}
    found = _picture_problems(edited, swept, None, True, signals)
    assert sorted(found) == ["a", "b", "c"]
    assert found["a"].startswith("the inventory given holds another picture")
    assert "another picture" in found["b"] and "image file not found" in found["c"]
    # Content from the version the sweep searched: only the unreadable file here (the
    # replaced one is _pictures_not_kept's); a text-only model reads no picture at all.
    items = swept / "items.parquet"
    assert list(_picture_problems(content, swept, items, False, signals)) == ["c"]
    assert _picture_problems(edited, swept, None, True, signals[:1]) == {}
    # The version the sweep searched gone, no inventory: nothing can check the pictures.
    late = _picture_problems(content, tmp_path / "gone", items, False, signals)
    assert "cannot be checked" in late["a"] and "cannot be checked" in late["b"]


def test_a_picture_the_sweep_could_not_read_is_not_the_one_reviewed(tmp_path):
    """A reviewer saw no picture for an ad whose file was corrupt or missing at the sweep;
    the files were then replaced by copies of a scam seed, and the benign verdicts were stored
    on them, hiding the copies from later queues as "reviewed, unchanged" (an outsider's
    report). Quarantined now, from the index and from an inventory alike; a file still
    broken as it was is what the reviewer saw."""

    from riskrank.index.signals.pdq import PdqSignal
    from riskrank.index.standing import StandingIndex
    from riskrank.rank.review import _picture_problems, _with_picture

    (tmp_path / "p0.jpg").write_bytes(_jpeg(0))
    (tmp_path / "corrupt.jpg").write_bytes(b"not a picture")
    (tmp_path / "still.jpg").write_bytes(b"still not a picture")
    paths = ["p0.jpg", "corrupt.jpg", "missing.jpg", "still.jpg"]
    inv = pa.table({"item_id": ["a", "x0", "x1", "x2"], "text": ["ad a", "x0", "x1", "x2"],
                    "image_path": paths})  # fmt: skip
    signals = [HashingTextSignal(), PdqSignal(base_dir=tmp_path)]
    standing = StandingIndex(tmp_path / "st")
    _, stats = standing.update(inv, signals, show_progress=False)
    assert stats.indexed == 4  # the broken ones by their text
    swept = standing.current_dir()
    scam = _jpeg(9)
    (tmp_path / "corrupt.jpg").write_bytes(scam)
    (tmp_path / "missing.jpg").write_bytes(scam)
    content = {r["item_id"]: _with_picture(r, signals) for r in inv.to_pylist()}
    items = swept / "items.parquet"
    for found_in, from_inventory in ((items, False), (None, True)):
        found = _picture_problems(content, swept, found_in, from_inventory, signals)
        assert sorted(found) == ["x0", "x1"], found
        assert "another picture" in found["x0"] and "another picture" in found["x1"]


def test_a_verdict_on_an_item_whose_picture_the_sweep_could_not_read_either_is_taken(tmp_path):
    """Ads whose picture is a CDN URL, a file gone from the export or an empty file are swept
    by their text; every verdict on them was refused, asking for the --image-base-dir that had
    been passed (an outsider's report). The reviewer saw no picture: the verdict is taken.
    A file the sweep did read and that is gone now is still refused, as before."""
    from riskrank.index.signals.pdq import PdqSignal
    from riskrank.index.standing import StandingIndex
    from riskrank.rank.review import _picture_problems, _picture_vectors, _with_picture

    def _no_picture_vector(queue, queue_path, signals):
        return _picture_vectors(queue, queue_path, signals)[0]

    (tmp_path / "p0.jpg").write_bytes(_jpeg(0))
    (tmp_path / "moved.jpg").write_bytes(_jpeg(1))
    (tmp_path / "empty.jpg").write_bytes(b"")
    paths = ["p0.jpg", "https://cdn.example.com/ad.jpg", "gone.jpg", "empty.jpg", "moved.jpg"]
    ids = ["a", "url", "gone", "empty", "moved"]
    inv = pa.table({"item_id": ids, "text": [f"ad {i}" for i in ids], "image_path": paths})
    signals = [HashingTextSignal(), PdqSignal(base_dir=tmp_path)]
    standing = StandingIndex(tmp_path / "st")
    _, stats = standing.update(inv, signals, show_progress=False)
    assert stats.indexed == 5  # the three without a picture by their text
    (tmp_path / "moved.jpg").unlink()  # the export folder moved on after the sweep
    swept = standing.current_dir()
    content = {r["item_id"]: _with_picture(r, signals) for r in inv.to_pylist()}
    found = _picture_problems(content, swept, swept / "items.parquet", False, signals)
    assert sorted(found) == ["moved"], found
    assert "image file not found" in found["moved"] and "the sweep read it" in found["moved"]
    # Once that version is pruned, the sweep's own output says which items it held no
    # picture vector for (their picture evidence is null): the same verdicts are taken (they
    # were refused again, with the advice to pass the --image-base-dir already passed).
    queue = pa.table({"item_id": ids, "pdq_best_sim": [0.9, None, None, float("nan"), 0.2]})
    unread = _no_picture_vector(queue, None, signals)
    assert unread == {"url", "gone", "empty"}
    # Under text seeds alone every row's picture evidence is null: that tells nothing.
    text_seeds = queue.set_column(1, "pdq_best_sim", pa.nulls(5, pa.float64()))
    assert _no_picture_vector(text_seeds, None, signals) == set()
    per_policy = queue.append_column("policy", pa.array(["a", "a", "b", "a", "a"]))
    assert _no_picture_vector(per_policy, None, signals) == {"url", "empty"}  # (b: no seed)
    pruned = tmp_path / "st" / "versions" / "v000000"
    found = _picture_problems(content, pruned, None, True, signals, unread=unread)
    assert sorted(found) == ["moved"], found
    # The same without an inventory, the content read from a later index version.
    later = swept / "items.parquet"
    found = _picture_problems(content, pruned, later, False, signals, unread=unread)
    assert sorted(found) == ["a", "moved"], found  # (a: its picture cannot be checked)
    # With an inventory that no longer holds a picture the sweep held (removed since), the
    # verdict was stored on the text alone, uncounted (an outsider's report): refused now.
    _, pictured = _picture_vectors(queue, None, signals)
    assert pictured == {"a", "moved"}
    removed = {**content, "a": {**content["a"], "image_path": None, "image_bytes": None}}
    found = _picture_problems(removed, pruned, None, True, signals, unread=unread,
                              pictured=pictured)  # fmt: skip
    assert sorted(found) == ["a", "moved"], found
    assert "the inventory given holds none" in found["a"]


def test_a_queue_whose_sweep_did_not_finish_is_refused(loop, tmp_path):
    """A sweep killed after writing queue.parquet and before report.json: the model check
    was skipped and the verdicts imported into another model (a reviewer's finding)."""
    import shutil

    root, queue = loop
    died = tmp_path / "died"
    shutil.copytree(root / "day1", died, ignore=shutil.ignore_patterns("index"))
    (died / "report.json").unlink()
    (died / "_SUCCESS").unlink(missing_ok=True)
    verdicts = pa.table({"item_id": queue["item_id"].to_pylist()[:3], "verdict": [2, 0, 2]})
    with pytest.raises(ValueError, match="did not finish .no report.json beside it, no _SUC"):
        import_verdicts(verdicts, died / "queue.parquet", root / "v1", out_dir=tmp_path / "v2")
    # Its report.json alone gone: the marker is not said missing (it was: an outsider's audit).
    gone = tmp_path / "gone"
    shutil.copytree(root / "day1", gone, ignore=shutil.ignore_patterns("index"))
    (gone / "report.json").unlink()
    assert (gone / "_SUCCESS").exists()
    with pytest.raises(ValueError, match=r"did not finish \(no report.json beside it\), so"):
        import_verdicts(verdicts, gone / "queue.parquet", root / "v1", out_dir=tmp_path / "v3")
    # Killed later, after report.json and before its reports and _SUCCESS: `riskrank info`
    # said "not complete", the import took the queue (an outsider's kill trial).
    later = tmp_path / "later"
    shutil.copytree(root / "day1", later, ignore=shutil.ignore_patterns("index"))
    assert (later / "report.json").exists()
    for name in ("_SUCCESS", "report.md", "report.html", "report.png"):
        (later / name).unlink(missing_ok=True)
    with pytest.raises(ValueError, match="did not finish .no _SUCCESS"):
        import_verdicts(verdicts, later / "queue.parquet", root / "v1", out_dir=tmp_path / "v4")
    assert not (tmp_path / "v4").exists()
    # A queue on its own (copied out of its sweep's folder) is still taken.
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(died / "queue.parquet", alone / "queue.parquet")
    res = import_verdicts(verdicts, alone / "queue.parquet", root / "v1",
                          out_dir=tmp_path / "v3", retrain=False)  # fmt: skip
    assert res is not None


def test_a_model_keeps_the_pictures_of_its_history(history, seeds, tmp_path):
    """`train` kept path-only history rows: once the export folder had moved, the retrain
    after an import lost the pictures of the first model's reviews (an outsider's report:
    image vectors 300 -> 235). The saved history holds each file's bytes beside its path."""

    from riskrank.index.signals.pdq import PdqSignal

    paths = [f"p{i}.jpg" if i % 3 == 0 else None for i in range(history.num_rows)]
    for i, p in enumerate(paths):
        if p:
            (tmp_path / p).write_bytes(_jpeg(i))
    hist = history.append_column("image_path", pa.array(paths, pa.string()))
    signals = [HashingTextSignal(), PdqSignal(base_dir=tmp_path)]
    train(hist, seeds, tmp_path / "m", signals=signals, k=200, show_progress=False)
    kept = pq.read_table(tmp_path / "m" / "history.parquet")
    by_id = dict(zip(kept["item_id"].to_pylist(), kept["image_bytes"].to_pylist()))
    for item_id, p in zip(hist["item_id"].to_pylist(), paths):
        assert by_id[item_id] == ((tmp_path / p).read_bytes() if p else None)
    # A text-only model keeps the paths as they are (they are metadata to it).
    train(hist, seeds, tmp_path / "t", signals=[HashingTextSignal()], k=200, show_progress=False)
    assert "image_bytes" not in pq.read_table(tmp_path / "t" / "history.parquet").column_names


def test_training_on_pictures_it_cannot_find_says_so(history, seeds, tmp_path):
    """`riskrank train` without the --image-base-dir its history's paths are relative to
    trained an image model that saw no picture and said nothing (the sweep warns; an
    outsider's report)."""
    import logging

    from riskrank.index.signals.pdq import PdqSignal

    paths = [f"p{i}.jpg" if i < 5 else None for i in range(history.num_rows)]  # none is there
    hist = history.append_column("image_path", pa.array(paths, pa.string()))
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("riskrank").addHandler(handler)  # (pytest's logging plugin is off)
    try:
        signals = [HashingTextSignal(), PdqSignal(base_dir=tmp_path)]
        train(hist, seeds, tmp_path / "m", signals=signals, k=200, show_progress=False)
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    said = [r.getMessage() for r in records]
    assert any(
        m.startswith("history: pdq: the image files of 5 items were not found") for m in said
    ), said


def test_a_model_keeps_the_pictures_of_its_seeds(history, seeds, tmp_path):
    """The model kept its seeds as given: path-only pictures were read again by each import
    and retrain, and one run without the training's --image-base-dir trained a version
    without them, which ranked exact copies of a seed picture last (an outsider's report).
    The saved seeds hold each file's bytes beside its path; the same seeds given again
    (paths only) are the model's own, not seeds that differ."""
    from riskrank.index.signals.pdq import PdqSignal
    from riskrank.rank.review import SEEDS_FILE, add_seeds
    from riskrank.recall.seeds import SeedSet

    (tmp_path / "creatives").mkdir()
    (tmp_path / "creatives" / "seed.jpg").write_bytes(_jpeg(7))
    pictured = seeds.append_column("image_path", pa.array(["seed.jpg", None, None]))
    signals = [HashingTextSignal(), PdqSignal(base_dir=tmp_path / "creatives")]
    train(history, pictured, tmp_path / "m", signals=signals, k=200, show_progress=False)
    kept = pq.read_table(tmp_path / "m" / SEEDS_FILE)
    assert kept["image_bytes"].to_pylist() == [_jpeg(7), None, None]
    assert kept["image_path"].to_pylist() == ["seed.jpg", None, None]
    again = add_seeds(SeedSet.from_table(kept), pictured, signals)
    assert again.table.num_rows == 3
    # The same picture by another path, or as bytes, is the model's seed.
    absolute = pictured.set_column(
        pictured.schema.get_field_index("image_path"), "image_path",
        pa.array([str(tmp_path / "creatives" / "seed.jpg"), None, None]),
    )  # fmt: skip
    assert add_seeds(SeedSet.from_table(kept), absolute, signals).table.num_rows == 3
    as_bytes = seeds.append_column("image_bytes", pa.array([_jpeg(7), None, None], pa.binary()))
    assert add_seeds(SeedSet.from_table(kept), as_bytes, signals).table.num_rows == 3
    # The same path with another picture behind it is not the model's seed.
    (tmp_path / "creatives" / "seed.jpg").write_bytes(_jpeg(8))
    with pytest.raises(SchemaError, match="seed 's1' differs from the model's seed"):
        add_seeds(SeedSet.from_table(kept), pictured, signals)


def test_a_verdict_files_own_columns_join_the_history(loop, tmp_path):
    """Who decided and when (``reviewer``, ``reviewed_at``, notes) were dropped without a word
    (an outsider's report): kept in the new history rows; the queue's columns copied back
    beside a verdict are the sweep's, not kept; a column the history types otherwise is read as
    its type, or left out with a warning."""
    root, queue = loop
    ids = queue["item_id"].to_pylist()[:3]
    when = pa.array([1_733_392_800_000_000] * 3, pa.timestamp("us", "UTC"))
    verdicts = pa.table(
        {
            "item_id": ids,
            "verdict": [2, 0, 2],
            "reviewer": ["bob", "bob", "ann"],
            "reviewed_at": when,
            "risk_probability": [0.9, 0.8, 0.7],  # copied back from the queue
            "": ["0", "1", "2"],  # a pandas index written to CSV (df.to_csv)
            "__index_level_0__": [7, 8, 9],
            "image_path": ["note-1.png", None, None],  # content is the item's, not the file's
        }
    )
    _import(verdicts, root, tmp_path / "v2")
    hist = pq.read_table(tmp_path / "v2" / "history.parquet")
    new = hist.filter(pc.is_in(hist["item_id"], pa.array(ids)))
    assert new["reviewer"].to_pylist() == ["bob", "bob", "ann"]
    assert new["reviewed_at"].type == pa.timestamp("us", "UTC")
    assert not {"risk_probability", "", "__index_level_0__"} & set(hist.column_names)
    assert (
        "image_path" not in hist.column_names or "note-1.png" not in hist["image_path"].to_pylist()
    )
    assert hist.num_rows > new.num_rows and hist["reviewer"].null_count == hist.num_rows - 3
    # A later file (CSV: text) whose times read as the history's type; one whose do not.
    model_v2 = pq.read_table(tmp_path / "v2" / "history.parquet")
    assert model_v2.schema.field("reviewed_at").type == pa.timestamp("us", "UTC")
    from riskrank.rank.review import _reviewer_columns

    later = pa.table({"item_id": ["x"], "verdict": [1], "reviewed_at": ["2026-12-05T10:00:00Z"]})
    rows = pa.table({"row": [0]})
    base = pa.table({"item_id": ["x"], "verdict": pa.array([1], pa.int8())})
    read = _reviewer_columns(base, rows, later, model_v2, [])
    assert read["reviewed_at"].type == pa.timestamp("us", "UTC")
    bad = later.set_column(2, "reviewed_at", pa.array(["last tuesday"]))
    assert "reviewed_at" not in _reviewer_columns(base, rows, bad, model_v2, []).column_names


def test_a_batch_id_stays_unique_after_a_retrain_from_scratch(
    loop, seeds, inventory_items, text_signal, tmp_path
):
    """A model trained from scratch on an imported history is version 1 again, and its next
    import named its batch ``review-v2`` as the older one was: two review rounds in one
    ranking group (sweep_id x policy; an outsider's loop)."""
    root, queue = loop
    first = _import(
        pa.table({"item_id": queue["item_id"].to_pylist()[:5], "verdict": [2] * 5}),
        root, tmp_path / "h1",
    )  # fmt: skip
    assert set(first.imported["verdict_source"].to_pylist()) == {"item"}
    history = first.history
    assert "review-v2" in set(history["sweep_id"].to_pylist())
    train(history, seeds, tmp_path / "fresh", signals=[text_signal], k=200, show_progress=False)
    inv = inventory_items.drop(["label"])
    sweep(inv, seeds, tmp_path / "fresh", out_dir=tmp_path / "d2", k=200, show_progress=False,
          explore=0)  # fmt: skip
    queue2 = pq.read_table(tmp_path / "d2" / "queue.parquet")
    second = import_verdicts(
        pa.table({"item_id": queue2["item_id"].to_pylist()[:3], "verdict": [0] * 3}),
        tmp_path / "d2" / "queue.parquet", tmp_path / "fresh", out_dir=tmp_path / "h2",
        retrain=False,
    )  # fmt: skip
    new = set(second.imported["item_id"].to_pylist())
    rows = zip(second.history["item_id"].to_pylist(), second.history["sweep_id"].to_pylist())
    batches = {b for i, b in rows if i in new}
    assert batches == {"review-v2-2"}


def test_nothing_imported_counts_rows_and_item_verdicts_apart(loop, inventory_items, tmp_path):
    """The refusal said "all 56 rows were quarantined" and listed one reason per campaign
    member (an outsider added up 100 reasons under 56 rows)."""
    root, queue = loop
    cid, members = _campaign(queue)
    gone = inventory_items.filter(
        pc.invert(pc.is_in(inventory_items["item_id"], pa.array(members)))
    )
    with pytest.raises(SchemaError) as refused:  # every member taken down since the sweep
        import_verdicts(
            pa.table({"campaign_id": [cid], "verdict": [2]}), root / "day1" / "queue.parquet",
            root / "v1", out_dir=tmp_path / "v2", inventory=gone.drop(["label"]),
        )  # fmt: skip
    said = str(refused.value)
    assert f"all 1 rows ({len(members)} item verdicts) were quarantined" in said, said


def test_an_import_reads_text_as_the_model_that_made_the_queue(
    tmp_path, history, seeds, hashing_signal, monkeypatch
):
    """A model from before reviews read the text as seen marks a CRLF re-export ``changed``
    and queues it; its import read the same texts as seen and refused the re-reviews as
    unchanged, so the model was never retrained into the new reading (a reviewer's repro)."""
    from conftest import train_small

    import riskrank.rank.review as review_mod

    hist = history.set_column(
        1, "text", pa.array([t.replace(" ", "\n", 1) for t in history["text"].to_pylist()])
    )
    train_small(hist, seeds, tmp_path / "m", hashing_signal)
    old = hist.slice(3, 1).to_pylist()[0]
    crlf = old["text"].replace("\n", "\r\n")
    queue = _one_item_queue(old["item_id"], crlf)
    inventory = pa.table({"item_id": [old["item_id"]], "text": [crlf]})
    verdict = pa.table({"item_id": [old["item_id"]], "verdict": [3 - old["verdict"]]})
    kw = dict(inventory=inventory, retrain=False)
    res = import_verdicts(verdict, queue, tmp_path / "m", out_dir=tmp_path / "a", **kw)
    assert res.replaced == 0 and "content unchanged" in res.quarantine["reason"][0].as_py()
    monkeypatch.setattr(review_mod, "reads_text_as_seen", lambda reviewed: False)
    res = import_verdicts(verdict, queue, tmp_path / "m", out_dir=tmp_path / "b", **kw)
    assert res.replaced == 1 and res.quarantine.num_rows == 0


def _jpeg(seed: int) -> bytes:
    """A 64x64 picture of noise, as JPEG bytes (one per seed)."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG")
    return buf.getvalue()

"""Daily sweeps over one standing index (issue 12): whatever sequence of additions, edits,
take-downs and new seeds came before, a sweep's queue equals a from-scratch sweep of the same
final inventory, item by item; new seeds run retroactively without re-embedding."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_items
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import riskrank as rr
from riskrank.index.build import build_index
from riskrank.index.standing import StandingIndex
from riskrank.index.store import IndexMismatchError
from riskrank.rank.app.cli import main
from riskrank.rank.evaluation.report import write_report, write_sweep_reports
from riskrank.rank.model import RiskModel
from riskrank.rank.pipeline import sweep
from riskrank.rank.reasons import EXPLANATION_SCHEMA

SWEEP = dict(k=200, show_progress=False, chunk_size=32)
NEW_SEEDS = [
    "Work from home and earn $5000 a week, no experience needed",
    "Your account is suspended, verify your password at this link",
    "Cheap prescription pills shipped overnight without a prescription",
]


def assert_same_queue(got, want) -> None:
    assert got.queue["item_id"].to_pylist() == want.queue["item_id"].to_pylist()
    assert got.queue["policy"].to_pylist() == want.queue["policy"].to_pylist()
    np.testing.assert_array_equal(
        got.queue["risk_probability"].to_numpy(), want.queue["risk_probability"].to_numpy()
    )
    for key in ("items_in", "items_indexed", "items_quarantined", "candidates", "queued"):
        assert got.report[key] == want.report[key], key
    # Every piece of evidence, bit for bit: a standing index's sweeps take neighbourhoods
    # (recall/neighbours.py) and campaign links (rank/sweep_cache.py) from the last sweep.
    assert got.candidates.column_names == want.candidates.column_names
    for name in got.candidates.column_names:
        a, b = got.candidates[name].to_pylist(), want.candidates[name].to_pylist()
        assert all(x == y or (x != x and y != y) for x, y in zip(a, b, strict=True)), name
    for name in ("campaign_id", "campaign_size", "campaign_rank", "slot", "slot_reason"):
        assert got.queue[name].to_pylist() == want.queue[name].to_pylist(), name
    # Reasons too: a standing index's sweeps reuse the last sweep's phrase attributions
    # (rank/reasons_cache.py), a fresh sweep computes them all.
    for name in EXPLANATION_SCHEMA.names:
        a, b = got.queue[name].to_pylist(), want.queue[name].to_pylist()
        assert all(x == y or (x != x and y != y) for x, y in zip(a, b, strict=True)), name


def _pool() -> pa.Table:
    """Items the steps draw from: ads, and texts to edit them into."""
    return make_items(60, 120, prefix="p", seed=11).drop(["label"])


def _apply(inv: pa.Table, step: tuple, pool: pa.Table, counter: list[int]) -> pa.Table:
    kind, amount = step
    n = inv.num_rows
    if kind == "add":
        start = counter[0] % pool.num_rows
        take = [(start + i) % pool.num_rows for i in range(amount)]
        rows = pool.take(pa.array(take)).to_pylist()
        for r in rows:
            counter[0] += 1
            r["item_id"] = f"new-{counter[0]}"
        return pa.concat_tables([inv, pa.Table.from_pylist(rows, schema=inv.schema)])
    if kind == "change" and n:
        texts = inv["text"].to_pylist()
        for i in range(min(amount, n)):
            texts[(i * 7) % n] = pool["text"][(counter[0] + i) % pool.num_rows].as_py() + " (ed)"
        counter[0] += amount
        return inv.set_column(inv.schema.get_field_index("text"), "text", pa.array(texts))
    if kind == "delete" and n > amount:
        return inv.filter(pa.array([(i * 5) % n >= amount for i in range(n)]))
    return inv


steps = st.lists(
    st.tuples(
        st.sampled_from(["add", "change", "delete", "new_seed", "new_policy"]), st.integers(1, 12)
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=steps)
def test_any_sequence_of_updates_equals_a_fresh_sweep(
    steps, tmp_path_factory, inventory_items, seeds, hashing_model, hashing_signal
):
    root = tmp_path_factory.mktemp("daily")
    standing = root / "standing"
    inv, pool, counter = inventory_items.drop(["label"]), _pool(), [0]
    day_seeds = seeds
    sweep(inv, day_seeds, hashing_model, out_dir=root / "day0", index_dir=standing, **SWEEP)
    for day, step in enumerate(steps, start=1):
        if step[0] in ("new_seed", "new_policy"):
            # A new policy's day takes the others' rows from the last sweep (policy_memo).
            policy = "scam" if step[0] == "new_seed" else f"policy{day}"
            row = {"seed_id": f"x{day}", "policy": policy, "text": NEW_SEEDS[day % 3]}
            day_seeds = pa.concat_tables(
                [day_seeds, pa.Table.from_pylist([row]).cast(day_seeds.select(list(row)).schema)],
                promote_options="default",
            )
        inv = _apply(inv, step, pool, counter)
        today = sweep(
            inv, day_seeds, hashing_model, out_dir=root / f"d{day}", index_dir=standing, **SWEEP
        )
        scratch = sweep(inv, day_seeds, hashing_model, out_dir=root / f"s{day}", **SWEEP)
        assert_same_queue(today, scratch)
        # After every step the standing index holds what a rebuild of the day would.
        got = StandingIndex(standing).load()
        fresh = build_index(inv, root / f"ref{day}", signals=[hashing_signal], show_progress=False)
        assert list(got.signals["text"].ids) == list(fresh.signals["text"].ids)
        np.testing.assert_array_equal(
            np.asarray(got.signals["text"].vectors), np.asarray(fresh.signals["text"].vectors)
        )
    last = sweep(inv, day_seeds, hashing_model, out_dir=root / "last", index_dir=standing, **SWEEP)
    assert last.report["index_update"] == {}  # same inventory again: nothing to do
    scratch = sweep(inv, day_seeds, hashing_model, out_dir=root / "scratch", **SWEEP)
    assert_same_queue(last, scratch)


def test_day_two_reports_what_it_embedded(tmp_path, inventory_items, seeds, hashing_model):
    inv = inventory_items.drop(["label"])
    day0 = sweep(inv, seeds, hashing_model, out_dir=tmp_path / "d0", index_dir=tmp_path / "st")
    assert day0.report["index_update"]["added"] == inv.num_rows
    edited = inv.set_column(
        1,
        "text",
        pa.array(
            [f"edited {i}: {t}" if i < 3 else t for i, t in enumerate(inv["text"].to_pylist())]
        ),
    )
    day1 = sweep(edited, seeds, hashing_model, out_dir=tmp_path / "d1", index_dir=tmp_path / "st")
    upd = day1.report["index_update"]
    assert (upd["changed"], upd["added"], upd["removed"], upd["embedded"]) == (3, 0, 0, 3)
    assert upd["reused_vectors"] == inv.num_rows - 3
    # The reports a reviewer lead reads say it too, not only report.json.
    paths = write_sweep_reports(day1, seeds)
    md = paths["markdown"].read_text()
    assert "## Standing index update (version 2)" in md
    assert "| changed (some signal's content) | 3 |" in md and "| vectors reused |" in md
    html = paths["html"].read_text()
    assert 'id="index-update"' in html and "Standing index update (version 2)" in html
    assert "coverage (recalled / indexed)" in md and "coverage (recalled / indexed)" in html
    day0_md = write_sweep_reports(day0, seeds)["markdown"].read_text()
    assert "## Standing index update (version 1)" in day0_md
    # The reasons of unchanged texts were not attributed again.
    reasons = day1.report["reasons"]
    assert day0.report["reasons"]["reused"] == 0 and reasons["reused"] > 0
    assert 0 < reasons["attributed"] < day0.report["reasons"]["attributed"]
    # The same day run again (as after a sweep killed once its update had committed): it
    # embeds nothing, and its report still says what made the version it searched.
    again = sweep(edited, seeds, hashing_model, out_dir=tmp_path / "d1b", index_dir=tmp_path / "st")
    assert again.report["index_update"] == {}
    made = again.report["index_up_to_date"]
    assert (made["version"], made["changed"], made["embedded"]) == (2, 3, 3)
    md = write_sweep_reports(again, seeds)["markdown"].read_text()
    assert "## Standing index (version 2): up to date" in md and "already held this" in md
    assert "| changed (some signal's content) | 3 |" in md
    # New seeds only, no inventory: said so too.
    st = tmp_path / "st"
    seeds_only = sweep(None, seeds, hashing_model, out_dir=tmp_path / "d1c", index_dir=st)
    md = write_sweep_reports(seeds_only, seeds)["markdown"].read_text()
    assert "only the seeds were embedded" in md


def test_unreadable_or_foreign_caches_only_mean_the_work_is_done_again(
    tmp_path, inventory_items, seeds, hashing_model
):
    inv = inventory_items.drop(["label"])
    st = tmp_path / "st"
    sweep(inv, seeds, hashing_model, out_dir=tmp_path / "d0", index_dir=st, **SWEEP)
    for name in ("neighbours.parquet", "links.parquet", "policies.parquet"):
        assert (st / "cache" / name).exists()
    (st / "cache" / "neighbours.parquet").write_bytes(b"not parquet")
    (st / "cache" / "policies.parquet").write_bytes(b"not parquet")
    pq.write_table(pa.table({"x": [1]}), st / "cache" / "links.parquet")
    edited = inv.set_column(
        1,
        "text",
        pa.array([f"edited: {t}" if i < 5 else t for i, t in enumerate(inv["text"].to_pylist())]),
    )
    warned = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warned.append(record.getMessage())
    logging.getLogger("riskrank").addHandler(handler)
    try:
        got = sweep(edited, seeds, hashing_model, out_dir=tmp_path / "d1", index_dir=st, **SWEEP)
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    assert any("ignoring the neighbours cache" in w for w in warned), warned
    assert any("ignoring the campaign links cache" in w for w in warned), warned
    assert any("ignoring the policies cache" in w for w in warned), warned
    assert_same_queue(got, sweep(edited, seeds, hashing_model, out_dir=tmp_path / "s", **SWEEP))


def test_new_seeds_run_retroactively_without_embedding_inventory(
    tmp_path, inventory_items, seeds, hashing_model, monkeypatch
):
    inv = inventory_items.drop(["label"])
    sweep(inv, seeds, hashing_model, out_dir=tmp_path / "d0", index_dir=tmp_path / "st", **SWEEP)
    new = pa.table({"seed_id": ["n1"], "policy": ["scam"], "text": [NEW_SEEDS[0]]})
    more = pa.concat_tables([seeds, new], promote_options="default")
    embedded = []
    model_signal = type(hashing_model.signals[0])
    real = model_signal.embed_items

    def counting(self, table, **kw):
        embedded.append(table.num_rows)
        return real(self, table, **kw)

    monkeypatch.setattr(model_signal, "embed_items", counting)
    retro = sweep(None, more, hashing_model, out_dir=tmp_path / "r", index_dir=tmp_path / "st")
    # Only the seeds were embedded (embed_queries -> embed_items, 4 rows), no inventory.
    assert embedded == [more.num_rows] and retro.report["index_update"] == {}
    monkeypatch.setattr(model_signal, "embed_items", real)
    assert_same_queue(retro, sweep(inv, more, hashing_model, out_dir=tmp_path / "f", **SWEEP))


def test_a_new_policy_s_day_recalls_and_scores_only_the_new_policy(
    tmp_path, inventory_items, seeds, hashing_model, monkeypatch
):
    """Issue 12's day 2: a new policy over an inventory that did not move. The policy whose
    index version, seeds and model are unchanged takes its rows from the last sweep
    (rank/policy_memo.py); the queue, every evidence column and the reasons equal a sweep of
    everything from scratch."""
    from riskrank.rank import engine as engines
    from riskrank.rank.policy_memo import FILE

    inv = inventory_items.drop(["label"])
    st_dir = tmp_path / "st"
    sweep(inv, seeds, hashing_model, out_dir=tmp_path / "d0", index_dir=st_dir, **SWEEP)
    phish = pa.table({"seed_id": ["p1", "p2"], "policy": ["phish"] * 2, "text": NEW_SEEDS[1:]})
    both = pa.concat_tables([seeds, phish], promote_options="default")
    recalled, scored = [], []
    real_recall, real_score = engines.recall, engines.LocalSweepEngine.score

    def recall(index, day_seeds, **kw):
        recalled.append(sorted(set(day_seeds.table["policy"].to_pylist())))
        return real_recall(index, day_seeds, **kw)

    def score(self, ranker, cands, **kw):
        scored.append(sorted(set(cands["policy"].to_pylist())))
        return real_score(self, ranker, cands, **kw)

    monkeypatch.setattr(engines, "recall", recall)
    monkeypatch.setattr(engines.LocalSweepEngine, "score", score)
    before = pq.read_table(st_dir / "cache" / "neighbours.parquet")
    day2 = sweep(None, both, hashing_model, out_dir=tmp_path / "d2", index_dir=st_dir, **SWEEP)
    assert day2.report["policies_reused"] == ["scam"]
    assert recalled == [["phish"]] and scored == [["phish"]]
    # The reused policy's neighbourhoods stay for the next day (else searched whole again).
    after = pq.read_table(st_dir / "cache" / "neighbours.parquet")
    kept = {i for i, n in zip(before["item_id"].to_pylist(), before["neighbours"].to_pylist()) if n}
    now = {i for i, n in zip(after["item_id"].to_pylist(), after["neighbours"].to_pylist()) if n}
    assert kept and kept <= now
    # The same day again: both policies reused, nothing recalled or scored.
    recalled.clear(), scored.clear()
    again = sweep(None, both, hashing_model, out_dir=tmp_path / "d2b", index_dir=st_dir, **SWEEP)
    assert again.report["policies_reused"] == ["phish", "scam"] and recalled == scored == []
    # A changed seed is its policy's new day; other k, another recall.
    edited = both.set_column(
        2, "text", pa.array(["Replica watches"] + both["text"].to_pylist()[1:])
    )
    recalled.clear()
    day3 = sweep(None, edited, hashing_model, out_dir=tmp_path / "d3", index_dir=st_dir, **SWEEP)
    assert day3.report["policies_reused"] == ["phish"] and recalled == [["scam"]]
    recalled.clear()
    other_k = {**SWEEP, "k": 150}
    day4 = sweep(None, edited, hashing_model, out_dir=tmp_path / "d4", index_dir=st_dir, **other_k)
    assert "policies_reused" not in day4.report and recalled == [["phish", "scam"]]
    assert (st_dir / FILE).exists()
    monkeypatch.undo()
    assert_same_queue(day2, sweep(inv, both, hashing_model, out_dir=tmp_path / "f2", **SWEEP))
    assert_same_queue(again, day2)
    assert_same_queue(day3, sweep(inv, edited, hashing_model, out_dir=tmp_path / "f3", **SWEEP))


def test_a_policies_cache_that_lost_columns_or_rows_is_ignored(
    tmp_path, inventory_items, seeds, hashing_model, hashing_signal
):
    """An outsider's finding: a file rewritten by another tool that kept the stamp but lost a
    score column broke the sweep (KeyError), and one that lost a policy's rows dropped that
    policy from the queue silently. Both are now ignored with a warning."""
    from riskrank.rank.policy_memo import FILE, signals_digest

    inv = inventory_items.drop(["label"])
    phish = pa.table({"seed_id": ["p1"], "policy": ["phish"], "text": NEW_SEEDS[1:2]})
    both = pa.concat_tables([seeds, phish], promote_options="default")
    st_dir = tmp_path / "st"
    want = sweep(inv, both, hashing_model, out_dir=tmp_path / "d0", index_dir=st_dir, **SWEEP)
    kept = pq.read_table(st_dir / FILE)
    stamp = json.loads(kept.schema.metadata[b"memo"])
    bare = json.dumps({k: v for k, v in stamp.items() if k != "policies"})
    damaged = {
        "a column": (kept.drop(["__memo_contributions"]), kept.schema.metadata),
        "rows": (kept.filter(pa.compute.equal(kept["policy"], "phish")), kept.schema.metadata),
        "its stamp's policies": (kept, {b"memo": bare.encode()}),
    }
    for what, (table, metadata) in damaged.items():
        pq.write_table(table.replace_schema_metadata(metadata), st_dir / FILE)
        warned = []
        handler = logging.Handler(logging.WARNING)
        handler.emit = lambda record, said=warned: said.append(record.getMessage())
        logging.getLogger("riskrank").addHandler(handler)
        try:
            got = sweep(
                None, both, hashing_model, out_dir=tmp_path / what, index_dir=st_dir, **SWEEP
            )
        finally:
            logging.getLogger("riskrank").removeHandler(handler)
        assert any("ignoring the policies cache" in w for w in warned), (what, warned)
        assert "policies_reused" not in got.report
        assert_same_queue(got, want)
    # A plug-in signal's own source is part of the key (its evidence code is not riskrank's).
    assert signals_digest([hashing_signal]) != signals_digest([])


def test_a_model_reading_a_signal_the_standing_index_lacks_is_refused_retroactively(
    tmp_path, inventory_items, seeds, history, hashing_model, hashing_signal
):
    # Its evidence columns came out all NaN, and the model ranked without them, with no word
    # (an outsider's report: a trigram model over a text index queued 30).
    from riskrank.index.signals import PdqSignal
    from riskrank.rank.pipeline import train
    from riskrank.rank.ranker import RiskRanker

    inv = inventory_items.drop(["label"])
    sweep(inv, seeds, hashing_model, index_dir=tmp_path / "st", **SWEEP)
    both = train(
        history, seeds, tmp_path / "both", signals=[hashing_signal, PdqSignal()], k=200,
        ranker=RiskRanker(n_estimators=50, n_jobs=1), lexical_probe=False, show_progress=False,
    )  # fmt: skip
    with pytest.raises(IndexMismatchError, match=r"signal\(s\) \['pdq'\].*holds \['text'\]"):
        sweep(None, seeds, both, out_dir=tmp_path / "r", index_dir=tmp_path / "st", **SWEEP)
    assert not (tmp_path / "r").exists()
    # Refused before it touches the outputs: the last run there stays marked complete (the
    # first check ran after the marker was removed, a reviewer found).
    sweep(None, seeds, hashing_model, out_dir=tmp_path / "r", index_dir=tmp_path / "st", **SWEEP)
    with pytest.raises(IndexMismatchError):
        sweep(None, seeds, both, out_dir=tmp_path / "r", index_dir=tmp_path / "st", **SWEEP)
    assert rr.sweep_complete(tmp_path / "r")
    # With today's inventory the update embeds the signal, and the sweep runs.
    today = sweep(inv, seeds, both, index_dir=tmp_path / "st", **SWEEP)
    assert today.report["index_update"]["signals"]["pdq"]
    assert StandingIndex(tmp_path / "st").load([hashing_signal, PdqSignal()]).signals.keys() == {
        "text",
        "pdq",
    }


def test_a_retroactive_sweep_reads_reviewed_pictures_where_the_update_did(
    tmp_path, history, seeds, hashing_signal
):
    """A sweep without an inventory over an index whose pictures came as ``image_path``,
    given no image folder, could not read the reviewed items' picture files: every one was
    "changed since" its review and queued again, without a word (an outsider's retroactive
    sweep: 181 such rows where a sweep from scratch had 8). It reads them where the update
    that made the version did; told a folder that lacks them, it says so."""
    import io

    from PIL import Image

    from riskrank.index.signals import PdqSignal
    from riskrank.rank.pipeline import train
    from riskrank.rank.ranker import RiskRanker

    folder = tmp_path / "creatives"
    folder.mkdir()
    pictured = history["item_id"].to_pylist()[::3]
    for n, item_id in enumerate(pictured):
        pixels = np.random.default_rng(n).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG")
        (folder / f"{item_id}.jpg").write_bytes(buf.getvalue())
    paths = [f"{i}.jpg" if i in pictured else None for i in history["item_id"].to_pylist()]
    reviewed = history.append_column("image_path", pa.array(paths, pa.string()))
    signals = [hashing_signal, PdqSignal(base_dir=folder)]
    train(
        reviewed, seeds, tmp_path / "m", signals=signals, k=200,
        ranker=RiskRanker(n_estimators=50, n_jobs=1), lexical_probe=False, show_progress=False,
    )  # fmt: skip
    model = tmp_path / "m"  # as a daily job loads it: its signals name no folder
    new = [f"new-{n}" for n in range(6)]
    for n, item_id in enumerate(new):
        pixels = np.random.default_rng(100 + n).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{item_id}.png")
    inv = pa.concat_tables([
        reviewed.select(["item_id", "text", "image_path"]),
        pa.table({"item_id": new, "text": [f"replica watches, offer {n}" for n in range(6)],
                  "image_path": [f"{i}.png" for i in new]}),
    ])  # fmt: skip
    st = tmp_path / "st"
    today = sweep(inv, seeds, model, index_dir=st, image_base_dir=folder, include_reviewed=True,
                  out_dir=tmp_path / "d1", **SWEEP)  # fmt: skip

    def status(result):
        c = result.candidates
        return dict(zip(c["item_id"].to_pylist(), c["reviewed"].to_pylist()))

    assert {s for i, s in status(today).items() if i not in new} == {"unchanged"}
    # An import of verdicts on that queue, told no folder, reads the pictures where the
    # sweep's version did: every verdict on a picture given by path was quarantined.
    from riskrank.rank.review import import_verdicts

    queued = [i for i in today.queue["item_id"].to_pylist() if i in new]
    assert queued
    done = import_verdicts(
        pa.table({"item_id": queued, "verdict": [2] * len(queued)}), tmp_path / "d1" /
        "queue.parquet", model, out_dir=tmp_path / "m2", retrain=False,
    )  # fmt: skip
    assert done.quarantine.num_rows == 0, done.quarantine["reason"].to_pylist()
    assert sorted(done.imported["item_id"].to_pylist()) == sorted(queued)
    retro = sweep(None, seeds, model, index_dir=st, include_reviewed=True, **SWEEP)
    assert status(retro) == status(today)
    assert retro.queue["item_id"].to_pylist() == today.queue["item_id"].to_pylist()
    # An index written before versions kept the digests of picture files (simulated).
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(  # (its inventory holds no picture bytes)
            "riskrank.index.standing.picture_shas", lambda table, dirs: [None] * table.num_rows
        )
        sweep(inv, seeds, model, index_dir=tmp_path / "old", image_base_dir=folder, **SWEEP)
    # The update kept each picture file's digest: with the folder gone, or another folder
    # given, the reviewed pictures are still the ones the index holds (they were "changed
    # since" their review and queued again, with a warning: an outsider's report).
    shutil.rmtree(folder)
    for where in (None, tmp_path):
        gone = sweep(None, seeds, model, index_dir=st, image_base_dir=where,
                     include_reviewed=True, **SWEEP)  # fmt: skip
        assert status(gone) == status(today)
        assert gone.queue["item_id"].to_pylist() == today.queue["item_id"].to_pylist()
        assert not [w for w in gone.report["warnings"] if "were not found" in w]
    # The index written before: the model keeps the picture each review saw, so the items are
    # still as reviewed; that their files are gone is said.
    warned = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warned.append(record.getMessage())
    logging.getLogger("riskrank").addHandler(handler)
    try:
        old = sweep(None, seeds, model, index_dir=tmp_path / "old", include_reviewed=True,
                    **SWEEP)  # fmt: skip
        # A model trained before it kept them too: changed, and said.
        older = RiskModel.load(model)
        older.reviewed = older.reviewed.drop(["image_sha256", "image_path"])
        wrong = sweep(None, seeds, older, index_dir=tmp_path / "old", include_reviewed=True,
                      **SWEEP)  # fmt: skip
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    assert status(old) == status(today)
    n = len(set(pictured) & set(status(old)))
    said = f"the picture files of {n} reviewed items were not found"
    assert [w for w in old.report["warnings"] if said in w and "count as unchanged" in w]
    changed = {i for i, s in status(wrong).items() if s == "changed"}
    assert changed == set(pictured) & set(status(wrong))
    said = f"the picture files of {len(changed)} reviewed items were not found"
    told = [w for w in warned if said in w and "count as changed" in w]
    assert len(told) == 1, warned  # logged once,
    assert any(said in w and "count as changed" in w for w in wrong.report["warnings"])


def test_a_reviewed_picture_ad_whose_file_a_retention_job_removed_stays_as_reviewed(
    tmp_path, history, seeds, hashing_signal
):
    """Ads keep their ``image_path`` into a dated folder, which a retention job removes after
    a few days while the ads run on: every reviewed picture ad was "changed since" its review
    and queued again at the top (an outsider's week: 281 confirmed violations, 52 of the top
    60 rows). Its text and path as reviewed, it counts as unchanged (the model keeps the
    picture each review saw), on a standing index and from scratch alike; a path that names
    another missing file is a change."""
    import io

    from PIL import Image

    from riskrank.index.signals import PdqSignal
    from riskrank.rank.pipeline import train
    from riskrank.rank.ranker import RiskRanker

    folder = tmp_path / "creatives"
    pictured = history["item_id"].to_pylist()[::3]
    path_of = {i: f"day{1 + n % 2}/{i}.jpg" for n, i in enumerate(pictured)}
    for n, item_id in enumerate(pictured):
        pixels = np.random.default_rng(n).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG")
        (folder / path_of[item_id]).parent.mkdir(parents=True, exist_ok=True)
        (folder / path_of[item_id]).write_bytes(buf.getvalue())
    gone = {i for i in pictured if path_of[i].startswith("day1/")}
    paths = [path_of.get(i) for i in history["item_id"].to_pylist()]
    reviewed = history.append_column("image_path", pa.array(paths, pa.string()))
    signals = [hashing_signal, PdqSignal(base_dir=folder)]
    model = train(
        reviewed, seeds, tmp_path / "m", signals=signals, k=200,
        ranker=RiskRanker(n_estimators=50, n_jobs=1), lexical_probe=False, show_progress=False,
    )  # fmt: skip
    inv = reviewed.select(["item_id", "text", "image_path"])

    def day(name, inventory, index_dir):
        return sweep(inventory, seeds, model, index_dir=index_dir, image_base_dir=folder,
                     include_reviewed=True, out_dir=tmp_path / name, **SWEEP)  # fmt: skip

    def status(result):
        c = result.candidates
        return dict(zip(c["item_id"].to_pylist(), c["reviewed"].to_pylist()))

    first = day("d1", inv, tmp_path / "st")
    assert set(status(first).values()) == {"unchanged"}
    shutil.rmtree(folder / "day1")  # the retention job (day 2's folder stays)
    moved = pictured[0]  # its export row now names another file, not there either
    inv2 = inv.set_column(2, "image_path", pa.array(
        [f"day9/{i}.jpg" if i == moved else p for i, p in zip(inv["item_id"].to_pylist(), paths)],
        pa.string(),
    ))  # fmt: skip
    standing = day("d2", inv2, tmp_path / "st")
    scratch = day("d2-scratch", inv2, tmp_path / "fresh")
    assert_same_queue(standing, scratch)
    for result in (standing, scratch):
        got = status(result)
        assert {i for i, s in got.items() if s == "changed"} == {moved} & set(got)
        assert {s for i, s in got.items() if i != moved} == {"unchanged"}
        kept = len((gone - {moved}) & set(got))
        said = f"the picture files of {kept} reviewed items were not found"
        assert [w for w in result.report["warnings"] if said in w and "count as unchanged" in w]


def test_cli_updates_a_standing_index_and_sweeps_it_retroactively(
    tmp_path, inventory_items, seeds, hashing_model, capsys
):
    inv = inventory_items.drop(["label"])
    pq.write_table(inv, tmp_path / "inv.parquet")
    pq.write_table(seeds, tmp_path / "seeds.parquet")
    gone = inv["item_id"][0].as_py()
    # A CSV with an item_id column, as --help says (ids read as text).
    (tmp_path / "delete.csv").write_text(f"item_id,why\n{gone},taken down\nnever-indexed,x\n")
    st_dir = tmp_path / "st"
    argv = ["index", "update", "--inventory", str(tmp_path / "inv.parquet"), "--index", str(st_dir)]
    argv += ["--signals", "test_hashing_text", "--delete", str(tmp_path / "delete.csv")]
    # Chunks a killed update keeps: settable (one chunk of 2,048 held a whole day's update).
    with pytest.raises(SystemExit) as refused:
        main([*argv, "--chunk-size", "0"])
    assert refused.value.code == 2
    assert "--chunk-size: expected a positive integer" in capsys.readouterr().err
    assert not st_dir.exists()
    assert main([*argv, "--chunk-size", "7"]) == 0
    out = capsys.readouterr().out
    assert "version 1" in out and "deletions never indexed" in out
    made = json.loads((st_dir / "standing.json").read_text())["update"]
    assert made["chunks"] == -(-made["embedded"] // 7) > 1, made  # (copies embedded once)
    assert gone not in set(StandingIndex(st_dir).load().items["item_id"].to_pylist())
    argv = ["sweep", "--index", str(st_dir), "--seeds", str(tmp_path / "seeds.parquet")]
    model_dir = hashing_model.save(tmp_path / "model")
    argv += ["--model", str(model_dir), "--out", str(tmp_path / "sw"), "--k", "200"]
    assert main(argv) == 0
    out = capsys.readouterr().out  # the summary says the index was searched as it stands
    assert "standing index" in out and "version 1, up to date: no inventory item embedded" in out
    queue = pq.read_table(tmp_path / "sw" / "queue.parquet")
    assert queue.num_rows and gone not in set(queue["item_id"].to_pylist())
    # It reports what it swept, not the last update's deletion list.
    report = json.loads((tmp_path / "sw" / "report.json").read_text())
    assert report["items_deleted"] == 0 and report["items_in"] == inv.num_rows - 1
    assert report["items_in"] == report["items_indexed"] + report["items_quarantined"]
    # A deletion list without the inventory would be ignored: refused, naming what to do.
    (tmp_path / "more.txt").write_text(queue["item_id"][0].as_py() + "\n")
    assert (
        main([*argv[:-4], "--out", str(tmp_path / "sw2"), "--delete", str(tmp_path / "more.txt")])
        == 2
    )
    assert "a deletion list needs today's inventory" in capsys.readouterr().err
    assert not (tmp_path / "sw2" / "queue.parquet").exists()
    argv = ["sweep", "--seeds", "s", "--model", "m", "--out", str(tmp_path / "x")]
    assert main(argv) == 2
    assert "give --inventory" in capsys.readouterr().err
    # An update without --signals keeps the index's own: the default text dropped the CLIP
    # and PDQ vectors of a picture index (an outsider's report).
    update = ["index", "update", "--inventory", str(tmp_path / "inv.parquet"), "--index"]
    assert main([*update, str(st_dir)]) == 0
    assert [type(s).type_name for s in StandingIndex(st_dir).recorded_signals()] == [
        "test_hashing_text"
    ]
    assert gone in set(StandingIndex(st_dir).load().items["item_id"].to_pylist())  # (no list)


def test_rows_a_deletion_list_takes_out_are_counted(
    tmp_path, inventory_items, seeds, hashing_model
):
    inv = inventory_items.drop(["label"])
    gone = inv["item_id"][0].as_py()
    res = sweep(
        inv, seeds, hashing_model, out_dir=tmp_path / "d", index_dir=tmp_path / "st",
        deletions=[gone, "never-indexed"], **SWEEP,
    )  # fmt: skip
    r = res.report
    # Every row of the file is accounted for: indexed, quarantined or deleted.
    assert (r["items_in"], r["items_deleted"]) == (inv.num_rows, 1)
    assert r["items_in"] == r["items_indexed"] + r["items_quarantined"] + r["items_deleted"]
    assert gone not in set(res.queue["item_id"].to_pylist())
    assert "| items deleted | 1 |" in write_report(tmp_path, r, res.queue).read_text()


def test_neighbourhoods_found_by_tasks_are_saved_as_one_recall_saves_them(
    tmp_path, inventory_items, seeds, hashing_model
):
    """The Ray engine's way (rank/ray_engine.py), without Ray: one pickled ``for_tasks`` copy
    of the memo per policy's recall, what each found folded back into the driver's memo."""
    import pickle
    import shutil

    from riskrank.recall.neighbours import FILE, NeighbourMemo
    from riskrank.recall.recaller import NEIGHBOUR_RULES, recall
    from riskrank.recall.seeds import SeedSet

    inv = inventory_items.drop(["label"])
    st = tmp_path / "st"
    sweep(inv, seeds, hashing_model, out_dir=tmp_path / "d0", index_dir=st, **SWEEP)
    texts = inv["text"].to_pylist()
    texts[:4] = [f"edited: {t}" for t in texts[:4]]
    index, _ = StandingIndex(st).update(
        inv.set_column(1, "text", pa.array(texts)), hashing_model.signals
    )
    for name in ("one", "tasks"):
        shutil.copy(st / FILE, tmp_path / f"{name}.parquet")
    one, driver = (
        NeighbourMemo(tmp_path / f"{n}.parquet", NEIGHBOUR_RULES) for n in ("one", "tasks")
    )
    # A second policy, so that two tasks find neighbourhoods (some of the same items).
    other = pa.table({"seed_id": ["n1", "n2"], "policy": ["phishing"] * 2, "text": NEW_SEEDS[:2]})
    seed_set = SeedSet.from_table(pa.concat_tables([seeds, other], promote_options="default"))
    whole = recall(index, seed_set, k=SWEEP["k"], show_progress=False, neighbours=one)
    parts = []
    for policy in seed_set.policies:
        copy = pickle.loads(pickle.dumps(driver.for_tasks(index)))
        assert all(view.ids is None for view in copy._now.values())
        parts.append(
            recall(
                index,
                SeedSet(seed_set.for_policy(policy)),
                k=SWEEP["k"],
                show_progress=False,
                neighbours=copy,
            )
        )
        driver.add_recorded(copy.recorded())
    one.save()
    driver.save()
    saved = pq.read_table(tmp_path / "one.parquet")
    assert saved.equals(pq.read_table(tmp_path / "tasks.parquet"))
    assert not saved.equals(pq.read_table(st / FILE))  # day 1's neighbourhoods, not day 0's
    cols = [c for c in whole.column_names if c.endswith(("_density", "_neighbour_sim"))]
    assert cols and pa.concat_tables(parts).select(cols).equals(whole.select(cols))


def test_the_queue_does_not_depend_on_the_exports_row_order(
    tmp_path, inventory_items, seeds, hashing_model
):
    """Copies of one ad under several ids score alike; their order, ranks and campaign ids
    must come from the items, not from how the export happened to order or split its rows."""
    inv = inventory_items.drop(["label"])
    copies = inv.slice(0, 6).set_column(0, "item_id", pa.array([f"copy-{i}" for i in range(6)]))
    inv = pa.concat_tables([inv, copies, copies.set_column(0, "item_id", pa.array(
        [f"again-{i}" for i in range(6)]))])  # fmt: skip
    shuffled = inv.take(pa.array(np.random.default_rng(3).permutation(inv.num_rows)))
    a = sweep(inv, seeds, hashing_model, out_dir=tmp_path / "a", **SWEEP)
    b = sweep(shuffled, seeds, hashing_model, out_dir=tmp_path / "b", **SWEEP)
    proba = a.queue["risk_probability"].to_numpy()
    assert len(set(proba)) < len(proba)  # there are ties to break
    for name in ("item_id", "policy", "rank", "risk_probability", "campaign_id", "campaign_rank"):
        assert a.queue[name].to_pylist() == b.queue[name].to_pylist(), name


def test_an_up_to_date_index_names_todays_files_in_the_quarantine(tmp_path, hashing_model, seeds):
    """The same rows exported under other file names find the index up to date; the
    quarantine the version was made with named yesterday's files (reviewed)."""
    rows = make_items(10, 20, prefix="u", seed=5).drop(["label"]).to_pylist()
    rows[12]["text"] = " "  # quarantined: no content
    rows.append(dict(rows[3]))  # an exact copy of row 3: quarantined, its reason names row 3
    mon, tue = tmp_path / "mon", tmp_path / "tue"
    for day, names in ((mon, ("part-0", "part-1")), (tue, ("a", "b"))):
        day.mkdir()
        for name, part in zip(names, (rows[:10], rows[10:])):
            pq.write_table(pa.Table.from_pylist(part), day / f"{name}.parquet")
    standing = tmp_path / "standing"
    first = sweep(mon, seeds, hashing_model, out_dir=tmp_path / "o1", index_dir=standing, **SWEEP)
    again = sweep(tue, seeds, hashing_model, out_dir=tmp_path / "o2", index_dir=standing, **SWEEP)
    assert "index_up_to_date" in again.report
    where = [(r["file"], r["file_row"], r["reason"]) for r in again.quarantine.to_pylist()]
    same = f"duplicate item_id '{rows[3]['item_id']}' (the same as row 3 ('{{}}' row 3))"
    assert [w[:2] for w in where] == [("b.parquet", 2), ("b.parquet", 20)]
    assert where[1][2] == same.format("a.parquet")
    assert [(r["file"], r["file_row"], r["reason"]) for r in first.quarantine.to_pylist()][1:] == [
        ("part-1.parquet", 20, same.format("part-0.parquet"))
    ]
    # A retroactive sweep (no inventory) keeps the version's names.
    retro = sweep(None, seeds, hashing_model, index_dir=standing, **SWEEP)
    assert [r["file"] for r in retro.quarantine.to_pylist()] == ["part-1.parquet"] * 2


def test_a_sweep_pins_the_version_it_reads_from_the_moment_it_has_it(
    tmp_path, inventory_items, seeds, hashing_model, monkeypatch
):
    """Ray's tasks open the version's files again by path: the pin was taken only as they
    started, after the seeds were embedded, so two updates before it pruned the version (a
    reviewer's finding). The sweep pins it as soon as the update or load returns."""
    from riskrank.rank import pipeline

    seen = []
    real = pipeline.recall_and_score

    def looking(engine, index, *a, **kw):
        seen.append(sorted(p.name for p in (index.path.parents[1] / ".readers").iterdir()))
        return real(engine, index, *a, **kw)

    monkeypatch.setattr(pipeline, "recall_and_score", looking)
    inv = inventory_items.drop(["label"])
    sweep(inv, seeds, hashing_model, index_dir=tmp_path / "st", show_progress=False)
    assert len(seen) == 1 and len(seen[0]) == 1 and seen[0][0].startswith("v000001.")
    assert not list((tmp_path / "st" / ".readers").iterdir())


def test_unknown_deletions_have_one_shape_in_every_json(
    tmp_path, inventory_items, seeds, hashing_model
):
    """``deletions_unknown`` was a list of ids in the report of a sweep that updated, and a
    count in ``standing.json`` and in the report of a sweep of the index as it stood."""
    inv = inventory_items.drop(["label"])
    st_dir = tmp_path / "st"
    gone = inv["item_id"][0].as_py()
    today = sweep(
        inv, seeds, hashing_model, index_dir=st_dir, deletions=[gone, "never-indexed"],
        out_dir=tmp_path / "d1", **SWEEP,
    )  # fmt: skip
    retro = sweep(None, seeds, hashing_model, index_dir=st_dir, **SWEEP)
    state = json.loads((st_dir / "standing.json").read_text())["update"]
    for made in (today.report["index_update"], retro.report["index_up_to_date"], state):
        assert made["deleted"] == 1
        assert made["deletions_unknown"] == 1
        assert made["deletions_unknown_ids"] == ["never-indexed"]
    written = json.loads((tmp_path / "d1" / "report.json").read_text())["index_update"]
    assert written["deletions_unknown"] == 1


def test_a_version_written_with_the_unknown_deletions_as_a_list_reads_in_today_s_shape(
    tmp_path,
):
    """``made_by`` turns an older manifest's list into the count and ids (untested before)."""
    from types import SimpleNamespace

    from riskrank.rank.pipeline import made_by

    old = {"standing": {"update": {"deleted": 1, "deletions_unknown": ["x", "y"]}}}
    index = SimpleNamespace(manifest={**old, "created_at": "2026-12-01T00:00:00Z"})
    made = made_by(index, tmp_path)
    assert made["deletions_unknown"] == 2 and made["deletions_unknown_ids"] == ["x", "y"]
    assert made["updated_at"] == "2026-12-01T00:00:00Z"


def test_fresh_items_far_below_a_stored_list_are_not_scored_and_change_nothing(
    tmp_path, inventory_items, seeds, hashing_model, monkeypatch
):
    """A daily sweep merges each stored neighbourhood with the nearest new items, scoring in
    float64 only those that float32 puts near the list's level (recall/recaller.py
    ``FLOAT32_SLACK``). Left-out pairs must change neither the evidence nor the neighbourhoods
    kept for the next day: the same as scoring every pair."""
    from riskrank.recall import recaller

    inv = inventory_items.drop(["label"])
    pool = _pool()
    added = pool.slice(0, 6).to_pylist()  # look-alikes of the inventory's ads, and strangers
    added += [{**added[0], "text": f"Жжжж щщщщ ыыыы {i}"} for i in range(6)]
    for i, r in enumerate(added):
        r["item_id"] = f"new-{i}"
    day1 = pa.concat_tables([inv, pa.Table.from_pylist(added, schema=inv.schema)])
    scored = []
    sparse = recaller._SignalState._sparse_pair_scores

    def spy(self, rows, nbrs):
        scored.append(((nbrs >= 0).sum(), nbrs.size))
        return sparse(self, rows, nbrs)

    monkeypatch.setattr(recaller._SignalState, "_sparse_pair_scores", spy)
    runs, slack_default = {}, recaller.FLOAT32_SLACK
    for slack in (slack_default, np.inf):  # np.inf: every proposed pair is scored
        monkeypatch.setattr(recaller, "FLOAT32_SLACK", slack)
        st = tmp_path / f"st{slack}"
        sweep(inv, seeds, hashing_model, out_dir=tmp_path / f"d0{slack}", index_dir=st, **SWEEP)
        scored.clear()
        runs[slack] = sweep(
            day1, seeds, hashing_model, out_dir=tmp_path / f"d1{slack}", index_dir=st, **SWEEP
        )
        runs[slack, "pairs"] = [sum(x) for x in zip(*scored)]
        runs[slack, "memo"] = pq.read_table(st / "cache" / "neighbours.parquet")
    kept, whole = runs[slack_default, "pairs"], runs[np.inf, "pairs"]
    assert whole[0] == whole[1] and 0 < kept[0] < whole[0], (kept, whole)
    assert_same_queue(runs[slack_default], runs[np.inf])
    assert runs[slack_default, "memo"].equals(runs[np.inf, "memo"])
    scratch = sweep(day1, seeds, hashing_model, out_dir=tmp_path / "scratch", **SWEEP)
    assert_same_queue(runs[slack_default], scratch)


def test_an_ivf_index_keeps_its_neighbourhoods_from_day_to_day(
    tmp_path, inventory_items, seeds, hashing_model, monkeypatch
):
    """Past 100,000 items the index is IVF, and every candidate's neighbourhood was searched
    whole each day (an outsider's 300,000-item week: recall 50 s with nothing to embed). Its
    stored lists now serve while the quantizer and nprobe stay (recall/neighbours.py
    ``search_space``): a day's evidence and the lists kept equal those of a sweep that
    searched every neighbourhood whole in the same updated index."""
    from riskrank.recall import recaller

    inv = inventory_items.drop(["label"])
    added = _pool().slice(0, 4).to_pylist()
    for i, r in enumerate(added):
        r["item_id"] = f"new-{i}"
    texts = inv["text"].to_pylist()
    texts[3] = texts[3] + " (edited)"
    day1 = pa.concat_tables(
        [
            inv.set_column(1, "text", pa.array(texts)).slice(2),
            pa.Table.from_pylist(added, schema=inv.schema),
        ]
    )
    ivf = {**SWEEP, "index_key": "IVF4,Flat"}
    whole = []
    merge = recaller._SignalState._merge_stored

    def spy(self, todo, hi):
        left = merge(self, todo, hi)
        whole.append((len(todo), len(left)))
        return left

    monkeypatch.setattr(recaller._SignalState, "_merge_stored", spy)
    more = _pool().slice(10, 3).to_pylist()
    for i, r in enumerate(more):
        r["item_id"] = f"more-{i}"
    day2 = pa.concat_tables([day1.slice(1), pa.Table.from_pylist(more, schema=inv.schema)])
    runs = {}
    for memo in (True, False):
        st = tmp_path / f"st-{memo}"
        sweep(inv, seeds, hashing_model, out_dir=tmp_path / f"d0-{memo}", index_dir=st, **ivf)
        manifest = json.loads(next(st.glob("versions/v*/manifest.json")).read_text())
        assert manifest["signals"]["text"]["nprobe"] < 4  # probes some lists, not all
        for day, items in (("d1", day1), ("d2", day2)):
            if not memo:
                (st / "cache" / "neighbours.parquet").unlink()
            whole.clear()
            runs[memo, day] = sweep(
                items, seeds, hashing_model, out_dir=tmp_path / f"{day}-{memo}", index_dir=st,
                **ivf,
            )  # fmt: skip
            action = runs[memo, day].report["index_update"]["signals"]["text"]
            assert action["index"] == "in-place" and action["key"] == "IVF4,Flat", action
            runs[memo, day, "whole"] = whole[:]
    for day in ("d1", "d2"):
        ((asked, left),) = runs[True, day, "whole"]
        assert runs[False, day, "whole"] == [(asked, asked)] and left < asked / 2, (day, left)
        assert_same_queue(runs[True, day], runs[False, day])


def test_a_kept_policy_s_reasons_are_taken_from_the_last_sweep(
    tmp_path, inventory_items, seeds, hashing_model, monkeypatch
):
    """Issue 12's day 2: the policy whose key and queue rows did not change takes its reasons
    from the last sweep (rank/reasons_memo.py), only the new policy's rows are explained, and
    the queue and reasons equal a sweep of everything from scratch."""
    from collections import Counter

    from riskrank.rank import reasons
    from riskrank.rank.reasons_memo import FILE
    from riskrank.rank.sweep_cache import FILE as SPANS

    inv = inventory_items.drop(["label"])
    st_dir = tmp_path / "st"
    day0 = sweep(inv, seeds, hashing_model, out_dir=tmp_path / "d0", index_dir=st_dir, **SWEEP)
    assert "reasons_reused" not in day0.report and (st_dir / FILE).exists()
    phish = pa.table({"seed_id": ["p1", "p2"], "policy": ["phish"] * 2, "text": NEW_SEEDS[1:]})
    both = pa.concat_tables([seeds, phish], promote_options="default")
    explained = Counter()
    real = reasons._explain_rows

    def counting(inputs, *args, **kwargs):
        explained.update(row["policy"] for row in inputs.rows)
        return real(inputs, *args, **kwargs)

    monkeypatch.setattr(reasons, "_explain_rows", counting)
    day2 = sweep(None, both, hashing_model, out_dir=tmp_path / "d2", index_dir=st_dir, **SWEEP)
    queued = Counter(day2.queue["policy"].to_pylist())
    assert queued["scam"] and queued["phish"]
    assert day2.report["reasons_reused"] == ["scam"] and explained == {"phish": queued["phish"]}
    # The same day again: nothing is explained, and the file (unchanged) is not rewritten.
    explained.clear()
    written = (st_dir / FILE).stat().st_mtime_ns
    again = sweep(None, both, hashing_model, out_dir=tmp_path / "d2b", index_dir=st_dir, **SWEEP)
    assert again.report["reasons_reused"] == ["phish", "scam"] and not explained
    assert (st_dir / FILE).stat().st_mtime_ns == written
    # The phrase attributions of rows taken whole stay for a day that explains them again.
    (st_dir / FILE).unlink()
    third = sweep(None, both, hashing_model, out_dir=tmp_path / "d2c", index_dir=st_dir, **SWEEP)
    assert "reasons_reused" not in third.report and explained == queued
    assert third.report["reasons"]["attributed"] == 0 and (st_dir / SPANS).exists()
    monkeypatch.undo()
    assert_same_queue(day2, sweep(inv, both, hashing_model, out_dir=tmp_path / "f2", **SWEEP))
    assert_same_queue(again, day2)
    assert_same_queue(third, day2)

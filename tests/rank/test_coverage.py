"""A sweep says how like its reviews each policy's candidates are (rank/coverage.py), and
warns where a policy's model extrapolates: an outsider's two-domain sweep queued real insults
under spam at P 0.9 and the report said nothing."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pytest
from conftest import make_items, train_small

from riskrank.rank.coverage import QUANTILE, WARN_SHARE, coverage_report, fit_coverage
from riskrank.rank.evaluation.report import write_report
from riskrank.rank.evaluation.report import write_sweep_reports as write_reports
from riskrank.rank.pipeline import sweep
from riskrank.rank.ranker import RiskRanker

SWEEP = dict(k=None, show_progress=False)


def _foreign(n: int) -> pa.Table:
    """Items from another domain: strings of digits and symbols no review resembles."""
    rng = np.random.default_rng(0)
    texts = [" ".join("".join(rng.choice(list("0123456789#@%&"), 5)) for _ in range(8))
             for _ in range(n)]  # fmt: skip
    return pa.table(
        {"item_id": [f"f{i}" for i in range(n)], "text": texts, "advertiser": ["x"] * n}
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory, history, seeds, hashing_signal):
    """The shared history with each text made distinct ("ref <n>"): the fixture's 120
    reviews hold 58 distinct texts, and copies under other ids do not count toward the
    threshold (``test_copies_in_the_history_do_not_make_the_threshold_one``)."""
    texts = [f"{t} ref {i}" for i, t in enumerate(history["text"].to_pylist())]
    distinct = history.set_column(1, "text", pa.array(texts))
    return train_small(distinct, seeds, tmp_path_factory.mktemp("coverage-model"), hashing_signal)


def _coverage_warnings(report: dict) -> list[str]:
    return [w for w in report["warnings"] if "farther from every item" in w]


def test_a_sweep_unlike_the_reviews_is_reported_and_warned(tmp_path, model, inventory_items, seeds):
    ranker = model.ranker
    assert set(ranker.coverage_) == {"scam"} and set(ranker.coverage_["scam"]) == {"text"}
    inv = inventory_items.drop(["label"])
    alike = sweep(inv, seeds, model, **SWEEP).report
    cov = alike["decisions"]["scam"]["history_coverage"]["text"]
    assert cov["share_below"] <= WARN_SHARE and not _coverage_warnings(alike)
    result = sweep(pa.concat_tables([inv, _foreign(90)]), seeds, model, **SWEEP)
    # Each queue row says whether its item is unlike the policy's reviews.
    queue = result.queue
    flags = dict(zip(queue["item_id"].to_pylist(), queue["unlike_reviews"].to_pylist()))
    assert all(flags[f"f{i}"] for i in range(90))
    assert sum(flags[i] for i in inv["item_id"].to_pylist()) <= WARN_SHARE * inv.num_rows
    mixed = result.report
    cov = mixed["decisions"]["scam"]["history_coverage"]["text"]
    assert cov["candidates"] == 180 and cov["share_below"] >= 0.45  # the 90 foreign ones
    (warning,) = _coverage_warnings(mixed)
    assert warning.startswith("policy 'scam': ")
    md = write_report(tmp_path, mixed, pa.table({"item_id": pa.array([], pa.string())}))
    assert f"{cov['share_below']:.1%} (text)" in md.read_text()
    html = write_reports(result, seeds, out_dir=tmp_path / "html")["html"].read_text()
    assert 'id="warnings"' in html and f"{cov['share_below']:.1%} (text)" in html


def test_coverage_is_the_reviews_own_quantile_and_survives_save(tmp_path, model):
    ranker = model.ranker
    path = ranker.save(tmp_path / "ranker")
    assert RiskRanker.load(path).coverage_ == ranker.coverage_
    # Without it (a ranker saved before coverage was kept): nothing reported, no error.
    meta = json.loads((path / "ranker.json").read_text())
    del meta["history_coverage"]
    (path / "ranker.json").write_text(json.dumps(meta))
    assert RiskRanker.load(path).coverage_ == {}
    # The threshold is the reviews' own QUANTILE: that share of them falls below it.
    rows = pa.table(
        {
            "hist_text_pos_max_sim": np.linspace(0.0, 0.99, 100),
            "hist_text_neg_max_sim": np.full(100, np.nan),
            "hist_image_pos_max_sim": np.full(100, np.nan),  # no reviews with images: none kept
            "hist_image_neg_max_sim": np.full(100, np.nan),
        }
    )
    fitted = fit_coverage(rows, np.array(["p"] * 100, dtype=object))
    assert list(fitted) == ["p"] and list(fitted["p"]) == ["text"]
    got = coverage_report(rows.append_column("policy", pa.array(["p"] * 100)), fitted)
    assert got["p"]["text"]["share_below"] == QUANTILE
    few = fit_coverage(rows.slice(0, 20), np.array(["p"] * 20, dtype=object))
    assert few == {}  # too few reviews for a quantile


def test_young_and_cold_policies_have_no_coverage(tmp_path, history, seeds, hashing_signal):
    inv = make_items(10, 20, prefix="y", seed=4).drop(["label"])
    more = pa.table(
        {
            "seed_id": ["d1"],
            "policy": ["diet"],
            "text": ["Miracle diet pill: lose 30 pounds in a week"],
            "severity": pa.array([2], pa.int8()),
            "action": ["human_review"],
        }
    )
    model = train_small(history, seeds, tmp_path / "m", hashing_signal)
    result = sweep(inv, pa.concat_tables([seeds, more]), model, **SWEEP)
    assert "history_coverage" not in result.report["decisions"]["diet"]  # no reviews: cold
    rows = result.queue.filter(pa.compute.equal(result.queue["policy"], "diet"))
    assert rows.num_rows and rows["unlike_reviews"].null_count == rows.num_rows


def _scored(proba: list[float]):
    from riskrank.rank.ranker import ScoredCandidates

    n = len(proba)
    p = np.asarray(proba, float)
    none = np.full(n, np.nan)
    return ScoredCandidates(
        p, p, [""] * n, np.full(n, "full", dtype=object), np.full(n, "policy_history"), none, {}
    )


def test_an_item_unlike_its_riskiest_policys_reviews_goes_to_a_policy_that_covers_it():
    """The two-domain case: a comment scored 0.94 by the spam model (which never saw a
    comment) and 0.7 by the insult model (which did) is queued under insult."""
    from riskrank.rank.queue import build_queue

    cands = pa.table(
        {
            "item_id": ["c1", "c1", "c2", "c2", "m1", "m1", "c3", "c3"],
            "policy": ["spam", "insult"] * 4,
            "action": ["remove"] * 8,
            "matched_seed_ids": pa.array([[]] * 8, pa.list_(pa.string())),
        }
    )
    proba = [0.94, 0.70, 0.90, 0.30, 0.80, 0.60, 0.85, 0.60]
    unlike = np.array([True, False, True, False, False, True, True, None], dtype=object)
    q = build_queue(cands, _scored(proba), unlike=unlike)
    got = dict(zip(q["item_id"].to_pylist(), q["policy"].to_pylist()))
    # c1: moved (insult covers it, P >= 0.5); c2: insult finds it benign, so it stays under
    # spam; m1: its riskiest policy covers it; c3: insult's coverage is not known.
    assert got == {"c1": "insult", "c2": "spam", "m1": "spam", "c3": "spam"}
    row = q.to_pylist()[q["item_id"].to_pylist().index("c1")]
    assert row["risk_probability"] == 0.70 and row["other_policies"] == ["spam"]
    # The order follows the rows chosen: c2 0.90, c3 0.85, m1 0.80, c1 0.70.
    assert q["item_id"].to_pylist() == ["c2", "c3", "m1", "c1"]
    plain = build_queue(cands, _scored(proba))
    assert plain["policy"].to_pylist() == ["spam"] * 4


def test_an_item_a_near_copy_of_which_reviewers_cleared_is_never_actioned_automatically():
    """An outsider's audit: a demo removal whose closest review, a near-copy (0.707, above
    the 0.7 near-copy level), had been found benign: the removal overruled a reviewer's
    decision on the same content. Such an item is left to a reviewer, and the sentence says
    why."""
    from riskrank.rank.queue import build_queue, near_copy_levels
    from riskrank.rank.reasons import _held_clause, _row_column

    cands = pa.table(
        {
            "item_id": ["a", "b", "c", "d"],
            "policy": ["spam"] * 4,
            "action": ["remove"] * 4,
            "matched_seed_ids": pa.array([[]] * 4, pa.list_(pa.string())),
            "hist_text_neg_max_sim": pa.array([0.707, 0.69, None, 0.95], pa.float32()),
        }
    )
    scored = _scored([0.99, 0.98, 0.97, 0.5])
    scored = type(scored)(*[getattr(scored, f) for f in ("scores", "proba", "reasons",
                          "variant", "calibration")], np.full(4, 0.9), {})  # fmt: skip

    class Text:
        name, match_thresholds = "text", (0.5, 0.7)

    q = build_queue(cands, scored, strong=near_copy_levels([Text()]))
    rows = {r["item_id"]: r for r in q.to_pylist()}
    assert {i: r["action"] for i, r in rows.items()} == {
        "a": "escalate",  # P 0.99 >= 0.9, but a near-copy was cleared
        "b": "remove",  # its closest benign review is not a near-copy
        "c": "remove",
        "d": "escalate",  # below the threshold anyway
    }
    assert rows["a"]["cleared_copy"] == pytest.approx(0.707) and rows["b"]["cleared_copy"] is None
    strong = {"text": 0.7}
    # As the reasons step reads a row: the columns it copies to Python (the first form of
    # this clause never fired in a sweep: the probability and threshold were not among them).
    rows = {
        r["item_id"]: r for r in q.select([c for c in q.column_names if _row_column(c)]).to_pylist()
    }
    said = _held_clause(rows["a"], strong)
    assert (
        said == "left to a reviewer: a near-copy was found benign in review (text similarity 0.71)"
    )
    # The sentence names that review already ("the closest reviewed item h7 was found benign
    # (text similarity 0.71)", the demo's one held row): not said twice.
    named = {"id": "h7", "verdict": 0, "similarity": 0.7069, "signal": "text"}
    assert _held_clause(rows["a"], strong, named) == (
        "left to a reviewer, as that reviewed item is a near-copy"
    )
    assert _held_clause(rows["a"], strong, {**named, "verdict": 2}) == said
    assert _held_clause(rows["d"], strong) is None  # not held: its probability never reached it
    assert _held_clause(rows["b"], strong) is None


def test_an_item_unlike_its_policys_reviews_is_never_actioned_automatically():
    """An outsider's mixed inventory: the spam policy's threshold suggested removing 215
    comments that the sweep itself flagged as unlike every spam review."""
    from riskrank.rank.queue import build_queue

    cands = pa.table(
        {
            "item_id": ["a", "b", "c"],
            "policy": ["spam"] * 3,
            "action": ["remove"] * 3,
            "matched_seed_ids": pa.array([[]] * 3, pa.list_(pa.string())),
        }
    )
    scored = _scored([0.99, 0.98, 0.97])
    scored = type(scored)(*[getattr(scored, f) for f in ("scores", "proba", "reasons",
                          "variant", "calibration")], np.full(3, 0.9), {})  # fmt: skip
    unlike = np.array([True, False, None], dtype=object)
    q = build_queue(cands, scored, unlike=unlike)
    assert dict(zip(q["item_id"].to_pylist(), q["action"].to_pylist())) == {
        "a": "escalate",
        "b": "remove",
        "c": "remove",  # (not known: as before)
    }
    assert build_queue(cands, scored)["action"].to_pylist() == ["remove"] * 3


def test_reviewed_items_left_out_of_the_queue_do_not_dilute_the_share(model, history_items, seeds):
    """Reviewed, unchanged items are their own nearest review: counted, 120 of them hid 25
    foreign items that made up the whole queue (a reviewer's finding)."""
    texts = [f"{t} ref {i}" for i, t in enumerate(history_items["text"].to_pylist())]
    reviewed = history_items.drop(["label"]).set_column(1, "text", pa.array(texts))
    result = sweep(pa.concat_tables([reviewed, _foreign(25)]), seeds, model, **SWEEP)
    assert result.report["reviewed"]["excluded_from_queue"] > 0
    cov = result.report["decisions"]["scam"]["history_coverage"]["text"]
    assert cov["candidates"] == result.queue.num_rows == 25 and cov["share_below"] == 1.0
    assert _coverage_warnings(result.report)


def test_copies_in_the_history_do_not_make_the_threshold_one():
    """Reviews whose nearest other review is the same content under another id are left
    out of the quantile: with 60% copies it was 1.0 (every edited copy 'unlike')."""
    near = np.concatenate([np.full(120, 0.99999994), np.linspace(0.5, 0.99, 80)])
    rows = pa.table({"hist_text_pos_max_sim": near, "hist_text_neg_max_sim": np.full(200, np.nan)})
    fitted = fit_coverage(rows, np.array(["p"] * 200, dtype=object))
    assert fitted["p"]["text"] == pytest.approx(np.quantile(near[120:], QUANTILE))


def test_the_base_rate_is_estimated_on_the_rows_like_the_reviews(model, monkeypatch):
    import riskrank.rank.ranker as ranker_module
    from riskrank.rank.ranker import MIN_COVERED

    ranker = model.ranker
    scores = np.linspace(-3.0, 3.0, 200)
    variant = np.full(200, "full", dtype=object)
    policies = ["scam"] * 200
    like = scores < 0  # the covered rows: the low-scoring half
    # The fixture's few held-out reviews keep their calibrator's level: no EM, no rows chosen.
    own = ranker.calibration_["full"]["scam"]
    kept = ranker.calibrate(scores, variant, policies, covered=like)
    assert kept.base_rates["scam"] == pytest.approx(own.predict(scores).mean())
    # With enough of them, EM re-estimates it, on the covered rows:
    monkeypatch.setattr(ranker_module, "em_supported", lambda cal: True)
    every = ranker.calibrate(scores, variant, policies).base_rates["scam"]
    covered = ranker.calibrate(scores, variant, policies, covered=like).base_rates["scam"]
    alone = ranker.calibrate(scores[like], variant[like], policies[:100]).base_rates["scam"]
    assert covered == alone < every
    few = scores < scores[MIN_COVERED - 2]  # too few covered rows: all rows, as before
    assert ranker.calibrate(scores, variant, policies, covered=few).base_rates["scam"] == every
    # A few unlike rows (no more than the share a sweep warns at): all rows, as before.
    most = scores < scores[int(200 * (1 - WARN_SHARE))]
    assert ranker.calibrate(scores, variant, policies, covered=most).base_rates["scam"] == every

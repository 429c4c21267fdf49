"""A sweep says how like its reviews each policy's candidates are (rank/coverage.py), and
warns where a policy's model extrapolates: an outsider's two-domain sweep queued real insults
under spam at P 0.9 and the report said nothing."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
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


def _coverage_warnings(report: dict) -> list[str]:
    return [w for w in report["warnings"] if "farther from every item" in w]


def test_a_sweep_unlike_the_reviews_is_reported_and_warned(
    tmp_path, hashing_model, inventory_items, seeds
):
    ranker = hashing_model.ranker
    assert set(ranker.coverage_) == {"scam"} and set(ranker.coverage_["scam"]) == {"text"}
    inv = inventory_items.drop(["label"])
    alike = sweep(inv, seeds, hashing_model, **SWEEP).report
    cov = alike["decisions"]["scam"]["history_coverage"]["text"]
    assert cov["share_below"] <= WARN_SHARE and not _coverage_warnings(alike)
    result = sweep(pa.concat_tables([inv, _foreign(90)]), seeds, hashing_model, **SWEEP)
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


def test_coverage_is_the_reviews_own_quantile_and_survives_save(tmp_path, hashing_model):
    ranker = hashing_model.ranker
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
